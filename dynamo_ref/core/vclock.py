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
  write. That needs ``y`` to hold a newer counter for the dropped node, i.e. a concurrent write
  coordinated by that node after the dropped update. The ``young`` threshold exists so that only
  entries idle long enough for any such concurrent version to have been reconciled are pruned.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping, Sequence
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

_NO_ENTRIES: Final[Mapping[NodeId, tuple[int, float]]] = MappingProxyType({})


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

    # Counters and timestamps in two dicts with the same (sorted) key order: compare reads only
    # the counters, and aligned ``values()`` let equal-keyed clocks compare at C speed.
    __slots__ = ("_c", "_hash", "_t")
    _c: dict[NodeId, int]
    _t: dict[NodeId, float]
    _hash: int | None

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
        object.__setattr__(self, "_c", {node: counter for node, (counter, _) in items})
        object.__setattr__(self, "_t", {node: float(ts) for node, (_, ts) in items})
        object.__setattr__(self, "_hash", None)

    @classmethod
    def _raw(cls, counters: dict[NodeId, int], stamps: dict[NodeId, float]) -> VClock:
        # Trusted builder: both dicts already valid and in sorted key order.
        clock = cls.__new__(cls)
        object.__setattr__(clock, "_c", counters)
        object.__setattr__(clock, "_t", stamps)
        object.__setattr__(clock, "_hash", None)
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

    def __getitem__(self, node: NodeId) -> tuple[int, float]:
        return (self._c[node], self._t[node])

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self._c)

    def __len__(self) -> int:
        return len(self._c)

    def __contains__(self, node: object) -> bool:
        return node in self._c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VClock):
            return NotImplemented
        return self._c == other._c and self._t == other._t

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((tuple(self._c.items()), tuple(self._t.items())))
            object.__setattr__(self, "_hash", h)
        return h

    def __repr__(self) -> str:
        return f"VClock({self.to_dict()!r})"

    # -- reading ------------------------------------------------------------------------------

    def counter(self, node: NodeId) -> int:
        """The node's counter, 0 if absent."""
        return self._c.get(node, 0)

    def last_update(self, node: NodeId) -> float | None:
        """When the node last incremented its entry, None if absent."""
        return self._t.get(node)

    def entries(self) -> tuple[tuple[NodeId, int, float], ...]:
        """(node, counter, timestamp) sorted by node: the canonical form."""
        return tuple(zip(self._c, self._c.values(), self._t.values(), strict=True))

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
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
                raise ValueError(f"vector clock timestamp for {node!r} must be a finite number")
            checked[node] = (counter, float(ts))
        return cls(checked)

    # -- order --------------------------------------------------------------------------------

    @icontract.ensure(
        lambda self, other, result: result is spec_order(self, other), enabled=ENABLED
    )
    def compare(self, other: VClock) -> Order:
        """BEFORE if self < other, AFTER if self > other, EQUAL, or CONCURRENT."""
        a = self._c
        b = other._c
        ka = a.keys()
        kb = b.keys()
        if ka == kb:
            # Same keys, same sorted order: the values line up.
            av = a.values()
            bv = b.values()
            if all(map(_ge, av, bv)):
                return _EQUAL if a == b else _AFTER
            return _BEFORE if all(map(_le, av, bv)) else _CONCURRENT
        # Counters are >= 1, so a node only one side has already rules out one direction.
        if kb < ka:
            return _AFTER if all(map(_ge, map(a.__getitem__, b), b.values())) else _CONCURRENT
        if ka < kb:
            return _BEFORE if all(map(_le, a.values(), map(b.__getitem__, a))) else _CONCURRENT
        return _CONCURRENT

    @icontract.ensure(
        lambda self, other, result: result == spec_descends(self, other), enabled=ENABLED
    )
    def descends(self, other: VClock) -> bool:
        """self >= other: self has seen every event other has."""
        a = self._c
        b = other._c
        return b.keys() <= a.keys() and all(map(_ge, map(a.__getitem__, b), b.values()))

    @icontract.ensure(
        lambda self, other, result: (
            result == (spec_descends(self, other) and not spec_descends(other, self))
        ),
        enabled=ENABLED,
    )
    def dominates(self, other: VClock) -> bool:
        """self > other: strictly newer."""
        return self._c != other._c and self.descends(other)

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
        counters = self._c
        stamps = self._t
        if node in counters:
            new_counters = dict(counters)
            new_counters[node] += 1
            new_stamps = dict(stamps)
            new_stamps[node] = float(now)
            return VClock._raw(new_counters, new_stamps)
        return VClock._raw(
            dict(sorted([*counters.items(), (node, 1)])),
            dict(sorted([*stamps.items(), (node, float(now))])),
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
        """The least upper bound: per node, the larger (counter, timestamp) pair."""
        if self == other:
            return self
        a, ta = self._c, self._t
        b, tb = other._c, other._t
        counters: dict[NodeId, int] = {}
        stamps: dict[NodeId, float] = {}
        for node in sorted(a.keys() | b.keys()):
            ca = a.get(node, 0)
            cb = b.get(node, 0)
            if ca > cb:
                counters[node] = ca
                stamps[node] = ta[node]
            elif cb > ca:
                counters[node] = cb
                stamps[node] = tb[node]
            else:
                # Same event seen twice; max keeps merge commutative if the stamps ever differ.
                counters[node] = ca
                stamps[node] = max(ta[node], tb[node])
        return VClock._raw(counters, stamps)

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
        counters = self._c
        size = len(counters)
        if size <= small:
            return self
        stamps = self._t
        dropped: set[NodeId] = set()
        for node in sorted(counters, key=lambda n: (stamps[n], n)):
            if size <= small:
                break
            age = now - stamps[node]
            if age < young or not (size > big or age > old):
                break
            dropped.add(node)
            size -= 1
        if not dropped:
            return self
        return VClock._raw(
            {n: c for n, c in counters.items() if n not in dropped},
            {n: t for n, t in stamps.items() if n not in dropped},
        )


_EMPTY: Final = VClock()
