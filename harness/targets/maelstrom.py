"""The `external` target: node programs speaking the Maelstrom node protocol, routed by the harness.

Each node is a process started from `command`; it reads JSON messages from stdin and writes
JSON messages to stdout, one per line (the protocol is in `harness/examples/README.md`). The
harness is the network: it reads every node's stdout and delivers each message itself.

- node -> node messages go through a `MemoryNetwork`, so cuts, delays, drops and slow links
  apply to them per directed link (see `harness.net.memory` for the exact rules);
- client <-> node messages are not subject to network faults (as in Maelstrom, a client
  talks to its node directly); clients are harness-side ids `c1`, `c2`, ...; `c0` sends `init`;
- a message to an unknown destination, or a line that is not a message, is counted in
  `stats` and dropped; a node's stderr is kept (its last lines) for error reports.

Clients speak the program's workload: `lin-kv` (read, write, cas: `MaelstromClient`) or, when
the program declares it in `init_ok.workloads`, `dynamo-kv` (get, put, delete with opaque
contexts, optional `replica_get`: `DynamoKvClient`). A workload the program does not declare is
refused at its first `init_ok`. Every line that breaks the protocol (not JSON, a bad envelope,
a reply of the wrong type or shape, a reply to a request never sent) is kept in
`program_faults` with the line, as the program's fault; a program that exits before `init_ok`
is reported with its stderr.

Kill, pause and resume signal the node's process by PID; `start` after a kill runs a fresh
process (Maelstrom nodes keep state in memory, so it comes back empty) and sends `init` again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.net.memory import MemoryNetwork
from harness.net.network import Link
from harness.targets.base import OpFailed, OpUnknown

__all__ = [
    "DEFINITE_ERRORS",
    "ERROR_CODES",
    "PROTOCOLS",
    "DynamoKvClient",
    "DynamoKvContext",
    "MaelstromClient",
    "MaelstromError",
    "MaelstromTarget",
    "ProgramFault",
    "RouterStats",
]

PROTOCOLS = ("lin-kv", "dynamo-kv")
"""The client protocols a program declares in `init_ok.workloads` (none declared: lin-kv)."""

WORKLOAD_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "register": ("dynamo-kv", "lin-kv"),
    "set-add": ("dynamo-kv",),
    "counter": ("dynamo-kv",),
}
"""The protocols each harness workload runs over, preferred first."""

ERROR_CODES: dict[int, str] = {
    0: "timeout",
    1: "node-not-found",
    10: "not-supported",
    11: "temporarily-unavailable",
    12: "malformed-request",
    13: "crash",
    14: "abort",
    20: "key-does-not-exist",
    21: "key-already-exists",
    22: "precondition-failed",
    30: "txn-conflict",
}
"""Maelstrom's standard error codes."""

DEFINITE_ERRORS = frozenset({1, 10, 11, 12, 14, 20, 21, 22, 30})
"""Codes that mean the operation did not take effect; any other code leaves it unknown."""

_LINE_LIMIT = 16 * 1024 * 1024
_STDERR_LINES = 200
_INIT_CLIENT = "c0"
_FAULT_LINES = 50


@dataclass(frozen=True)
class ProgramFault:
    """A line a node program wrote that breaks the protocol: the program's fault, not the
    network's. `line` is the offending output as written (cut to 300 characters)."""

    node: str
    reason: str
    line: str

    def describe(self) -> str:
        return f"{self.node}: {self.reason}: {self.line}"


class MaelstromError(RuntimeError):
    """A node program misbehaved at the protocol level (no init_ok, exited at start)."""


@dataclass
class RouterStats:
    """Counts of what the router did with node output, for tests and reports."""

    routed: int = 0
    lost: int = 0  # to a cut, a drop, or a cut while in flight
    to_clients: int = 0
    unroutable: int = 0  # unknown destination, or a dead destination node
    malformed: int = 0
    by_type: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class _Node:
    name: str
    proc: Proc | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stderr: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_STDERR_LINES)
    )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Proc(Protocol):
    """A node program's process, here or on a host: its pipes, its exit and its signals."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdin(self) -> Writer | None: ...

    @property
    def stdout(self) -> Reader | None: ...

    @property
    def stderr(self) -> Reader | None: ...

    async def wait(self) -> int: ...

    async def send(self, sig: signal.Signals) -> None: ...


class Reader(Protocol):
    async def readline(self) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class LocalProc:
    """A program started here (``asyncio``'s process, with signals by PID)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def stdin(self) -> Writer | None:
        return self._proc.stdin

    @property
    def stdout(self) -> Reader | None:
        return self._proc.stdout

    @property
    def stderr(self) -> Reader | None:
        return self._proc.stderr

    async def wait(self) -> int:
        return await self._proc.wait()

    async def send(self, sig: signal.Signals) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)


class MaelstromTarget:
    """A cluster of Maelstrom node programs, each started as `command` (an argv list)."""

    def __init__(
        self,
        command: Sequence[str],
        nodes: int | Sequence[str] = 3,
        *,
        client_timeout: float = 2.0,
        init_timeout: float = 10.0,
        seed: int | None = None,
        name: str = "maelstrom",
        workload: str | None = None,
    ) -> None:
        if workload is not None and workload not in WORKLOAD_PROTOCOLS:
            raise ValueError(
                f"unknown workload {workload!r}; known: {', '.join(WORKLOAD_PROTOCOLS)}"
            )
        names = [f"n{i + 1}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        self.command = list(command)
        self.client_timeout = client_timeout
        self.init_timeout = init_timeout
        self._name = name
        self._network = MemoryNetwork(names, seed=seed)
        self._nodes = {n: _Node(n) for n in names}
        self._pending: dict[tuple[str, int], asyncio.Future[dict[str, Any]]] = {}
        self._queues: dict[Link, asyncio.Queue[tuple[float, bytes]]] = {}
        self._link_tasks: dict[Link, asyncio.Task[None]] = {}
        self._client_ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self.stats = RouterStats()
        self.workload = workload
        self.protocol = "lin-kv"
        self.supports_replica_get = False
        # Every protocol breach, counted; the first `_FAULT_LINES` kept with their lines.
        self.program_faults: list[ProgramFault] = []
        self.program_fault_count = 0
        # Requests answered or timed out lately: a late or repeated reply to one is no breach.
        self._answered: collections.deque[tuple[str, int]] = collections.deque()
        self._answered_set: set[tuple[str, int]] = set()

    # -- Target ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def network(self) -> MemoryNetwork:
        return self._network

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def links(self) -> set[Link]:
        return self._network.links()

    def pid(self, node: str) -> int | None:
        n = self._nodes[node]
        return n.proc.pid if n.proc is not None and n.running else None

    def stderr(self, node: str) -> list[str]:
        """The last lines the node wrote to stderr."""
        return list(self._nodes[node].stderr)

    async def setup(self) -> None:
        try:
            await asyncio.gather(*(self.start(n) for n in self._nodes))
        except BaseException:
            await self.teardown()
            raise

    async def teardown(self) -> None:
        for node in self._nodes:
            await self.stop(node)
        for task in self._link_tasks.values():
            task.cancel()
        await asyncio.gather(*self._link_tasks.values(), return_exceptions=True)
        self._link_tasks.clear()
        self._queues.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(OpUnknown("target torn down"))
        self._pending.clear()

    async def start(self, node: str) -> None:
        n = self._nodes[node]
        if n.running:
            return
        n.stderr.clear()
        n.proc = await self._spawn(node)
        loop = asyncio.get_running_loop()
        n.tasks = [
            loop.create_task(self._read_stdout(n, n.proc)),
            loop.create_task(self._read_stderr(n, n.proc)),
        ]
        body = {"type": "init", "node_id": node, "node_ids": self.nodes()}
        try:
            reply = await self._init(n, n.proc, body)
        except (OpUnknown, OpFailed) as exc:
            await self.kill(node)
            tail = "\n".join(n.stderr)
            raise MaelstromError(f"{node} did not answer init ({exc}); stderr:\n{tail}") from None
        if reply.get("type") != "init_ok":
            await self.kill(node)
            raise MaelstromError(f"{node} answered init with {reply!r}")
        try:
            self._declare(node, reply)
        except MaelstromError:
            await self.kill(node)
            raise

    async def _init(self, n: _Node, proc: Proc, body: dict[str, Any]) -> dict[str, Any]:
        """The init call, cut short when the program exits first (its stderr read to the end)."""
        call = asyncio.ensure_future(self.call(_INIT_CLIENT, n.name, body, self.init_timeout))
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait({call, exited}, return_when=asyncio.FIRST_COMPLETED)
        if call.done():
            exited.cancel()
            return call.result()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await asyncio.gather(*n.tasks, return_exceptions=True)
        raise OpFailed(f"the program exited with status {proc.returncode} before init_ok")

    def _declare(self, node: str, init_ok: dict[str, Any]) -> None:
        """Take the protocol the run speaks from `init_ok.workloads`; refuse a workload the
        program does not declare."""
        declared = init_ok.get("workloads")
        shown = "no workloads (a lin-kv program)" if declared is None else repr(declared)
        declared = ["lin-kv"] if declared is None else declared
        if not isinstance(declared, list) or not all(isinstance(w, str) for w in declared):
            raise MaelstromError(
                f"{node} answered init with workloads {declared!r}: a list of names, such as "
                f'["dynamo-kv"], was expected'
            )
        self.supports_replica_get = init_ok.get("replica_get") is True
        if self.workload is None:
            return
        wanted = WORKLOAD_PROTOCOLS[self.workload]
        usable = [p for p in wanted if p in declared]
        if not usable:
            raise MaelstromError(
                f"the {self.workload} workload needs a program that declares "
                f"{' or '.join(repr(p) for p in wanted)} in its init_ok workloads; {node} "
                f"declared {shown}"
            )
        self.protocol = usable[0]

    @property
    def versioned(self) -> bool:
        """Whether clients see siblings and contexts (dynamo-kv) rather than registers."""
        return self.protocol == "dynamo-kv"

    @property
    def replica_get(self) -> Any:
        """`replica_get(node, key)`, when the program answers `replica_get`; else None."""
        return self._replica_get if self.supports_replica_get else None

    async def _replica_get(self, node: str, key: str) -> list[object]:
        reply = await self.call("c-replica", node, {"type": "replica_get", "key": key}, 2.0)
        _raise_error(reply)
        values = reply.get("values")
        if reply.get("type") != "replica_get_ok" or not isinstance(values, list):
            self.fault(node, "replica_get answered without a values list", json.dumps(reply))
            raise OpFailed(f"{node} answered replica_get with {reply!r}")
        return values

    def fault(self, node: str, reason: str, line: str | bytes) -> None:
        """Record that `node`'s program broke the protocol with `line`."""
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        self.program_fault_count += 1
        if len(self.program_faults) < _FAULT_LINES:
            self.program_faults.append(ProgramFault(node, reason, text.rstrip("\n")[:300]))

    async def stop(self, node: str) -> None:
        """SIGTERM (and SIGCONT, in case it is paused); SIGKILL if it has not exited in 5 s."""
        n = self._nodes[node]
        if n.proc is not None and n.running:
            await self._signal(n, signal.SIGTERM)
            await self._signal(n, signal.SIGCONT)
            try:
                await asyncio.wait_for(n.proc.wait(), 5.0)
            except TimeoutError:
                await self._signal(n, signal.SIGKILL)
        await self._reap(n)

    async def kill(self, node: str) -> None:
        n = self._nodes[node]
        if n.running:
            await self._signal(n, signal.SIGKILL)
        await self._reap(n)

    async def pause(self, node: str) -> None:
        await self._signal(self._nodes[node], signal.SIGSTOP)

    async def resume(self, node: str) -> None:
        await self._signal(self._nodes[node], signal.SIGCONT)

    async def client(self, node: str) -> MaelstromClient | DynamoKvClient:
        if node not in self._nodes:
            raise ValueError(f"unknown node {node!r}")
        kind = DynamoKvClient if self.versioned else MaelstromClient
        return kind(self, f"c{next(self._client_ids)}", node)

    # -- processes -------------------------------------------------------------------------

    async def _spawn(self, node: str) -> Proc:
        """Start ``node``'s program (here; a subclass may start it elsewhere)."""
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        return LocalProc(proc)

    async def _signal(self, n: _Node, sig: signal.Signals) -> None:
        if n.proc is not None and n.running:
            await n.proc.send(sig)

    async def _reap(self, n: _Node) -> None:
        if n.proc is not None:
            await n.proc.wait()
            if n.proc.stdin is not None:
                n.proc.stdin.close()
        await asyncio.gather(*n.tasks, return_exceptions=True)
        n.tasks = []

    async def _read_stderr(self, n: _Node, proc: Proc) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            while line := await proc.stderr.readline():
                n.stderr.append(line.decode(errors="replace").rstrip("\n"))

    async def _read_stdout(self, n: _Node, proc: Proc) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, OSError):  # over-long line, or the pipe broke
                self.stats.malformed += 1
                self.fault(n.name, "a line over the length limit, or a broken pipe", "")
                return
            if not line:
                return
            self._route(n.name, line)

    # -- routing ---------------------------------------------------------------------------

    def _route(self, src: str, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            self.stats.malformed += 1
            self.fault(src, "not JSON", line)
            return
        envelope = _envelope_problem(src, msg)
        if envelope:
            self.stats.malformed += 1
            self.fault(src, envelope, line)
            return
        dest, body = msg["dest"], msg["body"]
        self.stats.by_type[str(body.get("type"))] += 1
        if dest in self._nodes:
            self._send(src, dest, line if line.endswith(b"\n") else line + b"\n")
            return
        reply_to = body.get("in_reply_to")
        fut = self._pending.pop((dest, reply_to), None) if isinstance(reply_to, int) else None
        if fut is None:
            self.stats.unroutable += 1  # unknown destination, or a reply nobody waits for
            if not isinstance(reply_to, int):
                self.fault(src, f"a message to {dest!r}, neither a node nor a waiting client", line)
            elif (dest, reply_to) not in self._answered_set:
                self.fault(src, f"a reply to msg_id {reply_to} that {dest} never sent", line)
            return
        self._remember(dest, reply_to)
        self.stats.to_clients += 1
        if not fut.done():
            fut.set_result(body)

    def _remember(self, client: str, msg_id: int) -> None:
        """A request answered or given up on (the last 100,000 of them)."""
        self._answered.append((client, msg_id))
        self._answered_set.add((client, msg_id))
        if len(self._answered) > 100_000:
            self._answered_set.discard(self._answered.popleft())

    def _send(self, src: str, dest: str, line: bytes) -> None:
        link = (src, dest)
        loop = asyncio.get_running_loop()
        arrive = self._network.route(link, len(line), loop.time())
        if arrive is None:
            self.stats.lost += 1
            return
        if link not in self._queues:
            self._queues[link] = asyncio.Queue()
            self._link_tasks[link] = loop.create_task(self._deliver(link))
        self._queues[link].put_nowait((arrive, line))

    async def _deliver(self, link: Link) -> None:
        """Deliver one link's messages in order, each at its arrival time."""
        queue, loop = self._queues[link], asyncio.get_running_loop()
        while True:
            arrive, line = await queue.get()
            if (wait := arrive - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not self._network.delivers(link):
                self.stats.lost += 1
                continue
            if self._write(link[1], line):
                self.stats.routed += 1
            else:
                self.stats.unroutable += 1

    def _write(self, node: str, line: bytes) -> bool:
        n = self._nodes[node]
        if n.proc is None or not n.running or n.proc.stdin is None:
            return False
        try:
            n.proc.stdin.write(line)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def call(
        self, client: str, node: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send `body` from `client` to `node` and wait for the reply's body."""
        msg_id = next(self._msg_ids)
        msg = {"src": client, "dest": node, "body": {**body, "msg_id": msg_id}}
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[(client, msg_id)] = fut
        if not self._write(node, json.dumps(msg).encode() + b"\n"):
            self._pending.pop((client, msg_id), None)
            raise OpFailed(f"{node} is not running", code=1)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise OpUnknown(f"no reply from {node} in {timeout} s", code=0) from None
        finally:
            if self._pending.pop((client, msg_id), None) is not None:
                self._remember(client, msg_id)


class MaelstromClient:
    """A lin-kv client (`RegisterClient`): read, write, cas against one node."""

    def __init__(self, target: MaelstromTarget, client_id: str, node: str) -> None:
        self._target = target
        self.id = client_id
        self._node = node

    @property
    def node(self) -> str:
        return self._node

    async def close(self) -> None:
        pass  # nothing to release: the target owns the pipes

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """Any request; an `error` reply raises `OpFailed` or `OpUnknown` by its code."""
        reply = await self._target.call(self.id, self._node, body, self._target.client_timeout)
        _raise_error(reply)
        return reply

    def _expect(self, reply: dict[str, Any], kind: str) -> None:
        if reply.get("type") != kind:
            # The program's fault; and it tells nothing about whether the op happened.
            self._target.fault(self._node, f"expected a {kind} reply", json.dumps(reply))
            raise OpUnknown(f"expected {kind}, got {reply!r}")

    async def read(self, key: str) -> object:
        try:
            reply = await self.request({"type": "read", "key": key})
        except OpFailed as exc:
            if exc.code == 20:
                return None
            raise
        self._expect(reply, "read_ok")
        return reply.get("value")

    async def write(self, key: str, value: object) -> None:
        self._expect(await self.request({"type": "write", "key": key, "value": value}), "write_ok")

    async def cas(self, key: str, expected: object, new: object) -> bool:
        try:
            reply = await self.request({"type": "cas", "key": key, "from": expected, "to": new})
        except OpFailed as exc:
            if exc.code in (20, 22):
                return False
            raise
        self._expect(reply, "cas_ok")
        return True


@dataclass(frozen=True)
class DynamoKvContext:
    """A get's context: the opaque `token` the program handed out (sent back on put), and the
    version vectors it chose to show (`clock` of the whole read, `clocks` one per value), which
    let the checkers judge dominance; without them they fall back on real time."""

    token: str | None
    clock: dict[str, int] | None = None
    clocks: list[dict[str, int]] | None = None


def _is_clock(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool)
        for k, n in value.items()
    )


class DynamoKvClient(MaelstromClient):
    """A dynamo-kv client (`VersionedClient`): get, put and delete with opaque contexts.

    A reply of the wrong type or with fields of the wrong types is the program's fault: it is
    recorded on the target and the op's outcome is unknown."""

    async def _ask(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        reply = await self.request(body)
        problem = _reply_problem(reply, kind)
        if problem:
            self._target.fault(self._node, problem, json.dumps(reply))
            raise OpUnknown(f"{self._node} answered {body['type']} with {reply!r}: {problem}")
        return reply

    last_put_context: DynamoKvContext | None = None
    last_put_clock: dict[str, int] | None = None

    async def get(self, key: str) -> tuple[list[object], object]:
        reply = await self._ask({"type": "get", "key": key}, "get_ok")
        return list(reply["values"]), DynamoKvContext(
            reply.get("context"), reply.get("clock"), reply.get("clocks")
        )

    async def put(self, key: str, value: object, context: object | None) -> None:
        body: dict[str, Any] = {"type": "put", "key": key, "value": value}
        _with_context(body, context)
        reply = await self._ask(body, "put_ok")
        self.last_put_clock = reply.get("clock")
        self.last_put_context = DynamoKvContext(reply.get("context"), reply.get("clock"))

    async def delete(self, key: str, context: object | None) -> None:
        body: dict[str, Any] = {"type": "delete", "key": key}
        _with_context(body, context)
        await self._ask(body, "delete_ok")


def _with_context(body: dict[str, Any], context: object | None) -> None:
    token = context.token if isinstance(context, DynamoKvContext) else context
    if token is not None:
        body["context"] = token


def _reply_problem(reply: dict[str, Any], kind: str) -> str:
    """What is wrong with a dynamo-kv reply expected to be `kind` ("" if nothing)."""
    if reply.get("type") != kind:
        return f"expected a {kind} reply"
    if kind == "get_ok" and not isinstance(reply.get("values"), list):
        return "get_ok without a values list"
    context = reply.get("context")
    if kind in ("get_ok", "put_ok") and context is not None and not isinstance(context, str):
        return "a context that is not a string"
    clock, clocks = reply.get("clock"), reply.get("clocks")
    if clock is not None and not _is_clock(clock):
        return "a clock that is not an object of integer counters"
    if clocks is not None and (
        not isinstance(clocks, list)
        or len(clocks) != len(reply.get("values", []))
        or not all(_is_clock(c) for c in clocks)
    ):
        return "clocks that are not one object of integer counters per value"
    return ""


def _envelope_problem(src: str, msg: object) -> str:
    """What is wrong with a message's envelope ("" if nothing)."""
    if not isinstance(msg, dict):
        return "a JSON value that is not a message object"
    if msg.get("src") != src:
        return f"src {msg.get('src')!r} is not the node's own id"
    if not isinstance(msg.get("dest"), str):
        return "dest missing or not a string"
    body = msg.get("body")
    if not isinstance(body, dict):
        return "body missing or not an object"
    if not isinstance(body.get("type"), str):
        return "body.type missing or not a string"
    reply_to = body.get("in_reply_to")
    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        return "in_reply_to is not an integer"
    return ""


def _raise_error(reply: dict[str, Any]) -> None:
    """An `error` reply as `OpFailed` (a definite code) or `OpUnknown`."""
    if reply.get("type") == "error":
        code = reply.get("code")
        text = f"{ERROR_CODES.get(code, 'error')} ({code}): {reply.get('text', '')}"  # type: ignore[arg-type]
        if code in DEFINITE_ERRORS:
            raise OpFailed(text, code=code if isinstance(code, int) else None)
        raise OpUnknown(text, code=code if isinstance(code, int) else None)
