"""dynamo-ref as a target: node processes on SQLite, every node-to-node link through a Network.

Each node is a `dynamo-ref node` process started through the one launcher
(`dynamo_ref.launch`), with its own data directory and log under `base_dir/<node>/`. Its
settings are `NodeConfig`'s defaults but for the short times a run needs (`Timing`). Processes
are controlled by PID only: `stop` (SIGTERM, then SIGKILL), `kill` (SIGKILL), `pause`
(SIGSTOP), `resume` (SIGCONT), `start` (again, on the same data directory).

Networks:
- `proxy`: node A is told to reach node B at `ProxyNetwork.address_for(A, B)` (`--route`),
  and its runtime dials that address whatever gossip advertises (gossip would otherwise hand
  it B's real port), so every link's faults hold.
  The first start hands each node a socket the harness bound (no port race with other tests).
- `netns`: each node in its namespace (`NetnsNetwork.popen`) at `address(node):7100`; clients,
  which live in the harness' namespace, reach it over a Unix socket through a small relay.

Clients talk to one node directly, not through the network's faults; that node coordinates (or
forwards, when it is not a replica of the key). Values are JSON. Errors map to `OpFailed`
(nothing was sent, or the request was refused as invalid; any failed read) and `OpUnknown`
(timeouts, lost connections, a put that failed after it was sent: it may be stored).

Clocks for the checkers are JSON maps node -> counter. In DVV mode a sibling's clock carries its
dot as an extra entry `"@<writer>": dot`; `dominates` (for the checkers) then compares as the
node does (`dvv_covers`), and write clocks are not recorded (a DVV write's returned context is
not its version).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from dynamo_ref.client import AsyncClient, ClientError
from dynamo_ref.core.messages import ErrorCode, SiblingClock, WireVersion, decode_context
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.core.vclock import VClock
from dynamo_ref.launch import DEFAULTS, READY_PREFIX, NodeSpec, spawn
from dynamo_ref.net.framing import HEADER as FRAME_HEADER
from dynamo_ref.net.trace import digest
from dynamo_ref.storage.sqlite import Synchronous
from harness.checkers.verdict import Finding, Result
from harness.clocks import DOT, dotted_descends
from harness.net.netns import NetnsNetwork
from harness.net.network import Link, NetEvent, Network
from harness.net.proxy import ProxyNetwork
from harness.targets.base import OpFailed, OpUnknown

__all__ = ["DynamoClient", "DynamoContext", "DynamoTarget", "Timing", "dvv_dominates"]

NetKind = Literal["proxy", "netns"]
ModeKind = Literal["vclock", "lww", "dvv"]
QuorumKind = Literal["strict", "sloppy"]

_HOST = "127.0.0.1"
_NETNS_PORT = 7100
_REPO = Path(__file__).resolve().parents[2]
# Refused before anything was stored: the request itself was bad, or the node was too busy.
_DEFINITE = frozenset(
    {
        ErrorCode.INVALID_KEY,
        ErrorCode.INVALID_VALUE,
        ErrorCode.INVALID_QUORUM,
        ErrorCode.INVALID_CONTEXT,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.UNKNOWN_MESSAGE,
        ErrorCode.MALFORMED,
        ErrorCode.TOO_LARGE,
        ErrorCode.OVERLOAD,
        ErrorCode.UNAUTHORIZED,
    }
)


@dataclass(frozen=True)
class Timing:
    """Node and client timing; short, so handoff and anti-entropy finish within a run."""

    request_timeout: float = 1.0
    fallback_delay: float = 0.3
    gossip_interval: float = 0.3
    anti_entropy_interval: float = 0.5
    handoff_interval: float = 0.3
    detector_pause: float = 1.0
    reap_delay: float = 60.0
    client_timeout: float = 3.0
    start_timeout: float = 30.0
    stop_timeout: float = 5.0
    # In WAL mode a kill -9 loses nothing at "normal" (only power loss would), and it is faster.
    sync: Synchronous = "normal"


# ---- clocks as the checkers want them --------------------------------------------------------


def clock_json(clock: VClock) -> dict[str, int]:
    return {node: counter for node, counter, _ in clock.entries()}


def sibling_clock_json(c: SiblingClock | WireVersion, dvv: bool) -> dict[str, int]:
    out = {node: counter for node, counter, _ in c.clock}
    if c.dot:
        if dvv:
            out[DOT + c.writer] = c.dot
        else:
            out[c.writer] = max(out.get(c.writer, 0), c.dot)
    return out


def dvv_dominates(a: Sequence[tuple[str, int]], b: Sequence[tuple[str, int]]) -> bool:
    """`a` has seen `b`, for clocks as `sibling_clock_json` writes them in DVV mode
    (`node_versions.dvv_covers` on the harness's side)."""
    return dotted_descends(tuple(a), tuple(b))


# ---- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamoContext:
    """What a read hands to the next write: the opaque bytes, and for the history the merged
    clock and one clock per sibling."""

    raw: bytes
    clock: dict[str, int]
    clocks: list[dict[str, int]] = field(default_factory=list)


def _decode_value(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class DynamoClient:
    """A `VersionedClient` bound to one node. `last_put_clock`: the clock the last successful
    put got back (None in DVV mode), for the history."""

    def __init__(self, node: str, address: str, *, timeout: float, dvv: bool) -> None:
        self._node = node
        self._address = address
        self._timeout = timeout
        self._dvv = dvv
        self._client: AsyncClient | None = None
        self._connecting = asyncio.Lock()
        self.last_put_clock: dict[str, int] | None = None
        # What the last successful put returned: a context covering the written version.
        self.last_put_context: DynamoContext | None = None

    @property
    def node(self) -> str:
        return self._node

    async def _connected(self) -> AsyncClient:
        # Ops of one client may run concurrently (final reads share it): connect once.
        async with self._connecting:
            if self._client is None:
                try:
                    self._client = await AsyncClient.connect([self._address], timeout=self._timeout)
                except (ClientError, OSError) as e:
                    raise OpFailed(f"cannot connect to {self._node}: {e}") from None
            return self._client

    @staticmethod
    def _error(e: ClientError, write: bool) -> OpFailed | OpUnknown:
        not_sent = e.message.startswith(("cannot connect", "no node answered"))
        if not write or not_sent or e.code in _DEFINITE:
            return OpFailed(str(e))
        return OpUnknown(str(e))

    async def get(self, key: str) -> tuple[list[object], object]:
        client = await self._connected()
        try:
            res = await client.get(key.encode())
        except ClientError as e:
            raise self._error(e, write=False) from None
        except (OSError, TimeoutError) as e:
            raise OpFailed(f"get {key!r} at {self._node}: {e}") from None
        values = [_decode_value(v) for v in res.siblings]
        clocks = [sibling_clock_json(c, self._dvv) for c in res.clocks]
        if len(clocks) != len(values):
            clocks = []
        ctx = DynamoContext(res.context, clock_json(decode_context(res.context)), clocks)
        return values, ctx

    async def put(self, key: str, value: object, context: object | None) -> None:
        client = await self._connected()
        raw = context.raw if isinstance(context, DynamoContext) else b""
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        self.last_put_clock = None
        self.last_put_context = None
        try:
            res = await client.put(key.encode(), data, context=raw)
        except ClientError as e:
            raise self._error(e, write=True) from None
        except (OSError, TimeoutError) as e:
            raise OpUnknown(f"put {key!r} at {self._node}: {e}") from None
        clock = clock_json(decode_context(res.context))
        self.last_put_context = DynamoContext(res.context, clock)
        if not self._dvv:
            self.last_put_clock = clock

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


# ---- the target -----------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    dir: Path
    listen: str  # where it listens (inside its namespace for netns)
    client_address: str  # where a harness client connects
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    sock: socket.socket | None = None  # bound by the harness for the first start (proxy)
    log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "node.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _bind_loopback() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((_HOST, 0))
    return s


class DynamoTarget:
    """A dynamo-ref cluster under test (see the module docstring)."""

    def __init__(
        self,
        nodes: int | Sequence[str],
        base_dir: Path,
        *,
        net: NetKind = "proxy",
        mode: ModeKind = DEFAULTS.mode.value,
        quorum: QuorumKind = "sloppy" if DEFAULTS.sloppy else "strict",
        n: int = DEFAULTS.n,
        r: int = DEFAULTS.r,
        w: int = DEFAULTS.w,
        seed: int = 0,
        partitions: int = DEFAULTS.partitions,
        timing: Timing | None = None,
        trace: bool = False,
        node_command: Sequence[str] | None = None,
    ) -> None:
        names = [f"n{i + 1}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        # How to run the node's command line (default: this Python's ``-m dynamo_ref``); the
        # tests' planted-bug nodes come in here, never through a user's option.
        self.node_command = None if node_command is None else list(node_command)
        if len(names) < 1:
            raise ValueError("a cluster needs at least one node")
        self._names = names
        self.base_dir = Path(base_dir)
        self.net: NetKind = net
        self.mode: ModeKind = mode
        self.quorum: QuorumKind = quorum
        self.n, self.r, self.w = min(n, len(names)), r, w
        self.seed = seed
        self.partitions = partitions
        self.timing = timing or Timing()
        # Each node writes its own steps to <node>/trace.jsonl; the harness writes the faults
        # it injects into process faults (faults.jsonl), on the same monotonic clock.
        self.trace = trace
        self._fault_lock = threading.Lock()
        t = self.timing
        # The harness's short times, so handoff and anti-entropy finish within a run; every
        # other setting is the node's default.
        self.config = dataclasses.replace(
            DEFAULTS,
            n=self.n,
            r=r,
            w=w,
            sloppy=quorum == "sloppy",
            mode=VersionMode(mode),
            partitions=partitions,
            request_timeout=t.request_timeout,
            fallback_delay=t.fallback_delay,
            gossip_interval=t.gossip_interval,
            anti_entropy_interval=t.anti_entropy_interval,
            handoff_interval=t.handoff_interval,
            detector_pause=t.detector_pause,
            reap_delay=t.reap_delay,
        )
        self.ring = self.config.initial_ring(names)
        self._nodes: dict[str, _Node] = {}
        self._network: Network | None = None
        self._relays: list[asyncio.Server] = []
        self._clients: list[DynamoClient] = []
        self._admin: dict[str, AsyncClient] = {}
        self._admin_lock = asyncio.Lock()

    # ---- what the harness asks ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"dynamo-ref ({self.mode}, {self.quorum} quorum, N={self.n} R={self.r} W={self.w})"

    @property
    def network(self) -> Network:
        if self._network is None:
            raise RuntimeError("the target is not set up")
        return self._network

    @property
    def dominates(self) -> object:
        """The clock order its recorded clocks follow (None: plain vector clocks)."""
        return dvv_dominates if self.mode == "dvv" else None

    def nodes(self) -> list[str]:
        return list(self._names)

    def links(self) -> set[Link]:
        return {(a, b) for a in self._names for b in self._names if a != b}

    def pid(self, node: str) -> int | None:
        nd = self._nodes.get(node)
        return nd.process.pid if nd is not None and nd.running() and nd.process else None

    def preference_list(self, key: str) -> list[str]:
        return list(self.ring.preference_list(key.encode(), self.n))

    def pick_keys(self, count: int, prefix: str = "k") -> list[str]:
        """`count` keys spread over the ring: every partition gets one before any gets two."""
        by_part: dict[int, list[str]] = {}
        i = 0
        want_parts = min(count, self.partitions)
        while len(by_part) < want_parts or sum(map(len, by_part.values())) < count:
            key = f"{prefix}{i}"
            i += 1
            p = self.ring.partition_of(key.encode())
            if p not in by_part and len(by_part) < want_parts:
                by_part[p] = [key]
            elif len(by_part) >= want_parts and sum(map(len, by_part.values())) < count:
                by_part.setdefault(p, []).append(key)
        keys = [k for ks in by_part.values() for k in ks]
        return sorted(keys[:count], key=lambda k: int(k[len(prefix) :]))

    # ---- lifecycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.net == "proxy":
                await self._setup_proxy()
            else:
                await self._setup_netns()
            await asyncio.gather(*(self.start(nd) for nd in self._names))
            await self._wait_healthy()
        except BaseException:
            await self.teardown()
            raise

    async def _wait_healthy(self) -> None:
        """Until no node holds a peer down, or the start timeout: a run begins on a cluster
        whose nodes see each other, not on one whose first connections were refused (a node
        started before its peers listened holds them down until it hears from them)."""
        deadline = time.monotonic() + self.timing.start_timeout
        while time.monotonic() < deadline:
            try:
                views = [await (await self._admin_client(n)).status() for n in self._names]
            except (ClientError, OSError):
                views = []
            if views and not any(m.suspected for v in views for m in v.members):
                return
            await asyncio.sleep(0.1)

    async def _setup_proxy(self) -> None:
        for name in self._names:
            sock = _bind_loopback()
            address = f"{_HOST}:{sock.getsockname()[1]}"
            self._nodes[name] = _Node(name, self.base_dir / name, address, address, sock=sock)
        targets = {
            name: (_HOST, int(nd.listen.rpartition(":")[2])) for name, nd in self._nodes.items()
        }
        if self.trace:
            # The proxy names the messages a cut loses, by the digest the nodes' traces use.
            proxy = ProxyNetwork(
                targets, seed=self.seed, frame_header=FRAME_HEADER, on_lost=self._lost
            )
        else:
            proxy = ProxyNetwork(targets, seed=self.seed)
        proxy.on_event = self._net_event if self.trace else None
        proxy.start()
        self._network = proxy

    async def _setup_netns(self) -> None:
        netns = NetnsNetwork(self._names)
        netns.on_event = self._net_event if self.trace else None
        self._network = netns
        netns.start()
        for name in self._names:
            d = self.base_dir / name
            d.mkdir(parents=True, exist_ok=True)
            path = d / "client.sock"
            relay = await asyncio.start_server(functools.partial(self._relay, path=path), _HOST, 0)
            self._relays.append(relay)
            port = relay.sockets[0].getsockname()[1]
            listen = f"{netns.address(name)}:{_NETNS_PORT}"
            self._nodes[name] = _Node(name, d, listen, f"{_HOST}:{port}")

    @staticmethod
    async def _relay(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path
    ) -> None:
        try:
            ur, uw = await asyncio.open_unix_connection(str(path))
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, uw), pump(ur, writer))

    def _routes(self, name: str) -> list[tuple[str, str]]:
        out = []
        for peer, nd in self._nodes.items():
            if peer == name:
                continue
            if isinstance(self._network, ProxyNetwork):
                host, port = self._network.address_for(name, peer)
                out.append((peer, f"{host}:{port}"))
            else:
                out.append((peer, nd.listen))
        return out

    def _spec(self, nd: _Node, fd: int | None) -> NodeSpec:
        routes = self._routes(nd.name)
        return NodeSpec(
            nd.name,
            nd.listen,
            data_dir=nd.dir / "data",
            config=self.config,
            sync=self.timing.sync,
            members=((nd.name, nd.listen), *routes),
            routes=tuple(routes),
            listen_fd=fd,
            client_socket=nd.dir / "client.sock" if self.net == "netns" else None,
            log_level="info",
            trace=nd.dir / "trace.jsonl" if self.trace else None,
        )

    async def start(self, node: str) -> None:
        nd = self._nodes[node]
        if nd.running():
            if nd.paused:
                await self.resume(node)
            return
        nd.dir.mkdir(parents=True, exist_ok=True)
        if nd.log is not None:
            nd.log.close()
        offset = nd.log_path.stat().st_size if nd.log_path.exists() else 0
        nd.log = open(nd.log_path, "ab")  # noqa: SIM115  # lives as long as the process
        fd = nd.sock.fileno() if nd.sock is not None else None
        popen = (
            functools.partial(self._network.popen, node)
            if isinstance(self._network, NetnsNetwork)
            else subprocess.Popen
        )
        nd.process = spawn(
            self._spec(nd, fd),
            stdout=nd.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(_REPO)},
            command=self.node_command,
            cwd=_REPO,
            popen=popen,
        )
        nd.paused = False
        self._fault("start", nd)
        await self._wait_ready(nd, offset)
        if nd.sock is not None:  # later starts bind the port themselves
            nd.sock.close()
            nd.sock = None

    async def _wait_ready(self, nd: _Node, offset: int) -> None:
        deadline = time.monotonic() + self.timing.start_timeout
        while True:
            with open(nd.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
            if READY_PREFIX in text:
                return
            if nd.process is None or nd.process.poll() is not None:
                code = None if nd.process is None else nd.process.returncode
                raise RuntimeError(f"{nd.name} exited with {code} while starting:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{nd.name} did not start in time:\n{text[-2000:]}")
            await asyncio.sleep(0.05)

    async def _wait_exit(self, nd: _Node, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while nd.process is not None and nd.process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _signal(self, nd: _Node, sig: signal.Signals) -> None:
        if nd.process is not None and nd.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(nd.process.pid, sig)
                self._fault(sig.name, nd)

    def check_traces(self, time_limit: float | None = None) -> Result:
        """The run's per-process traces (and the faults this target logged), merged and
        checked by TLC against spec/Dynamo.tla: the ``spec`` checker of a campaign run with
        ``--validate-trace``. Call it after ``teardown``."""
        from dynamo_ref.tla.merge import TraceInputError
        from dynamo_ref.tla.models import default_spec_dir
        from dynamo_ref.tla.process_trace import validate_run
        from dynamo_ref.tla.trace import TraceFormatError

        started = time.monotonic()
        try:
            verdict = validate_run([self.base_dir], spec_dir=default_spec_dir(), timeout=time_limit)
        except (TraceFormatError, TraceInputError, OSError) as e:
            return Result("spec", "unknown", f"the traces could not be validated: {e}")
        elapsed = time.monotonic() - started
        details: dict[str, object] = {
            "actions": verdict.lines,
            "tlc_seconds": round(verdict.seconds, 2),
            "by_action": dict(sorted(verdict.actions.items())),
        }
        if verdict.accepted:
            return Result("spec", "valid", verdict.describe(), details, elapsed=elapsed)
        if verdict.failed is None:
            return Result("spec", "unknown", verdict.describe(), details, elapsed=elapsed)
        details |= {"failed_step": verdict.failed, "action": verdict.failed_action}
        details["trace_line"] = verdict.failed_at
        if verdict.differing:
            details["differing"] = list(verdict.differing)
        finding = Finding("trace-diverged", "", verdict.describe(), details=details)
        return Result("spec", "invalid", verdict.describe(), details, (finding,), elapsed=elapsed)

    @property
    def fault_log(self) -> Path:
        """The faults this target injected into processes, one JSON line each."""
        return self.base_dir / "faults.jsonl"

    def _fault(self, what: str, nd: _Node) -> None:
        if not self.trace:
            return
        pid = None if nd.process is None else nd.process.pid
        self._log_fault({"fault": what, "node": nd.name, "pid": pid, "t": time.monotonic()})

    def _net_event(self, event: NetEvent) -> None:
        line: dict[str, object] = {
            "fault": f"net-{event.kind}",
            "links": [list(link) for link in event.links],
            "t": event.time / 1e9,
        }
        if event.params:
            line["params"] = event.params
        self._log_fault(line)

    def _lost(self, link: Link, payload: bytes) -> None:
        src, dst = link
        line = {"fault": "drop", "from": src, "to": dst, "h": digest(payload)}
        self._log_fault(line | {"t": time.monotonic()})

    def _log_fault(self, line: dict[str, object]) -> None:
        # From the harness's loop and the proxy's thread alike.
        with self._fault_lock:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            with self.fault_log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    async def stop(self, node: str) -> None:
        nd = self._nodes[node]
        self._signal(nd, signal.SIGCONT)
        self._signal(nd, signal.SIGTERM)
        if not await self._wait_exit(nd, self.timing.stop_timeout):
            await self.kill(node)
        nd.paused = False
        await self._drop_admin(node)

    async def kill(self, node: str) -> None:
        nd = self._nodes[node]
        self._signal(nd, signal.SIGKILL)
        await self._wait_exit(nd, self.timing.stop_timeout)
        nd.paused = False
        await self._drop_admin(node)

    async def pause(self, node: str) -> None:
        nd = self._nodes[node]
        if nd.running():
            self._signal(nd, signal.SIGSTOP)
            nd.paused = True

    async def resume(self, node: str) -> None:
        nd = self._nodes[node]
        self._signal(nd, signal.SIGCONT)
        nd.paused = False

    def is_running(self, node: str) -> bool:
        return self._nodes[node].running()

    def is_paused(self, node: str) -> bool:
        return self._nodes[node].paused

    async def teardown(self) -> None:
        for c in self._clients:
            await c.close()
        self._clients.clear()
        for name in list(self._admin):
            await self._drop_admin(name)
        for nd in self._nodes.values():
            self._signal(nd, signal.SIGCONT)
            self._signal(nd, signal.SIGTERM)
        for nd in self._nodes.values():
            if not await self._wait_exit(nd, self.timing.stop_timeout):
                self._signal(nd, signal.SIGKILL)
                await self._wait_exit(nd, self.timing.stop_timeout)
            if nd.log is not None:
                nd.log.close()
                nd.log = None
            if nd.sock is not None:
                nd.sock.close()
                nd.sock = None
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        net, self._network = self._network, None
        if isinstance(net, ProxyNetwork | NetnsNetwork):
            net.stop()

    # ---- clients and admin ----------------------------------------------------------------

    async def client(self, node: str) -> DynamoClient:
        nd = self._nodes[node]
        c = DynamoClient(
            node, nd.client_address, timeout=self.timing.client_timeout, dvv=self.mode == "dvv"
        )
        self._clients.append(c)
        return c

    async def _admin_client(self, node: str) -> AsyncClient:
        # Concurrent callers must not each open one: all but the last would leak.
        async with self._admin_lock:
            c = self._admin.get(node)
            if c is None:
                nd = self._nodes[node]
                c = await AsyncClient.connect(
                    [nd.client_address], timeout=self.timing.client_timeout
                )
                self._admin[node] = c
            return c

    async def _drop_admin(self, node: str) -> None:
        c = self._admin.pop(node, None)
        if c is not None:
            with contextlib.suppress(Exception):
                await c.close()

    async def set_clock_skew(self, node: str, seconds: float) -> None:
        try:
            await (await self._admin_client(node)).set_clock_skew(seconds)
        except (ClientError, OSError) as e:
            await self._drop_admin(node)
            raise OpFailed(f"set clock skew on {node}: {e}") from None

    async def replica_get(self, node: str, key: str) -> list[dict[str, object]]:
        """The versions `node` itself stores for `key`: `{"value", "clock", "ts"}` each; a
        tombstone's value is None (and `"tombstone": true`)."""
        try:
            versions = await (await self._admin_client(node)).replica_get(key.encode())
        except (ClientError, OSError) as e:
            await self._drop_admin(node)
            raise OpFailed(f"replica read of {key!r} on {node}: {e}") from None
        dvv = self.mode == "dvv"
        out: list[dict[str, object]] = []
        for v in versions:
            entry: dict[str, object] = {
                "value": None if v.value is None else _decode_value(v.value),
                "clock": sibling_clock_json(v, dvv),
                "ts": v.ts,
            }
            if v.value is None:
                entry["tombstone"] = True
            out.append(entry)
        return out

    async def status(self, node: str) -> dict[str, object]:
        reply = await (await self._admin_client(node)).status()
        return {"hints": dict(reply.hints), "keys": reply.keys, "skew": reply.clock_skew}
