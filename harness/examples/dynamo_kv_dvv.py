#!/usr/bin/env python3
"""A correct dynamo-kv node: dotted version vectors, sloppy quorum, hinted handoff.

Standard library only; copy it as the start of your own node. Every node replicates every key
(N is the cluster size); a write needs W = majority acknowledgements from any nodes that
answer, a read R = majority replies. A write sends the replicas the key's whole sibling set,
as Riak sends the whole object. A replica that did not acknowledge a write is owed it as a
hint, resent until it answers; a periodic anti-entropy round sends a random peer the whole
store, so a node restarted empty catches up.

Each sibling carries a dot (the coordinator's id, unique to this process so a restarted node
never reuses one, and a count of the key's writes through it) and the causal past its writer
had read (a version vector). A write discards the siblings its context covers and nothing else:
two clients writing with the same context through one coordinator get two dots, and both
survive as siblings. A context never claims a dot its client was not shown (`context_of`).

Usage (the harness starts one per node): python dynamo_kv_dvv.py
"""

from __future__ import annotations

import json
import queue
import random
import sys
import threading
import time
import uuid
from typing import Any

Sibling = dict[str, Any]  # {"dot": [node, n], "past": {node: n}, "value": v, "deleted": bool}

TIMEOUT = 1.0  # a client request's deadline inside the node
HINT_EVERY = 0.3
SYNC_EVERY = 0.5


def covered(dot: list[Any], vv: dict[str, int]) -> bool:
    return bool(vv.get(dot[0], 0) >= dot[1])


def clock_of(s: Sibling) -> dict[str, int]:
    """A sibling's clock for the checkers: its past, and its dot as an "@node" entry."""
    return {**s["past"], "@" + s["dot"][0]: s["dot"][1]}


def merge(local: list[Sibling], incoming: list[Sibling]) -> list[Sibling]:
    """The siblings of `local` and `incoming` that no other sibling's past covers."""
    out = list(local)
    for s in incoming:
        if any(o["dot"] == s["dot"] or covered(s["dot"], o["past"]) for o in out):
            continue
        out = [o for o in out if not covered(o["dot"], s["past"])] + [s]
    return sorted(out, key=lambda s: (s["dot"][0], s["dot"][1]))


def context_of(siblings: list[Sibling]) -> dict[str, int]:
    """What a client shown `siblings` has seen: their pasts, and each dot that extends them
    without a gap. A vector claims every dot of a writer up to its entry, so a dot beyond a
    gap (a write of the key through that node the client was not shown) is left out: a write
    with this context keeps that sibling rather than drop the write in the gap."""
    vv: dict[str, int] = {}
    for s in siblings:
        for node, n in s["past"].items():
            vv[node] = max(vv.get(node, 0), n)
    for node, n in sorted(tuple(s["dot"]) for s in siblings):
        if n == vv.get(node, 0) + 1:
            vv[node] = n
    return vv


class Node:
    def __init__(self) -> None:
        self.id = ""
        self.peers: list[str] = []
        self.dot_id = ""
        self.counters: dict[str, int] = {}  # key -> its writes coordinated here
        self.msg_ids = 0
        self.store: dict[str, list[Sibling]] = {}
        self.ops: dict[int, dict[str, Any]] = {}  # msg_id of a peer request -> its client op
        self.hints: dict[str, dict[str, list[Sibling]]] = {}  # peer -> key -> owed siblings
        self.last_hints = self.last_sync = 0.0

    def send(self, dest: str, body: dict[str, Any]) -> int:
        self.msg_ids += 1
        body.setdefault("msg_id", self.msg_ids)
        sys.stdout.write(json.dumps({"src": self.id, "dest": dest, "body": body}) + "\n")
        sys.stdout.flush()
        return int(body["msg_id"])

    def reply(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        self.send(msg["src"], {**body, "in_reply_to": msg["body"]["msg_id"]})

    def quorum(self) -> int:
        return (len(self.peers) + 1) // 2 + 1

    # -- client requests ------------------------------------------------------------------

    def handle(self, msg: dict[str, Any]) -> None:
        body = msg["body"]
        kind = body["type"]
        if kind == "init":
            self.id, self.peers = body["node_id"], list(body["node_ids"])
            self.peers.remove(self.id)
            self.dot_id = f"{self.id}.{uuid.uuid4().hex[:8]}"
            self.reply(msg, {"type": "init_ok", "workloads": ["dynamo-kv"], "replica_get": True})
        elif kind in ("put", "delete"):
            self.write(msg, body)
        elif kind == "get":
            op = self.start_op(msg, "get", self.store.get(body["key"], []))
            for p in self.peers:
                self.ops[self.send(p, {"type": "read", "key": body["key"]})] = op
            self.progress(op)
        elif kind == "replica_get":
            values = [s["value"] for s in self.store.get(body["key"], []) if not s["deleted"]]
            self.reply(msg, {"type": "replica_get_ok", "values": values})
        # -- between nodes --
        elif kind == "replicate":
            self.absorb(body["key"], body["siblings"])
            self.reply(msg, {"type": "replicate_ok"})
        elif kind == "read":
            self.reply(msg, {"type": "read_ok", "siblings": self.store.get(body["key"], [])})
        elif kind == "sync":
            for key, siblings in body["store"].items():
                self.absorb(key, siblings)
        elif kind in ("replicate_ok", "read_ok"):
            op = self.ops.pop(body["in_reply_to"], {})
            if op:
                op["acks"] += 1
                op["peers"].discard(msg["src"])
                if kind == "read_ok":
                    op["siblings"] = merge(op["siblings"], body["siblings"])
                self.progress(op)
        elif body.get("msg_id") is not None and "in_reply_to" not in body:
            self.reply(msg, {"type": "error", "code": 10, "text": f"unknown type {kind}"})

    def write(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        key = body["key"]
        past = json.loads(body["context"]) if body.get("context") else {}
        # Counted per key, so a gap in one writer's dots of a key is a write someone missed.
        self.counters[key] = self.counters.get(key, 0) + 1
        sibling = {
            "dot": [self.dot_id, self.counters[key]],
            "past": past,
            "value": body.get("value"),
            "deleted": body["type"] == "delete",
        }
        self.absorb(key, [sibling])
        # The whole set goes out, not the new sibling alone: a context claims every dot of a
        # writer up to the one it names, so a replica holding this dot must hold the earlier
        # ones (or what covers them), or a reader shown this dot alone would drop them.
        siblings = self.store[key]
        op = {**self.start_op(msg, body["type"], siblings), "new": sibling}
        for p in self.peers:
            self.ops[self.send(p, {"type": "replicate", "key": key, "siblings": siblings})] = op
        self.progress(op)

    def start_op(self, msg: dict[str, Any], kind: str, siblings: list[Sibling]) -> dict[str, Any]:
        return {
            "msg": msg,
            "kind": kind,
            "siblings": siblings,
            "acks": 1,
            "peers": set(self.peers),
            "deadline": time.monotonic() + TIMEOUT,
            "done": False,
        }

    def progress(self, op: dict[str, Any]) -> None:
        if op["done"] or op["acks"] < self.quorum():
            return
        op["done"] = True
        msg, key = op["msg"], op["msg"]["body"]["key"]
        if op["kind"] == "get":
            self.absorb(key, op["siblings"])  # read repair, here
            siblings = self.store.get(key, [])
            live = [s for s in siblings if not s["deleted"]]
            vv = context_of(siblings)
            self.reply(
                msg,
                {
                    "type": "get_ok",
                    "values": [s["value"] for s in live],
                    "context": json.dumps(vv, sort_keys=True),
                    # Optional, for the checkers: the read's clock, and each value's.
                    "clock": vv,
                    "clocks": [clock_of(s) for s in live],
                },
            )
        else:
            vv = context_of([op["new"]])
            body = {"type": f"{op['kind']}_ok", "context": json.dumps(vv, sort_keys=True)}
            self.reply(msg, {**body, "clock": clock_of(op["new"])})

    def absorb(self, key: str, siblings: list[Sibling]) -> None:
        self.store[key] = merge(self.store.get(key, []), siblings)

    # -- timers -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for msg_id, op in list(self.ops.items()):
            if op["deadline"] > now:
                continue
            del self.ops[msg_id]
            if op["kind"] != "get":  # the peers that did not answer are owed the write
                key = op["msg"]["body"]["key"]
                for p in op["peers"]:
                    owed = self.hints.setdefault(p, {})
                    owed[key] = merge(owed.get(key, []), op["siblings"])
            if not op["done"]:
                op["done"] = True
                # A write may have taken effect (it is stored here): timeout, not a failure.
                code = 11 if op["kind"] == "get" else 0
                self.reply(op["msg"], {"type": "error", "code": code, "text": "no quorum"})
        if now - self.last_hints >= HINT_EVERY:
            self.last_hints = now
            hints, self.hints = self.hints, {}
            for peer, owed in hints.items():
                for key, siblings in owed.items():
                    # Unanswered by its deadline, the resend becomes a hint again.
                    op = {**self.start_op({"body": {"key": key}}, "hint", siblings), "done": True}
                    op["peers"] = {peer}
                    body = {"type": "replicate", "key": key, "siblings": siblings}
                    self.ops[self.send(peer, body)] = op
        if now - self.last_sync >= SYNC_EVERY and self.peers and self.store:
            self.last_sync = now
            self.send(random.choice(self.peers), {"type": "sync", "store": self.store})


def main() -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    node = Node()
    while True:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            line = ""
        if line is None:
            return
        if line.strip():
            node.handle(json.loads(line))
        if node.id:
            node.tick()


if __name__ == "__main__":
    main()
