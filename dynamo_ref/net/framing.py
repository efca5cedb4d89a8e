"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

Sans-I/O like the node: ``FrameDecoder.receive`` takes whatever bytes arrived and
``next_frame`` hands out the whole payloads among them one at a time (``feed`` does both), so
the caller may stop taking frames (a connection past its share of requests) and may change
``max_frame`` between two frames (a small limit until the handshake is done). The caller owns
the socket.
"""

from __future__ import annotations

from typing import Final

from dynamo_ref.core.messages import ErrorCode

MAX_FRAME: Final = 16 << 20
HEADER: Final = 4


class FrameError(Exception):
    """A stream that cannot be framed any further; the connection must close."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


class FrameDecoder:
    """Bytes in, whole payloads out; a zero or oversized length raises ``FrameError``."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.max_frame = max_frame  # checked against each frame's header as it is read
        self._buf = bytearray()
        self._pos = 0  # start of the bytes not yet handed out
        self._need = -1  # payload length of the frame being read, -1 while in its header
        self.frames = 0  # whole frames handed out so far

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as a frame (nonzero at EOF: truncated)."""
        return len(self._buf) - self._pos + (HEADER if self._need >= 0 else 0)

    def receive(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next whole payload, or None until more bytes arrive.

        :raises FrameError: a length of zero or above ``max_frame``; the stream is unusable.
        """
        buf, pos = self._buf, self._pos
        if self._need < 0:
            if len(buf) - pos < HEADER:
                self._compact()
                return None
            need = int.from_bytes(buf[pos : pos + HEADER], "big")
            if need == 0:
                # An empty payload is never a message: the sender is not speaking our framing.
                self._fail(ErrorCode.MALFORMED, "a frame of length 0")
            if need > self.max_frame:
                self._fail(
                    ErrorCode.TOO_LARGE,
                    f"frame of {need} bytes exceeds the limit of {self.max_frame}",
                )
            self._need = need
            pos = self._pos = pos + HEADER
        if len(buf) - pos < self._need:
            self._compact()
            return None
        end = pos + self._need
        frame = bytes(buf[pos:end])
        self._pos = end
        self._need = -1
        self.frames += 1
        return frame

    def feed(self, data: bytes) -> list[bytes]:
        """``receive`` and every whole payload now available."""
        self.receive(data)
        out: list[bytes] = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def clear(self) -> None:
        """Drop what is buffered (the connection is closing)."""
        self._buf = bytearray()
        self._pos = 0
        self._need = -1

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _fail(self, code: ErrorCode, message: str) -> None:
        self.clear()
        raise FrameError(code.value, message)
