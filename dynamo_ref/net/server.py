"""The asyncio node server: the TCP driver of ``core.node.Node``.

It holds no protocol logic. Connections, frames and timers become events for
``Node.handle(event, now)``; the effects that come back are carried out in order:

- ``Send`` goes to the peer's ``PeerLink``, ``Reply`` to the client's connection;
- ``Persist``, ``PersistHint``, ``DropHint``, ``PersistMeta`` go to the durable store;
- ``SetTimer``/``CancelTimer`` become ``loop.call_at`` handles; ``Action`` is ignored.

Group commit: the durable effects of every event handled in one loop tick are applied as one
batch in a worker thread (one batch at a time). A ``Send`` or ``Reply`` that comes after a
durable effect not yet applied is held until it is, so an acknowledgement never leaves before
what it acknowledges is durable; one with no durable effect ahead of it goes at once.

Bootstrapping the ring is the core's (``core.node.members``): with ``members`` every node
starts from ``NodeConfig.initial_ring`` over their ids, so all agree without gossip; a
restarted node resumes the ring its saved view describes; a node with only ``seeds`` hands the
core one seed handle per address (``seed@HOST:PORT``, which ``peer_address`` resolves), and the
core asks them to let it join. With neither, the node is a one-node cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import msgspec

from dynamo_ref.core.effects import (
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
    TimerFired,
    TimerId,
)
from dynamo_ref.core.messages import (
    ErrorCode,
    ErrorReply,
    Join,
    Leave,
    MessageError,
    SetClockSkew,
    decode_client,
    decode_peer,
    encode,
)
from dynamo_ref.core.node import Node, NodeConfig
from dynamo_ref.core.ring import Ring
from dynamo_ref.net.connect import split_address
from dynamo_ref.net.framing import MAX_FRAME, FrameDecoder, FrameError, encode_frame
from dynamo_ref.net.handshake import (
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
from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.memory import MemoryEngine

log = logging.getLogger("dynamo_ref.net")

_DURABLE: Final = (Persist, PersistHint, DropHint, PersistMeta)
_OUTBOUND: Final = (Send, Reply)
# A connection that has not finished its handshake by then is closed.
HANDSHAKE_TIMEOUT: Final = 10.0
# How the core names a seed it knows only by address (it learns the seed's id from gossip).
SEED_PREFIX: Final = "seed@"


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


class NodeServer:
    """One node listening on TCP (see the module docstring)."""

    def __init__(self, options: ServerOptions) -> None:
        if not options.node_id:
            raise ValueError("a node needs an id")
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
        self._held: list[Effect] = []  # durable effects, and what must wait for them, in order
        self._held_durable = False
        self._writing: asyncio.Task[None] | None = None
        self._flush_soon = False
        self._unreachable: set[str] = set()
        self._stopped = False
        self.batches = 0  # durable batches written (group commit: fewer than durable events)

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
            time.time(),
            engine=MemoryEngine,
            addresses=self._book,
            zone=opts.zone,
        )
        self._apply(self._node.start(time.time()))
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
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for link in self._links.values():
            await link.close()
        while self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
        if self._held_durable:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.apply, self._durables(self._held))
        self._held.clear()
        await asyncio.to_thread(self.store.close)

    # ---- events in -----------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self._stopped or self._node is None:
            return
        try:
            effects = self._node.handle(event, time.time())
        except Exception:
            # A bug in the core must not take the node down: log it, keep serving.
            log.exception("node %s failed on %r", self.options.node_id, event)
            return
        self._apply(effects)

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
            if isinstance(e, _OUTBOUND):
                if self._held_durable or self._writing is not None:
                    self._held.append(e)
                else:
                    self._out(e)
            elif isinstance(e, _DURABLE):
                self._held.append(e)
                self._held_durable = True
                if self._writing is None and not self._flush_soon:
                    # After the rest of this tick's events: their effects join the batch.
                    self._flush_soon = True
                    asyncio.get_running_loop().call_soon(self._flush)
            elif isinstance(e, SetTimer):
                self._set_timer(e.timer, e.at)
            elif isinstance(e, CancelTimer):
                handle = self._timers.pop(e.timer, None)
                if handle is not None:
                    handle.cancel()

    def _set_timer(self, timer: TimerId, at: float) -> None:
        old = self._timers.pop(timer, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timers[timer] = loop.call_at(loop.time() + delay, self._fire, timer)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._writing is not None or self._stopped:
            return
        held, self._held = self._held, []
        self._held_durable = False
        start = 0
        while start < len(held) and isinstance(held[start], _OUTBOUND):
            self._out(held[start])  # behind nothing unwritten: the last batch is done
            start += 1
        batch = held[start:]
        if not batch:
            return
        self._writing = asyncio.get_running_loop().create_task(self._write(batch))

    async def _write(self, batch: list[Effect]) -> None:
        try:
            await asyncio.to_thread(self.store.apply, self._durables(batch))
        except Exception:
            # Nothing after the failed batch may claim it is durable: its replies are dropped
            # and the clients time out, as after a crash.
            log.exception("node %s could not write a batch", self.options.node_id)
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
                if isinstance(e, _OUTBOUND):
                    self._out(e)

    @staticmethod
    def _durables(effects: Sequence[Effect]) -> list[Effect]:
        return [e for e in effects if isinstance(e, _DURABLE)]

    def _out(self, e: Effect) -> None:
        if isinstance(e, Send):
            if self._stopped:
                return
            link = self._links.get(e.dest)
            if link is None:
                link = self._links[e.dest] = PeerLink(
                    e.dest,
                    self.peer_address,
                    self._report_unreachable,
                    node_id=self.options.node_id,
                    secret=self.options.secret,
                    queue_limit=self.options.peer_queue,
                    max_frame=self.options.max_frame,
                )
            link.send(encode(e.msg))
        elif isinstance(e, Reply):
            conn = self._clients.get(e.client)
            if conn is not None:
                conn.send(encode(e.msg))

    def peer_address(self, peer: str) -> str | None:
        """Where ``peer`` listens: its fixed route, else the membership view's address, else
        the one configured."""
        route = self.options.routes.get(peer)
        if route is not None:
            return route
        if self._node is not None:
            state = self._node.membership.get(peer)
            if state is not None:
                try:
                    split_address(state.address)
                except ValueError:
                    pass
                else:
                    return state.address
        return self._book.get(peer)

    # ---- connections -----------------------------------------------------------------------

    def _register(self, conn: _Connection) -> int:
        cid = next(self._client_ids)
        self._clients[cid] = conn
        return cid


# Admin requests that change the cluster: with a cluster secret, only admins may send them.
ADMIN_CHANGES = (Join, Leave, SetClockSkew)


class _Connection(asyncio.Protocol):
    """One accepted connection: handshake first, then a client's or a peer's frames."""

    def __init__(self, server: NodeServer) -> None:
        self.server = server
        opts = server.options
        self.decoder = FrameDecoder(opts.max_frame)
        self.transport: asyncio.Transport | None = None
        self.state = "hello"  # -> "client" | "proof" -> "peer" or "client"; "closed"
        self.hello: Hello | None = None
        self.welcome: Welcome | None = None
        self.client_id = 0
        self.admin = False  # proved the cluster secret (or the node has none)
        self.peer = ""
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but speak its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.server._conns.add(self)
        self._deadline = asyncio.get_running_loop().call_later(
            HANDSHAKE_TIMEOUT, self._handshake_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        self.server._conns.discard(self)
        if self.client_id:
            self.server._clients.pop(self.client_id, None)
        if self._deadline is not None:
            self._deadline.cancel()

    def pause_writing(self) -> None:
        # A client that does not read its replies stops being read: no unbounded buffers.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FrameError as e:
            self.refuse(e.code, e.message)
            return
        for frame in frames:
            if self.state == "closed":
                return
            try:
                self.frame(frame)
            except Exception:
                # A frame nothing above foresaw: refuse this connection, keep the node.
                log.exception("unexpected failure on a frame from %s", self.peer or "a client")
                self.refuse(ErrorCode.MALFORMED, "the frame could not be processed")

    def eof_received(self) -> bool | None:
        if self.decoder.buffered and self.state != "closed":
            self.refuse(
                ErrorCode.MALFORMED,
                f"truncated frame: the connection ended {self.decoder.buffered} bytes into it",
            )
        return None

    def frame(self, frame: bytes) -> None:
        if self.state == "client":
            self.client_frame(frame)
        elif self.state == "peer":
            self.peer_frame(frame)
        else:
            try:
                self.handshake_frame(frame)
            except HandshakeError as e:
                self.refuse(e.code, e.message)

    def client_frame(self, frame: bytes) -> None:
        try:
            msg = decode_client(frame, self.server.options.max_frame)
        except MessageError as e:
            self.send(encode(ErrorReply(e.code.value, e.message, _guess_rid(frame))))
            if e.code is ErrorCode.MALFORMED:
                self.close()  # not our language: nothing more it sends can be trusted
            return
        if (
            isinstance(msg, ADMIN_CHANGES)
            and self.server.options.secret is not None
            and not self.admin
        ):
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
        self.server.handle(ClientRequest(self.client_id, msg))

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

    def _handshake_done(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _handshake_timeout(self) -> None:
        if self.state in ("hello", "proof"):
            self.refuse(ErrorCode.TIMEOUT, f"no handshake within {HANDSHAKE_TIMEOUT:g}s")

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(payload))

    def refuse(self, code: str, message: str) -> None:
        """Answer with an error and close: the connection cannot go on."""
        self.send(encode(ErrorReply(code, message)))
        self.close()

    def close(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()  # after what is buffered is written


def _guess_rid(frame: bytes) -> int:
    """The request id of a frame that did not validate, if it has a readable one."""
    try:
        raw = msgspec.msgpack.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return 0
    rid = raw.get("rid") if isinstance(raw, dict) else None
    return rid if type(rid) is int and 0 <= rid < 1 << 63 else 0


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
