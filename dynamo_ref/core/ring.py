"""Consistent hashing: partitions, claims and preference lists.

Strategy 3 of the paper (section 6.2) is the default: the hash space is cut into ``q`` equal
partitions, ``q`` a power of two fixed when the cluster is created, and each node claims whole
partitions (:class:`Ring`). Strategy 1, ``T`` tokens per node with ranges between tokens, is kept
for comparison (:class:`TokenRing`). Both place a key by MD5 of its bytes, as the paper does, so
every process and every language agrees on where a key lives.

A claim (create, join, leave) keeps per-node ownership within one partition of even and moves
only partitions to or from the node that changes. Beyond that it tries to give any ``target_n``
consecutive partitions distinct owners, so a preference list rarely has to skip a vnode.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import importlib
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, Self, runtime_checkable

import icontract

from dynamo_ref.core.contracts import ENABLED

NodeId = str

RING_BITS = 128
RING_SIZE = 1 << RING_BITS
MAX_Q = 1 << 16
MAX_TOKENS_PER_NODE = 4096
DEFAULT_TARGET_N = 3

Owners = tuple[NodeId, ...]
Table = tuple[tuple[NodeId, ...], ...]


class _Digest(Protocol):
    def digest(self) -> bytes: ...


def _md5_constructor() -> Callable[[bytes], _Digest]:
    """CPython's own MD5 when present: for short keys it is about twice as fast as OpenSSL's."""
    try:
        md5: Callable[[bytes], _Digest] = importlib.import_module("_md5").md5
    except (ImportError, AttributeError):
        return partial(hashlib.md5, usedforsecurity=False)
    return md5


_md5 = _md5_constructor()


@icontract.ensure(lambda result: 0 <= result < RING_SIZE, enabled=ENABLED)
def hash_key(key: bytes) -> int:
    """Position of ``key`` on the ring: its MD5 digest read as a big-endian 128-bit integer.

    :raises TypeError: ``key`` is not bytes-like.
    """
    try:
        digest = _md5(key).digest()
    except TypeError:
        # ``_md5`` wants the buffer protocol; hashlib also takes proxies that can be realized.
        digest = hashlib.md5(key, usedforsecurity=False).digest()
    return int.from_bytes(digest, "big")


def token_position(node: NodeId, index: int) -> int:
    """Position of token ``index`` of ``node`` (strategy 1): MD5 of ``b"<node>/<index>"``.

    The index is decimal digits after the last ``/``, so no two (node, index) pairs share bytes.
    """
    return hash_key(node.encode("utf-8") + b"/" + str(index).encode("ascii"))


# --- Invariants, shared by the contracts and the tests ------------------------------------------


def ownership_counts(owners: Iterable[NodeId], nodes: Iterable[NodeId]) -> dict[NodeId, int]:
    """Partitions per node: zero for nodes owning none; owners outside ``nodes`` count too."""
    counts = dict.fromkeys(nodes, 0)
    for owner in owners:
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def is_balanced(owners: Sequence[NodeId], nodes: Collection[NodeId]) -> bool:
    """Every owner is a node and per-node ownership differs by at most one partition."""
    if not nodes or any(owner not in nodes for owner in owners):
        return False
    counts = ownership_counts(owners, nodes).values()
    return max(counts) - min(counts) <= 1


def moves_only_to(before: Sequence[NodeId], after: Sequence[NodeId], node: NodeId) -> bool:
    """Every partition that changed owner went to ``node``."""
    return len(before) == len(after) and all(
        a in (b, node) for b, a in zip(before, after, strict=True)
    )


def moves_only_from(before: Sequence[NodeId], after: Sequence[NodeId], node: NodeId) -> bool:
    """Every partition that changed owner came from ``node``, and ``node`` owns none any more."""
    return (
        len(before) == len(after)
        and node not in after
        and all(b in (a, node) for b, a in zip(before, after, strict=True))
    )


def moved(before: Sequence[NodeId], after: Sequence[NodeId]) -> int:
    """Number of partitions whose owner differs."""
    return sum(1 for b, a in zip(before, after, strict=True) if b != a)


def repeat_windows(owners: Sequence[NodeId], n: int) -> int:
    """How many of the cyclic windows of ``min(n, len(owners))`` partitions repeat an owner."""
    q = len(owners)
    width = min(n, q)
    return sum(1 for p in range(q) if len({owners[(p + i) % q] for i in range(width)}) < width)


def is_preference_list(nodes: Collection[NodeId], n: int, result: Sequence[NodeId]) -> bool:
    """``min(n, len(nodes))`` distinct members of ``nodes`` (a set: ``n`` lookups, not scans)."""
    return (
        len(result) == min(n, len(nodes))
        and len(set(result)) == len(result)
        and all(v in nodes for v in result)
    )


# --- Claims (strategy 3) ------------------------------------------------------------------------


@icontract.require(lambda order: len(order) > 0, enabled=ENABLED)
@icontract.require(lambda order: len(set(order)) == len(order), enabled=ENABLED)
@icontract.require(lambda q: q > 0, enabled=ENABLED)
@icontract.ensure(lambda q, result: len(result) == q, enabled=ENABLED)
@icontract.ensure(lambda order, result: is_balanced(result, order), enabled=ENABLED)
def _spread_claim(order: Sequence[NodeId], q: int) -> Owners:
    """Initial claim: round-robin over ``order`` with evenly spread skips.

    Walk ``t = 0, 1, ...`` over ``(q // k + 1) * k`` slots, slot ``t`` belonging to
    ``order[t % k]``, and drop ``k - q % k`` slots of distinct residues, spread evenly (the
    ``- j // per`` term separates residues that even spacing alone would repeat). Each node then
    owns ``q // k`` or ``q // k + 1`` partitions, and any window of partitions spanning fewer than
    ``k`` slots has distinct owners. Skips are at least ``q // k`` slots apart, so for
    ``target_n < k <= q / target_n`` (or ``k`` dividing ``q``, no skips) every window of
    ``target_n`` consecutive partitions has distinct owners.
    """
    k = len(order)
    a, r = divmod(q, k)
    if r == 0:
        return tuple(order[i % k] for i in range(q))
    rounds = a + 1
    slots = rounds * k
    skips = k - r
    per = skips // math.gcd(rounds, skips)
    dropped = {((2 * j + 1) * slots) // (2 * skips) - j // per for j in range(skips)}
    return tuple(order[t % k] for t in range(slots) if t not in dropped)


def _nearby_offsets(q: int, target_n: int) -> tuple[int, ...]:
    """Offsets to the partitions that share a window of ``target_n`` with partition 0."""
    return tuple(sorted({d % q for i in range(1, target_n) for d in (i, -i)} - {0}))


def _gap(positions: Sequence[int], p: int, q: int) -> int:
    """Cyclic distance from ``p`` to the nearest of ``positions`` (sorted); ``q`` if none."""
    if not positions:
        return q
    i = bisect.bisect_left(positions, p)
    after = positions[i % len(positions)]
    before = positions[i - 1]
    return min((after - p) % q, (p - after) % q, (p - before) % q, (before - p) % q)


def _has_repeats(owned: Sequence[NodeId], width: int) -> bool:
    q = len(owned)
    return any(len({owned[(w + i) % q] for i in range(width)}) < width for w in range(q))


def _hot_positions(owned: Sequence[NodeId], width: int) -> list[int]:
    """Positions inside some window of ``width`` that repeats an owner, in ring order."""
    q = len(owned)
    hot: set[int] = set()
    for w in range(q):
        window = [(w + i) % q for i in range(width)]
        if len({owned[j] for j in window}) < width:
            hot.update(window)
    return sorted(hot)


def _cyclic_distance(a: int, b: int, q: int) -> int:
    return min((a - b) % q, (b - a) % q)


def _delta_one(owned: Sequence[NodeId], width: int, p: int, v: NodeId) -> int:
    """Change in the number of repeated windows if partition ``p`` went to ``v``."""
    q = len(owned)
    change = 0
    for w in range(p - width + 1, p + 1):
        window = [owned[(w + i) % q] for i in range(width)]
        before = len(set(window)) < width
        window[p - w] = v
        change += (len(set(window)) < width) - before
    return change


def _delta(owned: list[NodeId], width: int, change: dict[int, NodeId]) -> int:
    """Change in repeated windows if ``change`` were applied together; ``owned`` is restored."""
    total = 0
    saved: dict[int, NodeId] = {}
    for p, v in change.items():
        total += _delta_one(owned, width, p, v)
        saved[p] = owned[p]
        owned[p] = v
    for p, v in saved.items():
        owned[p] = v
    return total


def _repair_join(
    owned: list[NodeId], owners: Owners, counts: dict[NodeId, int], node: NodeId, width: int
) -> None:
    """Move ``node``'s claims while that removes repeated windows, keeping balance.

    A move hands one claimed partition back to its donor and takes another: balanced when both
    have the same donor, or the new donor is at ``share + 1`` and the old one at ``share``.
    Moves far apart act on disjoint windows, so their gains add; near pairs are tried whole.
    Each accepted move strictly lowers the repeat count, so this ends.
    """
    q = len(owned)
    share = q - sum(counts.values())
    while _has_repeats(owned, width):
        backs = {p: _delta_one(owned, width, p, owners[p]) for p in range(q) if owned[p] == node}
        by_giver: dict[NodeId, list[tuple[int, int]]] = {}
        for p, r in backs.items():
            by_giver.setdefault(owners[p], []).append((r, p))
        pool = sorted((r, p) for p, r in backs.items() if counts[owners[p]] == share)
        for pairs in by_giver.values():
            pairs.sort()
        best, best_move = 0, (-1, -1)
        for p_in in range(q):
            taker = owned[p_in]
            if taker == node:
                continue
            gain = _delta_one(owned, width, p_in, node)
            pools = [by_giver.get(taker, [])]
            if counts[taker] == share + 1:
                pools.append(pool)
            for candidates in pools:
                for r, p_out in candidates:
                    if gain + r >= best:
                        break
                    if _cyclic_distance(p_out, p_in, q) >= width:
                        best, best_move = gain + r, (p_out, p_in)
                        break
        for p_out in backs:
            for off in range(1 - width, width):
                p_in = (p_out + off) % q
                taker, giver = owned[p_in], owners[p_out]
                if taker == node or (
                    taker != giver and not (counts[giver] == share and counts[taker] == share + 1)
                ):
                    continue
                d = _delta(owned, width, {p_out: giver, p_in: node})
                if d < best:
                    best, best_move = d, (p_out, p_in)
        if best == 0:
            return
        p_out, p_in = best_move
        giver, taker = owners[p_out], owned[p_in]
        owned[p_out], owned[p_in] = giver, node
        counts[giver] += 1
        counts[taker] -= 1


def _repair_leave(
    owned: list[NodeId], moved_ps: Sequence[int], counts: dict[NodeId, int], width: int
) -> None:
    """Re-deal the leaver's old partitions while that removes repeated windows.

    Two of them may swap receivers, or one may pass from a receiver at ``share + 1`` to one at
    ``share``; both keep balance. Each accepted move strictly lowers the repeat count.
    """
    q = len(owned)
    share = q // len(counts)
    while _has_repeats(owned, width):
        to = {p: {v: _delta_one(owned, width, p, v) for v in counts} for p in moved_ps}
        best, best_change = 0, dict[int, NodeId]()
        # Only a move touching a repeated window can remove one.
        hot = set(_hot_positions(owned, width))
        for p1 in moved_ps:
            if p1 not in hot:
                continue
            v1 = owned[p1]
            if counts[v1] == share + 1:
                for v2, d in to[p1].items():
                    if counts[v2] == share and d < best:
                        best, best_change = d, {p1: v2}
            for p2 in moved_ps:
                v2 = owned[p2]
                if v2 == v1:
                    continue
                if _cyclic_distance(p1, p2, q) >= width:
                    d = to[p1][v2] + to[p2][v1]
                else:
                    d = _delta(owned, width, {p1: v2, p2: v1})
                if d < best:
                    best, best_change = d, {p1: v2, p2: v1}
        if best == 0:
            return
        for p, v in best_change.items():
            counts[owned[p]] -= 1
            counts[v] += 1
            owned[p] = v


@icontract.require(lambda owners: len(owners) > 0, enabled=ENABLED)
@icontract.require(lambda nodes: len(set(nodes)) == len(nodes), enabled=ENABLED)
@icontract.require(is_balanced, enabled=ENABLED)
@icontract.require(lambda nodes, node: node not in nodes, enabled=ENABLED)
@icontract.require(lambda target_n: target_n >= 1, enabled=ENABLED)
@icontract.ensure(lambda owners, node, result: moves_only_to(owners, result, node), enabled=ENABLED)
@icontract.ensure(lambda nodes, node, result: is_balanced(result, (*nodes, node)), enabled=ENABLED)
@icontract.ensure(
    lambda owners, nodes, result: moved(owners, result) == len(owners) // (len(nodes) + 1),
    enabled=ENABLED,
)
def _claim_join(owners: Owners, nodes: Owners, node: NodeId, target_n: int) -> Owners:
    """``node`` takes ``q // (k + 1)`` partitions (the fewest that keep balance) from others.

    Donors are nodes above their final share; among their partitions, prefer (in order) one
    that puts ``node`` no nearer than ``target_n`` to its other partitions, one whose donor
    owns a partition nearby (taking it repairs a repeated window), and the one farthest from
    ``node``'s partitions, then the lowest index. A local search then trades claims while that
    removes repeated windows.
    """
    q = len(owners)
    share, extra = divmod(q, len(nodes) + 1)
    owned = list(owners)
    counts = ownership_counts(owners, nodes)
    # Nodes above ``share`` once done: exactly ``extra`` of them keep ``share + 1``.
    above = sum(1 for c in counts.values() if c > share)
    nearby = _nearby_offsets(q, target_n)
    repeats = [sum(1 for off in nearby if owned[(p + off) % q] == owned[p]) for p in range(q)]
    dist = [q] * q  # distance to the nearest partition of ``node``

    def key(p: int) -> tuple[bool, int, int, int]:
        return (dist[p] < target_n, -repeats[p], -dist[p], p)

    # Keys only get worse as claims proceed, so a popped key that is still current is the best.
    heap = [key(p) for p in range(q)]
    heapq.heapify(heap)
    for _ in range(share):
        while True:
            entry = heapq.heappop(heap)
            p = entry[-1]
            donor = owned[p]
            c = counts.get(donor, 0)
            if donor == node or c <= share or (c == share + 1 and above <= extra):
                continue  # taken, or a donor that can never give again
            current = key(p)
            if current == entry:
                break
            heapq.heappush(heap, current)
        counts[donor] -= 1
        if counts[donor] == share:
            above -= 1
        owned[p] = node
        for off in nearby:
            if owned[(p + off) % q] == donor:
                repeats[(p + off) % q] -= 1
        dist[p] = 0
        for delta in range(1, q // 2 + 1):
            improved = False
            for j in ((p + delta) % q, (p - delta) % q):
                if dist[j] > delta:
                    dist[j] = delta
                    improved = True
            if not improved:
                break
    _repair_join(owned, owners, counts, node, min(target_n, q))
    return tuple(owned)


@icontract.require(lambda owners: len(owners) > 0, enabled=ENABLED)
@icontract.require(lambda nodes: len(set(nodes)) == len(nodes), enabled=ENABLED)
@icontract.require(is_balanced, enabled=ENABLED)
@icontract.require(lambda nodes, node: node in nodes and len(nodes) > 1, enabled=ENABLED)
@icontract.require(lambda target_n: target_n >= 1, enabled=ENABLED)
@icontract.ensure(
    lambda owners, node, result: moves_only_from(owners, result, node), enabled=ENABLED
)
@icontract.ensure(
    lambda nodes, node, result: is_balanced(result, [v for v in nodes if v != node]),
    enabled=ENABLED,
)
def _claim_leave(owners: Owners, nodes: Owners, node: NodeId, target_n: int) -> Owners:
    """``node``'s partitions go to the others, one at a time, keeping balance.

    Receivers are nodes below their final share. Each step picks the (partition, receiver)
    pair that keeps the receiver at least ``target_n`` from its other partitions, then the
    receiver with fewest partitions, then the pair farthest apart, then node order and index.
    A local search then re-deals them while that removes repeated windows. Some repeats cannot
    be avoided: on a round-robin ring of ``k < 2 * target_n`` nodes, the ``2 * (target_n - 1)``
    neighbours of a freed partition already hold every remaining node.
    """
    q = len(owners)
    rest = tuple(v for v in nodes if v != node)
    share, extra = divmod(q, len(rest))
    owned = list(owners)
    counts = dict.fromkeys(rest, 0)
    positions: dict[NodeId, list[int]] = {v: [] for v in rest}
    todo: list[int] = []
    for p, owner in enumerate(owners):
        if owner == node:
            todo.append(p)
        else:
            counts[owner] += 1
            positions[owner].append(p)
    # Nodes at ``share + 1``: no more than ``extra`` of them once done.
    above = sum(1 for c in counts.values() if c > share)
    rank = {v: i for i, v in enumerate(rest)}

    def key(p: int, v: NodeId) -> tuple[bool, int, int, int, int]:
        d = _gap(positions[v], p, q)
        return (d < target_n, counts[v], -d, rank[v], p)

    # As in the join, keys only get worse, so a popped key that is still current is the best.
    heap = [key(p, v) for p in todo for v in rest]
    heapq.heapify(heap)
    left = len(todo)
    while left:
        entry = heapq.heappop(heap)
        p, v = entry[-1], rest[entry[-2]]
        c = counts[v]
        if owned[p] != node or c > share or (c == share and above >= extra):
            continue  # dealt already, or a receiver that can never take again
        current = key(p, v)
        if current != entry:
            heapq.heappush(heap, current)
            continue
        owned[p] = v
        left -= 1
        counts[v] += 1
        if counts[v] == share + 1:
            above += 1
        bisect.insort(positions[v], p)
    _repair_leave(owned, [p for p in range(q) if owners[p] == node], counts, min(target_n, q))
    return tuple(owned)


# --- Preference lists, shared by both strategies ------------------------------------------------


def _creation_order(nodes: Sequence[NodeId], zone_of: Mapping[NodeId, str]) -> list[NodeId]:
    """Sorted nodes, interleaved by zone so neighbouring partitions land in different zones."""
    if not zone_of:
        return list(nodes)
    groups: dict[str, list[NodeId]] = {}
    for v in nodes:
        groups.setdefault(zone_of[v], []).append(v)
    ordered = [groups[z] for z in sorted(groups)]
    return [g[i] for i in range(max(map(len, ordered))) for g in ordered if i < len(g)]


def _distinct_from(owners: Sequence[NodeId], start: int, extra: Sequence[NodeId]) -> Owners:
    """Every node once, in order of first appearance clockwise from ``start``, then ``extra``."""
    q = len(owners)
    seen: dict[NodeId, None] = {}
    for i in range(q):
        seen.setdefault(owners[(start + i) % q])
    for v in extra:
        seen.setdefault(v)
    return tuple(seen)


def _pick(
    owners: Sequence[NodeId],
    start: int,
    n: int,
    extra: Sequence[NodeId],
    *,
    zone_of: Mapping[NodeId, str],
    zone_count: int,
) -> Owners:
    """The preference list of the range at ``start``: first ``n`` distinct nodes clockwise.

    With zones, the walk first takes nodes of zones not yet used, then, if fewer than ``n``
    zones exist, fills with the next distinct nodes clockwise. Nodes owning no range
    (``extra``) come after the whole circle.
    """
    q = len(owners)
    seen: list[NodeId] = []
    seen_set: set[NodeId] = set()
    picked: list[NodeId] = []
    used: set[str] = set()
    zone_goal = min(n, zone_count)

    def visit(v: NodeId) -> bool:
        """Record ``v``; True once the walk has seen enough."""
        if v in seen_set:
            return False
        seen_set.add(v)
        seen.append(v)
        if not zone_of:
            picked.append(v)
            return len(picked) == n
        z = zone_of[v]
        if z not in used and len(picked) < n:
            used.add(z)
            picked.append(v)
        return len(used) == zone_goal and len(seen) >= n

    done = False
    i = start
    for _ in range(q):
        if visit(owners[i]):
            done = True
            break
        i = i + 1 if i + 1 < q else 0
    if not done:
        for v in extra:
            if visit(v):
                break
    if len(picked) < n:
        chosen = set(picked)
        for v in seen:
            if len(picked) == n:
                break
            if v not in chosen:
                picked.append(v)
    return tuple(picked)


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"replication factor n must be at least 1, got {n}")


def _check_node_id(node: NodeId) -> None:
    if not isinstance(node, str) or not node:
        raise ValueError(f"a node id is a non-empty string, got {node!r}")


def _zone_pairs(
    nodes: Sequence[NodeId], zones: Mapping[NodeId, str] | None
) -> tuple[tuple[NodeId, str], ...]:
    """Canonical zones: one (node, zone) pair per node, sorted; empty when zones are off."""
    if not zones:
        return ()
    unknown = sorted(set(zones) - set(nodes))
    if unknown:
        raise ValueError(f"zones name nodes that are not in the ring: {unknown}")
    missing = sorted(set(nodes) - set(zones))
    if missing:
        raise ValueError(f"zones are given but these nodes have none: {missing}")
    return tuple(sorted((v, zones[v]) for v in nodes))


def _validate_members(
    nodes: Owners, zones: tuple[tuple[NodeId, str], ...]
) -> tuple[Owners, tuple[tuple[NodeId, str], ...], dict[NodeId, str]]:
    """Sorted unique nodes, canonical zones and the zone map, or a clear ValueError."""
    if not nodes:
        raise ValueError("a ring needs at least one node")
    for v in nodes:
        _check_node_id(v)
    if len(set(nodes)) != len(nodes):
        raise ValueError("duplicate node ids")
    sorted_nodes = tuple(sorted(nodes))
    zone_of = dict(zones)
    if len(zone_of) != len(zones):
        raise ValueError("a node has more than one zone")
    for z in zone_of.values():
        if not isinstance(z, str) or not z:
            raise ValueError(f"a zone is a non-empty string, got {z!r}")
    return sorted_nodes, _zone_pairs(sorted_nodes, zone_of), zone_of


def _check_nodes_arg(nodes: Collection[NodeId]) -> None:
    if isinstance(nodes, str):
        raise TypeError("nodes is a collection of node ids, not one string")


def _zones_with(
    zones: tuple[tuple[NodeId, str], ...], node: NodeId, zone: str | None
) -> dict[NodeId, str]:
    """The zone map after ``node`` joins in ``zone``; zones must be used by all or none."""
    if zones and zone is None:
        raise ValueError(f"this ring has zones: give {node!r} a zone to join")
    if not zones and zone is not None:
        raise ValueError("this ring has no zones: join without one")
    zone_of = dict(zones)
    if zone is not None:
        zone_of[node] = zone
    return zone_of


@runtime_checkable
class Partitioner(Protocol):
    """What the rest of the core needs from a placement strategy."""

    @property
    def nodes(self) -> tuple[NodeId, ...]: ...

    @property
    def partition_count(self) -> int: ...

    def partition_of(self, key: bytes) -> int: ...

    def preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]: ...

    def preference_list_for_partition(self, p: int, n: int) -> tuple[NodeId, ...]: ...

    def extended_preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]: ...

    def key_space_share(self) -> dict[NodeId, float]: ...

    def join(self, node: NodeId, zone: str | None = None) -> Self: ...

    def leave(self, node: NodeId) -> Self: ...


# --- Strategy 3: Q equal partitions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ring:
    """Strategy 3: ``q`` equal partitions; partition ``i`` covers ``[i, i + 1) * 2**128 / q``.

    ``owners[i]`` is the node that claimed partition ``i``; ``nodes`` are all members (a node
    owns nothing only when there are more nodes than partitions). ``zones`` is empty or one
    ``(node, zone)`` pair per node. ``target_n`` is the window the claim keeps free of repeats.
    Build rings with :meth:`create`, :meth:`join` and :meth:`leave`; the constructor only checks
    structure, so a ring read from elsewhere can be checked before use.
    """

    q: int
    owners: Owners
    nodes: Owners
    zones: tuple[tuple[NodeId, str], ...] = ()
    target_n: int = DEFAULT_TARGET_N
    _shift: int = field(init=False, repr=False, compare=False)
    # ``nodes`` as a set (they are distinct): membership in constant time, for the contracts.
    _members: frozenset[NodeId] = field(init=False, repr=False, compare=False)
    _zone_of: dict[NodeId, str] = field(init=False, repr=False, compare=False)
    _zone_count: int = field(init=False, repr=False, compare=False)
    _idle: Owners = field(init=False, repr=False, compare=False)
    _tables: dict[int, Table] = field(init=False, repr=False, compare=False)
    _extended: dict[tuple[int, int], Owners] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        q = self.q
        if not isinstance(q, int) or q < 1 or q > MAX_Q or q & (q - 1):
            raise ValueError(f"q must be a power of two between 1 and {MAX_Q}, got {q!r}")
        if len(self.owners) != q:
            raise ValueError(f"owners has {len(self.owners)} entries for q = {q}")
        nodes, zones, zone_of = _validate_members(tuple(self.nodes), tuple(self.zones))
        members = set(nodes)
        strangers = sorted({o for o in self.owners if o not in members})
        if strangers:
            raise ValueError(f"partitions owned by nodes not in the ring: {strangers}")
        if self.target_n < 1:
            raise ValueError(f"target_n must be at least 1, got {self.target_n}")
        owning = set(self.owners)
        setattr_ = object.__setattr__
        setattr_(self, "owners", tuple(self.owners))
        setattr_(self, "nodes", nodes)
        setattr_(self, "zones", zones)
        setattr_(self, "_members", frozenset(nodes))
        setattr_(self, "_shift", RING_BITS - (q.bit_length() - 1))
        setattr_(self, "_zone_of", zone_of)
        setattr_(self, "_zone_count", len(set(zone_of.values())))
        setattr_(self, "_idle", tuple(v for v in nodes if v not in owning))
        setattr_(self, "_tables", {})
        setattr_(self, "_extended", {})

    @staticmethod
    @icontract.ensure(lambda result: is_balanced(result.owners, result.nodes), enabled=ENABLED)
    @icontract.ensure(lambda nodes, result: set(result.nodes) == set(nodes), enabled=ENABLED)
    @icontract.ensure(lambda q, result: result.q == q, enabled=ENABLED)
    def create(
        nodes: Collection[NodeId],
        q: int,
        zones: Mapping[NodeId, str] | None = None,
        target_n: int = DEFAULT_TARGET_N,
    ) -> Ring:
        """A new ring of ``nodes`` over ``q`` partitions; independent of the order of ``nodes``.

        Every node gets ``q // k`` or ``q // k + 1`` partitions, round-robin in sorted order
        (interleaved by zone when zones are given). Any ``target_n`` consecutive partitions have
        distinct owners when ``k >= target_n`` and ``k`` divides ``q``, or when
        ``target_n < k <= q / target_n``.

        :raises ValueError: no nodes, duplicates, bad zones or a bad ``q``.
        :raises TypeError: ``nodes`` is one string.
        """
        _check_nodes_arg(nodes)
        members = tuple(nodes)
        sorted_nodes, zone_pairs, zone_of = _validate_members(members, _zone_pairs(members, zones))
        if not isinstance(q, int) or q < 1 or q > MAX_Q or q & (q - 1):
            raise ValueError(f"q must be a power of two between 1 and {MAX_Q}, got {q!r}")
        owners = _spread_claim(_creation_order(sorted_nodes, zone_of), q)
        return Ring(q, owners, sorted_nodes, zone_pairs, target_n)

    # Placement.

    @property
    def partition_count(self) -> int:
        return self.q

    @icontract.ensure(lambda self, result: 0 <= result < self.q, enabled=ENABLED)
    def partition_of(self, key: bytes) -> int:
        """The partition holding ``key``: the top ``log2(q)`` bits of its hash.

        :raises TypeError: ``key`` is not bytes-like.
        """
        return hash_key(key) >> self._shift

    @icontract.ensure(lambda self, p, result: result[0] < result[1], enabled=ENABLED)
    def partition_bounds(self, p: int) -> tuple[int, int]:
        """Ring positions ``[start, end)`` of partition ``p``.

        :raises ValueError: ``p`` is not a partition.
        """
        self._check_partition(p)
        width = RING_SIZE // self.q
        return p * width, (p + 1) * width

    @icontract.ensure(
        lambda self, n, result: is_preference_list(self._members, n, result), enabled=ENABLED
    )
    def preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]:
        """The first ``n`` distinct nodes clockwise from ``key`` (distinct zones first).

        :raises ValueError: ``n < 1``.
        :raises TypeError: ``key`` is not bytes-like.
        """
        table = self._tables.get(n)
        if table is None:
            table = self._table(n)
        # hash_key inlined: this is the hot path of every request.
        try:
            digest = _md5(key).digest()
        except TypeError:
            return table[hash_key(key) >> self._shift]
        return table[int.from_bytes(digest, "big") >> self._shift]

    @icontract.ensure(
        lambda self, n, result: is_preference_list(self._members, n, result), enabled=ENABLED
    )
    def preference_list_for_partition(self, p: int, n: int) -> tuple[NodeId, ...]:
        """The preference list shared by every key of partition ``p``.

        :raises ValueError: ``p`` is not a partition or ``n < 1``.
        """
        self._check_partition(p)
        table = self._tables.get(n)
        if table is None:
            table = self._table(n)
        return table[p]

    @icontract.ensure(
        lambda self, key, n, result: (
            result[: min(n, len(self.nodes))] == self.preference_list(key, n)
        ),
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: sorted(result) == list(self.nodes), enabled=ENABLED)
    def extended_preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]:
        """Sloppy-quorum order: the preference list, then every other node clockwise.

        :raises ValueError: ``n < 1``.
        :raises TypeError: ``key`` is not bytes-like.
        """
        return self.extended_preference_list_for_partition(self.partition_of(key), n)

    def extended_preference_list_for_partition(self, p: int, n: int) -> tuple[NodeId, ...]:
        """:meth:`extended_preference_list` for every key of partition ``p``.

        :raises ValueError: ``p`` is not a partition or ``n < 1``.
        """
        cached = self._extended.get((n, p))
        if cached is None:
            head = self.preference_list_for_partition(p, n)
            chosen = set(head)
            tail = _distinct_from(self.owners, p, self._idle)
            cached = head + tuple(v for v in tail if v not in chosen)
            self._extended[(n, p)] = cached
        return cached

    def partitions_replicated_by(self, node: NodeId, n: int) -> tuple[int, ...]:
        """Partitions whose preference list of length ``n`` includes ``node``.

        :raises ValueError: ``node`` is not in the ring or ``n < 1``.
        """
        self._check_member(node)
        table = self._tables.get(n)
        if table is None:
            table = self._table(n)
        return tuple(p for p, pref in enumerate(table) if node in pref)

    # Ownership.

    def ownership(self) -> dict[NodeId, int]:
        """Partitions per node (zero for nodes that own none)."""
        return ownership_counts(self.owners, self.nodes)

    def key_space_share(self) -> dict[NodeId, float]:
        """Fraction of the hash space each node holds as first replica."""
        return {v: c / self.q for v, c in self.ownership().items()}

    def partitions_of(self, node: NodeId) -> tuple[int, ...]:
        """The partitions ``node`` claimed, in ring order.

        :raises ValueError: ``node`` is not in the ring.
        """
        self._check_member(node)
        return tuple(p for p, owner in enumerate(self.owners) if owner == node)

    def zone(self, node: NodeId) -> str | None:
        """The zone of ``node``, or None on a ring without zones.

        :raises ValueError: ``node`` is not in the ring.
        """
        self._check_member(node)
        return self._zone_of.get(node)

    def repeat_windows(self, n: int | None = None) -> int:
        """Windows of ``n`` (default ``target_n``) consecutive partitions with a repeated owner.

        :raises ValueError: ``n < 1``.
        """
        width = self.target_n if n is None else n
        _check_n(width)
        return repeat_windows(self.owners, width)

    # Membership changes.

    @icontract.ensure(
        lambda self, node, result: moves_only_to(self.owners, result.owners, node),
        enabled=ENABLED,
    )
    @icontract.ensure(lambda result: is_balanced(result.owners, result.nodes), enabled=ENABLED)
    @icontract.ensure(
        lambda self, node, result: set(result.nodes) == {*self.nodes, node}, enabled=ENABLED
    )
    def join(self, node: NodeId, zone: str | None = None) -> Ring:
        """``node`` joins and takes ``q // (k + 1)`` partitions, only from other nodes.

        :raises ValueError: ``node`` is already in the ring, or its zone is missing or unwanted.
        """
        _check_node_id(node)
        if node in self.nodes:
            raise ValueError(f"node {node!r} is already in the ring")
        zone_of = _zones_with(self.zones, node, zone)
        owners = _claim_join(self.owners, self.nodes, node, self.target_n)
        nodes = (*self.nodes, node)
        return Ring(self.q, owners, nodes, _zone_pairs(nodes, zone_of), self.target_n)

    @icontract.ensure(
        lambda self, node, result: moves_only_from(self.owners, result.owners, node),
        enabled=ENABLED,
    )
    @icontract.ensure(lambda result: is_balanced(result.owners, result.nodes), enabled=ENABLED)
    @icontract.ensure(
        lambda self, node, result: set(result.nodes) == set(self.nodes) - {node},
        enabled=ENABLED,
    )
    def leave(self, node: NodeId) -> Ring:
        """``node`` leaves; its partitions, and only those, go to the others.

        :raises ValueError: ``node`` is not in the ring or is the last node.
        """
        self._check_member(node)
        if len(self.nodes) == 1:
            raise ValueError(f"{node!r} is the last node: a ring cannot be empty")
        owners = _claim_leave(self.owners, self.nodes, node, self.target_n)
        nodes = tuple(v for v in self.nodes if v != node)
        zones = tuple(pair for pair in self.zones if pair[0] != node)
        return Ring(self.q, owners, nodes, zones, self.target_n)

    # Internals.

    def _table(self, n: int) -> Table:
        _check_n(n)
        table = tuple(
            _pick(self.owners, p, n, self._idle, zone_of=self._zone_of, zone_count=self._zone_count)
            for p in range(self.q)
        )
        self._tables[n] = table
        return table

    def _check_partition(self, p: int) -> None:
        if not 0 <= p < self.q:
            raise ValueError(f"partition {p} is outside 0..{self.q - 1}")

    def _check_member(self, node: NodeId) -> None:
        if node not in self.nodes:
            raise ValueError(f"node {node!r} is not in the ring")


# --- Strategy 1: T random tokens per node -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRing:
    """Strategy 1: each node holds ``tokens_per_node`` tokens at :func:`token_position`.

    Token ``i`` (in ring order) covers the positions after token ``i - 1`` up to and including
    its own; that range plays the role of a partition. Nothing here is random: tokens come from
    MD5 of the node id and token index, so the ring depends only on its members.
    """

    tokens_per_node: int
    nodes: Owners
    zones: tuple[tuple[NodeId, str], ...] = ()
    _positions: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _owners: Owners = field(init=False, repr=False, compare=False)
    _members: frozenset[NodeId] = field(init=False, repr=False, compare=False)  # as Ring's
    _zone_of: dict[NodeId, str] = field(init=False, repr=False, compare=False)
    _zone_count: int = field(init=False, repr=False, compare=False)
    _tables: dict[int, Table] = field(init=False, repr=False, compare=False)
    _extended: dict[tuple[int, int], Owners] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = self.tokens_per_node
        if not isinstance(t, int) or not 1 <= t <= MAX_TOKENS_PER_NODE:
            raise ValueError(f"tokens_per_node must be in 1..{MAX_TOKENS_PER_NODE}, got {t!r}")
        nodes, zones, zone_of = _validate_members(tuple(self.nodes), tuple(self.zones))
        # Ties on position (never seen with MD5) fall back to node order.
        tokens = sorted((token_position(v, i), v) for v in nodes for i in range(t))
        setattr_ = object.__setattr__
        setattr_(self, "nodes", nodes)
        setattr_(self, "zones", zones)
        setattr_(self, "_members", frozenset(nodes))
        setattr_(self, "_positions", tuple(pos for pos, _ in tokens))
        setattr_(self, "_owners", tuple(v for _, v in tokens))
        setattr_(self, "_zone_of", zone_of)
        setattr_(self, "_zone_count", len(set(zone_of.values())))
        setattr_(self, "_tables", {})
        setattr_(self, "_extended", {})

    @staticmethod
    @icontract.ensure(lambda nodes, result: set(result.nodes) == set(nodes), enabled=ENABLED)
    def create(
        nodes: Collection[NodeId],
        tokens_per_node: int,
        zones: Mapping[NodeId, str] | None = None,
    ) -> TokenRing:
        """A strategy-1 ring of ``nodes`` with ``tokens_per_node`` tokens each.

        :raises ValueError: no nodes, duplicates, bad zones or a bad ``tokens_per_node``.
        :raises TypeError: ``nodes`` is one string.
        """
        _check_nodes_arg(nodes)
        members = tuple(nodes)
        return TokenRing(tokens_per_node, members, _zone_pairs(members, zones))

    @property
    def partition_count(self) -> int:
        return len(self._positions)

    @property
    def tokens(self) -> tuple[tuple[int, NodeId], ...]:
        """All (position, node) tokens in ring order."""
        return tuple(zip(self._positions, self._owners, strict=True))

    @icontract.ensure(lambda self, result: 0 <= result < self.partition_count, enabled=ENABLED)
    def partition_of(self, key: bytes) -> int:
        """Index of the first token at or after the key's position (wrapping).

        :raises TypeError: ``key`` is not bytes-like.
        """
        return bisect.bisect_left(self._positions, hash_key(key)) % len(self._positions)

    def owner_at(self, position: int) -> NodeId:
        """The first node clockwise from ring ``position``."""
        return self._owners[bisect.bisect_left(self._positions, position) % len(self._owners)]

    @icontract.ensure(
        lambda self, n, result: is_preference_list(self._members, n, result), enabled=ENABLED
    )
    def preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]:
        """The first ``n`` distinct nodes clockwise from ``key`` (distinct zones first).

        :raises ValueError: ``n < 1``.
        :raises TypeError: ``key`` is not bytes-like.
        """
        table = self._tables.get(n)
        if table is None:
            table = self._table(n)
        return table[bisect.bisect_left(self._positions, hash_key(key)) % len(table)]

    @icontract.ensure(
        lambda self, n, result: is_preference_list(self._members, n, result), enabled=ENABLED
    )
    def preference_list_for_partition(self, p: int, n: int) -> tuple[NodeId, ...]:
        """The preference list of the range ending at token ``p``.

        :raises ValueError: ``p`` is not a token range or ``n < 1``.
        """
        if not 0 <= p < self.partition_count:
            raise ValueError(f"token range {p} is outside 0..{self.partition_count - 1}")
        table = self._tables.get(n)
        if table is None:
            table = self._table(n)
        return table[p]

    @icontract.ensure(
        lambda self, key, n, result: (
            result[: min(n, len(self.nodes))] == self.preference_list(key, n)
        ),
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: sorted(result) == list(self.nodes), enabled=ENABLED)
    def extended_preference_list(self, key: bytes, n: int) -> tuple[NodeId, ...]:
        """Sloppy-quorum order: the preference list, then every other node clockwise.

        :raises ValueError: ``n < 1``.
        :raises TypeError: ``key`` is not bytes-like.
        """
        p = self.partition_of(key)
        cached = self._extended.get((n, p))
        if cached is None:
            head = self.preference_list_for_partition(p, n)
            chosen = set(head)
            tail = _distinct_from(self._owners, p, ())
            cached = head + tuple(v for v in tail if v not in chosen)
            self._extended[(n, p)] = cached
        return cached

    def key_space_share(self) -> dict[NodeId, float]:
        """Fraction of the hash space each node holds as first replica."""
        share = dict.fromkeys(self.nodes, 0)
        positions = self._positions
        for i, owner in enumerate(self._owners):
            share[owner] += (positions[i] - positions[i - 1]) % RING_SIZE or RING_SIZE
        return {v: s / RING_SIZE for v, s in share.items()}

    @icontract.ensure(
        lambda self, node, result: all(
            result.owner_at(pos) in (self.owner_at(pos), node)
            for pos in self._positions + result._positions
        ),
        enabled=ENABLED,
    )
    def join(self, node: NodeId, zone: str | None = None) -> TokenRing:
        """``node`` joins with its tokens; only ranges it now heads change hands.

        :raises ValueError: ``node`` is already in the ring, or its zone is missing or unwanted.
        """
        _check_node_id(node)
        if node in self.nodes:
            raise ValueError(f"node {node!r} is already in the ring")
        zone_of = _zones_with(self.zones, node, zone)
        nodes = (*self.nodes, node)
        return TokenRing(self.tokens_per_node, nodes, _zone_pairs(nodes, zone_of))

    @icontract.ensure(
        lambda self, node, result: all(
            result.owner_at(pos) == self.owner_at(pos) or self.owner_at(pos) == node
            for pos in self._positions
        ),
        enabled=ENABLED,
    )
    def leave(self, node: NodeId) -> TokenRing:
        """``node`` leaves with its tokens; only the ranges it headed change hands.

        :raises ValueError: ``node`` is not in the ring or is the last node.
        """
        if node not in self.nodes:
            raise ValueError(f"node {node!r} is not in the ring")
        if len(self.nodes) == 1:
            raise ValueError(f"{node!r} is the last node: a ring cannot be empty")
        nodes = tuple(v for v in self.nodes if v != node)
        zones = tuple(pair for pair in self.zones if pair[0] != node)
        return TokenRing(self.tokens_per_node, nodes, zones)

    def _table(self, n: int) -> Table:
        _check_n(n)
        table = tuple(
            _pick(self._owners, p, n, (), zone_of=self._zone_of, zone_count=self._zone_count)
            for p in range(len(self._owners))
        )
        self._tables[n] = table
        return table
