"""How a node makes, merges and reads versions in each of its three modes.

- ``VCLOCK``: the paper's per-node vector clocks. A coordinator ``c`` writing with context
  ``ctx`` sets its own entry to ``max(ctx[c], every stored clock's c entry) + 1``
  (``ClientPut`` in spec/Dynamo.tla), so every write gets a clock of its own. Siblings are the
  maximal antichain (``versions.reconcile``).
- ``LWW``: the same clocks are carried, but a replica keeps only the version with the highest
  (timestamp, writer): concurrent writes are lost, by design.
- ``DVV``: dotted version vectors (Preguica et al.; Riak 2.0's fix for sibling explosion). A
  write's event is its dot ``(c, n)`` and its clock is only the context it was written in, so
  two writes coordinated by ``c`` from the same stale context stay distinct and concurrent
  instead of one dominating the other.

Why DVV matters here. With one counter per node, a write through ``c`` must name a counter for
``c`` above everything ``c`` holds, so its clock claims to have seen every earlier write through
``c``, including concurrent ones its client never read: those are dropped (a lost write). Riak's
per-object clocks made the opposite choice and kept every value as a sibling (sibling
explosion). A dot names exactly one event, so neither happens.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.vclock import (
    BIG_VCLOCK,
    OLD_VCLOCK,
    SMALL_VCLOCK,
    YOUNG_VCLOCK,
    NodeId,
    VClock,
)
from dynamo_ref.core.versions import (
    Siblings,
    Version,
    is_antichain,
    is_canonical,
    is_subset,
    merge_context,
    reconcile,
    reconcile_lww,
    sort_key,
)


class VersionMode(enum.Enum):
    VCLOCK = "vclock"
    LWW = "lww"
    DVV = "dvv"


@dataclass(frozen=True, slots=True)
class PruneSettings:
    """``VClock.prune`` thresholds (Riak's defaults; ``big`` is the paper's 10)."""

    small: int = SMALL_VCLOCK
    big: int = BIG_VCLOCK
    young: float = YOUNG_VCLOCK
    old: float = OLD_VCLOCK

    # The same bounds VClock.prune requires, stated where the settings are made.
    @icontract.require(lambda self: 0 <= self.small <= self.big, enabled=ENABLED)
    @icontract.require(
        lambda self: 0 <= self.young < math.inf and 0 <= self.old < math.inf, enabled=ENABLED
    )
    def __post_init__(self) -> None:
        pass


# ---- dotted version vectors -----------------------------------------------------------------


def event(v: Version) -> tuple[NodeId, int]:
    """The write's own event: its dot, or for a dot-free version its writer's clock entry."""
    return (v.writer, v.dot or v.clock.counter(v.writer))


def dvv_covers(u: Version, v: Version) -> bool:
    """``v``'s event is in ``u``'s causal history (``u`` is ``v``, or its writer had read
    ``v``)."""
    node, n = event(v)
    return u == v or (event(u) != (node, n) and u.clock.counter(node) >= n)


@icontract.ensure(lambda result: is_canonical(result), enabled=ENABLED)  # noqa: PLW0108
@icontract.ensure(lambda versions, result: bool(result) == bool(versions), enabled=ENABLED)
@icontract.ensure(lambda versions, result: is_subset(result, versions), enabled=ENABLED)
@icontract.ensure(
    lambda versions, result: only_covered_dropped(versions, result),  # noqa: PLW0108
    "only versions in another version's history are dropped",
    enabled=ENABLED,
)
def reconcile_dvv(versions: Sequence[Version]) -> Siblings:
    """The distinct versions no other version's history contains, in canonical order.

    Two different versions with one event (a counter reused after the key was reaped) are
    kept side by side: neither history claims the other.
    """
    ordered = sorted(set(versions), key=sort_key)
    kept = [v for v in ordered if not any(u != v and dvv_covers(u, v) for u in ordered)]
    # Only histories that contain each other, which no run of the node makes, leave nothing.
    return tuple(kept) if kept or not ordered else (ordered[-1],)


def only_covered_dropped(versions: Sequence[Version], result: Siblings) -> bool:
    """Each version not in ``result`` is in the history of another version of ``versions``."""
    # Hashed: the kept versions (most of them, usually) cost no search.
    kept = set(result)
    return all(v in kept or any(dvv_covers(u, v) and u != v for u in versions) for v in versions)


def dvv_context(siblings: Iterable[Version]) -> VClock:
    """The context of a read: the merged clocks plus every dot that extends them without a gap.

    A dot beyond a gap (the reader missed an earlier write through that node) is left out: a
    write with this context then keeps that sibling (a false sibling at worst) instead of
    claiming the gap's writes, which would drop them.
    """
    versions = list(siblings)
    entries = merge_context(versions).to_dict()
    for node, n, ts in sorted((v.writer, v.dot, v.timestamp) for v in versions if v.dot):
        counter = entries.get(node, (0, ts))[0]
        if n == counter + 1:
            entries[node] = (n, ts)
    return VClock(entries)


# ---- per mode -------------------------------------------------------------------------------


def reconcile_mode(mode: VersionMode, versions: Sequence[Version]) -> Siblings:
    """What a replica keeps of ``versions``, in canonical order."""
    # One version, or copies of one (replicas that agree, the common case): every mode keeps
    # exactly the first, so the sort and the pairwise comparisons can be skipped.
    count = len(versions)
    if count == 1:
        return (versions[0],)
    if count:
        first = versions[0]
        if all(v is first or v == first for v in versions):
            return (first,)
        # A write over the version it replaces: the newer one is all ``reconcile`` (or
        # ``reconcile_dvv``) keeps.
        if count == 2 and mode is not VersionMode.LWW:
            second = versions[1]
            if mode is VersionMode.VCLOCK:
                if first.clock.dominates(second.clock):
                    return (first,)
                if second.clock.dominates(first.clock):
                    return (second,)
            else:
                covers_second = dvv_covers(first, second)
                covers_first = dvv_covers(second, first)
                if covers_second and not covers_first:
                    return (first,)
                if covers_first and not covers_second:
                    return (second,)
    if mode is VersionMode.LWW:
        return reconcile_lww(versions)
    if mode is VersionMode.DVV:
        return reconcile_dvv(versions)
    return reconcile(versions)


def is_reconciled(mode: VersionMode, siblings: Siblings) -> bool:
    """``reconcile_mode(mode, siblings) == siblings``, without reconciling again: canonical
    order, and under DVV no version in another's history, under vector clocks no two clocks
    ordered or equal; LWW keeps one version. Contracts ask this of what a replica stores."""
    if len(siblings) <= 1:
        return True
    if mode is VersionMode.LWW or not is_canonical(siblings):
        return False
    if mode is VersionMode.DVV:
        # Canonical order is strict, so distinct positions hold distinct versions.
        return not any(
            i != j and dvv_covers(u, v)
            for i, u in enumerate(siblings)
            for j, v in enumerate(siblings)
        )
    return is_antichain(siblings)


def read_context(mode: VersionMode, siblings: Iterable[Version]) -> VClock:
    """The context a client gets with these siblings and passes to its next write."""
    if mode is VersionMode.DVV:
        return dvv_context(siblings)
    return merge_context(list(siblings))


# The largest counter the wire carries (MessagePack's unsigned 64-bit integers).
MAX_COUNTER = 2**64 - 1


class CounterExhausted(ValueError):
    """No counter is left above the context's and the stored versions' for this coordinator."""


def next_counter(node: NodeId, context: VClock, stored: Iterable[Version]) -> int:
    """The coordinator rule: one above the context and every stored clock's (or dot's) entry.

    :raises CounterExhausted: that would be past ``MAX_COUNTER``.
    """
    top = context.counter(node)
    for v in stored:
        top = max(top, v.clock.counter(node), v.dot if v.writer == node else 0)
    if top >= MAX_COUNTER:
        raise CounterExhausted(f"{node}'s counter for this key is at the limit ({MAX_COUNTER})")
    return top + 1


@icontract.ensure(
    lambda mode, node, context, result: (
        mode is VersionMode.DVV or result.clock.counter(node) > context.counter(node)
    ),
    "the coordinator's entry is new (pruning never drops it)",
    enabled=ENABLED,
)
@icontract.ensure(
    lambda node, stored, result: all(event(v) != event(result) for v in stored),
    "the new write's event is new at this coordinator",
    enabled=ENABLED,
)
@icontract.require(lambda timestamp: math.isfinite(timestamp), enabled=ENABLED)  # noqa: PLW0108
def write_version(
    mode: VersionMode,
    node: NodeId,
    context: VClock,
    stored: Siblings,
    *,
    value: bytes | None,
    timestamp: float,
    prune: PruneSettings,
) -> Version:
    """The version coordinator ``node`` creates for a write (``value`` None: a delete).

    :raises CounterExhausted: ``node``'s counter for the key is at ``MAX_COUNTER``.
    """
    counter = next_counter(node, context, stored)
    if mode is VersionMode.DVV:
        clock = _prune(context, timestamp, prune)
        return Version(value, clock, timestamp, node, counter)
    clock = _prune(context._with_entry(node, counter, timestamp), timestamp, prune)
    if clock.counter(node) != counter:
        # Entries stamped ahead of this node's clock made its new one look oldest: pruning may
        # drop any entry but the write's own event (the clock then holds one more than `big`).
        clock = _prune(context, timestamp, prune)._with_entry(node, counter, timestamp)
    return Version(value, clock, timestamp, node)


def _prune(clock: VClock, now: float, p: PruneSettings) -> VClock:
    return clock.prune(now, small=p.small, big=p.big, young=p.young, old=p.old)


def spec_clock(v: Version) -> dict[NodeId, int]:
    """The spec's ``vc`` of a version: counters only, with a DVV dot folded in."""
    counters = {node: counter for node, counter, _ in v.clock.entries()}
    if v.dot:
        counters[v.writer] = max(counters.get(v.writer, 0), v.dot)
    return counters
