#!/usr/bin/env node
// A todo app for two devices on `crdtdir serve`, in Node's standard library only.
//
//     node examples/todo.js [--crdtdir PATH] [FOLDER]
//
// PATH is the crdtdir binary (default: `crdtdir` on the PATH). FOLDER holds the store
// (FOLDER/todo) and each device's state directory beside it; without FOLDER, a temporary
// folder removed at the end.
//
// The same app as examples/todo.rs (which says more about its choices) and
// examples/todo.py. A laptop and a phone share one store folder, each with its own
// state directory, and each runs its own `crdtdir serve` as a sidecar (README, "Serve":
// one JSON object per line on its stdin and stdout). Both add, tick and delete todos at
// the same time; the phone's screen follows a watch; at the end both show the same
// list, with every device's edits.
//
// The document is {"todos": [{"id", "title", "done"}, ...]}, made once by `crdtdir init`.
// A todo is found by its id, never by its index alone: an edit of the todo at index i is
// one JSON Patch that first tests that /todos/i/id is still its id. A write first merges
// what has arrived, so when other devices' edits moved the todo, the test fails, nothing
// is written, and the app looks the todo up again and retries.
"use strict";

const { execFileSync, spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

// How long to wait for an answer, or for the other device's edits to reach the screen.
const WAIT_MS = 30000;

/** An error answer; `code` as in `crdtdir --json` errors ("patch": a failed test). */
class CrdtdirError extends Error {
  constructor(error) {
    super(error.message || "crdtdir error");
    this.code = error.code;
  }
}

/** A queue of lines whose reader waits, at most `ms`, for the next one. */
class Lines {
  constructor() {
    this.ready = [];
    this.waiting = null;
  }

  push(item) {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve(item);
    } else {
      this.ready.push(item);
    }
  }

  /** The next item, or `null` after `ms`. */
  next(ms) {
    if (this.ready.length > 0) return Promise.resolve(this.ready.shift());
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        resolve(null);
      }, ms);
      this.waiting = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
    });
  }
}

/** One device of the app: its own `crdtdir serve`, on its own state directory. */
class Device {
  constructor(crdtdir, store, state, name) {
    this.name = name;
    this.server = spawn(
      crdtdir,
      ["--store", store, "--state-dir", state, "--device", name, "serve"],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    this.exited = new Promise((resolve) => this.server.on("close", resolve));
    // A binary that does not start ends the server's output: requests then fail.
    this.server.on("error", (e) => console.error(`todo: ${crdtdir}: ${e.message}`));
    this.answers = new Lines();
    this.events = new Lines();
    this.nextId = 0;
    // Answers and watch events share the server's stdout: sort them apart.
    const lines = readline.createInterface({ input: this.server.stdout });
    lines.on("line", (line) => {
      const message = JSON.parse(line);
      ("event" in message ? this.events : this.answers).push(message);
    });
    lines.on("close", () => this.answers.push({ ended: true }));
  }

  async request(op, fields = {}) {
    const id = ++this.nextId;
    this.server.stdin.write(JSON.stringify({ ...fields, id, op }) + "\n");
    for (;;) {
      const answer = await this.answers.next(WAIT_MS);
      if (answer === null) throw new Error(`${this.name}: no answer to ${op}`);
      if (answer.ended) throw new Error(`${this.name}: crdtdir serve ended`);
      if (answer.id !== id) continue;
      if (answer.error) throw new CrdtdirError(answer.error);
      return answer.result;
    }
  }

  async close() {
    // A server ends when its stdin does.
    this.server.stdin.end();
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, WAIT_MS);
    });
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
  }

  todos() {
    return this.request("get", { path: "/todos" });
  }

  async add(title) {
    const todo = { id: crypto.randomUUID(), title, done: false };
    // "scalar": its strings are atomic values (an id, a title replaced whole), not
    // collaborative text.
    const add = { op: "add", path: "/todos/-", value: todo, scalar: true };
    await this.request("append", { patch: [add] });
    console.log(`${this.name}: added "${title}"`);
  }

  async tick(screen, tapped) {
    const ops = (at) => [{ op: "replace", path: `${at}/done`, value: true }];
    if (await this.edit(screen, tapped, ops)) {
      console.log(`${this.name}: ticked "${tapped.title}"`);
    } else {
      console.log(`${this.name}: "${tapped.title}" was deleted on another device`);
    }
  }

  async delete(screen, tapped) {
    await this.edit(screen, tapped, (at) => [{ op: "remove", path: at }]);
    console.log(`${this.name}: deleted "${tapped.title}"`);
  }

  /**
   * Writes ops(path of the tapped todo) where `screen` has it, guarded by a test of its
   * id, and on a fresh list if it moved. False: it was deleted meanwhile.
   */
  async edit(screen, tapped, ops) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const at = screen.findIndex((t) => t.id === tapped.id);
      if (at < 0) return false;
      const guard = { op: "test", path: `/todos/${at}/id`, value: tapped.id };
      try {
        await this.request("append", { patch: [guard, ...ops(`/todos/${at}`)] });
        return true;
      } catch (e) {
        if (e.code !== "patch") throw e;
        screen = await this.todos();
      }
    }
    throw new Error(`"${tapped.title}" kept moving`);
  }
}

/**
 * A device's screen, kept by a watch of its server. With `whole`, every event carries
 * the whole document; for a big one, leave it out and apply the events' patches instead
 * (examples/watch_client.py shows how).
 */
class Screen {
  static async watch(device) {
    const screen = new Screen();
    screen.device = device;
    screen.heard = [];
    await device.request("watch", { whole: true });
    const first = await device.events.next(WAIT_MS);
    if (first === null) throw new Error("the watch sent no first event");
    screen.todos = first.event.doc.todos;
    return screen;
  }

  /**
   * Takes the watch's events until done(list on screen), printing what other devices
   * changed; an error if that takes longer than WAIT_MS.
   */
  async followUntil(done) {
    const deadline = Date.now() + WAIT_MS;
    while (!(await done(this.todos))) {
      if (Date.now() > deadline) {
        throw new Error("the other device's edits did not arrive in time");
      }
      const line = await this.device.events.next(100);
      if (line === null) continue; // done() may ask a device again
      const { event } = line;
      const before = this.todos;
      this.todos = event.doc.todos;
      // This device's own writes come back too, marked "local": the app drew them
      // already. A batch may hold both.
      const what = describe(before, this.todos);
      if (event.changes.some((c) => !c.local) && what) {
        const names = [...new Set(event.changes.map((c) => c.device))].sort();
        const said = `phone's watcher: ${what} (from ${names.join(", ")})`;
        console.log(said);
        this.heard.push(said);
      }
    }
  }
}

/** What changed between two lists, todo by todo (matched by id). */
function describe(before, after) {
  const was = new Map(before.map((t) => [t.id, t]));
  const said = [];
  for (const todo of after) {
    const old = was.get(todo.id);
    if (!old) said.push(`added "${todo.title}"`);
    else if (old.done !== todo.done) {
      said.push(`${todo.done ? "ticked" : "unticked"} "${todo.title}"`);
    }
  }
  const now = new Set(after.map((t) => t.id));
  for (const todo of before) {
    if (!now.has(todo.id)) said.push(`deleted "${todo.title}"`);
  }
  return said.join(", ");
}

function show(device, todos) {
  console.log(`${device}'s list:`);
  for (const todo of todos) console.log(`  [${todo.done ? "x" : " "}] ${todo.title}`);
}

function titled(todos, title) {
  return todos.find((t) => t.title === title);
}

const sameList = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function run(crdtdir, folder) {
  const store = path.join(folder, "todo");
  const state = (name) => path.join(folder, `${name}-state`);
  // The laptop makes the store, with the empty list every device adds to. Other devices
  // never init: they open the folder once the sync tool has delivered it.
  execFileSync(
    crdtdir,
    ["--store", store, "--state-dir", state("laptop"), "--device", "laptop",
      "init", "--from", "-"],
    {
      input: JSON.stringify({ todos: [] }),
      stdio: ["pipe", "ignore", "inherit"],
      timeout: WAIT_MS,
    },
  );
  const laptop = new Device(crdtdir, store, state("laptop"), "laptop");
  const phone = new Device(crdtdir, store, state("phone"), "phone");
  try {
    const screen = await Screen.watch(phone);
    await laptop.add("Buy milk");
    await laptop.add("Call mum");
    await laptop.add("Water the plants");
    await screen.followUntil((todos) => todos.length === 3);
    await phone.add("Book the dentist");
    await screen.followUntil((todos) => todos.length === 4);
    show("laptop", await laptop.todos());
    show("phone", screen.todos);

    // Both users tap at once, each on the list their screen shows: the phone's taps come
    // from a list read before the laptop's edits.
    console.log("\nBoth devices edit at once:");
    const onLaptop = await laptop.todos();
    const onPhone = screen.todos;
    await laptop.delete(onLaptop, titled(onLaptop, "Call mum"));
    await laptop.tick(onLaptop, titled(onLaptop, "Water the plants"));
    await laptop.add("Pay rent");
    // Fourth on the phone's screen, elsewhere once the laptop's edits have reached the
    // phone: then the test fails, nothing is written, and the retry finds it.
    await phone.tick(onPhone, titled(onPhone, "Book the dentist"));
    // Deleted by the laptop meanwhile: a tick does not bring it back.
    await phone.tick(onPhone, titled(onPhone, "Call mum"));
    await phone.add("Buy bread");

    // The phone's watch brings the laptop's edits to its screen until it shows what the
    // laptop shows. (A server answers from the document its own watcher keeps, which may
    // be a moment behind the folder: followUntil asks again.)
    await screen.followUntil(async (todos) => sameList(todos, await laptop.todos()));
    console.log("\nBoth devices show the same list:");
    show("laptop", await laptop.todos());
    show("phone", screen.todos);
  } finally {
    await laptop.close();
    await phone.close();
  }
}

async function main() {
  const args = process.argv.slice(2);
  let crdtdir = "crdtdir";
  const at = args.indexOf("--crdtdir");
  if (at >= 0) [, crdtdir] = args.splice(at, 2);
  if (args.length > 1 || args.some((a) => a.startsWith("-"))) {
    throw new Error("usage: node examples/todo.js [--crdtdir PATH] [FOLDER]");
  }
  if (args.length === 1) {
    fs.mkdirSync(args[0], { recursive: true });
    await run(crdtdir, args[0]);
    return;
  }
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "crdtdir-todo-"));
  try {
    await run(crdtdir, folder);
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

main().catch((e) => {
  if (e.code === "ENOENT") {
    console.error(`todo: ${e.path}: not found (pass --crdtdir PATH)`);
  } else {
    console.error(`todo: ${e.message}`);
  }
  process.exit(1);
});
