#!/usr/bin/env python3
"""A todo app for two devices on `crdtdir serve`, in Python's standard library only.

    python3 examples/todo.py [--crdtdir PATH] [FOLDER]

PATH is the crdtdir binary (default: `crdtdir` on the PATH). FOLDER holds the store
(FOLDER/todo) and each device's state directory beside it; without FOLDER, a temporary
folder removed at the end.

The same app as examples/todo.rs, which says more about its choices. A laptop and a phone
share one store folder, each with its own state directory, and each runs its own
`crdtdir serve` as a sidecar (README, "Serve": one JSON object per line on its stdin and
stdout). Both add, tick and delete todos at the same time; the phone's screen follows a
watch; at the end both show the same list, with every device's edits.

The document is {"todos": [{"id", "title", "done"}, ...]}, made once by `crdtdir init`.
A todo is found by its id, never by its index alone: an edit of the todo at index i is
one JSON Patch that first tests that /todos/i/id is still its id. A write first merges
what has arrived, so when other devices' edits moved the todo, the test fails, nothing
is written, and the app looks the todo up again and retries.
"""

import argparse
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# How long to wait for an answer, or for the other device's edits to reach the screen.
WAIT = 30.0


class CrdtdirError(Exception):
    """An error answer; `code` as in `crdtdir --json` errors ("patch": a failed test)."""

    def __init__(self, error):
        super().__init__(error.get("message", "crdtdir error"))
        self.code = error.get("code")


class Device:
    """One device of the app: its own `crdtdir serve`, on its own state directory."""

    def __init__(self, crdtdir, store, state, name):
        self.name = name
        self.server = subprocess.Popen(
            [crdtdir, "--store", store, "--state-dir", state, "--device", name,
             "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.answers = queue.Queue()
        self.events = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        # Answers and watch events share the server's stdout: sort them apart.
        for line in self.server.stdout:
            message = json.loads(line)
            (self.events if "event" in message else self.answers).put(message)
        self.answers.put(None)  # the server ended

    def request(self, op, **fields):
        self.next_id += 1
        line = json.dumps(dict(fields, id=self.next_id, op=op))
        self.server.stdin.write(line + "\n")
        self.server.stdin.flush()
        while True:
            try:
                answer = self.answers.get(timeout=WAIT)
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no answer to {op}") from None
            if answer is None:
                raise CrdtdirError({"message": f"{self.name}: crdtdir serve ended"})
            if answer.get("id") == self.next_id:
                break
        if "error" in answer:
            raise CrdtdirError(answer["error"])
        return answer["result"]

    def close(self):
        # A server ends when its stdin does.
        self.server.stdin.close()
        self.server.wait(timeout=WAIT)

    def todos(self):
        return self.request("get", path="/todos")

    def add(self, title):
        todo = {"id": uuid.uuid4().hex, "title": title, "done": False}
        # "scalar": its strings are atomic values (an id, a title replaced whole), not
        # collaborative text.
        add = {"op": "add", "path": "/todos/-", "value": todo, "scalar": True}
        self.request("append", patch=[add])
        print(f'{self.name}: added "{title}"')

    def tick(self, screen, tapped):
        def ops(at):
            return [{"op": "replace", "path": f"{at}/done", "value": True}]

        if self.edit(screen, tapped, ops):
            print(f'{self.name}: ticked "{tapped["title"]}"')
        else:
            print(f'{self.name}: "{tapped["title"]}" was deleted on another device')

    def delete(self, screen, tapped):
        self.edit(screen, tapped, lambda at: [{"op": "remove", "path": at}])
        print(f'{self.name}: deleted "{tapped["title"]}"')

    def edit(self, screen, tapped, ops):
        """Writes ops(path of the tapped todo) where `screen` has it, guarded by a test of
        its id, and on a fresh list if it moved. False: it was deleted meanwhile."""
        for _ in range(5):
            at = next((i for i, t in enumerate(screen) if t["id"] == tapped["id"]), None)
            if at is None:
                return False
            guard = {"op": "test", "path": f"/todos/{at}/id", "value": tapped["id"]}
            try:
                self.request("append", patch=[guard] + ops(f"/todos/{at}"))
                return True
            except CrdtdirError as e:
                if e.code != "patch":
                    raise
                screen = self.todos()
        raise RuntimeError(f'"{tapped["title"]}" kept moving')


class Screen:
    """A device's screen, kept by a watch of its server. With "whole", every event
    carries the whole document; for a big one, leave it out and apply the events'
    patches instead (examples/watch_client.py)."""

    def __init__(self, device):
        self.device = device
        self.heard = []
        device.request("watch", whole=True)
        try:
            first = device.events.get(timeout=WAIT)["event"]
        except queue.Empty:
            raise TimeoutError("the watch sent no first event") from None
        self.todos = first["doc"]["todos"]

    def follow_until(self, done):
        """Takes the watch's events until done(list on screen), printing what other
        devices changed; TimeoutError if that takes longer than WAIT."""
        deadline = time.monotonic() + WAIT
        while not done(self.todos):
            if time.monotonic() > deadline:
                raise TimeoutError("the other device's edits did not arrive in time")
            try:
                event = self.device.events.get(timeout=0.1)["event"]
            except queue.Empty:
                continue  # done() may ask a device again
            before, self.todos = self.todos, event["doc"]["todos"]
            # This device's own writes come back too, marked "local": the app drew
            # them already. A batch may hold both.
            what = describe(before, self.todos)
            if any(not c["local"] for c in event["changes"]) and what:
                names = ", ".join(sorted({c["device"] for c in event["changes"]}))
                line = f"phone's watcher: {what} (from {names})"
                print(line)
                self.heard.append(line)


def describe(before, after):
    """What changed between two lists, todo by todo (matched by id)."""
    was = {t["id"]: t for t in before}
    said = []
    for todo in after:
        old = was.get(todo["id"])
        if old is None:
            said.append(f'added "{todo["title"]}"')
        elif old["done"] != todo["done"]:
            verb = "ticked" if todo["done"] else "unticked"
            said.append(f'{verb} "{todo["title"]}"')
    now = {t["id"] for t in after}
    said += [f'deleted "{t["title"]}"' for t in before if t["id"] not in now]
    return ", ".join(said)


def show(device, todos):
    print(f"{device}'s list:")
    for todo in todos:
        print(f'  [{"x" if todo["done"] else " "}] {todo["title"]}')


def titled(todos, title):
    return next(t for t in todos if t["title"] == title)


def run(crdtdir, folder):
    store = folder / "todo"
    # The laptop makes the store, with the empty list every device adds to. Other
    # devices never init: they open the folder once the sync tool has delivered it.
    subprocess.run(
        [crdtdir, "--store", store, "--state-dir", folder / "laptop-state",
         "--device", "laptop", "init", "--from", "-"],
        input=json.dumps({"todos": []}),
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=WAIT,
    )
    laptop = Device(crdtdir, store, folder / "laptop-state", "laptop")
    phone = Device(crdtdir, store, folder / "phone-state", "phone")
    try:
        screen = Screen(phone)
        laptop.add("Buy milk")
        laptop.add("Call mum")
        laptop.add("Water the plants")
        screen.follow_until(lambda todos: len(todos) == 3)
        phone.add("Book the dentist")
        screen.follow_until(lambda todos: len(todos) == 4)
        show("laptop", laptop.todos())
        show("phone", screen.todos)

        # Both users tap at once, each on the list their screen shows: the phone's taps
        # come from a list read before the laptop's edits.
        print("\nBoth devices edit at once:")
        on_laptop, on_phone = laptop.todos(), screen.todos
        laptop.delete(on_laptop, titled(on_laptop, "Call mum"))
        laptop.tick(on_laptop, titled(on_laptop, "Water the plants"))
        laptop.add("Pay rent")
        # Fourth on the phone's screen, elsewhere once the laptop's edits have reached
        # the phone: then the test fails, nothing is written, and the retry finds it.
        phone.tick(on_phone, titled(on_phone, "Book the dentist"))
        # Deleted by the laptop meanwhile: a tick does not bring it back.
        phone.tick(on_phone, titled(on_phone, "Call mum"))
        phone.add("Buy bread")

        # The phone's watch brings the laptop's edits to its screen until it shows what
        # the laptop shows. (A server answers from the document its own watcher keeps,
        # which may be a moment behind the folder: follow_until asks again.)
        screen.follow_until(lambda todos: todos == laptop.todos())
        print("\nBoth devices show the same list:")
        show("laptop", laptop.todos())
        show("phone", screen.todos)
    finally:
        laptop.close()
        phone.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crdtdir", default="crdtdir", help="the crdtdir binary")
    parser.add_argument("folder", nargs="?", type=Path, help="where to keep the store")
    args = parser.parse_args()
    if args.folder:
        args.folder.mkdir(parents=True, exist_ok=True)
        run(args.crdtdir, args.folder)
    else:
        with tempfile.TemporaryDirectory() as folder:
            run(args.crdtdir, Path(folder))


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:
        sys.exit(f"todo: {e.filename}: not found (pass --crdtdir PATH)")
    except subprocess.CalledProcessError:
        sys.exit("todo: crdtdir init failed")  # crdtdir said why on stderr
    except (CrdtdirError, TimeoutError) as e:
        sys.exit(f"todo: {e}")
