"""The connecting side of a connection: open, handshake, then framed send and receive.

Used by peer links and by the client library; the accepting side is in ``server``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque

from dynamo_ref.core.messages import ErrorCode, ErrorReply
from dynamo_ref.net.framing import MAX_FRAME, FrameDecoder, encode_frame
from dynamo_ref.net.handshake import (
    PROTOCOL_VERSION,
    HandshakeError,
    Hello,
    Proof,
    Ready,
    Role,
    Welcome,
    acceptor_proof,
    connector_proof,
    decode_handshake,
    encode_handshake,
    new_nonce,
)

READ_CHUNK = 1 << 16


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` as (host, port).

    :raises ValueError: not of that form.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


class FramedStream:
    """Frames over an asyncio stream pair."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = FrameDecoder(max_frame)
        self._ready: deque[bytes] = deque()

    async def recv(self) -> bytes:
        """The next payload.

        :raises ConnectionError: the other side closed (mid-frame or not).
        :raises FrameError: the other side does not speak our framing.
        """
        while not self._ready:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("connection closed")
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    def send(self, payload: bytes) -> None:
        self.writer.write(encode_frame(payload))

    def close(self) -> None:
        self.writer.close()


async def connect(
    address: str,
    role: Role,
    *,
    node: str = "",
    secret: bytes | None = None,
    token: str | None = None,
    timeout: float = 5.0,
    max_frame: int = MAX_FRAME,
) -> tuple[FramedStream, Welcome]:
    """Connect and handshake as ``role``; a peer gets through only once ``Ready`` arrives.

    :raises HandshakeError: the other side refused us, or could not prove the secret.
    :raises OSError: no connection (``TimeoutError`` too).
    """
    host, port = split_address(address)
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the connection instead of
    # raising a cancel that meets its completion, and the caller runs on after being cancelled.
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
    stream = FramedStream(reader, writer, max_frame)
    try:
        async with asyncio.timeout(timeout):
            welcome = await _handshake(stream, role, node, secret, token)
    except BaseException:
        stream.close()
        raise
    return stream, welcome


async def _handshake(
    stream: FramedStream, role: Role, node: str, secret: bytes | None, token: str | None
) -> Welcome:
    hello = Hello(PROTOCOL_VERSION, role, node, new_nonce(), token or "")
    stream.send(encode_handshake(hello))
    welcome = decode_handshake(await stream.recv())
    _refused(welcome)
    if not isinstance(welcome, Welcome):
        raise HandshakeError(ErrorCode.MALFORMED, "expected a welcome")
    if role == "client":
        return welcome
    if secret is None:
        stream.send(encode_handshake(Proof(b"")))
    else:
        # Both directions: a node that cannot prove the secret gets no replicas from us.
        if not hmac.compare_digest(
            welcome.proof, acceptor_proof(secret, hello, welcome.nonce, welcome.node)
        ):
            raise HandshakeError(
                ErrorCode.UNAUTHORIZED, f"{welcome.node!r} does not know the cluster secret"
            )
        stream.send(encode_handshake(Proof(connector_proof(secret, hello, welcome))))
    ready = decode_handshake(await stream.recv())
    _refused(ready)
    if not isinstance(ready, Ready):
        raise HandshakeError(ErrorCode.MALFORMED, "expected ready")
    return welcome


def _refused(msg: object) -> None:
    if isinstance(msg, ErrorReply):
        raise HandshakeError(msg.code, msg.message)
