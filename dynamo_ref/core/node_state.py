"""The node's settings, its durable state, and the records of requests it coordinates.

``DurableState`` is exactly what the node's ``Persist``/``PersistHint``/``DropHint``/
``PersistMeta`` effects have written; a driver keeps one per node (``apply``) and hands it to
the next ``Node`` after a crash. Everything else here is volatile and dies with the node,
as the spec's ``putOps`` and ``getOps`` do in ``Crash``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dynamo_ref.core.effects import (
    ClientId,
    DropHint,
    Effect,
    Persist,
    PersistHint,
    PersistMeta,
)
from dynamo_ref.core.merkle import TreeWalk
from dynamo_ref.core.messages import DataRequest
from dynamo_ref.core.node_versions import PruneSettings, VersionMode
from dynamo_ref.core.quorum import QuorumError, ReadCollector, quorum_problems
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings, Version


@dataclass(frozen=True)
class NodeConfig:
    """A node's settings. Quorums are cluster-wide defaults; requests may override R, W, PR, PW.

    :raises ValueError: (a ``QuorumError`` for quorums) on inconsistent settings.
    """

    n: int = 3
    r: int = 2
    w: int = 2
    sloppy: bool = True
    mode: VersionMode = VersionMode.VCLOCK
    pr: int = 0
    pw: int = 0
    # Seconds. A coordinator answers within request_timeout; a forwarder waits forward_timeout
    # (None: twice request_timeout) so that the coordinator's own timeout answer gets back.
    request_timeout: float = 1.0
    forward_timeout: float | None = None
    # A put's replica that has not acked after this long is suspected and, under a sloppy
    # quorum, replaced by a fallback.
    fallback_delay: float = 0.5
    gossip_interval: float = 1.0
    anti_entropy_interval: float = 5.0
    handoff_interval: float = 1.0
    transfer_interval: float = 1.0
    # Phi accrual failure detector (membership.PhiAccrualDetector).
    phi_threshold: float = 8.0
    detector_window: int = 100
    detector_min_std: float = 0.25
    detector_pause: float = 1.0
    max_key_size: int = 1024
    max_value_size: int = 1 << 20
    max_pending: int = 10_000
    clock_skew: float = 0.0
    # Tombstones go once every replica holds them, reap_delay after that is known; or never.
    reap_tombstones: bool = True
    reap_delay: float = 5.0
    prune: PruneSettings = field(default_factory=PruneSettings)
    merkle_fanout: int = 8
    merkle_depth: int = 2
    transfer_chunk: int = 100
    handoff_batch: int = 256

    def __post_init__(self) -> None:
        mode: object = self.mode
        if isinstance(mode, str):
            object.__setattr__(self, "mode", VersionMode(mode))
        problems = quorum_problems(self.n, self.r, self.w, self.pr, self.pw)
        if problems:
            raise QuorumError(*problems)
        times = {
            "request_timeout": self.request_timeout,
            "fallback_delay": self.fallback_delay,
            "gossip_interval": self.gossip_interval,
            "anti_entropy_interval": self.anti_entropy_interval,
            "handoff_interval": self.handoff_interval,
            "transfer_interval": self.transfer_interval,
            "reap_delay": self.reap_delay,
            "detector_pause": self.detector_pause,
        }
        if self.forward_timeout is not None:
            times["forward_timeout"] = self.forward_timeout
        bad = [name for name, t in times.items() if not (math.isfinite(t) and t > 0)]
        if bad:
            raise ValueError(f"these times must be positive and finite: {', '.join(bad)}")
        if not math.isfinite(self.clock_skew):
            raise ValueError("clock_skew must be finite")
        if self.prune.small < 1 or self.prune.big < self.prune.small:
            raise ValueError("vclock pruning needs 1 <= small <= big: a write keeps its entry")
        for name in ("max_key_size", "max_value_size", "max_pending", "transfer_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def forward_deadline(self) -> float:
        return 2 * self.request_timeout if self.forward_timeout is None else self.forward_timeout


@dataclass
class DurableState:
    """What survives a crash: sibling sets, hints (by owner and key) and named metadata."""

    store: dict[bytes, Siblings] = field(default_factory=dict)
    hints: dict[tuple[NodeId, bytes], Siblings] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.store or self.hints or self.meta)

    def apply(self, effects: Iterable[Effect]) -> None:
        """Carry out the durable effects among ``effects``, in order; the others are ignored."""
        for e in effects:
            if isinstance(e, Persist):
                if e.siblings:
                    self.store[e.key] = e.siblings
                else:
                    self.store.pop(e.key, None)
            elif isinstance(e, PersistHint):
                if e.siblings:
                    self.hints[(e.owner, e.key)] = e.siblings
                else:
                    self.hints.pop((e.owner, e.key), None)
            elif isinstance(e, DropHint):
                self.hints.pop((e.owner, e.key), None)
            elif isinstance(e, PersistMeta):
                self.meta[e.name] = e.data


# ---- who gets the answer --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientOrigin:
    """A request straight from a client connection."""

    client: ClientId
    rid: int


@dataclass(frozen=True, slots=True)
class PeerOrigin:
    """A request a peer forwarded: the answer goes back to it as ``ForwardReply(fid)``."""

    node: NodeId
    fid: int
    rid: int


Origin = ClientOrigin | PeerOrigin


# ---- requests in progress -------------------------------------------------------------------


@dataclass(slots=True)
class PutOp:
    """A put or delete this node coordinates: the spec's putOps record, plus PW and its client.

    ``extra`` maps each fallback used to the replica it stands in for. After the answer, a
    delete is kept until every primary has acked (or the timer fires) to know when to reap.
    """

    id: int
    key: bytes
    version: Version
    origin: Origin
    primaries: tuple[NodeId, ...]
    w: int
    pw: int
    acks: set[NodeId]
    hinted: set[NodeId] = field(default_factory=set)
    extra: dict[NodeId, NodeId] = field(default_factory=dict)
    answered: bool = False
    return_body: bool = False

    def primary_acks(self) -> int:
        return sum(1 for p in self.primaries if p in self.acks)

    def quorum_met(self) -> bool:
        return len(self.acks) >= self.w and self.primary_acks() >= self.pw


@dataclass(slots=True)
class GetOp:
    """A get this node coordinates. It outlives its answer until every target has responded
    or the timer fires, so that late responses are repaired too."""

    id: int
    key: bytes
    origin: Origin
    collector: ReadCollector[Siblings]
    hint_for: dict[NodeId, NodeId]  # fallback target -> the replica it stands in for
    primaries: tuple[NodeId, ...]
    answered: bool = False
    # What each responder holds as far as this node knows: its response, then the repair sent.
    believed: dict[NodeId, Siblings] = field(default_factory=dict)


@dataclass(slots=True)
class ForwardOp:
    """A client request handed to a replica; ``tried`` are the replicas asked so far."""

    id: int
    origin: Origin
    request: DataRequest
    target: NodeId
    tried: set[NodeId]
    hops: int


@dataclass(slots=True)
class SyncSession:
    """One anti-entropy exchange this node started with ``peer`` over ``partition``."""

    id: int
    peer: NodeId
    partition: int
    started: float
    walk: TreeWalk | None = None  # once the peer's root is known
    keys: int = 0


@dataclass(slots=True)
class TransferOp:
    """Handing ``partition`` to ``target`` in chunks of keys; ``root`` is the partition's
    Merkle root when the key list was taken, to notice writes that came in meanwhile."""

    id: int
    partition: int
    target: NodeId
    keys: list[bytes]
    root: bytes
    next: int = 0
    sent_at: float = -math.inf
    done: bool = False


@dataclass(frozen=True, slots=True)
class AntiEntropyRecord:
    """The last completed exchange with a peer, for ``status``."""

    time: float
    partition: int
    keys: int
