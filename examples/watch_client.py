#!/usr/bin/env python3
"""Follows `crdtdir watch` lines on stdin and keeps a copy of the document up to date.

    crdtdir watch | python3 examples/watch_client.py

The first line carries the document (`doc`); every later line's `patches`, applied in
order, turn the copy into the document after that line (`reset: true`: from `{}`). Each
time the copy changes it is printed as one line of JSON (keys sorted, as `crdtdir merge`
prints it). Patch vocabulary (README, "Watching"): put, insert, delete, splice, increment;
paths are JSON Pointers (RFC 6901); text positions count Unicode code points.
"""

import json
import sys


def unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def parent_and_key(doc, path):
    tokens = [unescape(t) for t in path.split("/")[1:]]
    parent = doc
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    return parent, tokens[-1]


def child(parent, key):
    return parent[int(key)] if isinstance(parent, list) else parent[key]


def apply(doc, patch):
    """Applies one patch; returns the document (a text edit makes a new string)."""
    op = patch["op"]
    parent, key = parent_and_key(doc, patch["path"])
    if op == "put":
        if isinstance(parent, list):
            parent[int(key)] = patch["value"]
        else:
            parent[key] = patch["value"]
    elif op == "insert":
        at = int(key)
        parent[at:at] = patch["values"]
    elif op == "delete":
        count = patch["count"]
        if isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, list):
            del parent[int(key):int(key) + count]
        else:  # characters of a text: the text is replaced in its own parent
            at = int(key)
            text = parent[:at] + parent[at + count:]
            doc = set_at(doc, patch["path"].rsplit("/", 1)[0], text)
    elif op == "splice":
        old = child(parent, key)
        pos = patch["pos"]
        new = old[:pos] + patch["text"] + old[pos:]
        doc = set_at(doc, patch["path"], new)
    elif op == "increment":
        value = child(parent, key) + patch["by"]
        doc = set_at(doc, patch["path"], value)
    else:
        raise ValueError(f"unknown patch op {op!r}")
    return doc


def set_at(doc, path, value):
    parent, key = parent_and_key(doc, path)
    if isinstance(parent, list):
        parent[int(key)] = value
    else:
        parent[key] = value
    return doc


def main():
    doc = None
    for line in sys.stdin:
        event = json.loads(line)
        if "doc" in event:
            doc = event["doc"]
        else:
            if event.get("reset"):
                doc = {}
            for patch in event.get("patches", []):
                doc = apply(doc, patch)
        print(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
              flush=True)


if __name__ == "__main__":
    main()
