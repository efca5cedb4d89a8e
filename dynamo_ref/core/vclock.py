"""Vector clocks (Dynamo section 4.4): a map node -> (counter, last-update timestamp).

A clock is immutable and kept in canonical order (sorted by node id), so equal clocks have equal
``entries()`` and equal encodings. Counters are always >= 1: a node absent from the clock has
counter 0, which lets ``compare`` decide on key sets before touching counters.

Two notions of equality, on purpose:

- ``a == b`` is structural (counters and timestamps), used for hashing and encodings;
- ``a.compare(b) is Order.EQUAL`` is causal (counters only). Timestamps only steer pruning.

Pruning (``prune``) follows the paper: once a clock holds more than ``big`` (10) entries, the
entries with the oldest last-update timestamps are removed. The age rule is Riak's: clocks of at
most ``small`` entries are never touched, an entry younger than ``young`` seconds is never dropped
(pruning stops there even above ``big``), and between ``small`` and ``big`` entries only entries
older than ``old`` seconds go.

What pruning may and may not do. ``prune`` only removes entries, so ``c.descends(c.prune(...))``
and, for every clock ``y``, ``c.prune(...).descends(y)`` implies ``c.descends(y)``: a pruned clock
never looks newer than the original did. It may look *less* new:

- a descendant of ``y`` may become concurrent with ``y`` (a false sibling: harmless, a client
  reconciles it);
- a clock concurrent with ``y`` may become *older* than ``y``, and then reconcile drops it: a lost
  write. It happens when the dropped entry was the clock's only event ``y`` had not seen, i.e.
  ``y`` is a concurrent write that saw everything else. The ``young`` threshold exists so that
  only entries idle long enough for any such concurrent version to have been reconciled (read
  repair, anti-entropy) are pruned.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from operator import ge as _ge
from operator import le as _le
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeAlias

import icontract

from dynamo_ref.core.contracts import ENABLED

NodeId: TypeAlias = str

# Riak's defaults for the age rule; BIG_VCLOCK is the paper's "say 10".
SMALL_VCLOCK: Final = 5
BIG_VCLOCK: Final = 10
YOUNG_VCLOCK: Final = 20.0
OLD_VCLOCK: Final = 86400.0


class Order(enum.Enum):
    """How ``a`` relates to ``b`` in ``a.compare(b)``: BEFORE means a < b."""

    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"

    def flip(self) -> Order:
        """The order seen from the other side: ``b.compare(a) is a.compare(b).flip()``."""
        return _FLIP[self]


_BEFORE: Final = Order.BEFORE
_AFTER: Final = Order.AFTER
_EQUAL: Final = Order.EQUAL
_CONCURRENT: Final = Order.CONCURRENT
_FLIP: Final = {_BEFORE: _AFTER, _AFTER: _BEFORE, _EQUAL: _EQUAL, _CONCURRENT: _CONCURRENT}

# Infinite, so one shared instance serves every ``map(d.get, keys, _ZEROS)``.
_ZEROS: Final = repeat(0)
_NO_ENTRIES: Final[Mapping[NodeId, tuple[int, float]]] = MappingProxyType({})


def _finite_float(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    try:
        f = float(x)
    except OverflowError:  # an int beyond float range
        return None
    return f if math.isfinite(f) else None


def spec_descends(a: VClock, b: VClock) -> bool:
    """The plain pointwise definition of a >= b, against which the fast path is checked."""
    return all(a.counter(node) >= counter for node, counter, _ in b.entries())


def spec_order(a: VClock, b: VClock) -> Order:
    """The plain definition of ``compare``."""
    ge = spec_descends(a, b)
    le = spec_descends(b, a)
    if ge and le:
        return _EQUAL
    if ge:
        return _AFTER
    if le:
        return _BEFORE
    return _CONCURRENT


class VClock(Mapping[NodeId, tuple[int, float]]):
    """An immutable vector clock: node -> (counter >= 1, last-update timestamp)."""

    # Aligned tuples in sorted node order: clocks over the same nodes (the common case) compare
    # by tuple equality and one C-level pass over the counters. The dict serves lookups when the
    # node sets differ. Clocks derived from one another share their node tuple, so ``is`` hits.
    # The dict and the hash are made on first use (``_counts``, ``__hash__``): most clocks are
    # decoded, compared with clocks over the same nodes and dropped without needing either.
    __slots__ = ("_c", "_hash", "_n", "_t", "_v")
    _n: tuple[NodeId, ...]
    _v: tuple[int, ...]
    _t: tuple[float, ...]
    _c: dict[NodeId, int]
    _hash: int

    @icontract.require(
        lambda mapping: all(counter >= 1 for counter, _ in mapping.values()),
        "counters are >= 1 (an absent node has counter 0)",
        enabled=ENABLED,
    )
    @icontract.require(
        lambda mapping: all(math.isfinite(ts) for _, ts in mapping.values()),
        "timestamps are finite",
        enabled=ENABLED,
    )
    def __init__(self, mapping: Mapping[NodeId, tuple[int, float]] = _NO_ENTRIES) -> None:
        items = sorted(mapping.items())
        self._init(
            tuple(node for node, _ in items),
            tuple(counter for _, (counter, _) in items),
            tuple(float(ts) for _, (_, ts) in items),
        )

    def _init(
        self, nodes: tuple[NodeId, ...], counters: tuple[int, ...], stamps: tuple[float, ...]
    ) -> None:
        _set_n(self, nodes)
        _set_v(self, counters)
        _set_t(self, stamps)

    def _counts(self) -> dict[NodeId, int]:
        try:
            return self._c
        except AttributeError:
            counts = dict(zip(self._n, self._v, strict=True))
            _set_c(self, counts)
            return counts

    @classmethod
    def _raw(
        cls, nodes: tuple[NodeId, ...], counters: tuple[int, ...], stamps: tuple[float, ...]
    ) -> VClock:
        # Trusted builder: valid entries, nodes sorted and distinct.
        clock = cls.__new__(cls)
        _set_n(clock, nodes)
        _set_v(clock, counters)
        _set_t(clock, stamps)
        return clock

    @classmethod
    def empty(cls) -> VClock:
        return _EMPTY

    @classmethod
    def of(cls, mapping: Mapping[NodeId, tuple[int, float]]) -> VClock:
        """Same as ``VClock(mapping)``."""
        return cls(mapping)

    @classmethod
    def from_counters(cls, counters: Mapping[NodeId, int], timestamp: float = 0.0) -> VClock:
        """A clock whose entries all carry the same timestamp (handy in tests and examples)."""
        return cls({node: (counter, timestamp) for node, counter in counters.items()})

    # -- immutability, mapping protocol, identity -------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("VClock is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("VClock is immutable")

    # Immutable, so a copy is the clock itself; pickling rebuilds through the trusted builder.
    def __copy__(self) -> VClock:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> VClock:
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (VClock._raw, (self._n, self._v, self._t))

    def __getitem__(self, node: NodeId) -> tuple[int, float]:
        counter = self._counts()[node]
        return (counter, self._t[bisect_left(self._n, node)])

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self._n)

    def __len__(self) -> int:
        return len(self._n)

    def __contains__(self, node: object) -> bool:
        return node in self._counts()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VClock):
            return NotImplemented
        return self._n == other._n and self._v == other._v and self._t == other._t

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            h = hash((self._n, self._v, self._t))
            _set_hash(self, h)
            return h

    def __repr__(self) -> str:
        return f"VClock({self.to_dict()!r})"

    # -- reading ------------------------------------------------------------------------------

    def counter(self, node: NodeId) -> int:
        """The node's counter, 0 if absent."""
        return self._counts().get(node, 0)

    def last_update(self, node: NodeId) -> float | None:
        """When the node last incremented its entry, None if absent."""
        return self[node][1] if node in self._counts() else None

    def entries(self) -> tuple[tuple[NodeId, int, float], ...]:
        """(node, counter, timestamp) sorted by node: the canonical form."""
        return tuple(zip(self._n, self._v, self._t, strict=True))

    def to_dict(self) -> dict[NodeId, tuple[int, float]]:
        return {node: (counter, ts) for node, counter, ts in self.entries()}

    @classmethod
    def from_dict(cls, data: Mapping[Any, Any]) -> VClock:
        """Decode ``to_dict`` output (tuples or JSON lists), raising ValueError on bad input.

        Checked always, not by contracts: the data comes from outside the process.
        """
        checked: dict[NodeId, tuple[int, float]] = {}
        for node, entry in data.items():
            if not isinstance(node, str):
                raise ValueError(f"vector clock node id must be a string, got {node!r}")
            if not isinstance(entry, Sequence) or isinstance(entry, str | bytes) or len(entry) != 2:
                raise ValueError(f"vector clock entry for {node!r} must be [counter, timestamp]")
            counter, ts = entry
            if isinstance(counter, bool) or not isinstance(counter, int) or counter < 1:
                raise ValueError(f"vector clock counter for {node!r} must be an int >= 1")
            stamp = _finite_float(ts)
            if stamp is None:
                raise ValueError(f"vector clock timestamp for {node!r} must be a finite number")
            checked[node] = (counter, stamp)
        return cls(checked)

    # -- order --------------------------------------------------------------------------------

    @icontract.ensure(
        lambda self, other, result: result is spec_order(self, other), enabled=ENABLED
    )
    def compare(self, other: VClock) -> Order:
        """BEFORE if self < other, AFTER if self > other, EQUAL, or CONCURRENT."""
        na = self._n
        nb = other._n
        va = self._v
        vb = other._v
        if na is nb or na == nb:
            if va == vb:
                return _EQUAL
            if all(map(_ge, va, vb)):
                return _AFTER
            return _BEFORE if all(map(_le, va, vb)) else _CONCURRENT
        # Different node sets. Counters are >= 1, so a node only one side has rules out one
        # direction, and a node missing from the larger side reads as 0 and fails ``_ge``.
        if len(na) > len(nb):
            mine = self._counts().get
            return _AFTER if all(map(_ge, map(mine, nb, _ZEROS), vb)) else _CONCURRENT
        if len(na) < len(nb):
            theirs = other._counts().get
            return _BEFORE if all(map(_le, va, map(theirs, na, _ZEROS))) else _CONCURRENT
        return _CONCURRENT

    @icontract.ensure(
        lambda self, other, result: result == spec_descends(self, other), enabled=ENABLED
    )
    def descends(self, other: VClock) -> bool:
        """self >= other: self has seen every event other has."""
        na = self._n
        nb = other._n
        if na is nb or na == nb:
            return all(map(_ge, self._v, other._v))
        return all(map(_ge, map(self._counts().get, nb, _ZEROS), other._v))

    @icontract.ensure(
        lambda self, other, result: (
            result == (spec_descends(self, other) and not spec_descends(other, self))
        ),
        enabled=ENABLED,
    )
    def dominates(self, other: VClock) -> bool:
        """self > other: strictly newer."""
        return (self._v != other._v or self._n != other._n) and self.descends(other)

    # -- building -----------------------------------------------------------------------------

    # The lambdas around math.isfinite stay: icontract binds condition arguments by name.
    @icontract.require(lambda now: math.isfinite(now), enabled=ENABLED)  # noqa: PLW0108
    @icontract.ensure(lambda self, result: result.dominates(self), enabled=ENABLED)
    @icontract.ensure(
        lambda self, node, result: result.counter(node) == self.counter(node) + 1,
        enabled=ENABLED,
    )
    def increment(self, node: NodeId, now: float) -> VClock:
        """A new event at ``node`` at time ``now``."""
        nodes = self._n
        i = bisect_left(nodes, node)
        now = float(now)
        if node in self._counts():
            counters = self._v
            stamps = self._t
            return VClock._raw(
                nodes,
                (*counters[:i], counters[i] + 1, *counters[i + 1 :]),
                (*stamps[:i], now, *stamps[i + 1 :]),
            )
        return VClock._raw(
            (*nodes[:i], node, *nodes[i:]),
            (*self._v[:i], 1, *self._v[i:]),
            (*self._t[:i], now, *self._t[i:]),
        )

    @icontract.require(lambda counter: counter >= 1, enabled=ENABLED)
    @icontract.require(lambda ts: math.isfinite(ts), enabled=ENABLED)  # noqa: PLW0108
    @icontract.ensure(
        lambda self, node, counter, ts, result: (
            result.to_dict() == {**self.to_dict(), node: (counter, ts)}
            and list(result) == sorted(result)
        ),
        enabled=ENABLED,
    )
    def _with_entry(self, node: NodeId, counter: int, ts: float) -> VClock:
        """This clock with ``node``'s entry set to ``(counter, ts)``: a coordinator's write."""
        nodes = self._n
        i = bisect_left(nodes, node)
        ts = float(ts)
        if i < len(nodes) and nodes[i] == node:
            counters = self._v
            stamps = self._t
            return VClock._raw(
                nodes,
                (*counters[:i], counter, *counters[i + 1 :]),
                (*stamps[:i], ts, *stamps[i + 1 :]),
            )
        return VClock._raw(
            (*nodes[:i], node, *nodes[i:]),
            (*self._v[:i], counter, *self._v[i:]),
            (*self._t[:i], ts, *self._t[i:]),
        )

    @icontract.ensure(
        lambda self, other, result: result.descends(self) and result.descends(other),
        enabled=ENABLED,
    )
    @icontract.ensure(
        lambda self, other, result: all(
            result.counter(node) in (self.counter(node), other.counter(node)) for node in result
        ),
        "no counter beyond what one side had (least upper bound)",
        enabled=ENABLED,
    )
    def merge(self, other: VClock) -> VClock:
        """The least upper bound: per node, the larger (counter, timestamp) pair.

        On equal counters (the same event) the later timestamp wins, which keeps merge
        commutative should two copies of an entry ever disagree on the time.
        """
        # An empty side (every read context starts from one) leaves the other as it is.
        if self == other or not other._n:
            return self
        na = self._n
        if not na:
            return other
        if na is other._n or na == other._n:
            mine = zip(self._v, self._t, strict=True)
            pairs = list(map(max, mine, zip(other._v, other._t, strict=True)))
            nodes = na
        else:
            a = dict(zip(na, zip(self._v, self._t, strict=True), strict=True))
            b = dict(zip(other._n, zip(other._v, other._t, strict=True), strict=True))
            absent = (0, -math.inf)
            nodes = tuple(sorted(a.keys() | b.keys()))
            pairs = [max(a.get(node, absent), b.get(node, absent)) for node in nodes]
        return VClock._raw(
            nodes, tuple(counter for counter, _ in pairs), tuple(ts for _, ts in pairs)
        )

    @icontract.require(lambda small, big: 0 <= small <= big, enabled=ENABLED)
    @icontract.require(lambda young, old: young >= 0 and old >= 0, enabled=ENABLED)
    @icontract.require(lambda now: math.isfinite(now), enabled=ENABLED)  # noqa: PLW0108
    @icontract.ensure(
        lambda self, result: set(result.entries()) <= set(self.entries()),
        "pruning only removes entries, so the pruned clock never looks newer",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: self.descends(result), enabled=ENABLED)
    @icontract.ensure(
        lambda self, small, result: len(result) >= min(small, len(self)), enabled=ENABLED
    )
    def prune(
        self,
        now: float,
        *,
        small: int = SMALL_VCLOCK,
        big: int = BIG_VCLOCK,
        young: float = YOUNG_VCLOCK,
        old: float = OLD_VCLOCK,
    ) -> VClock:
        """Drop the oldest entries: down to ``big`` entries, or those idle longer than ``old``.

        Never below ``small`` entries and never an entry updated less than ``young`` seconds
        before ``now``. Entries are dropped oldest first (ties by node id), and pruning stops at
        the first entry that may not go, so every kept entry is at least as recent as every
        dropped one. See the module docstring for what pruning does to comparisons.
        """
        size = len(self._n)
        if size <= small:
            return self
        dropped: set[NodeId] = set()
        for ts, node in sorted(zip(self._t, self._n, strict=True)):
            if size <= small:
                break
            age = now - ts
            if age < young or not (size > big or age > old):
                break
            dropped.add(node)
            size -= 1
        if not dropped:
            return self
        kept = [e for e in self.entries() if e[0] not in dropped]
        return VClock._raw(
            tuple(n for n, _, _ in kept), tuple(c for _, c, _ in kept), tuple(t for _, _, t in kept)
        )


# The slots' own setters: __setattr__ refuses, and these are cheaper than object.__setattr__.
_set_n = getattr(VClock, "_n").__set__  # noqa: B009 (the annotation hides the descriptor)
_set_v = getattr(VClock, "_v").__set__  # noqa: B009
_set_t = getattr(VClock, "_t").__set__  # noqa: B009
_set_c = getattr(VClock, "_c").__set__  # noqa: B009
_set_hash = getattr(VClock, "_hash").__set__  # noqa: B009

_EMPTY: Final = VClock()
