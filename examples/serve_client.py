#!/usr/bin/env python3
"""A client of `crdtdir serve` over its Unix socket, in the standard library only.

    python3 examples/serve_client.py SOCKET [ITEM]

SOCKET is STATE/stores/<store id>/serve.sock (`crdtdir --json status` gives the store id).
With ITEM, the client appends it to the list /items; then it prints the list, as JSON.

The protocol (README, "Serve"): one JSON object per line each way. A request has an "id"
and an "op"; its answer has the same "id" and "result" (with "notes", the lines the CLI
would print on stderr) or "error" ({"code", "exit", "message", "hint"}). A "watch" request
is answered, then followed by {"id": ..., "event": ...} lines: one per merged batch, as
`crdtdir watch` prints them.
"""

import json
import socket
import sys


class CrdtdirError(Exception):
    def __init__(self, error):
        super().__init__(error.get("message", "crdtdir error"))
        self.code = error.get("code")
        self.exit = error.get("exit")


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lines = self.sock.makefile("r", encoding="utf-8")
        self.next_id = 0
        self.events = []

    def request(self, op, **fields):
        """Sends one request and returns its result (events that come first are kept)."""
        self.next_id += 1
        line = json.dumps(dict(fields, id=self.next_id, op=op)) + "\n"
        self.sock.sendall(line.encode("utf-8"))
        while True:
            answer = json.loads(self.lines.readline())
            if "event" in answer:
                self.events.append(answer)
                continue
            if answer.get("id") != self.next_id:
                continue
            if "error" in answer:
                raise CrdtdirError(answer["error"])
            return answer["result"]

    def next_event(self):
        """The next event line of a watch this client asked for."""
        if self.events:
            return self.events.pop(0)
        while True:
            answer = json.loads(self.lines.readline())
            if "event" in answer:
                return answer


def main():
    client = Client(sys.argv[1])
    if len(sys.argv) > 2:
        client.request(
            "append", patch=[{"op": "add", "path": "/items/-", "value": sys.argv[2]}]
        )
    print(json.dumps(client.request("get", path="/items")))


if __name__ == "__main__":
    main()
