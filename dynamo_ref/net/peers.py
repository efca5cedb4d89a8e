"""Outgoing links to peers: one connection per peer, reused, re-opened with backoff.

A link queues frames for its peer (bounded: the oldest is dropped when full, since the
protocol copes with loss and a stale message is the least useful) and writes them with the
transport's flow control. While connected, the frames queued in one loop tick go out in one
write at the end of the tick, without waking the link's task (a wake-up per message cost more
than the message); the task takes over when the transport pushes back. While the peer cannot
be reached, frames are dropped at once and the node is told (``on_unreachable``) so that it
routes around the peer instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from dynamo_ref.net.connect import FramedStream, connect
from dynamo_ref.net.framing import MAX_FRAME, FrameError, encode_frame
from dynamo_ref.net.handshake import HandshakeError

log = logging.getLogger("dynamo_ref.net")

QUEUE_LIMIT = 10_000
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
CLOSE_RETRY = 0.1  # seconds between cancels of a link's task that has not ended


class PeerLink:
    """The link from this node to ``peer`` (see the module docstring)."""

    def __init__(
        self,
        peer: str,
        resolve: Callable[[str], list[str]],
        on_unreachable: Callable[[str], None],
        *,
        node_id: str,
        secret: bytes | None,
        queue_limit: int = QUEUE_LIMIT,
        max_frame: int = MAX_FRAME,
        connect_timeout: float = 2.0,
    ) -> None:
        self.peer = peer
        self._resolve = resolve
        self._on_unreachable = on_unreachable
        self._node_id = node_id
        self._secret = secret
        self._max_frame = max_frame
        self._timeout = connect_timeout
        self._queue: deque[bytes] = deque(maxlen=queue_limit)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down = False  # between a failed attempt and the next one
        self._closed = False
        self._stream: FramedStream | None = None  # while connected
        self._flush_soon = False
        self.dropped = 0
        self.connects = 0

    def send(self, payload: bytes) -> None:
        if self._closed:
            return
        if self._down:
            self.dropped += 1
            self._on_unreachable(self.peer)
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(payload)
        if self._stream is None:
            self._wake.set()
        elif not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self._task is None or self._task.done():
            # A link whose task ended on a failure nothing foresaw starts again: a dead task
            # would queue this peer's frames forever while the peer hears nothing.
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _flush(self) -> None:
        """The tick's frames in one write, unless the transport pushes back (the task drains
        it) or the connection is going (the task finds out)."""
        self._flush_soon = False
        stream = self._stream
        if stream is None or not self._queue:
            return
        transport = stream.writer.transport
        if transport.is_closing() or (
            transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1]
        ):
            self._wake.set()
            return
        try:
            stream.writer.write(self._frames())
        except (OSError, RuntimeError):
            self._wake.set()

    def _frames(self) -> bytes:
        queue = self._queue
        frames = b"".join([encode_frame(p) for p in queue])
        queue.clear()
        return frames

    async def close(self) -> None:
        self._closed = True
        task = self._task
        if task is None:
            return
        # Cancelled until it ends: an await that swallows a cancel (Python 3.11's wait_for did,
        # under ``connect``) would leave the link pumping a connection until the peer closes
        # it, and peers closing one by one (a cluster's stop) would wait on each other forever.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_RETRY)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while not self._closed:
            await self._wake.wait()
            try:
                stream = await self._open()
            except Exception:
                # Counted as a failed attempt: the link must outlive whatever one raises.
                log.exception("connecting to peer %s failed unexpectedly", self.peer)
                stream = None
            if stream is None:
                self._fail()
                self._down = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self._down = False
                continue
            backoff = BACKOFF_MIN
            self.connects += 1
            self._stream = stream
            try:
                await self._pump(stream)
            except (OSError, FrameError, RuntimeError) as e:
                # uvloop raises RuntimeError for a write to a transport that has closed.
                log.debug("link to %s lost: %s", self.peer, e)
            finally:
                self._stream = None
                stream.close()
            if not self._closed:
                self._fail()

    async def _open(self) -> FramedStream | None:
        # Where the peer may listen, likeliest first: after both ends of a link restarted at
        # new ports, the gossiped address is stale and only the configured one answers.
        addresses = self._resolve(self.peer)
        if not addresses:
            log.warning("no address known for peer %s", self.peer)
            return None
        for address in addresses:
            try:
                stream, _ = await connect(
                    address,
                    "peer",
                    node=self._node_id,
                    secret=self._secret,
                    timeout=self._timeout,
                    max_frame=self._max_frame,
                )
            except HandshakeError as e:
                log.warning("peer %s at %s refused the handshake: %s", self.peer, address, e)
                return None
            except (OSError, FrameError, ValueError, RuntimeError) as e:
                # uvloop raises RuntimeError when the peer resets the connection during the
                # handshake (a proxy or a node that accepts and then dies).
                log.debug("cannot reach peer %s at %s: %s", self.peer, address, e)
                continue
            return stream
        return None

    async def _pump(self, stream: FramedStream) -> None:
        # The peer sends nothing on this connection: a read that returns means it closed.
        closed = asyncio.ensure_future(stream.reader.read(1))
        try:
            while True:
                if self._queue:
                    stream.writer.write(self._frames())
                await stream.writer.drain()
                if closed.done():
                    raise ConnectionResetError("peer closed the connection")
                self._wake.clear()
                if self._queue:
                    continue
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            closed.cancel()

    def _fail(self) -> None:
        self.dropped += len(self._queue)
        self._queue.clear()
        self._wake.clear()
        self._on_unreachable(self.peer)
