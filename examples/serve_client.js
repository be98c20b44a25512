#!/usr/bin/env node
// A client of `crdtdir serve` over its Unix socket, in Node's standard library only.
//
//     node examples/serve_client.js SOCKET [ITEM]
//
// SOCKET is STATE/stores/<store id>/serve.sock (`crdtdir --json status` gives the store
// id). With ITEM, the client appends it to the list /items; then it prints the list, as
// JSON. The protocol is the one examples/serve_client.py describes (README, "Serve"):
// one JSON object per line each way; an answer carries its request's "id", and "result"
// or "error".
"use strict";

const net = require("net");

class Client {
  constructor(path) {
    this.socket = net.createConnection(path);
    this.nextId = 0;
    this.pending = new Map();
    this.onEvent = () => {};
    let buffered = "";
    this.socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const answer = JSON.parse(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        if ("event" in answer) {
          this.onEvent(answer);
          continue;
        }
        const waiting = this.pending.get(answer.id);
        if (!waiting) continue;
        this.pending.delete(answer.id);
        if (answer.error) {
          const error = new Error(answer.error.message);
          error.code = answer.error.code;
          waiting.reject(error);
        } else {
          waiting.resolve(answer.result);
        }
      }
    });
  }

  request(op, fields = {}) {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(JSON.stringify({ ...fields, id, op }) + "\n");
    });
  }

  close() {
    this.socket.end();
  }
}

async function main() {
  const client = new Client(process.argv[2]);
  if (process.argv.length > 3) {
    await client.request("append", {
      patch: [{ op: "add", path: "/items/-", value: process.argv[3] }],
    });
  }
  console.log(JSON.stringify(await client.request("get", { path: "/items" })));
  client.close();
}

main().catch((e) => {
  console.error(`crdtdir: ${e.message}`);
  process.exit(1);
});
