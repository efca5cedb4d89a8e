"""A tiny Dynamo-style store that logs the trace format `dynamo-ref spec validate-trace` reads.

It is a second implementation, written apart from dynamo_ref (standard library only): three
nodes in one process, one message queue between them, strict quorum N=3 R=2 W=2, vector clocks
by the spec's rule (a coordinator sets its own entry to one more than the context's and every
entry it holds for the key), sibling sets kept as their maximal versions, read repair. It runs a
fixed scenario (puts, gets, concurrent writes that leave siblings, a lost message, a replica that
lags) and writes one trace line per step to stdout or `--out`; `docs/trace-format.md` explains
every line.

`--bug` runs the same scenario with a deliberate bug, so the validator has something to reject:

- `ack-before-store`: a replica acknowledges a store before it has stored the versions (it
  applies them at its next step);
- `dominated-read`: a coordinator answers a read with every version it was sent, without
  dropping those another version descends from.

    python harness/examples/trace_node.py --out run.jsonl
    dynamo-ref spec validate-trace run.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

NODES = ("n1", "n2", "n3")
N, R, W = 3, 2, 2
PREF = {"a": ["n1", "n2", "n3"], "b": ["n2", "n3", "n1"]}  # ring order from each key
BUGS = ("ack-before-store", "dominated-read")

Clock = dict[str, int]
Json = dict[str, Any]


@dataclass(frozen=True)
class Version:
    val: str
    vc: tuple[tuple[str, int], ...]  # sorted (node, counter), no zero entries
    ts: int  # this store's timestamp: the put's sequence number

    @property
    def clock(self) -> Clock:
        return dict(self.vc)

    def descends(self, other: Version) -> bool:
        """Strictly after `other`: every entry at least as large, and not equal."""
        mine, theirs = self.clock, other.clock
        return mine != theirs and all(mine.get(n, 0) >= c for n, c in theirs.items())

    def json(self) -> Json:
        return {"val": self.val, "vc": self.clock, "ts": self.ts}


def make_clock(clock: Clock) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((n, c) for n, c in clock.items() if c))


def maximal(versions: Iterable[Version]) -> list[Version]:
    """The versions no other one descends from: what a replica keeps, what a read returns."""
    vs = set(versions)
    return sorted((v for v in vs if not any(u.descends(v) for u in vs)), key=lambda v: v.ts)


def join(versions: Iterable[Version]) -> Clock:
    out: Clock = {}
    for v in versions:
        for n, c in v.vc:
            out[n] = max(out.get(n, 0), c)
    return out


@dataclass
class Message:
    mtype: str  # store, storeAck, read, readResp
    src: str
    dest: str
    key: str
    vers: list[Version]
    op: str | int  # the put or get it serves, 0 for a repair

    def json(self) -> Json:
        return {
            "mtype": self.mtype,
            "msrc": self.src,
            "mdest": self.dest,
            "mkey": self.key,
            "mvers": [v.json() for v in self.vers],
            "mop": self.op,
            "mhint": "",
        }


@dataclass
class PutOp:
    id: str
    key: str
    ver: Version
    acks: set[str]


@dataclass
class GetOp:
    id: str
    key: str
    resps: dict[str, list[Version]]
    after: int
    done: bool = False


@dataclass
class Node:
    name: str
    bug: str | None = None
    store: dict[str, list[Version]] = field(default_factory=dict)
    puts: dict[str, PutOp] = field(default_factory=dict)
    gets: dict[str, GetOp] = field(default_factory=dict)
    unapplied: list[tuple[str, list[Version]]] = field(default_factory=list)
    counter: int = 0

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.name}:{kind}{self.counter}"

    def merge(self, key: str, versions: Iterable[Version]) -> None:
        self.store[key] = maximal([*self.store.get(key, []), *versions])


class Cluster:
    """The nodes, the network (a list of messages in flight) and the trace writer.

    The history a client sees (`acked`, `answered`) and the counts (`clock`: puts begun, `gets`,
    `faults`) are kept here too, because the trace format records them with the state."""

    def __init__(self, out: TextIO, bug: str | None = None) -> None:
        self.out = out
        self.bug = bug
        self.nodes = {n: Node(n, bug) for n in NODES}
        self.msgs: list[Message] = []
        self.clock = 0
        self.gets = 0
        self.losses = 0
        self.acked: list[Json] = []
        self.answered: list[Json] = []
        self.replies: dict[str, list[Version]] = {}  # get id -> what its client was told
        constants = {"N": N, "R": R, "W": W, "Sloppy": False, "LWW": False, "Pref": PREF}
        self._write({"constants": constants})
        self.log("Init", [], None)

    # -- client requests -------------------------------------------------------------------

    def put(self, c: str, key: str, value: str, context: Clock | None = None) -> str:
        node = self.nodes[c]
        assert c in PREF[key][:N], "the coordinator must be a replica"
        ctx = dict(context or {})
        held = max((v.clock.get(c, 0) for v in node.store.get(key, [])), default=0)
        ctx[c] = max(ctx.get(c, 0), held) + 1
        self.clock += 1
        ver = Version(value, make_clock(ctx), self.clock)
        op = PutOp(node.next_id("p"), key, ver, {c})
        node.merge(key, [ver])
        node.puts[op.id] = op
        for j in PREF[key][:N]:
            if j != c:
                self.send(Message("store", c, j, key, [ver], op.id))
        self.log("ClientPut", [c, key, value], c)
        return op.id

    def get(self, c: str, key: str) -> str:
        node = self.nodes[c]
        assert c in PREF[key][:N], "the coordinator must be a replica"
        self.gets += 1
        own = list(node.store.get(key, []))
        op = GetOp(node.next_id("g"), key, {c: own}, after=len(self.acked))
        node.gets[op.id] = op
        for j in PREF[key][:N]:
            if j != c:
                self.send(Message("read", c, j, key, [], op.id))
        self.log("ClientGet", [c, key], c)
        return op.id

    def context(self, get_id: str) -> Clock:
        """The context a client got with its read: the merged clock of what it was told."""
        return join(self.replies[get_id])

    # -- the network -----------------------------------------------------------------------

    def send(self, m: Message) -> None:
        self.msgs.append(m)

    def find(self, mtype: str, src: str, dest: str) -> Message:
        for m in self.msgs:
            if (m.mtype, m.src, m.dest) == (mtype, src, dest):
                return m
        raise LookupError(f"no {mtype} {src}->{dest} in flight")

    def deliver(self, mtype: str, src: str, dest: str) -> None:
        m = self.find(mtype, src, dest)
        self.msgs.remove(m)
        node = self.nodes[dest]
        if node.unapplied:  # the buggy replica catches up on its next step
            for key, vers in node.unapplied:
                node.merge(key, vers)
            node.unapplied.clear()
        handler = {
            "store": self.replica_store,
            "storeAck": self.store_ack,
            "read": self.replica_read,
            "readResp": self.read_response,
        }[mtype]
        handler(node, m)

    def lose(self, mtype: str, src: str, dest: str) -> None:
        m = self.find(mtype, src, dest)
        self.msgs.remove(m)
        self.losses += 1
        self.log("LoseMessage", [m.json()], None)

    # -- handlers --------------------------------------------------------------------------

    def replica_store(self, node: Node, m: Message) -> None:
        if self.bug == "ack-before-store" and m.op != 0:
            node.unapplied.append((m.key, m.vers))
        else:
            node.merge(m.key, m.vers)
        if m.op != 0:  # a repair is not acknowledged; only a handoff's ack echoes versions
            self.send(Message("storeAck", node.name, m.src, m.key, [], m.op))
        self.log("ReplicaStore", [node.name, m.src, m.key, m.op, ""], node.name)

    def store_ack(self, node: Node, m: Message) -> None:
        op = node.puts.get(str(m.op))
        if op is not None:
            op.acks.add(m.src)
            if len(op.acks) >= W:
                del node.puts[op.id]
                self.acked.append(
                    {"key": op.key, "ver": op.ver.json(), "seq": len(self.acked) + 1, "epoch": 0}
                )
        self.log("StoreAck", [node.name, m.src, m.key, m.op], node.name)

    def replica_read(self, node: Node, m: Message) -> None:
        held = list(node.store.get(m.key, []))
        self.send(Message("readResp", node.name, m.src, m.key, held, m.op))
        self.log("ReplicaRead", [node.name, m.src, m.key, m.op], node.name)

    def read_response(self, node: Node, m: Message) -> None:
        op = node.gets.get(str(m.op))
        if op is None or m.src in op.resps:  # late: the get was answered and repaired
            self.log("ReadResponse", [node.name, m.src, m.key, m.op], node.name)
            return
        op.resps[m.src] = m.vers
        if len(op.resps) < R:
            self.log("ReadResponse", [node.name, m.src, m.key, m.op], node.name)
            return
        # R responses: answer the client, then repair the responders that were behind.
        everything = [v for vs in op.resps.values() for v in vs]
        latest = maximal(everything)
        told = latest
        if self.bug == "dominated-read":
            told = sorted(set(everything), key=lambda v: v.ts)
        op.done = True
        self.replies[op.id] = told
        self.answered.append(
            {
                "key": op.key,
                "vals": [v.val for v in told],
                "vc": join(told),
                "after": op.after,
                "epoch": 0,
            }
        )
        self.log("ReadResponse", [node.name, m.src, m.key, m.op], node.name)
        for j, vers in op.resps.items():
            if sorted(vers, key=lambda v: v.ts) == latest:
                continue
            if j == node.name:
                node.merge(op.key, latest)
            else:
                self.send(Message("store", node.name, j, op.key, latest, 0))
        del node.gets[op.id]
        self.log("ReadRepair", [node.name, op.id], node.name)

    # -- the trace -------------------------------------------------------------------------

    def state(self) -> Json:
        bag: list[list[Any]] = []
        for m in self.msgs:
            j = m.json()
            for entry in bag:
                if entry[0] == j:
                    entry[1] += 1
                    break
            else:
                bag.append([j, 1])
        return {
            "store": {
                n: {k: [v.json() for v in vs] for k, vs in node.store.items() if vs}
                for n, node in self.nodes.items()
            },
            "hints": {n: [] for n in NODES},
            "putOps": {
                n: [
                    {
                        "id": p.id,
                        "key": p.key,
                        "ver": p.ver.json(),
                        "acks": sorted(p.acks),
                        "hinted": [],
                        "extra": [],
                    }
                    for p in node.puts.values()
                ]
                for n, node in self.nodes.items()
            },
            "getOps": {
                n: [
                    {
                        "id": g.id,
                        "key": g.key,
                        "resps": {r: [v.json() for v in vs] for r, vs in g.resps.items()},
                        "done": g.done,
                        "after": g.after,
                    }
                    for g in node.gets.values()
                ]
                for n, node in self.nodes.items()
            },
            "up": dict.fromkeys(NODES, True),
            "msgs": bag,
            "cut": [],
            "clock": self.clock,
            "gets": self.gets,
            "faults": {"crash": 0, "partition": 0, "loss": self.losses, "dup": 0},
            "acked": self.acked,
            "answered": self.answered,
        }

    def log(self, action: str, args: list[Any], node: str | None, *, state: bool = True) -> None:
        self._write(
            {"action": action, "args": args, "node": node, "state": self.state() if state else None}
        )

    def _write(self, line: Json) -> None:
        self.out.write(json.dumps(line, sort_keys=True) + "\n")


def scenario(cluster: Cluster) -> None:
    """Puts and gets on two keys, with a lost store, a lagging replica and siblings."""
    c = cluster
    # A put acked by a quorum; its store to n3 is lost.
    c.put("n1", "a", "v1")
    c.deliver("store", "n1", "n2")
    c.deliver("storeAck", "n2", "n1")
    c.lose("store", "n1", "n3")
    # n3 coordinates a read: it has nothing, n1 has v1; n3 repairs itself.
    g1 = c.get("n3", "a")
    c.deliver("read", "n3", "n1")
    c.deliver("readResp", "n1", "n3")
    c.deliver("read", "n3", "n2")
    c.deliver("readResp", "n2", "n3")  # late: the get is already answered
    # A put with the read's context supersedes v1; n3 has not seen it yet.
    c.put("n2", "a", "v2", c.context(g1))
    c.deliver("store", "n2", "n1")
    c.deliver("storeAck", "n1", "n2")
    # n3 reads: its own v1 and n1's v2; v1 is dominated and must not be returned.
    c.get("n3", "a")
    c.deliver("read", "n3", "n1")
    c.deliver("readResp", "n1", "n3")
    c.deliver("store", "n2", "n3")
    c.deliver("storeAck", "n3", "n2")  # after W: the put is already answered
    # Two blind writes to b at different coordinators: concurrent, so siblings.
    c.put("n2", "b", "x")
    c.put("n3", "b", "y")
    for src, dest in [("n2", "n3"), ("n2", "n1"), ("n3", "n2"), ("n3", "n1")]:
        c.deliver("store", src, dest)
    for src, dest in [("n3", "n2"), ("n1", "n2"), ("n2", "n3"), ("n1", "n3")]:
        c.deliver("storeAck", src, dest)
    c.get("n1", "b")
    c.deliver("read", "n1", "n2")
    c.deliver("readResp", "n2", "n1")
    c.deliver("read", "n1", "n3")
    c.deliver("readResp", "n3", "n1")
    c.deliver("read", "n3", "n2")  # the second get of a, its last replica
    c.deliver("readResp", "n2", "n3")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the trace here (default: stdout)")
    parser.add_argument("--bug", choices=BUGS, help="run with a deliberate bug")
    args = parser.parse_args(argv)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            scenario(Cluster(out, args.bug))
    else:
        scenario(Cluster(sys.stdout, args.bug))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
