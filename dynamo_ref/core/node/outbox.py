"""What every part of a node shares: its effect sink, request ids, timer kinds and who gets
an answer.

The parts of a node (``coordinator``, ``replica``, ``members``, ``anti_entropy``) never touch
each other's state; each emits its effects here, in order, and the shell hands them to the
driver after each event. Order matters: a ``Persist`` before the ``Send`` of an acknowledgement
means the version must be durable before the ack leaves.
"""

from __future__ import annotations

import enum

import msgspec

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    ClientId,
    Effect,
    Reply,
    Send,
    SetTimer,
)
from dynamo_ref.core.messages import (
    ErrorCode,
    ErrorReply,
    ForwardReply,
    PeerMessage,
    ReplyMessage,
    WireVersion,
    siblings_from_wire,
)
from dynamo_ref.core.node_versions import spec_clock
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Siblings, Version

TOMBSTONE = "<tombstone>"


class TimerKind(enum.StrEnum):
    """Every timer a node sets, named by the part that owns it. A timer's id is
    ``(kind, ident)``: ``ident`` is a request's id, or 0 for a periodic round."""

    PUT = "put"  # coordinator: a put's deadline
    FALLBACK = "fallback"  # coordinator: silent replicas of a put get fallbacks
    GET = "get"  # coordinator: a get's deadline
    FORWARD = "fwd"  # coordinator: a forwarded request's deadline
    GOSSIP = "gossip"  # members: a gossip round
    BOOTSTRAP = "bootstrap"  # members: ask a seed to let this node join
    TRANSFER = "transfer"  # members: resend unacked transfer chunks
    HANDOFF = "handoff"  # replica: hand hints to owners that are back
    REAP = "reap"  # replica: drop tombstones every replica holds
    ANTI_ENTROPY = "ae"  # anti_entropy: a Merkle exchange round


class ClientOrigin(msgspec.Struct, frozen=True):
    """A request straight from a client connection."""

    client: ClientId
    rid: int


class PeerOrigin(msgspec.Struct, frozen=True):
    """A request a peer forwarded: the answer goes back to it as ``ForwardReply(fid)``."""

    node: NodeId
    fid: int
    rid: int


Origin = ClientOrigin | PeerOrigin


class Outbox:
    """The effects of the event being handled, in order, its wall-clock time, and the node's
    request ids.

    ``boot`` counts this node's starts: request ids are ``boot << 32 | seq``, so a restarted
    node never reuses the id of a request its peers may still answer.
    """

    __slots__ = ("boot", "effects", "node_id", "seq", "wall")

    def __init__(self, node_id: NodeId, boot: int) -> None:
        self.node_id = node_id
        self.boot = boot
        self.seq = 0
        self.effects: list[Effect] = []
        # The wall clock at the event being handled: for timestamps only; timers and the
        # failure detector run on the driver's monotonic ``now``.
        self.wall = 0.0

    def take(self) -> list[Effect]:
        fx, self.effects = self.effects, []
        return fx

    def new_id(self) -> int:
        self.seq += 1
        return (self.boot << 32) | self.seq

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def action(self, name: str, *args: str) -> None:
        """The spec action (or node-only step) this event took, for traces."""
        self.effects.append(Action(name, args))

    def send(self, dest: NodeId, msg: PeerMessage) -> None:
        self.effects.append(Send(dest, msg))

    def reply(self, origin: Origin, msg: ReplyMessage) -> None:
        if isinstance(origin, ClientOrigin):
            self.effects.append(Reply(origin.client, msg))
        else:
            self.effects.append(Send(origin.node, ForwardReply(origin.fid, msg)))

    def error(self, origin: Origin, code: ErrorCode, message: str) -> None:
        self.reply(origin, ErrorReply(code.value, message, origin.rid))

    def set_timer(self, kind: TimerKind, ident: int, at: float) -> None:
        self.effects.append(SetTimer((kind, ident), at))

    def cancel_timer(self, kind: TimerKind, ident: int) -> None:
        self.effects.append(CancelTimer((kind, ident)))

    def decode(self, src: NodeId, wire: list[WireVersion]) -> Siblings | None:
        """A peer's versions, or None (and a ``RejectMessage`` step) when they do not decode."""
        try:
            return siblings_from_wire(wire)
        except ValueError as e:
            self.action("RejectMessage", self.node_id, src, str(e))
            return None


# ---- how the spec sees values ---------------------------------------------------------------


def text(data: bytes) -> str:
    """Bytes as trace text: UTF-8 when it is, else ``0x`` and hex (as the trace writer does)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()


def context_text(context: VClock) -> str:
    """A put's context as trace text: ``node:counter`` pairs by node, comma-separated."""
    return ",".join(f"{n}:{c}" for n, c, _ in context.entries() if c)


def spec_version(v: Version) -> dict[str, object]:
    """A version in the spec's shape ``[val, vc, ts]``."""
    return {"val": v.value, "vc": spec_clock(v), "ts": v.timestamp}


def trace_version(v: Version) -> dict[str, object]:
    """A version in the spec's shape for a per-process trace (JSON, so the value as text).

    A DVV version is the spec's ``[val, vc, ts, wr, dot]``: its clock is the context it was
    written in and ``(wr, dot)`` its own event. Any other has no dot, as in the spec."""
    value = None if v.value is None else text(v.value)
    if v.dot:
        vc = {node: counter for node, counter, _ in v.clock.entries() if counter}
        return {"val": value, "vc": vc, "ts": v.timestamp, "wr": v.writer, "dot": v.dot}
    return {"val": value, "vc": spec_clock(v), "ts": v.timestamp}
