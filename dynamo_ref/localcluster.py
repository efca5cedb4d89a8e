"""A cluster of dynamo-ref node processes on this machine, for the CLI, tests and benchmarks.

``LocalCluster`` picks free loopback ports and a data directory per node, starts each node as
``python -m dynamo_ref node ...`` and waits for its "listening on HOST:PORT" line. Every process
is controlled by its PID only. ``base_dir/cluster.json`` records ids, addresses, PIDs and the
exact command lines, so that ``dynamo-ref cluster down`` in another process can stop the nodes,
and only if ``/proc/PID/cmdline`` still shows the recorded command (a PID may have been reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.launch import READY_PREFIX, NodeSpec, node_command, spawn
from dynamo_ref.storage.sqlite import DEFAULT_SYNC, Synchronous

STATE_FILE: Final = "cluster.json"
PORT_TAKEN: Final = "address already in use"  # in a node's error: another process won the port
STORE_FILE: Final = "store.sqlite3"
SECRET_FILE: Final = "secret"
HOST: Final = "127.0.0.1"


class ClusterError(RuntimeError):
    """A node did not start, or the cluster state file is unusable."""


@dataclass(frozen=True)
class NodeOptions:
    """What every node of a local cluster runs with: its settings (``NodeConfig``, whose
    defaults are the cluster's) and its storage."""

    config: NodeConfig = field(default_factory=NodeConfig)
    memory: bool = False
    sync: Synchronous = DEFAULT_SYNC
    log_level: str | None = None
    # Each node logs its own steps to <trace_dir>/<id>.jsonl (the per-process trace format).
    trace_dir: Path | None = None
    extra_args: tuple[str, ...] = ()


@dataclass
class NodeProcess:
    """One node of the cluster: its id, where it listens, and its current process (if any)."""

    node_id: str
    address: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports free now, chosen at random outside the kernel's ephemeral
    range so that no outgoing connection takes one before the node binds it."""
    low, high = _ephemeral_range()
    candidates = list(range(10_000, low)) if low > 12_000 else list(range(high + 1, 65_536))
    random.shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if len(chosen) == count:
            return chosen
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
    raise ClusterError(f"found only {len(chosen)} free ports of {count}")


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


class LocalCluster:
    """``count`` node processes on loopback under ``base_dir`` (see the module docstring).

    Nodes are numbered 0..count-1 and named n1..n<count>. ``command`` replaces
    ``[python, "-m", "dynamo_ref"]`` (tests use a stand-in node script).
    """

    def __init__(
        self,
        count: int,
        base_dir: Path | str,
        *,
        options: NodeOptions | None = None,
        secret: bytes | None = None,
        python: str = sys.executable,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        start: bool = True,
    ) -> None:
        if count < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.options = options or NodeOptions()
        self.command = list(command) if command is not None else node_command(python)
        self.env = dict(os.environ if env is None else env)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.secret_file: Path | None = None
        if secret is not None:
            self.secret_file = self.base_dir / SECRET_FILE
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
        ports = free_ports(count)
        self.nodes: list[NodeProcess] = [
            NodeProcess(f"n{i + 1}", f"{HOST}:{port}", self.base_dir / f"n{i + 1}")
            for i, port in enumerate(ports)
        ]
        self._members = list(range(count))  # the nodes in every node's initial ring
        fresh = [n.data_dir for n in self.nodes if not n.data_dir.exists()]
        if start:
            for attempt in range(3):
                try:
                    self.start_all()
                    break
                except ClusterError as e:
                    self.close()
                    if PORT_TAKEN not in str(e) or attempt == 2:
                        raise
                    for node, port in zip(self.nodes, free_ports(count), strict=True):
                        node.address = f"{HOST}:{port}"
                    for d in fresh:  # a new cluster again, not one restarted at new ports
                        shutil.rmtree(d, ignore_errors=True)
                except BaseException:
                    self.close()
                    raise

    # ---- queries ------------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    @property
    def ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]

    @property
    def pids(self) -> list[int | None]:
        return [n.pid for n in self.nodes]

    def store_path(self, i: int) -> Path:
        """Where node ``i`` keeps its durable store (unless it runs ``--memory``)."""
        return self.nodes[i].data_dir / STORE_FILE

    def log_path(self, i: int) -> Path:
        return self.base_dir / f"{self.nodes[i].node_id}.log"

    # ---- starting -----------------------------------------------------------------------

    def start_all(self) -> None:
        """Start every node that is not running, then wait for all of them to listen."""
        started = [i for i, n in enumerate(self.nodes) if not n.running]
        for i in started:
            self._spawn(i)
        for i in started:
            self._wait_ready(i)
        self.save_state()

    def start(self, i: int, *, new_port: bool = False) -> None:
        """(Re)start node ``i`` on its data directory; ``new_port``: at a new address, under
        the same id, which it announces to the others."""
        node = self.nodes[i]
        if node.running:
            raise ClusterError(f"{node.node_id} is already running (pid {node.pid})")
        if new_port:
            node.address = f"{HOST}:{free_ports(1)[0]}"
        self._spawn(i)
        try:
            self._wait_ready(i)
        except ClusterError as e:
            if PORT_TAKEN not in str(e):
                raise
            # Its port went to another process meanwhile: it rejoins at a new one.
            node.address = f"{HOST}:{free_ports(1)[0]}"
            self._spawn(i)
            self._wait_ready(i)
        self.save_state()

    def wait_healthy(
        self, timeout: float = 30.0, *, stop: Callable[[], str | None] | None = None
    ) -> None:
        """``wait_healthy`` over the running nodes; a node that exits meanwhile (a crash at
        start, or `cluster down` run already) ends the wait at once, as ``stop`` does."""
        live = [n for n in self.nodes if n.running]

        def exited() -> str | None:
            gone = [n.node_id for n in live if not n.running]
            if gone:
                return f"{', '.join(gone)} exited"
            return stop() if stop is not None else None

        wait_healthy([n.address for n in live], timeout, stop=exited)

    def add_node(self, *, start: bool = True) -> int:
        """A new node outside the initial ring, seeded with the others: it serves once it
        joins (``Client.join``). Returns its index."""
        i = len(self.nodes)
        node_id = f"n{i + 1}"
        self.nodes.append(
            NodeProcess(node_id, f"{HOST}:{free_ports(1)[0]}", self.base_dir / node_id)
        )
        if start:
            self.start(i)
        return i

    def spec(self, i: int) -> NodeSpec:
        """How node ``i`` is started (``launch.NodeSpec``)."""
        node = self.nodes[i]
        opts = self.options
        members: tuple[tuple[str, str], ...] = ()
        if i in self._members:
            # Each member's address as of now: a restarted node learns newer ones by gossip.
            members = tuple((self.nodes[j].node_id, self.nodes[j].address) for j in self._members)
        return NodeSpec(
            node.node_id,
            node.address,
            data_dir=node.data_dir,
            memory=opts.memory,
            config=opts.config,
            sync=opts.sync,
            members=members,
            seeds=tuple(self.nodes[j].address for j in self._members if j != i),
            secret_file=self.secret_file,
            log_level=opts.log_level,
            trace=None if opts.trace_dir is None else opts.trace_dir / f"{node.node_id}.jsonl",
            extra_args=opts.extra_args,
        )

    def node_argv(self, i: int) -> list[str]:
        return self.spec(i).argv(self.command)

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        node.data_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec(i)
        node.argv = spec.argv(self.command)
        out = self.base_dir / f"{node.node_id}.out"
        with out.open("wb") as stdout, self.log_path(i).open("ab") as stderr:
            node.process = spawn(
                spec, stdout=stdout, stderr=stderr, env=self.env, command=self.command
            )

    def _wait_ready(self, i: int) -> None:
        node = self.nodes[i]
        out = self.base_dir / f"{node.node_id}.out"
        deadline = time.monotonic() + self.start_timeout
        proc = node.process
        assert proc is not None
        while True:
            with contextlib.suppress(OSError):
                for line in out.read_text("utf-8", "replace").splitlines():
                    if line.startswith(READY_PREFIX):
                        node.address = line[len(READY_PREFIX) :].strip()
                        return
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    self._signal_and_wait(node, signal.SIGKILL, self.stop_timeout)
                what = f"exited with status {code}" if code is not None else "timed out"
                raise ClusterError(
                    f"node {node.node_id} did not start ({what}); its stderr:\n"
                    f"{_tail(self.log_path(i))}"
                )
            time.sleep(0.02)

    # ---- faults and stopping ------------------------------------------------------------

    def _signal(self, i: int, sig: signal.Signals) -> None:
        node = self.nodes[i]
        if not node.running or node.process is None:
            raise ClusterError(f"{node.node_id} is not running")
        os.kill(node.process.pid, sig)

    def pause(self, i: int) -> None:
        """SIGSTOP: the process is frozen, its sockets stay open (a long GC pause)."""
        self._signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def kill(self, i: int) -> None:
        """SIGKILL: a crash; whatever was not durable is gone."""
        node = self.nodes[i]
        if node.running:
            self._signal_and_wait(node, signal.SIGKILL, self.stop_timeout)
        self.save_state()

    def stop(self, i: int, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if the node has not exited within ``timeout``; its exit
        status (None if it was not running)."""
        node = self.nodes[i]
        if node.process is None:
            return None
        if node.running:
            self._signal_and_wait(
                node, signal.SIGTERM, self.stop_timeout if timeout is None else timeout
            )
        self.save_state()
        return node.process.returncode

    def _signal_and_wait(self, node: NodeProcess, sig: signal.Signals, timeout: float) -> None:
        proc = node.process
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
            if sig != signal.SIGKILL:
                os.kill(proc.pid, signal.SIGCONT)  # a paused node must run to act on it
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        """Stop every node: SIGTERM to all, then SIGKILL to those still running."""
        live = [n for n in self.nodes if n.running and n.process is not None]
        for n in live:
            assert n.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.process.pid, signal.SIGTERM)
                os.kill(n.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + self.stop_timeout
        for n in live:
            assert n.process is not None
            try:
                n.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.process.pid, signal.SIGKILL)
                n.process.wait()
        with contextlib.suppress(OSError):
            self.save_state()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- the state file -----------------------------------------------------------------

    def save_state(self) -> None:
        # A node `cluster start` restarted is not our child: keep its recorded PID while it
        # runs, so that `cluster down` stops it too.
        recorded: dict[str, RecordedNode] = {}
        with contextlib.suppress(ClusterError):
            recorded = {r.node_id: r for r in read_state(self.base_dir)}
        state = {
            "launcher": os.getpid(),
            "nodes": [
                {
                    "id": n.node_id,
                    "address": n.address,
                    "pid": n.pid if n.running else _running_pid(recorded.get(n.node_id)),
                    "argv": n.argv,
                    "data_dir": str(n.data_dir),
                }
                for n in self.nodes
            ],
        }
        _write_state(self.base_dir, state)


def wait_healthy(
    addresses: Sequence[str],
    timeout: float = 30.0,
    *,
    stop: Callable[[], str | None] | None = None,
) -> None:
    """Wait until every node at ``addresses`` answers ``status`` and suspects none of the
    others: nodes started one after another first suspect the ones not yet listening.

    :raises ClusterError: not within ``timeout``, or ``stop`` gave a reason to give up; says
        who still suspects whom.
    """
    deadline = time.monotonic() + timeout
    while True:
        problems = _health_problems(addresses, min(timeout, 5.0))
        if not problems:
            return
        reason = stop() if stop is not None else None
        if reason is not None:
            raise ClusterError(f"the cluster is not healthy: {reason}; {'; '.join(problems)}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"the cluster is not healthy after {timeout:g}s: {'; '.join(problems)}"
            )
        time.sleep(0.05)


def _health_problems(addresses: Sequence[str], timeout: float) -> list[str]:
    from dynamo_ref.client import Client, ClientError

    problems: list[str] = []
    try:
        with Client(list(addresses), timeout=timeout) as client:
            ids: set[str] = set()
            replies = []
            for address in addresses:
                try:
                    reply = client.status(address)
                except ClientError as e:
                    problems.append(f"{address} does not answer ({e})")
                    continue
                ids.add(reply.node)
                replies.append(reply)
    except ClientError as e:
        return [f"no node answers ({e})"]
    for reply in replies:
        bad = sorted(m.node for m in reply.members if m.suspected and m.node in ids)
        if bad:
            problems.append(f"{reply.node} suspects {', '.join(bad)}")
    return problems


# ---- another process's cluster, through its state file ------------------------------------


@dataclass(frozen=True)
class RecordedNode:
    node_id: str
    address: str
    pid: int | None
    argv: tuple[str, ...]


def read_state(base_dir: Path | str) -> list[RecordedNode]:
    """The nodes recorded in ``base_dir/cluster.json``.

    :raises ClusterError: no state file there, or one that cannot be read.
    """
    path = Path(base_dir) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        return [
            RecordedNode(str(n["id"]), str(n["address"]), n["pid"], tuple(n["argv"]))
            for n in raw["nodes"]
        ]
    except FileNotFoundError:
        raise ClusterError(f"no cluster state file at {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClusterError(f"unreadable cluster state file {path}: {e}") from None


def cmdline_of(pid: int) -> tuple[str, ...] | None:
    """``pid``'s command line, None if there is no such live process (a zombie has none)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return tuple(part.decode("utf-8", "surrogateescape") for part in raw.rstrip(b"\0").split(b"\0"))


def is_our_node(node: RecordedNode) -> bool:
    """The recorded PID still runs the recorded node command (not a reused PID)."""
    return node.pid is not None and cmdline_of(node.pid) == node.argv


def _running_pid(node: RecordedNode | None) -> int | None:
    return node.pid if node is not None and is_our_node(node) else None


def _write_state(base_dir: Path, state: dict[str, object]) -> None:
    path = base_dir / STATE_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def recorded_node(base_dir: Path | str, node_id: str) -> RecordedNode:
    """The node ``node_id`` of the state file in ``base_dir``.

    :raises ClusterError: no state file, or no such node in it.
    """
    nodes = read_state(base_dir)
    for n in nodes:
        if n.node_id == node_id:
            return n
    raise ClusterError(
        f"no node {node_id!r} in the cluster at {base_dir}: its nodes are "
        f"{', '.join(n.node_id for n in nodes)}"
    )


def start_recorded(base_dir: Path | str, node_id: str, timeout: float = 30.0) -> RecordedNode:
    """Start a recorded node that is not running, with its recorded command line (its data
    directory, its address, its secret file), and record its new PID.

    :raises ClusterError: unknown, already running, or it did not start (with its log's tail).
    """
    base = Path(base_dir)
    node = recorded_node(base, node_id)
    if is_our_node(node):
        raise ClusterError(f"{node_id} is already running (pid {node.pid})")
    out, log = base / f"{node_id}.out", base / f"{node_id}.log"
    with out.open("wb") as stdout, log.open("ab") as stderr:
        proc = subprocess.Popen(
            node.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # it outlives this command
        )
    deadline = time.monotonic() + timeout
    while not any(
        line.startswith(READY_PREFIX) for line in out.read_text("utf-8", "replace").splitlines()
    ):
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            if code is None:
                proc.kill()
                proc.wait()
            what = f"exited with status {code}" if code is not None else "timed out"
            raise ClusterError(f"{node_id} did not start ({what}); its log:\n{_tail(log)}")
        time.sleep(0.02)
    raw = json.loads((base / STATE_FILE).read_text())
    for entry in raw["nodes"]:
        if entry["id"] == node_id:
            entry["pid"] = proc.pid
    _write_state(base, raw)
    return RecordedNode(node.node_id, node.address, proc.pid, node.argv)


def signal_recorded(
    base_dir: Path | str, node_id: str, sig: signal.Signals, timeout: float = 10.0
) -> RecordedNode:
    """Send ``sig`` to a running recorded node, by its PID, and wait up to ``timeout`` for it
    to exit (SIGTERM: then SIGKILL). Only a PID that still runs the recorded command is
    signalled.

    :raises ClusterError: unknown, or not running.
    """
    node = recorded_node(base_dir, node_id)
    if not is_our_node(node) or node.pid is None:
        raise ClusterError(f"{node_id} is not running")
    with contextlib.suppress(ProcessLookupError):
        os.kill(node.pid, sig)
        if sig == signal.SIGTERM:
            os.kill(node.pid, signal.SIGCONT)  # a paused node must run to act on it
    deadline = time.monotonic() + timeout
    while is_our_node(node) and time.monotonic() < deadline:
        time.sleep(0.02)
    if is_our_node(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        while is_our_node(node):
            time.sleep(0.02)
    return node


def stop_recorded(base_dir: Path | str, timeout: float = 10.0) -> list[RecordedNode]:
    """Stop the nodes of the state file in ``base_dir`` by PID: SIGTERM, then SIGKILL after
    ``timeout``. Only PIDs that still run the recorded command are signalled; returns those."""
    ours = [n for n in read_state(base_dir) if is_our_node(n)]
    for n in ours:
        assert n.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(n.pid, signal.SIGTERM)
            os.kill(n.pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_our_node(n) for n in ours):
        time.sleep(0.05)
    for n in ours:
        if is_our_node(n):
            assert n.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_our_node(n) for n in ours):
        time.sleep(0.05)
    return ours
