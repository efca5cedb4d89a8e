"""Versions of one key and their sibling sets (Dynamo sections 4.4 and 6.3).

A version is a value or a tombstone, the vector clock of the write and the coordinator's wall
time. A replica keeps the maximal antichain of the versions it has seen (``reconcile``): every
version another one dominates is dropped; the rest are siblings a client reads together, merges,
and writes back with their merged clock as context.

Writes. ``new_version(context, node, value, now)`` increments ``node``'s entry of the context.
The result dominates exactly what the context covers, and is concurrent with a stored version
``e`` the context does not cover provided ``e.clock.counter(node) <= context.counter(node)``:
the coordinator's own entry in the context is current. When it is not (two clients writing
through the same coordinator with the same stale context), plain vector clocks give both writes
the same clock, reconcile collapses them and one write is lost: the known limit of per-node
vector clocks that dotted version vectors remove.

LWW (``reconcile_lww``) keeps the single version with the highest (timestamp, writer) and ignores
clocks. It is here for comparison: it silently loses concurrent writes.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.vclock import NodeId, Order, VClock, spec_descends, spec_order

_CONCURRENT: Final = Order.CONCURRENT
_EQUAL: Final = Order.EQUAL


@dataclass(frozen=True, slots=True)
class Version:
    """One write: ``value`` (None for a delete), its clock, coordinator time and coordinator."""

    value: bytes | None
    clock: VClock
    timestamp: float
    writer: NodeId
    # Dotted version vectors (the node's DVV mode): this write's own event is (writer, dot) and
    # ``clock`` is only the context it was written in. 0 everywhere else: the event is in clock.
    dot: int = 0

    # A precondition on __post_init__ rather than a class invariant: icontract invariants do not
    # support slotted dataclasses, and would wrap __eq__ and __hash__ too.
    @icontract.require(lambda self: math.isfinite(self.timestamp), enabled=ENABLED)
    @icontract.require(lambda self: self.dot >= 0, enabled=ENABLED)
    def __post_init__(self) -> None:
        pass

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


# The slots' own setters: a frozen dataclass's __setattr__ refuses.
_new_version: Final = object.__new__
_VERSION_SLOTS: Final = tuple(
    getattr(Version, name).__set__ for name in ("value", "clock", "timestamp", "writer", "dot")
)


def checked_version(
    value: bytes | None, clock: VClock, timestamp: float, writer: NodeId, dot: int
) -> Version:
    """A ``Version`` of fields its caller has checked as ``__post_init__`` requires (a finite
    timestamp, a dot >= 0): a decoder, which checks them on every input, contracts on or off.
    Built without ``__init__``, which would check them again (half of a decoded version's
    cost with contracts on)."""
    v = _new_version(Version)
    set_value, set_clock, set_timestamp, set_writer, set_dot = _VERSION_SLOTS
    set_value(v, value)
    set_clock(v, clock)
    set_timestamp(v, timestamp)
    set_writer(v, writer)
    set_dot(v, dot)
    return v


Siblings: TypeAlias = tuple[Version, ...]


class Mode(enum.Enum):
    """How a replica resolves versions: causally (vector clocks) or by last write wins."""

    VCLOCK = "vclock"
    LWW = "lww"


SortKey: TypeAlias = tuple[tuple[tuple[NodeId, int, float], ...], bool, bytes, float, NodeId, int]


def sort_key(version: Version) -> SortKey:
    """The canonical order of siblings: total on distinct versions (it covers every field)."""
    value = version.value
    return (
        version.clock.entries(),
        value is None,
        b"" if value is None else value,
        version.timestamp,
        version.writer,
        version.dot,
    )


# The contract helpers below compare clocks with ``spec_order`` and ``spec_descends``, the plain
# definitions ``compare`` and ``descends`` are checked against: the same answers, without each
# of the many pairs running those methods' own contracts again.


def is_antichain(versions: Sequence[Version]) -> bool:
    """No two versions are causally related (or causally equal)."""
    clocks = [v.clock for v in versions]
    return all(
        spec_order(clocks[i], clocks[j]) is _CONCURRENT
        for i in range(len(clocks))
        for j in range(i + 1, len(clocks))
    )


def covers(result: Sequence[Version], versions: Sequence[Version]) -> bool:
    """Every version in ``versions`` is descended by some version in ``result``."""
    # A clock ``result`` holds descends itself: only the other versions need the search, so
    # the usual check (most versions kept, or dominated by the one kept) is linear.
    held = {r.clock for r in result}
    return all(
        v.clock in held or any(spec_descends(r.clock, v.clock) for r in result) for v in versions
    )


def is_subset(part: Iterable[Version], whole: Iterable[Version]) -> bool:
    """Every version of ``part`` is in ``whole``: ``all(p in whole for p in part)``, hashed."""
    return set(part) <= set(whole)


def covered_gone(existing: Iterable[Version], new: Version, result: Siblings) -> bool:
    """No version of ``existing`` that ``new`` dominates is left in ``result``."""
    kept = set(result)
    return all(e not in kept for e in existing if spec_dominates(new.clock, e.clock))


def spec_dominates(a: VClock, b: VClock) -> bool:
    """The plain definition of ``a.dominates(b)``."""
    return spec_descends(a, b) and not spec_descends(b, a)


def is_canonical(siblings: Sequence[Version]) -> bool:
    """Sorted by ``sort_key``, so equal sets are equal tuples."""
    # Each key once, not once per neighbour.
    return all(a < b for a, b in itertools.pairwise(map(sort_key, siblings)))


# The lambdas around plain calls stay: icontract binds condition arguments by name.
@icontract.ensure(lambda result: is_antichain(result), enabled=ENABLED)  # noqa: PLW0108
@icontract.ensure(lambda versions, result: covers(result, versions), enabled=ENABLED)
@icontract.ensure(lambda versions, result: is_subset(result, versions), enabled=ENABLED)
@icontract.ensure(lambda result: is_canonical(result), enabled=ENABLED)  # noqa: PLW0108
@icontract.ensure(lambda versions, result: len(result) > 0 or len(versions) == 0, enabled=ENABLED)
def reconcile(versions: Sequence[Version]) -> Siblings:
    """The maximal antichain of ``versions``, in canonical order.

    Versions dominated by another are dropped. Of versions with causally equal clocks the first
    in canonical order stays, so the result depends on the set of inputs only.
    """
    ordered = sorted(versions, key=sort_key)
    if len(ordered) <= 1:
        return tuple(ordered)
    kept: list[Version] = []
    for v in ordered:
        clock = v.clock
        if any(w.clock.dominates(clock) for w in ordered):
            continue
        if any(k.clock.compare(clock) is _EQUAL for k in kept):
            continue
        kept.append(v)
    return tuple(kept)


@icontract.ensure(
    lambda versions, result: all(result.descends(v.clock) for v in versions), enabled=ENABLED
)
def merge_context(versions: Sequence[Version]) -> VClock:
    """The least upper bound of the clocks: the context a client sends back with its write."""
    context = VClock.empty()
    for v in versions:
        context = context.merge(v.clock)
    return context


@icontract.require(lambda now: math.isfinite(now), enabled=ENABLED)  # noqa: PLW0108
@icontract.ensure(lambda context, result: result.clock.dominates(context), enabled=ENABLED)
@icontract.ensure(
    lambda context, node, result: result.clock.counter(node) == context.counter(node) + 1,
    enabled=ENABLED,
)
def new_version(context: VClock, node: NodeId, value: bytes | None, now: float) -> Version:
    """A write (``value``) or delete (None) coordinated by ``node`` after reading ``context``."""
    return Version(value=value, clock=context.increment(node, now), timestamp=now, writer=node)


@icontract.ensure(
    lambda existing, new, result: any(r.clock.descends(new.clock) for r in result),
    enabled=ENABLED,
)
@icontract.ensure(
    lambda existing, new, result: covered_gone(existing, new, result),  # noqa: PLW0108
    "the versions the new write covers are gone",
    enabled=ENABLED,
)
def put(existing: Siblings, new: Version) -> Siblings:
    """Store ``new`` next to ``existing``: what it covers goes, concurrent versions stay."""
    return reconcile((*existing, new))


def merge(a: Siblings, b: Siblings) -> Siblings:
    """Two replicas' sibling sets made one (read repair, anti-entropy, hinted handoff)."""
    return reconcile((*a, *b))


def _lww_key(version: Version) -> tuple[float, NodeId, SortKey]:
    # sort_key last: a full tie-break, so the winner does not depend on input order.
    return (version.timestamp, version.writer, sort_key(version))


@icontract.ensure(lambda versions, result: len(result) == min(1, len(versions)), enabled=ENABLED)
@icontract.ensure(lambda versions, result: all(r in versions for r in result), enabled=ENABLED)
def reconcile_lww(versions: Sequence[Version]) -> Siblings:
    """Last write wins: the one version with the highest (timestamp, writer); clocks ignored."""
    if not versions:
        return ()
    return (max(versions, key=_lww_key),)


def reconcile_for(mode: Mode, versions: Sequence[Version]) -> Siblings:
    if mode is Mode.LWW:
        return reconcile_lww(versions)
    return reconcile(versions)


_DIGEST_DOMAIN: Final = b"dynamo-ref/siblings/v1"
_U64: Final = struct.Struct(">Q")
_F64: Final = struct.Struct(">d")


def _put_bytes(out: bytearray, data: bytes) -> None:
    out += _U64.pack(len(data))
    out += data


def _put_float(out: bytearray, x: float) -> None:
    # + 0.0 folds -0.0 into 0.0: they are equal as timestamps, so must hash alike.
    out += _F64.pack(x + 0.0)


def _put_int(out: bytearray, n: int) -> None:
    _put_bytes(out, n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def encode(siblings: Iterable[Version]) -> bytes:
    """A canonical, injective encoding of a sibling set (length-prefixed fields)."""
    ordered = sorted(siblings, key=sort_key)
    out = bytearray(_DIGEST_DOMAIN)
    out += _U64.pack(len(ordered))
    for v in ordered:
        entries = v.clock.entries()
        out += _U64.pack(len(entries))
        for node, counter, ts in entries:
            _put_bytes(out, node.encode("utf-8", "surrogatepass"))
            _put_int(out, counter)
            _put_float(out, ts)
        # Marker bit 0: a value follows; bit 1: a dot follows (DVV). Dot-free encodings are
        # unchanged by the dot's arrival, so their digests are too.
        out += bytes(((v.value is not None) | (2 if v.dot else 0),))
        if v.dot:
            _put_int(out, v.dot)
        if v.value is not None:
            _put_bytes(out, v.value)
        _put_float(out, v.timestamp)
        _put_bytes(out, v.writer.encode("utf-8", "surrogatepass"))
    return bytes(out)


def digest(siblings: Iterable[Version]) -> bytes:
    """16-byte BLAKE2b of ``encode``: the leaf hash of a key for Merkle trees."""
    return hashlib.blake2b(encode(siblings), digest_size=16).digest()
