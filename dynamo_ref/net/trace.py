"""A node's own trace: one JSON line per step, what this process saw and did, no global state.

The per-process format (docs/trace-format.md, version 2). The first line is a header (the
node, its settings, the start of its monotonic clock); every other line is one step of the
node, the handling of one event:

    {"node": "n1", "i": 7, "t": 1234.5678, "event": "peer",
     "recv": {"from": "n2", "h": "9f2c..."},
     "actions": [["ReplicaStore", "n1", "n2", "k", "5", ""]],
     "sent": [{"to": "n2", "h": "41aa..."}],
     "state": {"store": {"k": [...]}, "hints": [...], "putOps": [...], "getOps": [...]},
     "hintKeys": [["n3", "k"]]}

A message is known by ``h``, a digest of its encoded bytes: the sender and the receiver hash
the same bytes, so no id travels on the wire and the wire format is the same traced or not. Two
equal messages on one link are interchangeable; the merger (``dynamo_ref.tla.merge``) pairs
them first in, first out, as TCP delivers them. ``state`` holds the node's own variables after
the step: the keys the step wrote (their new sibling sets, empty when removed), the hints of
the (owner, key) pairs in ``hintKeys`` that it wrote (a pair with none left was dropped), the
puts and gets the step touched that are not yet answered, and in ``putsDone``/``getsDone``
the ids of those it touched that are answered or gone. Lines are written unbuffered,
so a process killed with SIGKILL leaves every step it finished.

A step's line is written once what the step stored is durable (the server writes it right
after its group-commit batch, in the store's thread), and after the lines of the steps before
it: a process killed before its batch was written leaves no line of a step whose store it lost
(the spec's crash keeps a node's store). The batch keeps its lines too (``tail``), and a
restart writes those a kill kept from the file (``recover``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from dynamo_ref.core.effects import (
    Action,
    ClientRequest,
    DropHint,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    Persist,
    PersistHint,
    Send,
    StorageFailed,
    TimerFired,
)
from dynamo_ref.core.messages import encode
from dynamo_ref.core.node import Node, NodeConfig
from dynamo_ref.core.node.outbox import text

FORMAT_VERSION: Final = 2
# The store's metadata row that holds the trace lines of its last batch (``recover``).
TRACE_TAIL: Final = "trace-tail"
DIGEST_BYTES: Final = 10

_EVENT_KIND: Final[dict[type, str]] = {
    ClientRequest: "client",
    PeerReceived: "peer",
    TimerFired: "timer",
    PeerUnreachable: "unreachable",
    StorageFailed: "storage",
}


def digest(payload: bytes) -> str:
    """A message's id in a trace: the digest of its encoded bytes."""
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).hexdigest()


def _header_id(header: bytes) -> bytes:
    return digest(header).encode()


def _config(config: NodeConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(config)
    fields["mode"] = config.mode.value
    return fields


class ProcessTrace:
    """Writes one node's steps to ``path`` (appending: a restarted node goes on in the file,
    after a new header)."""

    def __init__(self, path: Path, node_id: str) -> None:
        self.path = path
        self.node_id = node_id
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._step = 0
        self._encoder = msgspec.json.Encoder()
        self._header_id = b""

    def recover(self, tail: bytes) -> int:
        """Before a restarted node's header: end the file where its store ends.

        ``tail`` is what the store kept of its last batch (``tail``). A kill between the batch
        and its lines, or during their write, left the file short of them: an unfinished last
        line is cut, and the lines missing are written, if the file's last incarnation is the
        one that wrote that batch. Returns the number of bytes written.
        """
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a write the kill cut: the rest of its line is lost
            os.truncate(self.path, end)
            data = data[:end]
        header_id, _, lines = tail.partition(b"\n")
        if not lines:
            return 0
        start = data.rfind(b'\n{"trace"', 0, end) + 1
        header = data[start : data.index(b"\n", start) + 1] if data else b""
        if _header_id(header) != header_id:
            return 0  # another incarnation's batch (or another file's)
        at = data.rfind(lines[: lines.index(b"\n") + 1], start)
        written = data[at:] if at >= 0 else b""
        if not lines.startswith(written):
            return 0  # all of it is there, and steps after it
        self.write(lines[len(written) :])
        return len(lines) - len(written)

    def tail(self, lines: bytes) -> bytes:
        """What the store keeps with a batch of ``lines``, for ``recover``: the lines, and
        which incarnation wrote them."""
        return self._header_id + b"\n" + lines

    def header(self, node: Node, config: NodeConfig, now: float, wall: float, address: str) -> None:
        node.note_requests()
        line = self._encode(
            {
                "trace": "dynamo-ref process",
                "v": FORMAT_VERSION,
                "node": self.node_id,
                "address": address,
                "t": now,
                "wall": wall,
                "pid": os.getpid(),
                "config": _config(config),
            }
        )
        self._header_id = _header_id(line)
        self.write(line)

    def step(self, event: Event | None, effects: Sequence[Effect], node: Node, now: float) -> bytes:
        """The line of one step: ``event`` handled (None: the node's start), the ``effects`` it
        gave. Taken at the step (it holds the node's state then); ``write`` it once the step's
        durable effects are durable."""
        self._step += 1
        recv = None
        if isinstance(event, PeerReceived):
            recv = {"from": event.src, "h": digest(encode(event.msg))}
        actions: list[list[str]] = []
        sent: list[dict[str, str]] = []
        keys: dict[bytes, None] = {}
        hints: dict[tuple[str, bytes], None] = {}
        for e in effects:
            if isinstance(e, Action):
                actions.append([e.name, *e.args])
            elif isinstance(e, Send):
                sent.append({"to": e.dest, "h": digest(encode(e.msg))})
            elif isinstance(e, Persist):
                keys[e.key] = None
            elif isinstance(e, PersistHint | DropHint):
                hints[(e.owner, e.key)] = None
        state = node.trace_state(list(keys), list(hints))
        return self._encode(
            {
                "node": self.node_id,
                "i": self._step,
                "t": now,
                "event": "start" if event is None else _EVENT_KIND[type(event)],
                "recv": recv,
                "actions": actions,
                "sent": sent,
                "state": state,
                "hintKeys": [[owner, text(key)] for owner, key in hints],
            }
        )

    def _encode(self, line: dict[str, Any]) -> bytes:
        return self._encoder.encode(line) + b"\n"

    def write(self, lines: bytes) -> None:
        """Append lines from ``step`` (unbuffered: a SIGKILL leaves every line written)."""
        view = memoryview(lines)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = ["FORMAT_VERSION", "TRACE_TAIL", "ProcessTrace", "digest"]
