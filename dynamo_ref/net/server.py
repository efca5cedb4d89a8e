"""The asyncio node server: the TCP driver of ``core.node.Node``.

It holds no protocol logic. Connections, frames and timers become events for
``Node.handle(event, now)``; the effects that come back are carried out in order:

- ``Send`` goes to the peer's ``PeerLink``, ``Reply`` to the client's connection;
- ``Persist``, ``PersistHint``, ``DropHint``, ``PersistMeta`` go to the durable store;
- ``SetTimer``/``CancelTimer`` become ``loop.call_at`` handles; ``Action`` is ignored.

Group commit: the durable effects of every event handled in one loop tick are applied as one
batch in a worker thread (one batch at a time). A ``Send`` or ``Reply`` that comes after a
durable effect not yet applied is held until it is, so an acknowledgement never leaves before
what it acknowledges is durable; one with no durable effect ahead of it goes at once. A traced
node's step lines wait the same way and are written in the worker thread right after their
batch: a trace never claims a store that a kill could still lose. The batch holds its lines
too, so that a kill between the two leaves them for the next start to write.

A durable batch that fails (disk full, I/O error) takes everything held behind it along:
the keys and hints it held are read back from the store and the node is told
(a ``StorageFailed`` event), which returns its working copy to what is durable and fails the
puts of those keys with ``storage_error``; a ``PutOk`` held behind the batch becomes that
error too, and held peer messages are dropped (the protocol copes with loss). Reads go on.

Bounded resources. Until its handshake is done a connection may send frames of a few KiB
only (``MAX_HANDSHAKE``). Client connections (and those not yet authenticated) are capped
(``max_connections``, kept below the file descriptor limit); one past the cap is refused with
``overload``. Proven peers are not counted. A client connection idle for ``idle_timeout`` is
closed, and so is any connection with a frame started ``frame_timeout`` ago and still not
whole. What all client connections buffer of unfinished frames is bounded (``max_buffered``);
a connection that would go past it with a large frame is refused. A connection whose frames
do not decode ``max_invalid`` times is closed.

Admission. The node takes ``max_inflight`` client requests at once; a client connection's
share is that over the client connections. A connection past its share is not read while the
node holds ``max_inflight`` requests or more: a client that pipelines deeply is slowed by TCP,
not refused, and the others keep their share. Requests past twice ``max_inflight`` are refused
at once with ``overload``, up to ``refusals`` a second: refusing costs the loop too, and past
that budget a connection is no longer read until the node has room, oldest first. If the core
raises on a request, its client gets ``internal_error``.

Bootstrapping the ring is the core's (``core.node.members``): with ``members`` every node
starts from ``NodeConfig.initial_ring`` over their ids, so all agree without gossip; a
restarted node resumes the ring its saved view describes; a node with only ``seeds`` hands the
core one seed handle per address (``seed@HOST:PORT``, which ``peer_addresses`` resolves), and the
core asks them to let it join. With neither, the node is a one-node cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import resource
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    ClientRequest,
    DropHint,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    Persist,
    PersistHint,
    PersistMeta,
    Reply,
    Send,
    SetTimer,
    StorageFailed,
    TimerFired,
    TimerId,
)
from dynamo_ref.core.messages import (
    ErrorCode,
    ErrorReply,
    Forward,
    ForwardReply,
    Join,
    Leave,
    MessageError,
    PutOk,
    ReplyMessage,
    SetClockSkew,
    decode_client,
    decode_peer,
    encode,
    rid_of,
)
from dynamo_ref.core.node import Node, NodeConfig
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.versions import Siblings
from dynamo_ref.net.connect import split_address
from dynamo_ref.net.framing import MAX_FRAME, FrameDecoder, FrameError, encode_frame
from dynamo_ref.net.handshake import (
    MAX_HANDSHAKE,
    NONCE_BYTES,
    HandshakeError,
    Hello,
    Ready,
    Welcome,
    acceptor_proof,
    check_hello,
    check_proof,
    connector_proof,
    decode_handshake,
    encode_handshake,
    new_nonce,
)
from dynamo_ref.net.peers import PeerLink
from dynamo_ref.net.trace import TRACE_TAIL, ProcessTrace
from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.memory import MemoryEngine

log = logging.getLogger("dynamo_ref.net")

# What a node logs at info: rare steps as they happen, frequent ones summed per peer over
# SUMMARY_PERIOD seconds; {i} is the action's i-th argument.
LOGGED_ACTIONS: Final = {
    "Suspect": "suspects {1} is down",
    "Trust": "hears from {1} again",
    "Joined": "joined the ring",
    "Left": "left the ring",
    "AdminJoin": "adds {1} to the ring",
    "AdminLeave": "removes {1} from the ring",
    "TransferPartition": "sends partition {2} to {1}",
    "ReceiveTransfer": "receives partition {2} from {1}",
    "RefuseTransfer": "refuses partition {2} from {1}: not a replica on its ring",
    "DropPartition": "drops partition {1}, handed over",
    "ClockAhead": "sees writes of {1} timestamped {2}s ahead of its clock",
}
SUMMED_ACTIONS: Final = {
    "SloppyFallback": "{n} writes for {peer}, held down, went to fallbacks as hints",
    "HandoffHint": "handed {n} hinted keys back to {peer}",
    "AntiEntropy": "anti-entropy with {peer} repaired {n} keys",
}
SUMMARY_PERIOD: Final = 1.0

_DURABLE: Final = (Persist, PersistHint, DropHint, PersistMeta)
_OUTBOUND: Final = (Send, Reply)
# Effect types have no subclasses: the per-effect dispatch tests exact types, 4x cheaper than
# a chain of isinstance calls.
_DURABLE_TYPES: Final = frozenset(_DURABLE)


@dataclass(frozen=True, slots=True)
class _TraceLine:
    """A step's trace line, held in order with the effects until what it follows is durable."""

    line: bytes


_Held = Effect | _TraceLine
# What goes out of the held list without a batch: messages and trace lines.
_RELEASABLE: Final = (Send, Reply, _TraceLine)
# A connection that has not finished its handshake by then is closed.
HANDSHAKE_TIMEOUT: Final = 10.0
# How the core names a seed it knows only by address (it learns the seed's id from gossip).
SEED_PREFIX: Final = "seed@"
# File descriptors kept aside from client connections: the listener, peer links and inbound
# peer connections, the store's files.
FD_RESERVE: Final = 64
DEFAULT_MAX_CONNECTIONS: Final = 1000
# Of an unfinished frame a connection may always buffer this much, whatever the others hold.
BUFFER_FREE: Final = 64 << 10


@dataclass
class ServerOptions:
    """How to run one node (see the module docstring for how the ring is found)."""

    node_id: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port
    advertise: str | None = None  # "host:port" peers use; default: host and port bound
    members: list[tuple[str, str]] = field(default_factory=list)  # (node id, "host:port")
    seeds: list[str] = field(default_factory=list)  # "host:port" of nodes to ask first
    config: NodeConfig = field(default_factory=NodeConfig)
    store: DurableStore | None = None  # None: a MemoryStore
    secret: bytes | None = None  # the cluster secret peers prove
    client_token: str | None = None  # what clients must present, when set
    max_frame: int = MAX_FRAME
    zone: str | None = None  # this node's zone, when it joins through a seed
    peer_queue: int = 10_000  # frames queued per peer link before the oldest is dropped
    sock: socket.socket | None = None  # an already bound socket to listen on (host/port unused)
    # Fixed addresses for some peers, used whatever gossip advertises: the fault harness puts a
    # proxy on every link, which a gossiped address would bypass.
    routes: dict[str, str] = field(default_factory=dict)
    client_socket: Path | None = None  # also serve clients on this Unix socket
    trace: Path | None = None  # write this node's own steps here (dynamo_ref.net.trace)
    # The node's clocks: ``monotonic`` for its timers and failure detector, ``wall`` for the
    # timestamps of versions (injected in tests).
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    # Resources a connection may hold (see the module docstring).
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # client and unauthenticated; peers aside
    max_inflight: int = 64  # client requests the node takes at once (see admission)
    max_buffered: int = 64 << 20  # bytes of unfinished frames all client connections hold
    idle_timeout: float = 300.0  # seconds a client connection may be idle
    frame_timeout: float = 30.0  # seconds a started frame may take to arrive whole
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_invalid: int = 16  # frames that do not decode before the connection is closed
    refusals: float = 5000.0  # overload refusals per second, at most (then TCP holds back)

    def check(self) -> None:
        """:raises ValueError: settings that cannot work, or leave the node open."""
        if self.client_token is not None and self.secret is None:
            raise ValueError(
                "a client token needs a cluster secret: without one, any process could connect "
                "as a peer and skip the token (give a secret file or $DYNAMO_REF_SECRET)"
            )
        if self.client_token is not None and not self.client_token:
            raise ValueError("the client token is empty")
        for name in ("max_connections", "max_inflight", "max_buffered", "max_invalid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("idle_timeout", "frame_timeout", "handshake_timeout", "refusals"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive")


class NodeServer:
    """One node listening on TCP (see the module docstring)."""

    def __init__(self, options: ServerOptions) -> None:
        if not options.node_id:
            raise ValueError("a node needs an id")
        options.check()
        self.options = options
        self.store: DurableStore = options.store if options.store is not None else MemoryStore()
        self._node: Node | None = None
        self._server: asyncio.Server | None = None
        self._unix: asyncio.Server | None = None
        self._address = ""
        self._book: dict[str, str] = dict(options.members)
        self._links: dict[str, PeerLink] = {}
        self._clients: dict[int, _Connection] = {}
        self._conns: set[_Connection] = set()
        self._client_ids = itertools.count(1)
        self._timers: dict[TimerId, asyncio.TimerHandle] = {}
        # Durable effects, and what must wait for them (messages, trace lines), in order.
        self._held: list[_Held] = []
        self._log_steps = False  # set at start, once logging is configured
        self._sums: dict[tuple[str, str], int] = {}
        self._summary: asyncio.TimerHandle | None = None
        self._held_durable = False
        self._writing: asyncio.Task[None] | None = None
        self._flush_soon = False
        self._unreachable: set[str] = set()
        self._stopped = False
        self.batches = 0  # durable batches written (group commit: fewer than durable events)
        self.failed_batches = 0  # durable batches the store could not write
        self._max_connections = options.max_connections
        self._guests = 0  # connections counted against max_connections
        self._inflight: dict[int, int] = {}  # client id -> its requests in the node
        self._limit = options.max_inflight
        self._inflight_total = 0
        self._buffered_total = 0  # bytes of unfinished frames over all connections
        self._sweeper: asyncio.TimerHandle | None = None
        self._share = self._limit  # a client connection's fair share of it
        self._overload = ""  # the refusal's text, made once
        # Refusals cost the loop too: a bucket of them, refilled at options.refusals a second.
        self._burst = max(1.0, options.refusals / 10)
        self._tokens = self._burst
        self._tokens_at = 0.0
        # Connections not read until the node has room, in the order they began to wait.
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        self._resuming = 0  # of them, resumed and not yet read
        self._trace: ProcessTrace | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The "host:port" peers and clients use (the advertised one when given)."""
        return self._address

    @property
    def node(self) -> Node:
        """The running node (for status and tests).

        :raises RuntimeError: not started.
        """
        if self._node is None:
            raise RuntimeError("the server is not started")
        return self._node

    async def start(self) -> None:
        """Load the store, find the ring, listen; serving when it returns."""
        opts = self.options
        loop = asyncio.get_running_loop()
        durable = await asyncio.to_thread(self.store.load)
        if opts.sock is not None:
            self._server = await loop.create_server(
                lambda: _Connection(self), sock=opts.sock, start_serving=False
            )
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self), opts.host, opts.port, start_serving=False
            )
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = opts.advertise or f"{host}:{port}"
        split_address(self._address)  # a bad advertise fails here, not at the first peer
        self._book[opts.node_id] = self._address
        ring: Ring | None = None
        seeds: list[str] = []
        if opts.members:
            ids = sorted(n for n, _ in opts.members)
            if opts.node_id not in ids:
                raise ValueError(f"members must include this node ({opts.node_id})")
            ring, seeds = opts.config.initial_ring(ids), ids
        else:
            for address in opts.seeds:
                handle = SEED_PREFIX + address
                self._book[handle] = address
                seeds.append(handle)
        self._node = Node(
            opts.node_id,
            opts.config,
            ring,
            seeds,
            durable,
            random.Random(),
            opts.monotonic(),
            engine=MemoryEngine,
            addresses=self._book,
            zone=opts.zone,
        )
        self._log_steps = log.isEnabledFor(logging.INFO)
        now = opts.monotonic()
        effects = self._node.start(now, wall=opts.wall())
        line = None
        if opts.trace is not None:
            self._trace = ProcessTrace(opts.trace, opts.node_id)
            if self._trace.recover(durable.meta.get(TRACE_TAIL, b"")):
                log.info("node %s wrote the trace lines of its last batch", opts.node_id)
            self._trace.header(self._node, opts.config, now, opts.wall(), self._address)
            line = self._trace.step(None, effects, self._node, now)
        self._carry_out(effects, line)
        self._limit_connections()
        if opts.secret is None:
            log.warning(
                "node %s has no cluster secret: anyone who can reach %s can join as a peer, "
                "read and write every key and change the ring; give every node a secret "
                "(--secret-file or $DYNAMO_REF_SECRET)",
                opts.node_id,
                self._address,
            )
        self._sweep()
        await self._server.start_serving()
        if opts.client_socket is not None:
            # A network namespace is unreachable from outside it; a Unix socket is not.
            opts.client_socket.unlink(missing_ok=True)
            self._unix = await loop.create_unix_server(
                lambda: _Connection(self), str(opts.client_socket)
            )
        log.info("node %s serving at %s", opts.node_id, self._address)

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("the server is not started")
        await self._server.serve_forever()

    async def stop(self) -> None:
        """Close the listener, connections, timers and peer links; finish the last batch;
        close the store."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        if self._unix is not None:
            self._unix.close()
        for conn in list(self._conns):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._summary is not None:
            self._summary.cancel()
            self._log_summary()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for link in self._links.values():
            await link.close()
        while self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
        if self._held_durable:
            # Its trace lines with it, and only if it is written, as for every batch.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._commit, self._held)
        self._held.clear()
        await asyncio.to_thread(self.store.close)
        if self._trace is not None:
            self._trace.close()

    # ---- events in -----------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self._stopped or self._node is None:
            return
        now = self.options.monotonic()
        try:
            effects = self._node.handle(event, now, wall=self.options.wall())
        except Exception:
            # A bug in the core must not take the node down: log it, answer, keep serving.
            log.exception("node %s failed on %r", self.options.node_id, event)
            effects = _answer_failed(event)
        if self._trace is None:
            self._apply(effects)
        else:
            self._carry_out(effects, self._trace.step(event, effects, self._node, now))

    def _carry_out(self, effects: Sequence[Effect], line: bytes | None) -> None:
        """A step's effects, and its trace line. The line of a step that stores nothing, behind
        nothing unwritten, is written before its messages go out: a kill between the two would
        leave messages no line sent. Any other line goes behind the durable effects held (its
        own among them), and is written with their batch (``_commit``)."""
        if (
            line is not None
            and not self._held_durable
            and self._writing is None
            and not any(isinstance(e, _DURABLE) for e in effects)
        ):
            assert self._trace is not None
            self._trace.write(line)
            line = None
        self._apply(effects)
        if line is not None:
            self._held.append(_TraceLine(line))

    def _release(self, e: _Held) -> None:
        """Carry out what was held: send a message, or write a trace line."""
        if isinstance(e, _TraceLine):
            if self._trace is not None:
                self._trace.write(e.line)
        elif isinstance(e, _OUTBOUND):
            self._out(e)

    def _fire(self, timer: TimerId) -> None:
        self._timers.pop(timer, None)
        self.handle(TimerFired(timer))

    def _report_unreachable(self, peer: str) -> None:
        # Coalesced and deferred: links call this from inside effect dispatch.
        if peer not in self._unreachable:
            self._unreachable.add(peer)
            asyncio.get_running_loop().call_soon(self._deliver_unreachable, peer)

    def _deliver_unreachable(self, peer: str) -> None:
        self._unreachable.discard(peer)
        self.handle(PeerUnreachable(peer))

    # ---- effects out ---------------------------------------------------------------------

    def _apply(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            # Most frequent first: a get's step is mostly actions and sends.
            if type(e) is Action:
                if self._log_steps and (e.name in LOGGED_ACTIONS or e.name in SUMMED_ACTIONS):
                    self._log_step(e)
            elif type(e) is Send or type(e) is Reply:
                if self._held_durable or self._writing is not None:
                    self._held.append(e)
                else:
                    self._out(e)
            elif type(e) is SetTimer:
                self._set_timer(e.timer, e.at)
            elif type(e) is CancelTimer:
                handle = self._timers.pop(e.timer, None)
                if handle is not None:
                    handle.cancel()
            elif type(e) in _DURABLE_TYPES:
                self._held.append(e)
                self._held_durable = True
                if self._writing is None and not self._flush_soon:
                    # After the rest of this tick's events: their effects join the batch.
                    self._flush_soon = True
                    asyncio.get_running_loop().call_soon(self._flush)

    def _log_step(self, e: Action) -> None:
        me = self.options.node_id
        template = LOGGED_ACTIONS.get(e.name)
        if template is not None:
            log.info("node %s %s", me, template.format(*e.args))
            return
        if e.name == "SloppyFallback":
            peer = e.args[2]
        elif e.name == "HandoffHint":
            peer = e.args[1]
        else:  # AntiEntropy: initiator, peer, key; the other one
            peer = e.args[1] if e.args[0] == me else e.args[0]
        key = (e.name, peer)
        self._sums[key] = self._sums.get(key, 0) + 1
        if self._summary is None:
            self._summary = asyncio.get_running_loop().call_later(SUMMARY_PERIOD, self._log_summary)

    def _log_summary(self) -> None:
        self._summary = None
        sums, self._sums = self._sums, {}
        for (name, peer), n in sorted(sums.items()):
            log.info(
                "node %s: %s", self.options.node_id, SUMMED_ACTIONS[name].format(n=n, peer=peer)
            )

    def _set_timer(self, timer: TimerId, at: float) -> None:
        old = self._timers.pop(timer, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - self.options.monotonic())  # on the node's clock
        self._timers[timer] = loop.call_at(loop.time() + delay, self._fire, timer)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._writing is not None or self._stopped:
            return
        held, self._held = self._held, []
        self._held_durable = False
        start = 0
        while start < len(held) and isinstance(held[start], _RELEASABLE):
            self._release(held[start])  # behind nothing unwritten: the last batch is done
            start += 1
        batch = held[start:]
        if not batch:
            return
        self._writing = asyncio.get_running_loop().create_task(self._write(batch))

    async def _write(self, batch: list[_Held]) -> None:
        try:
            await asyncio.to_thread(self._commit, batch)
        except Exception as error:
            self._writing = None
            if not self._stopped:
                self._storage_failed(batch, error)
        else:
            self.batches += 1
            for e in batch:
                if isinstance(e, _OUTBOUND):
                    self._out(e)
        finally:
            self._writing = None
        if self._held_durable:
            self._flush()
        elif self._held:
            held, self._held = self._held, []
            for e in held:
                self._release(e)

    def _commit(self, batch: list[_Held]) -> None:
        """In the store's thread: the batch, then its trace lines. The lines are in the batch
        too (``TRACE_TAIL``): a kill between the batch and their write leaves them in the
        store, and the next start writes them (``ProcessTrace.recover``)."""
        durables = self._durables(batch)
        lines = b""
        if self._trace is not None:
            lines = b"".join(e.line for e in batch if isinstance(e, _TraceLine))
            if lines:
                durables.append(PersistMeta(TRACE_TAIL, self._trace.tail(lines)))
        self.store.apply(durables)
        if self._trace is not None and lines:
            try:
                self._trace.write(lines)
            except OSError:
                # The batch is written: its acknowledgements go out, the trace is short.
                log.exception("node %s could not write its trace", self.options.node_id)

    @staticmethod
    def _durables(effects: Sequence[_Held]) -> list[Effect]:
        return [e for e in effects if isinstance(e, _DURABLE)]

    def _storage_failed(self, batch: list[_Held], error: Exception) -> None:
        """A batch was not written: it and all held behind it fail (the module docstring)."""
        self.failed_batches += 1
        failed, self._held = [*batch, *self._held], []
        self._held_durable = False
        keys: dict[bytes, None] = {}
        hint_keys: dict[tuple[str, bytes], None] = {}
        meta: dict[str, None] = {}
        out: list[Effect] = []
        for e in failed:
            if isinstance(e, _TraceLine):
                self._release(e)  # the steps happened; the repair below is a step after them
            elif isinstance(e, Persist):
                keys[e.key] = None
            elif isinstance(e, PersistHint | DropHint):
                hint_keys[(e.owner, e.key)] = None
            elif isinstance(e, PersistMeta):
                meta[e.name] = None
            elif isinstance(e, Reply):
                out.append(Reply(e.client, _not_stored(e.msg, error)))
            elif isinstance(e, Send) and isinstance(e.msg, ForwardReply):
                reply = _not_stored(e.msg.reply, error)
                if reply is not e.msg.reply:
                    out.append(Send(e.dest, ForwardReply(e.msg.fid, reply)))
        log.error(
            "node %s could not write a batch of %d keys, %d hints: %s; they are back to what "
            "the store holds and their puts fail with storage_error",
            self.options.node_id,
            len(keys),
            len(hint_keys),
            error,
        )
        store: dict[bytes, Siblings] | None = None
        hints: dict[tuple[str, bytes], Siblings] | None = None
        try:
            # On the loop, not in a thread: no event may see the engine between the failure
            # and its repair. A few keys; reads work on a full disk.
            store, hints = self.store.read(list(keys), list(hint_keys))
        except Exception:
            log.exception("node %s cannot read its store back either", self.options.node_id)
        event = StorageFailed(tuple(keys), tuple(hint_keys), tuple(meta), str(error), store, hints)
        line: bytes | None = None
        if self._node is not None:
            try:
                now = self.options.monotonic()
                effects = self._node.handle(event, now, wall=self.options.wall())
                if self._trace is not None:
                    line = self._trace.step(event, effects, self._node, now)
                out.extend(effects)
            except Exception:
                log.exception("node %s failed on %r", self.options.node_id, event)
        self._carry_out(out, line)

    def _out(self, e: Effect) -> None:
        if type(e) is Send:
            if self._stopped:
                return
            link = self._links.get(e.dest)
            if link is None:
                link = self._links[e.dest] = PeerLink(
                    e.dest,
                    self.peer_addresses,
                    self._report_unreachable,
                    node_id=self.options.node_id,
                    secret=self.options.secret,
                    queue_limit=self.options.peer_queue,
                    max_frame=self.options.max_frame,
                )
            link.send(encode(e.msg))
        elif isinstance(e, Reply):
            self._answered(e.client)
            conn = self._clients.get(e.client)
            if conn is not None:
                conn.send(encode(e.msg))

    def peer_addresses(self, peer: str) -> list[str]:
        """Where ``peer`` may listen, to try in order: its fixed route alone, else the
        membership view's address, then the one configured (or learnt as a seed)."""
        route = self.options.routes.get(peer)
        if route is not None:
            return [route]
        out: list[str] = []
        if self._node is not None:
            state = self._node.membership.get(peer)
            if state is not None:
                try:
                    split_address(state.address)
                except ValueError:
                    pass
                else:
                    out.append(state.address)
        configured = self._book.get(peer)
        if configured is not None and configured not in out:
            out.append(configured)
        return out

    # ---- connections -----------------------------------------------------------------------

    def _register(self, conn: _Connection) -> int:
        cid = next(self._client_ids)
        self._clients[cid] = conn
        self._reshare()
        return cid

    def _unregister(self, cid: int) -> None:
        if self._clients.pop(cid, None) is not None:
            self._reshare()

    def _limit_connections(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        usable = max(1, soft - FD_RESERVE)
        if self._max_connections > usable:
            # Worth a warning only when asked for more than the default.
            asked = self._max_connections > DEFAULT_MAX_CONNECTIONS
            log.log(
                logging.WARNING if asked else logging.INFO,
                "node %s may open %d files: it takes at most %d client connections, not %d",
                self.options.node_id,
                soft,
                usable,
                self._max_connections,
            )
            self._max_connections = usable

    def _sweep(self) -> None:
        """Close connections idle too long or stuck in a frame; runs every fraction of the
        shortest of those timeouts."""
        opts = self.options
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self._conns):
            conn.check_timeouts(now)
        if self._waiting:
            self._make_room()
        period = max(0.05, min(1.0, opts.idle_timeout / 4, opts.frame_timeout / 4))
        self._sweeper = loop.call_later(period, self._sweep)

    # ---- admission -------------------------------------------------------------------------

    def _reshare(self) -> None:
        # A client connection's fair share of the limit, kept as client connections come and go.
        self._share = max(1, self._limit // max(1, len(self._clients)))

    def may_refuse(self, now: float) -> bool:
        """Whether a refusal fits the budget now (then the caller may read a frame it may
        have to refuse)."""
        if self._tokens < 1:
            rate = self.options.refusals
            self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
        return self._tokens >= 1

    def wait_for_room(self, conn: _Connection) -> None:
        """``conn`` is not read until the node has room for its requests; one that waited
        already and found none keeps its place at the head of the line."""
        self._waiting[conn] = None
        if conn.waited:
            self._waiting.move_to_end(conn, last=False)
        conn.waited = True
        conn.pause("room")

    def _make_room(self) -> None:
        # Resume waiting connections, oldest first, as many as there is room for (counting
        # those resumed whose frames are not yet taken: they are read after this step).
        room = 2 * self._limit - self._inflight_total - self._resuming
        while room > 0 and self._waiting:
            conn, _ = self._waiting.popitem(last=False)
            conn.resuming = True
            self._resuming += 1
            conn.unpause("room")
            room -= 1

    def admit(self, conn: _Connection) -> bool:
        """Whether a request of ``conn`` may go into the node; counted when it may. Past
        twice the limit it may not: the excess is refused. (A connection past its share is
        not even read while the node is at the limit: ``_Connection._process``.)"""
        if self._inflight_total >= 2 * self._limit:
            self._tokens -= 1
            return False
        self._inflight[conn.client_id] = self._inflight.get(conn.client_id, 0) + 1
        self._inflight_total += 1
        return True

    def inflight(self, client: int) -> int:
        return self._inflight.get(client, 0)

    def _answered(self, client: int) -> None:
        mine = self._inflight.get(client)
        if mine is None:
            return
        if mine == 1:
            del self._inflight[client]
        else:
            self._inflight[client] = mine - 1
        self._inflight_total -= 1
        limit = self._limit
        conn = self._clients.get(client)
        if conn is not None:
            # Read again once half its share is answered, or the node has room: not after
            # every answer.
            left = mine - 1
            roomy = self._inflight_total <= limit // 2
            conn.answered(left, left <= self._share // 2 or roomy)
        if self._waiting and self._inflight_total + self._resuming < 2 * limit:
            self._make_room()


# Admin requests that change the cluster: with a cluster secret, only admins may send them.
ADMIN_CHANGES = (Join, Leave, SetClockSkew)


class _Connection(asyncio.Protocol):
    """One accepted connection: handshake first, then a client's or a peer's frames."""

    def __init__(self, server: NodeServer) -> None:
        self.server = server
        # Until the handshake is done, a frame is a handshake message: a few KiB at most.
        self.decoder = FrameDecoder(min(MAX_HANDSHAKE, server.options.max_frame))
        self.transport: asyncio.Transport | None = None
        self.state = "hello"  # -> "client" | "proof" -> "peer" or "client"; "closed"
        self.hello: Hello | None = None
        self.welcome: Welcome | None = None
        self.client_id = 0
        self.admin = False  # proved the cluster secret (or the node has none)
        self.peer = ""
        self.invalid = 0  # frames that did not decode
        self._deadline: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.last_rx = self._loop.time()  # when bytes last arrived
        self.progress_at = self.last_rx  # when the frame being read began, or the last ended
        self._paused: set[str] = set()  # why it is not read: "write", "share", "room"
        self._counted = False  # against the server's max_connections
        self._accounted = 0  # bytes of this connection in the server's buffered total
        self._eof = False
        self.waited = False  # it was held back, and has frames from then still to take
        self.resuming = False  # resumed for room, not yet read
        self._out: list[bytes] = []  # frames to write at the end of this tick

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but speak its interface.
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        server._conns.add(self)
        if server._guests >= server._max_connections:
            self.refuse(
                ErrorCode.OVERLOAD,
                f"{server._guests} client connections are open at {server.options.node_id}, "
                "its limit: try again later",
            )
            return
        server._guests += 1
        self._counted = True
        self._deadline = self._loop.call_later(
            server.options.handshake_timeout, self._handshake_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self.state = "closed"
        self.server._conns.discard(self)
        if self.client_id:
            self.server._unregister(self.client_id)

    def pause_writing(self) -> None:
        # A client that does not read its replies stops being read: no unbounded buffers.
        self.pause("write")

    def resume_writing(self) -> None:
        self.unpause("write")

    def data_received(self, data: bytes) -> None:
        if self.state == "closed":
            return
        now = self._loop.time()
        self.last_rx = now
        decoder = self.decoder
        if not decoder.buffered:
            self.progress_at = now
        decoder.receive(data)
        self._process(now)

    def eof_received(self) -> bool | None:
        # Half closed: what it sent is still served, then the connection closes.
        self._eof = True
        self._process()
        return True

    # ---- frames ------------------------------------------------------------------------------

    def _process(self, now: float = 0.0) -> None:
        """Take the whole frames received, one at a time, until none is left, the
        connection is paused or it is closed."""
        decoder = self.decoder
        done = decoder.frames
        server = self.server
        if self.resuming:
            self.resuming = False
            server._resuming -= 1
        limit = server._limit
        while self.state != "closed" and not self._paused:
            # Past its share while the node is full: not read until answers come back.
            if server._inflight_total >= limit and self.state == "client":
                if server.inflight(self.client_id) >= server._share:
                    # Past its share while the node is full: read again as answers come.
                    self.waited = True
                    self.pause("share")
                    break
                if server._inflight_total >= 2 * limit and (
                    self.waited or not server.may_refuse(now or self._loop.time())
                ):
                    # Refused at once up to a budget; past it, held back by TCP until there is
                    # room. What was held back is not refused after it waited.
                    server.wait_for_room(self)
                    break
            try:
                frame = decoder.next_frame()
            except FrameError as e:
                self.refuse(e.code, e.message)
                return
            if frame is None:
                self.waited = False  # all it sent while held back has been taken
                break
            try:
                state = self.state
                if state == "peer":
                    self.peer_frame(frame)
                elif state == "client":
                    self.client_frame(frame)
                else:
                    self.handshake(frame)
            except Exception:
                # A frame nothing above foresaw: refuse this connection, keep the node.
                log.exception("unexpected failure on a frame from %s", self.peer or "a client")
                self.refuse(ErrorCode.MALFORMED, "the frame could not be processed")
                return
        if self.state == "closed":
            return
        if decoder.frames != done:
            self.progress_at = now or self._loop.time()
        buffered = decoder.buffered
        if buffered or self._accounted:
            self._account()
            if (
                buffered > BUFFER_FREE
                and self.state != "peer"
                and server._buffered_total > server.options.max_buffered
            ):
                self.refuse(
                    ErrorCode.OVERLOAD,
                    f"{server._buffered_total} bytes of unfinished frames are buffered at "
                    f"{server.options.node_id}, past its limit: send the frame again later",
                )
                return
        if self._eof:
            self._finish()

    def _finish(self) -> None:
        # After EOF: close once every frame is served and every request answered.
        if self._paused or self.state == "closed":
            return
        if self.decoder.buffered:
            self.refuse(
                ErrorCode.MALFORMED,
                f"truncated frame: the connection ended {self.decoder.buffered} bytes into it",
            )
        elif not self.server.inflight(self.client_id):
            self.close()

    def handshake(self, frame: bytes) -> None:
        """A frame before the handshake is done (``_process`` hands clients' and peers' frames
        to their own handlers); one that breaks it closes the connection."""
        try:
            self.handshake_frame(frame)
        except HandshakeError as e:
            self.refuse(e.code, e.message)

    def client_frame(self, frame: bytes) -> None:
        server = self.server
        opts = server.options
        try:
            msg = decode_client(frame, opts.max_frame)
        except MessageError as e:
            self.send(encode(ErrorReply(e.code.value, e.message, e.rid)))
            self.invalid += 1
            if e.code is ErrorCode.MALFORMED:
                self.close()  # not our language: nothing more it sends can be trusted
            elif self.invalid >= opts.max_invalid:
                self.refuse(
                    ErrorCode.INVALID_REQUEST,
                    f"{self.invalid} frames on this connection were not valid requests: closing it",
                )
            return
        if isinstance(msg, ADMIN_CHANGES) and opts.secret is not None and not self.admin:
            self.send(
                encode(
                    ErrorReply(
                        ErrorCode.UNAUTHORIZED,
                        f"{type(msg).__name__.lower()} changes the cluster: connect as an "
                        "admin, proving the cluster secret",
                        msg.rid,
                    )
                )
            )
            return
        if not server.admit(self):
            if not server._overload:
                server._overload = (
                    f"{2 * server._limit} requests in flight at {opts.node_id}, its limit: "
                    "try again later"
                )
            self.send(encode(ErrorReply(ErrorCode.OVERLOAD, server._overload, msg.rid)))
            return
        server.handle(ClientRequest(self.client_id, msg))

    def peer_frame(self, frame: bytes) -> None:
        try:
            msg = decode_peer(frame, self.server.options.max_frame)
        except MessageError as e:
            log.warning("peer %s sent a bad frame: %s", self.peer, e)
            self.refuse(e.code, e.message)
            return
        self.server.handle(PeerReceived(self.peer, msg))

    def handshake_frame(self, frame: bytes) -> None:
        server = self.server
        opts = server.options
        msg = decode_handshake(frame)
        if self.state == "hello":
            hello = check_hello(msg, secret=opts.secret, client_token=opts.client_token)
            nonce = new_nonce()
            proof = b""
            if hello.role != "client" and opts.secret is not None:
                proof = acceptor_proof(opts.secret, hello, nonce, opts.node_id)
            self.hello = hello
            self.welcome = Welcome(hello.version, opts.node_id, nonce, proof)
            self.send(encode_handshake(self.welcome))
            if hello.role == "client":
                self.state = "client"
                self.client_id = server._register(self)
                self._handshake_done()
            else:
                self.state = "proof"
        elif self.state == "proof":
            assert self.hello is not None
            assert self.welcome is not None
            if opts.secret is not None:
                assert len(self.welcome.nonce) == NONCE_BYTES
                check_proof(msg, connector_proof(opts.secret, self.hello, self.welcome))
            self.send(encode_handshake(Ready()))
            self._handshake_done()
            if self.hello.role == "admin":
                self.admin = True
                self.state = "client"
                self.client_id = server._register(self)
            else:
                self.state = "peer"
                self.peer = self.hello.node
                if opts.secret is not None and self._counted:
                    # A proven peer does not take a client's place.
                    self._counted = False
                    server._guests -= 1

    def _handshake_done(self) -> None:
        self.decoder.max_frame = self.server.options.max_frame
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _handshake_timeout(self) -> None:
        if self.state in ("hello", "proof"):
            timeout = self.server.options.handshake_timeout
            self.refuse(ErrorCode.TIMEOUT, f"no handshake within {timeout:g}s")

    def check_timeouts(self, now: float) -> None:
        """Close this connection if a frame is stuck half sent, or a client is idle."""
        if self.state not in ("client", "peer") or self._paused:
            return
        opts = self.server.options
        if self.decoder.buffered and now - self.progress_at > opts.frame_timeout:
            self.refuse(
                ErrorCode.TIMEOUT,
                f"a frame started {now - self.progress_at:.1f}s ago is still not whole "
                f"(the limit is {opts.frame_timeout:g}s)",
            )
        elif (
            self.state == "client"
            and not self.decoder.buffered
            and not self.server.inflight(self.client_id)
            and now - self.last_rx > opts.idle_timeout
        ):
            self.refuse(ErrorCode.TIMEOUT, f"idle for {opts.idle_timeout:g}s: closing")

    # ---- flow control ------------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def unpause(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if self._paused or self.state == "closed":
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.progress_at = self._loop.time()  # paused time is not the sender's
        # Frames already received are taken after this step, not inside it.
        self._loop.call_soon(self._process)

    def answered(self, inflight: int, resume: bool) -> None:
        """One of this connection's requests was answered; ``inflight`` are left."""
        if resume:
            self.unpause("share")
        if self._eof and not inflight:
            self._loop.call_soon(self._finish)

    def _account(self) -> None:
        buffered = self.decoder.buffered
        self.server._buffered_total += buffered - self._accounted
        self._accounted = buffered

    def _release(self) -> None:
        self.server._waiting.pop(self, None)
        if self.resuming:
            self.resuming = False
            self.server._resuming -= 1
        self.decoder.clear()
        self._account()
        if self._counted:
            self._counted = False
            self.server._guests -= 1
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # ---- output ------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        # The tick's replies on this connection go out in one write, at the end of the tick.
        if self.transport is not None and not self.transport.is_closing():
            if not self._out:
                self._loop.call_soon(self._flush_out)
            self._out.append(encode_frame(payload))

    def _flush_out(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def refuse(self, code: str, message: str) -> None:
        """Answer with an error and close: the connection cannot go on."""
        self.send(encode(ErrorReply(code, message)))
        self.close()

    def close(self) -> None:
        self.state = "closed"
        self._release()
        if self.transport is not None:
            self._flush_out()
            self.transport.close()  # after what is buffered is written


def _answer_failed(event: Event) -> list[Effect]:
    """When the core raised on ``event``: the answer its sender is owed (none for a timer)."""
    message = "the node failed on this request (its log says why); it serves on"
    if isinstance(event, ClientRequest):
        return [
            Reply(event.client, ErrorReply(ErrorCode.INTERNAL_ERROR, message, rid_of(event.msg)))
        ]
    if isinstance(event, PeerReceived) and isinstance(event.msg, Forward):
        rid = rid_of(event.msg.request)
        reply = ErrorReply(ErrorCode.INTERNAL_ERROR, message, rid)
        return [Send(event.src, ForwardReply(event.msg.fid, reply))]
    return []


def _not_stored(msg: ReplyMessage, error: Exception) -> ReplyMessage:
    """A reply held behind a batch that failed: a ``PutOk`` becomes ``storage_error``."""
    if not isinstance(msg, PutOk):
        return msg
    return ErrorReply(
        ErrorCode.STORAGE_ERROR, f"the write could not be stored durably: {error}", msg.rid
    )


async def serve(options: ServerOptions) -> None:
    """Start a node and serve until cancelled or sent SIGTERM/SIGINT; then stop cleanly."""
    server = NodeServer(options)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, done.set)
            installed.append(sig)
    try:
        await done.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.stop()


def run(options: ServerOptions) -> None:
    """``serve`` on uvloop when it is installed (the process's entry point)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))
