"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

Sans-I/O like the node: ``FrameDecoder.feed`` takes whatever bytes arrived and returns the
whole payloads among them; the caller owns the socket.
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
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = -1  # payload length of the frame being read, -1 while in its header

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a whole frame (nonzero at EOF: truncated)."""
        return len(self._buf) + (HEADER if self._need >= 0 else 0)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while True:
            if self._need < 0:
                if len(buf) - pos < HEADER:
                    break
                need = int.from_bytes(buf[pos : pos + HEADER], "big")
                pos += HEADER
                if need == 0:
                    # An empty payload is never a message: the sender is not speaking our framing.
                    self._fail(ErrorCode.MALFORMED, "a frame of length 0")
                if need > self.max_frame:
                    self._fail(
                        ErrorCode.TOO_LARGE,
                        f"frame of {need} bytes exceeds the limit of {self.max_frame}",
                    )
                self._need = need
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        if pos:
            del buf[:pos]
        return out

    def _fail(self, code: ErrorCode, message: str) -> None:
        self._buf.clear()
        self._need = -1
        raise FrameError(code.value, message)
