"""The proxy backend (the default; needs no privileges): one asyncio TCP proxy per directed link.

Every node listens on its own loopback port. For each directed link (A, B) the proxy listens on
another loopback port and forwards to B's real port; A must be configured to reach B at
`address_for(A, B)`. A TCP connection carries bytes both ways, so:

- A connection's A->B byte stream obeys the (A, B) link's faults and its B->A stream the
  (B, A) link's, whoever opened it. A one-way cut therefore silences one direction of an open
  connection while the other keeps flowing.
- cut: bytes in a cut direction are discarded, not buffered (a partition loses what is sent
  across it). Open connections are not reset when the cut starts (peers notice by their own
  timeouts, as on a real partition), but a connection that lost bytes is reset (RST) as soon as
  its direction heals, so no peer ever reads a stream with a hole in it. A new connection while
  either direction of its link is cut is accepted locally but never reaches the destination
  (a TCP handshake needs both directions); it is reset when the link heals.
- delay: each chunk is forwarded `delay + uniform(0, jitter)` after it was read, in order.
- drop p: each chunk is lost with probability p, and losing bytes of a stream kills the
  connection: the proxy resets it. p = 1 lets nothing through.
- slow: the direction forwards at most `bytes_per_second`.

Lost messages. Given `frame_header` (the bytes of a frame's big-endian length prefix) and
`on_lost`, the proxy follows each direction's frames and calls `on_lost(link, payload)` for each
frame it lost a byte of to a cut (when the frame's last byte has gone by), so whoever injects
the faults can log which messages the network dropped. Bytes lost with a connection that a
`drop` fault reset are not followed: the frames they belonged to never end.

The proxy runs on its own event loop in a background thread (`start`/`stop`, or a `with`
block), so synchronous harness code can drive it; `start_async`/`stop_async` run it on the
caller's loop instead. Fault changes may come from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from harness.net.network import Link, Network, NetworkError

__all__ = ["ProxyNetwork"]

_T = TypeVar("_T")
_CHUNK = 65536
_LOOPBACK = "127.0.0.1"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, so the peer sees a reset rather than a clean end of stream."""
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Frames:
    """Frame boundaries of one direction's stream, and which frames lost bytes."""

    def __init__(self, header: int) -> None:
        self.header = header
        self._buf = bytearray()
        self._need: int | None = None  # payload length, once the header is read
        self._lost = False

    def feed(self, data: bytes, lost: bool) -> list[bytes]:
        """The payloads of the frames this chunk ends that lost any byte."""
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            want = self.header if self._need is None else self._need
            take = min(want - len(self._buf), len(data) - pos)
            self._buf += data[pos : pos + take]
            pos += take
            self._lost |= lost
            if len(self._buf) < want:
                break
            if self._need is None:
                self._need = int.from_bytes(self._buf, "big")
                self._buf.clear()
                if self._need:
                    continue
            if self._lost:
                out.append(bytes(self._buf))
            self._buf.clear()
            self._need, self._lost = None, False
        return out


LostHook = Callable[[Link, bytes], None]


class _Conn:
    """One proxied connection on link (opener, acceptor)."""

    def __init__(self, link: Link, client: asyncio.StreamWriter) -> None:
        self.link = link
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.lost: set[Link] = set()  # directions that discarded bytes
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class ProxyNetwork(Network):
    """Proxies for every directed link between `nodes` (name -> the node's real address)."""

    def __init__(
        self,
        nodes: Mapping[str, tuple[str, int]],
        *,
        seed: int | None = None,
        frame_header: int | None = None,
        on_lost: LostHook | None = None,
    ) -> None:
        super().__init__(nodes)
        if (frame_header is None) != (on_lost is None):
            raise ValueError("frame_header and on_lost go together")
        self._frame_header = frame_header
        self._on_lost = on_lost
        self._targets = dict(nodes)
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[Link, asyncio.Server] = {}
        self._ports: dict[Link, int] = {}
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- addresses -------------------------------------------------------------------------

    def address_for(self, src: str, dst: str) -> tuple[str, int]:
        """Where node `src` must connect to reach node `dst`."""
        if (src, dst) not in self._ports:
            raise NetworkError(f"no proxy for link {(src, dst)!r} (started? nodes known?)")
        return _LOOPBACK, self._ports[(src, dst)]

    def listening_ports(self) -> dict[Link, int]:
        return dict(self._ports)

    def open_connections(self) -> int:
        return sum(not c.closed for c in self._conns)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start every proxy on a private event loop in a background thread."""
        if self._loop is not None:
            raise NetworkError("proxy network already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="proxy-network", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._call(self._open_servers())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every listener and connection, then end the background loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._close_all())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = None

    async def start_async(self) -> None:
        """Start every proxy on the running event loop."""
        if self._loop is not None:
            raise NetworkError("proxy network already started")
        self._loop = asyncio.get_running_loop()
        try:
            await self._open_servers()
        except BaseException:
            await self.stop_async()
            raise

    async def stop_async(self) -> None:
        if self._loop is None:
            return
        try:
            await self._close_all()
        finally:
            self._loop = None

    def __enter__(self) -> ProxyNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open_servers(self) -> None:
        for link in sorted(self.links()):
            server = await asyncio.start_server(functools.partial(self._accept, link), _LOOPBACK, 0)
            self._servers[link] = server
            self._ports[link] = server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        servers = list(self._servers.values())
        for server in servers:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        # Let the transports' close callbacks run before the loop stops.
        for _ in range(3):
            await asyncio.sleep(0)
        self._servers.clear()
        self._ports.clear()
        self._conns.clear()

    # -- faults ----------------------------------------------------------------------------

    def _apply(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._reset_healed)

    def _reset_healed(self) -> None:
        for conn in list(self._conns):
            if conn.lost and not any(self.is_cut(d) for d in conn.lost):
                conn.abort()
                self._conns.discard(conn)

    # -- forwarding ------------------------------------------------------------------------

    async def _accept(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(link, reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = _Conn(link, writer)
        self._conns.add(conn)
        src, dst = link
        back = (dst, src)
        if self.is_cut(link) or self.is_cut(back):
            conn.lost.add(link if self.is_cut(link) else back)
            await self._discard(conn, reader)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._targets[dst])
        except OSError:
            conn.abort()
            self._conns.discard(conn)
            return
        conn.server = up_writer
        if conn.closed:  # stopped while connecting
            _reset(up_writer)
            return
        loop = asyncio.get_running_loop()
        conn.tasks = [
            loop.create_task(self._pump(conn, link, reader, up_writer)),
            loop.create_task(self._pump(conn, back, up_reader, writer)),
        ]
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        if not conn.closed:
            conn.closed = True
            writer.close()
            up_writer.close()
        self._conns.discard(conn)

    async def _discard(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(_CHUNK):
                pass
        except OSError:
            pass
        finally:
            conn.abort()
            self._conns.discard(conn)

    async def _pump(
        self,
        conn: _Conn,
        direction: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Forward one direction: a reader side that applies faults, a writer side that paces."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=64)
        loop = asyncio.get_running_loop()
        writing = loop.create_task(self._write(conn, direction, queue, writer))
        last = 0.0
        follow = self._on_lost is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    await queue.put(None)
                    break
                if self.is_cut(direction):
                    conn.lost.add(direction)
                    if follow:
                        # Through the writer, which follows the frames in stream order.
                        await queue.put((-1.0, data))
                    continue
                f = self.faults(direction)
                if f.drop and self._rng.random() < f.drop:
                    conn.abort()
                    break
                due = loop.time() + f.delay
                if f.jitter:
                    due += self._rng.uniform(0.0, f.jitter)
                last = max(last, due)
                await queue.put((last, data))
            if not conn.closed:
                await writing
        except (OSError, asyncio.IncompleteReadError):
            conn.abort()
        finally:
            writing.cancel()

    def _follow(self, frames: _Frames | None, direction: Link, data: bytes, *, lost: bool) -> None:
        if frames is None or self._on_lost is None:
            return
        for payload in frames.feed(data, lost):
            self._on_lost(direction, payload)

    async def _write(
        self,
        conn: _Conn,
        direction: Link,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        frames = None if self._frame_header is None else _Frames(self._frame_header)
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                cut = due < 0  # discarded when read
                if not cut and (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if cut or self.is_cut(direction):  # cut while in flight
                    conn.lost.add(direction)
                    self._follow(frames, direction, data, lost=True)
                    continue
                self._follow(frames, direction, data, lost=False)
                rate = self.faults(direction).bytes_per_second
                if rate is None:
                    writer.write(data)
                    await writer.drain()
                    continue
                piece = max(1, int(rate / 20))
                for i in range(0, len(data), piece):
                    writer.write(data[i : i + piece])
                    await writer.drain()
                    await asyncio.sleep(min(piece, len(data) - i) / rate)
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            conn.abort()
