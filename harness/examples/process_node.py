"""A small Dynamo-style node, one process per node, that logs the per-process trace format.

A second implementation written apart from dynamo_ref (standard library only), to show what
another system does to have its real runs checked against spec/Dynamo.tla: each process logs
its own steps (docs/trace-format.md, version 2) and `dynamo-ref spec validate-run DIR` merges
the logs and has TLC follow them.

The store: strict quorum N=3 R=2 W=2 over three nodes (every key on every node, in the fixed
order of `PREF`), plain vector clocks by the spec's rule (a coordinator's new counter is one
above the context's and every clock entry it holds for the key), sibling sets kept as their
maximal versions, read repair of stale responders, durable sibling sets (a JSON file, replaced
whole), puts that time out. Nodes talk over TCP, one JSON object per line; a client sends
`{"op": "put", "key", "value", "context"}` or `{"op": "get", "key"}` to any node on the same
port and gets one line back.

Each event the node handles is one step, logged after it as one line: the spec actions it
took, the message it consumed and those it sent (by a digest of their bytes: BLAKE2b, 10 bytes,
of the line without its newline), and its own variables after the step (the keys it touched,
the requests it touched). The header names the settings and each key's preference list.

`--bug` plants a bug for the validator to find:

- `stale-counter`: a coordinator takes its new counter from the context alone, not from the
  clocks it holds (two blind puts through it get one clock);
- `ack-without-store`: a replica acknowledges a store it does not apply.

    python harness/examples/process_node.py --name n1 \\
        --peers n1=127.0.0.1:7101,n2=127.0.0.1:7102,n3=127.0.0.1:7103 \\
        --data n1.json --trace n1.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

N, R, W = 3, 2, 2
PREF = {"a": ["n1", "n2", "n3"], "b": ["n2", "n3", "n1"], "c": ["n3", "n1", "n2"]}
BUGS = ("stale-counter", "ack-without-store")
PUT_TIMEOUT = 1.0
GET_TIMEOUT = 1.0

Json = dict[str, Any]
Clock = dict[str, int]


@dataclass(frozen=True)
class Version:
    val: str
    vc: tuple[tuple[str, int], ...]  # sorted, no zero entries
    ts: float  # the coordinator's wall time: tells versions apart

    @staticmethod
    def of(j: Json) -> Version:
        return Version(j["val"], clock_key(j["vc"]), j["ts"])

    def json(self) -> Json:
        return {"val": self.val, "vc": dict(self.vc), "ts": self.ts}

    def descends(self, other: Version) -> bool:
        mine, theirs = dict(self.vc), dict(other.vc)
        return mine != theirs and all(mine.get(n, 0) >= c for n, c in theirs.items())


def clock_key(clock: Clock) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((n, c) for n, c in clock.items() if c))


def maximal(versions: Iterable[Version]) -> list[Version]:
    vs = set(versions)
    return sorted((v for v in vs if not any(u.descends(v) for u in vs)), key=lambda v: v.ts)


def join(versions: Iterable[Version]) -> Clock:
    out: Clock = {}
    for v in versions:
        for n, c in v.vc:
            out[n] = max(out.get(n, 0), c)
    return out


def digest(line: bytes) -> str:
    return hashlib.blake2b(line, digest_size=10).hexdigest()


@dataclass
class PutOp:
    id: str
    key: str
    ver: Version
    acks: set[str]
    reply: asyncio.Future[Json]

    def json(self) -> Json:
        return {"id": self.id, "key": self.key, "ver": self.ver.json(), "acks": sorted(self.acks)}


@dataclass
class GetOp:
    id: str
    key: str
    resps: dict[str, list[Version]]
    reply: asyncio.Future[Json]
    done: bool = False

    def json(self) -> Json:
        resps = {n: [v.json() for v in vs] for n, vs in self.resps.items()}
        return {"id": self.id, "key": self.key, "resps": resps, "done": self.done}


@dataclass
class Step:
    """What one event did, for its trace line."""

    event: str
    recv: Json | None = None
    actions: list[list[str]] = field(default_factory=list)
    sent: list[Json] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    puts: set[str] = field(default_factory=set)
    gets: set[str] = field(default_factory=set)


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.name
        self.peers: dict[str, tuple[str, int]] = {}
        for item in args.peers.split(","):
            peer, _, address = item.partition("=")
            host, _, port = address.rpartition(":")
            self.peers[peer] = (host, int(port))
        self.bug: str | None = args.bug
        self.data = Path(args.data)
        self.store: dict[str, list[Version]] = {}
        if self.data.exists():
            raw = json.loads(self.data.read_text())
            self.store = {k: [Version.of(v) for v in vs] for k, vs in raw.items()}
        self.puts: dict[str, PutOp] = {}
        self.gets: dict[str, GetOp] = {}
        self.ops = 0
        self.incarnation = int(time.time() * 1000) % 1_000_000
        self.unsent: dict[str, asyncio.Queue[bytes]] = {}
        self.trace = os.open(args.trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.i = 0
        self.step: Step | None = None
        config = {"n": N, "r": R, "w": W, "sloppy": False, "mode": "vclock", "pref": PREF}
        host, port = self.peers[self.name]
        self._write(
            {
                "trace": "dynamo-ref process",
                "v": 2,
                "node": self.name,
                "address": f"{host}:{port}",
                "t": time.monotonic(),
                "wall": time.time(),
                "pid": os.getpid(),
                "config": config,
            }
        )

    # -- steps and the trace ---------------------------------------------------------------

    def begin(self, event: str, recv: Json | None = None) -> Step:
        self.step = Step(event, recv)
        return self.step

    def end(self) -> None:
        s = self.step
        assert s is not None
        self.step = None
        self.i += 1
        state = {
            "store": {k: [v.json() for v in self.store.get(k, [])] for k in sorted(s.keys)},
            "hints": [],
            "putOps": [self.puts[i].json() for i in sorted(s.puts) if i in self.puts],
            "getOps": [self.gets[i].json() for i in sorted(s.gets) if i in self.gets],
            "putsDone": sorted(i for i in s.puts if i not in self.puts),
            "getsDone": sorted(i for i in s.gets if i not in self.gets),
        }
        self._write(
            {
                "node": self.name,
                "i": self.i,
                "t": time.monotonic(),
                "event": s.event,
                "recv": s.recv,
                "actions": s.actions,
                "sent": s.sent,
                "state": state,
                "hintKeys": [],
            }
        )

    def _write(self, line: Json) -> None:
        # One write per line: a process killed with SIGKILL leaves whole lines.
        os.write(self.trace, json.dumps(line, sort_keys=True).encode() + b"\n")

    def action(self, *args: object) -> None:
        assert self.step is not None
        self.step.actions.append([str(a) for a in args])

    def send(self, dest: str, msg: Json) -> None:
        assert self.step is not None
        line = json.dumps({**msg, "src": self.name}, sort_keys=True).encode()
        self.step.sent.append({"to": dest, "h": digest(line)})
        self.unsent.setdefault(dest, asyncio.Queue()).put_nowait(line)

    def merge(self, key: str, versions: Iterable[Version]) -> None:
        assert self.step is not None
        self.store[key] = maximal([*self.store.get(key, []), *versions])
        self.step.keys.add(key)
        raw = {k: [v.json() for v in vs] for k, vs in self.store.items()}
        tmp = self.data.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw))
        os.replace(tmp, self.data)

    def new_id(self, kind: str) -> str:
        self.ops += 1
        return f"{self.name}.{self.incarnation}.{kind}{self.ops}"

    # -- client requests -------------------------------------------------------------------

    def client_put(self, key: str, value: str, context: Clock) -> asyncio.Future[Json]:
        s = self.begin("client")
        held = self.store.get(key, [])
        ctx = dict(context)
        if self.bug == "stale-counter":
            ctx[self.name] = ctx.get(self.name, 0) + 1
        else:
            mine = max([ctx.get(self.name, 0), *(dict(v.vc).get(self.name, 0) for v in held)])
            ctx[self.name] = mine + 1
        ver = Version(value, clock_key(ctx), time.time())
        reply: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        op = PutOp(self.new_id("p"), key, ver, {self.name}, reply)
        self.puts[op.id] = op
        s.puts.add(op.id)
        self.merge(key, [ver])
        text = ",".join(f"{n}:{c}" for n, c in sorted(context.items()) if c)
        self.action("ClientPut", self.name, key, value, text)
        for j in PREF[key][:N]:
            if j != self.name:
                self.send(j, {"t": "store", "key": key, "vers": [ver.json()], "op": op.id})
        self.end()
        asyncio.get_running_loop().call_later(PUT_TIMEOUT, self.put_timeout, op.id)
        return reply

    def put_timeout(self, ident: str) -> None:
        op = self.puts.get(ident)
        if op is None:
            return
        s = self.begin("timer")
        self.action("PutTimeout", self.name, ident)
        del self.puts[ident]
        s.puts.add(ident)
        op.reply.set_result({"ok": False, "error": "timeout"})
        self.end()

    def client_get(self, key: str) -> asyncio.Future[Json]:
        s = self.begin("client")
        reply: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        op = GetOp(self.new_id("g"), key, {self.name: list(self.store.get(key, []))}, reply)
        self.gets[op.id] = op
        s.gets.add(op.id)
        self.action("ClientGet", self.name, key)
        for j in PREF[key][:N]:
            if j != self.name:
                self.send(j, {"t": "read", "key": key, "op": op.id})
        self.end()
        asyncio.get_running_loop().call_later(GET_TIMEOUT, self.get_timeout, op.id)
        return reply

    def get_timeout(self, ident: str) -> None:
        op = self.gets.get(ident)
        if op is None or op.done:
            return
        s = self.begin("timer")
        self.action("GetTimeout", self.name, ident)
        del self.gets[ident]
        s.gets.add(ident)
        op.reply.set_result({"ok": False, "error": "timeout"})
        self.end()

    # -- peer messages ---------------------------------------------------------------------

    def receive(self, line: bytes) -> None:
        m = json.loads(line)
        src = m["src"]
        s = self.begin("peer", {"from": src, "h": digest(line)})
        getattr(self, "on_" + m["t"])(src, m, s)
        self.end()

    def on_store(self, src: str, m: Json, s: Step) -> None:
        key, op = m["key"], m["op"]
        versions = [Version.of(v) for v in m["vers"]]
        if self.bug == "ack-without-store" and op != 0:
            s.keys.add(key)  # logged as it is: unchanged
        else:
            self.merge(key, versions)
        if op != 0:  # a read repair is not acknowledged
            self.send(src, {"t": "storeAck", "key": key, "vers": m["vers"], "op": op})
        self.action("ReplicaStore", self.name, src, key, op, "")

    def on_storeAck(self, src: str, m: Json, s: Step) -> None:
        self.action("StoreAck", self.name, src, m["key"], m["op"])
        op = self.puts.get(m["op"])
        if op is None:
            return
        s.puts.add(op.id)
        op.acks.add(src)
        if len(op.acks) >= W:
            del self.puts[op.id]
            op.reply.set_result({"ok": True, "context": dict(op.ver.vc)})

    def on_read(self, src: str, m: Json, s: Step) -> None:
        held = [v.json() for v in self.store.get(m["key"], [])]
        self.send(src, {"t": "readResp", "key": m["key"], "vers": held, "op": m["op"]})
        self.action("ReplicaRead", self.name, src, m["key"], m["op"])

    def on_readResp(self, src: str, m: Json, s: Step) -> None:
        self.action("ReadResponse", self.name, src, m["key"], m["op"])
        op = self.gets.get(m["op"])
        if op is None or src in op.resps:
            return  # late, or again: the get is answered
        s.gets.add(op.id)
        op.resps[src] = [Version.of(v) for v in m["vers"]]
        if len(op.resps) < R:
            return
        latest = maximal(v for vs in op.resps.values() for v in vs)
        op.done = True
        op.reply.set_result(
            {"ok": True, "values": [v.val for v in latest], "context": join(latest)}
        )
        self.action("ReadRepair", self.name, op.id)
        for j, vs in op.resps.items():
            if sorted(vs, key=lambda v: v.ts) == latest:
                continue
            if j == self.name:
                self.merge(op.key, latest)
            else:
                wire = [v.json() for v in latest]
                self.send(j, {"t": "store", "key": op.key, "vers": wire, "op": 0})
        del self.gets[op.id]

    # -- the network -----------------------------------------------------------------------

    async def sender(self, peer: str) -> None:
        """Sends the lines queued for a peer; lines queued while it is unreachable are lost,
        as messages to a crashed node are."""
        queue = self.unsent.setdefault(peer, asyncio.Queue())
        writer: asyncio.StreamWriter | None = None
        while True:
            line = await queue.get()
            try:
                if writer is None:
                    _, writer = await asyncio.open_connection(*self.peers[peer])
                    writer.write(json.dumps({"peer": self.name}).encode() + b"\n")
                writer.write(line + b"\n")
                await writer.drain()
            except OSError:
                writer = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readline()
        if not first:
            return
        hello = json.loads(first)
        if "peer" in hello:
            while line := await reader.readline():
                self.receive(line.rstrip(b"\n"))
            return
        request: Json | None = hello
        while request is not None:
            if request["op"] == "put":
                reply = self.client_put(request["key"], request["value"], request["context"])
            else:
                reply = self.client_get(request["key"])
            writer.write(json.dumps(await reply).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            request = json.loads(line) if line else None

    async def run(self) -> None:
        for peer in self.peers:
            if peer != self.name:
                asyncio.get_running_loop().create_task(self.sender(peer))
        host, port = self.peers[self.name]
        server = await asyncio.start_server(self.serve, host, port)
        self.begin("start")
        self.end()
        async with server:
            await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--peers", required=True, help="n1=host:port,n2=host:port,...")
    parser.add_argument("--data", required=True, help="the durable store (a JSON file)")
    parser.add_argument("--trace", required=True, help="the per-process trace (JSON lines)")
    parser.add_argument("--bug", choices=BUGS, help="run with a deliberate bug")
    asyncio.run(Node(parser.parse_args(argv)).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
