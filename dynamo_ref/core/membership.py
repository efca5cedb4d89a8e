"""Gossiped membership and the local failure detector.

Membership is what the cluster agrees on: for every node, its incarnation, lifecycle status,
address, zone and claimed partitions. Nodes gossip their whole view with a random peer and
merge what they receive. ``Membership.merge`` keeps, per node, the entry with the greater
incarnation, ties broken by a fixed total order over the other fields, so merge is a join
(commutative, associative, idempotent) and all views converge whatever the gossip order.

Whether a node is *reachable* is not membership. As in the paper, each node judges that
locally, from the traffic it sees, with ``PhiAccrualDetector``; that judgement is never
gossiped, so one node's bad link does not evict a healthy peer from everyone's view.
"""

from __future__ import annotations

import enum
import hashlib
import math
import operator
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeAlias

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.ring import Ring

NodeId: TypeAlias = str

# Times are seconds on the caller's clock; the bound keeps interval arithmetic finite.
MAX_TIME = 1e12


class Status(enum.Enum):
    """A member's lifecycle. At equal incarnation a later stage wins a merge tie."""

    JOINING = "joining"
    UP = "up"
    LEAVING = "leaving"
    LEFT = "left"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {status: rank for rank, status in enumerate(Status)}


def claims_of(partitions: Iterable[int]) -> tuple[int, ...]:
    """The canonical form of a set of claimed partitions: sorted, each once."""
    return tuple(sorted(set(partitions)))


@dataclass(frozen=True)
class MemberState:
    """What the cluster knows about one node. A node raises ``incarnation`` whenever it changes
    anything about itself, so its newest statement wins everywhere.
    """

    incarnation: int
    status: Status
    address: str
    zone: str | None = None
    claims: tuple[int, ...] = ()

    @icontract.require(lambda self: self.incarnation >= 0, enabled=ENABLED)
    @icontract.require(
        lambda self: (
            all(p >= 0 for p in self.claims) and all(a < b for a, b in pairwise(self.claims))
        ),
        "claims are sorted, distinct partition indexes (see claims_of)",
        enabled=ENABLED,
    )
    def __post_init__(self) -> None:
        """Nothing to do: the contracts are the check."""

    def order_key(self) -> tuple[int, int, str, bool, str, tuple[int, ...]]:
        """The total order merge uses: incarnation first, then status rank, then the rest."""
        return (
            self.incarnation,
            self.status.rank,
            self.address,
            self.zone is not None,
            self.zone or "",
            self.claims,
        )

    def successor(
        self,
        *,
        status: Status | None = None,
        address: str | None = None,
        claims: Iterable[int] | None = None,
    ) -> MemberState:
        """This state with the given changes and the next incarnation."""
        return MemberState(
            incarnation=self.incarnation + 1,
            status=self.status if status is None else status,
            address=self.address if address is None else address,
            zone=self.zone,
            claims=self.claims if claims is None else claims_of(claims),
        )


def _newer(a: MemberState, b: MemberState) -> MemberState:
    return a if a.order_key() >= b.order_key() else b


def _encode(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(4, "big") + raw


class Membership(Mapping[NodeId, MemberState]):
    """An immutable map node -> MemberState; every change returns a new map."""

    __slots__ = ("_digest", "_entries")

    def __init__(self, entries: Mapping[NodeId, MemberState] | None = None) -> None:
        self._entries: dict[NodeId, MemberState] = dict(sorted((entries or {}).items()))
        self._digest: bytes | None = None

    def __getitem__(self, node: NodeId) -> MemberState:
        return self._entries[node]

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node: object) -> bool:
        return node in self._entries

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Membership):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        return f"Membership({self._entries!r})"

    @icontract.ensure(
        lambda self, other, result: set(result) == set(self) | set(other), enabled=ENABLED
    )
    @icontract.ensure(
        lambda self, other, result: all(
            result[n].order_key() >= s.order_key()
            for side in (self, other)
            for n, s in side.items()
        ),
        "the merge is an upper bound of both sides",
        enabled=ENABLED,
    )
    def merge(self, other: Membership) -> Membership:
        """The join of two views: per node, the greater entry."""
        if other is self or not other:
            return self
        if not self:
            return other
        merged = dict(self._entries)
        for node, state in other.items():
            mine = merged.get(node)
            merged[node] = state if mine is None else _newer(mine, state)
        return Membership(merged)

    @icontract.require(
        lambda self, node, state: node not in self or state.incarnation > self[node].incarnation,
        "a change needs a higher incarnation than the current entry",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda node, state, result: result.get(node) is state, enabled=ENABLED)
    def update(self, node: NodeId, state: MemberState) -> Membership:
        """This view with ``node``'s entry replaced by a newer ``state``."""
        return Membership({**self._entries, node: state})

    @icontract.ensure(
        lambda self, other, result: other.merge(result) == other.merge(self), enabled=ENABLED
    )
    def missing_from(self, other: Membership) -> Membership:
        """The entries of this view that ``other`` lacks or has older: a gossip delta."""
        return Membership(
            {
                node: state
                for node, state in self._entries.items()
                if node not in other or state.order_key() > other[node].order_key()
            }
        )

    @icontract.ensure(lambda result: len(result) == 32, enabled=ENABLED)
    def digest(self) -> bytes:
        """A fingerprint of the whole view: equal views have equal digests."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=32)
            for node, s in self._entries.items():
                h.update(_encode(node))
                h.update(_encode(str(s.incarnation)))  # ints of any size, unambiguously
                h.update(_encode(s.status.value))
                h.update(_encode(s.address))
                h.update(b"-" if s.zone is None else b"+" + _encode(s.zone))
                h.update(_encode(",".join(map(str, s.claims))))
            self._digest = h.digest()
        return self._digest

    def with_status(self, *statuses: Status) -> tuple[NodeId, ...]:
        """Nodes whose status is one of ``statuses``, sorted."""
        return tuple(node for node, s in self._entries.items() if s.status in statuses)

    def live_members(self) -> tuple[NodeId, ...]:
        """Members that have not left (joining, up or leaving), sorted. Whether they answer is
        the local failure detector's business, not membership's.
        """
        return self.with_status(Status.JOINING, Status.UP, Status.LEAVING)

    @icontract.require(lambda draw: 0.0 <= draw < 1.0, enabled=ENABLED)
    @icontract.ensure(
        lambda self, me, exclude, result: (
            result is None
            or (result != me and result not in exclude and result in self.live_members())
        ),
        enabled=ENABLED,
    )
    def pick_gossip_peer(
        self, me: NodeId, draw: float, exclude: Collection[NodeId] = ()
    ) -> NodeId | None:
        """A live member other than ``me`` and ``exclude``, chosen by the caller's uniform
        ``draw`` in [0, 1); None if there is nobody to gossip with.
        """
        skip = {me, *exclude}
        peers = [node for node in self.live_members() if node not in skip]
        if not peers:
            return None
        return peers[min(int(draw * len(peers)), len(peers) - 1)]


# (node, status, zone, claims) of one member, as a view or a status reply states it.
Claim: TypeAlias = tuple[NodeId, str, str | None, Sequence[int]]


def ring_from_claims(members: Iterable[Claim], q: int | None, target_n: int) -> Ring:
    """The ring that the members' claims describe: the one derivation of a ring from a view,
    used by nodes, clients and launchers alike.

    Members that have left are ignored; a member is in the ring while it is joining or up, or
    still claims partitions. ``q`` None: as many partitions as are claimed (a node that has not
    joined yet learns Q this way).

    :raises ValueError: claims that overlap, fall outside 0..q-1 or leave a partition without an
        owner; zones for some members only; no members.
    """
    entries = [m for m in members if m[1] != Status.LEFT.value]
    if q is None:
        q = sum(len(claims) for _, _, _, claims in entries)
    owners: list[NodeId | None] = [None] * q
    nodes: list[NodeId] = []
    zones: list[tuple[NodeId, str]] = []
    for node, status, zone, claims in entries:
        if claims or status in (Status.JOINING.value, Status.UP.value):
            nodes.append(node)
            if zone is not None:
                zones.append((node, zone))
        for p in claims:
            if not 0 <= p < q or owners[p] is not None:
                raise ValueError(f"partition {p} is claimed twice or is out of range 0..{q - 1}")
            owners[p] = node
    if zones and len(zones) != len(nodes):
        raise ValueError("some members have a zone and others none")
    full = [o for o in owners if o is not None]
    if len(full) != q or not q:
        raise ValueError("the members' claims leave partitions without an owner")
    return Ring(q, tuple(full), tuple(nodes), tuple(zones), target_n)


def view_claims(view: Membership) -> list[Claim]:
    """The claims of a membership view, for ``ring_from_claims``."""
    return [(n, s.status.value, s.zone, s.claims) for n, s in view.items()]


class _Arrivals:
    """Heartbeat history of one node: the last arrival and a window of intervals."""

    __slots__ = ("intervals", "last", "stats", "total", "total_sq")

    def __init__(self, now: float, first_interval: float, window: int) -> None:
        self.last = now
        # operator.index: deque wants a real int, not an int-like (CrossHair's symbolic ones).
        self.intervals: deque[float] = deque(maxlen=operator.index(window))
        self.total = 0.0
        self.total_sq = 0.0
        # (mean, std) until the next interval: asked on every request, changed per heartbeat.
        self.stats: tuple[float, float] | None = None
        # Seed with a guess so the first real interval is judged against something.
        spread = first_interval / 4
        self.add(first_interval - spread)
        self.add(first_interval + spread)

    def add(self, interval: float) -> None:
        maxlen = self.intervals.maxlen
        if maxlen is not None and len(self.intervals) == maxlen:
            dropped = self.intervals[0]
            self.total -= dropped
            self.total_sq -= dropped * dropped
        self.intervals.append(interval)
        self.total += interval
        self.total_sq += interval * interval
        self.stats = None

    def mean_std(self) -> tuple[float, float]:
        stats = self.stats
        if stats is None:
            count = len(self.intervals)
            mean = self.total / count
            variance = max(self.total_sq / count - mean * mean, 0.0)
            stats = self.stats = (mean, math.sqrt(variance))
        return stats


class PhiAccrualDetector:
    """Phi accrual failure detection (Hayashibara et al., 2004), with times passed in.

    Instead of a fixed timeout it learns each peer's distribution of heartbeat intervals (here:
    any message from the peer) and reports phi, the suspicion that the current silence means a
    crash: phi = -log10(P(an interval this long | the peer is alive)). Random-peer gossip and
    request traffic make intervals irregular and load-dependent, so a fixed timeout is either
    slow or jumpy; phi adapts, and one threshold serves clusters of any size. The normal
    distribution uses the logistic approximation Akka and Cassandra use.

    A node is watched from its first heartbeat: call ``heartbeat`` when you start monitoring
    it. A node never heard from has phi 0 and counts as available.
    """

    __slots__ = (
        "_acceptable_pause",
        "_arrivals",
        "_available",
        "_first_interval",
        "_min_std",
        "threshold",
        "window",
    )

    @icontract.require(
        lambda threshold: threshold > 0 and math.isfinite(threshold), enabled=ENABLED
    )
    @icontract.require(lambda window: window >= 2, enabled=ENABLED)
    @icontract.require(lambda min_std: min_std > 0 and math.isfinite(min_std), enabled=ENABLED)
    @icontract.require(
        lambda acceptable_pause: acceptable_pause >= 0 and math.isfinite(acceptable_pause),
        enabled=ENABLED,
    )
    @icontract.require(
        lambda first_interval: 0 < first_interval <= MAX_TIME,
        enabled=ENABLED,
    )
    def __init__(
        self,
        threshold: float = 8.0,
        window: int = 1000,
        min_std: float = 0.25,
        acceptable_pause: float = 1.0,
        first_interval: float = 1.0,
    ) -> None:
        """``min_std`` keeps perfectly regular heartbeats from making phi hair-triggered;
        ``acceptable_pause`` (seconds) is silence tolerated on top of the mean, e.g. a lost
        gossip round.
        """
        self.threshold = threshold
        self.window = window
        self._min_std = min_std
        self._acceptable_pause = acceptable_pause
        self._first_interval = first_interval
        self._arrivals: dict[NodeId, _Arrivals] = {}
        # node -> (now, threshold, is_available): a node asks many times per event, at one now.
        self._available: dict[NodeId, tuple[float, float, bool]] = {}

    def last_heartbeat(self, node: NodeId) -> float | None:
        arrivals = self._arrivals.get(node)
        return None if arrivals is None else arrivals.last

    def monitored(self) -> frozenset[NodeId]:
        return frozenset(self._arrivals)

    @icontract.require(lambda now: -MAX_TIME <= now <= MAX_TIME, enabled=ENABLED)
    @icontract.require(
        lambda self, node, now: (
            self.last_heartbeat(node) is None or now >= self.last_heartbeat(node)
        ),
        "time does not run backwards",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, node, now: self.last_heartbeat(node) == now, enabled=ENABLED)
    def heartbeat(self, node: NodeId, now: float) -> None:
        """A message from ``node`` arrived at time ``now`` (seconds, the caller's clock)."""
        self._available.pop(node, None)
        arrivals = self._arrivals.get(node)
        if arrivals is None:
            self._arrivals[node] = _Arrivals(now, self._first_interval, self.window)
            return
        arrivals.add(max(now - arrivals.last, 0.0))
        arrivals.last = now

    @icontract.require(lambda now: -MAX_TIME <= now <= MAX_TIME, enabled=ENABLED)
    @icontract.ensure(lambda result: result >= 0.0, enabled=ENABLED)
    def phi(self, node: NodeId, now: float) -> float:
        """Suspicion that ``node`` has crashed, given silence since its last heartbeat."""
        arrivals = self._arrivals.get(node)
        if arrivals is None:
            return 0.0
        mean, std = arrivals.mean_std()
        elapsed = max(now - arrivals.last, 0.0)
        y = (elapsed - (mean + self._acceptable_pause)) / max(std, self._min_std)
        # P(X > elapsed) ~ 1 / (1 + e^z); phi = log10(1 + e^z), computed without overflow.
        z = y * (1.5976 + 0.070566 * y * y)
        if z > 0:
            return (z + math.log1p(math.exp(-z))) / math.log(10)
        return math.log1p(math.exp(z)) / math.log(10)

    def is_available(self, node: NodeId, now: float) -> bool:
        cached = self._available.get(node)
        if cached is not None and cached[0] == now and cached[1] == self.threshold:
            return cached[2]
        available = self.phi(node, now) < self.threshold
        self._available[node] = (now, self.threshold, available)
        return available

    def forget(self, node: NodeId) -> None:
        """Stop watching ``node`` (it left); a later heartbeat starts afresh."""
        self._arrivals.pop(node, None)
        self._available.pop(node, None)
