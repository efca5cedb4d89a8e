"""A node's settings and its durable state.

``NodeConfig`` is where every setting's default is written, once: the CLI, the launchers and the
harness take their defaults and choices from it. ``DurableState`` is exactly what the node's
``Persist``/``PersistHint``/``DropHint``/``PersistMeta`` effects have written; a driver keeps one
per node (``apply``) and hands it to the next ``Node`` after a crash.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dynamo_ref.core.effects import DropHint, Effect, Persist, PersistHint, PersistMeta
from dynamo_ref.core.node_versions import PruneSettings, VersionMode
from dynamo_ref.core.quorum import QuorumError, quorum_problems
from dynamo_ref.core.ring import MAX_Q, Ring
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings


@dataclass(frozen=True)
class NodeConfig:
    """A node's settings. Quorums are cluster-wide defaults; requests may override R, W, PR, PW.

    :raises ValueError: (a ``QuorumError`` for quorums) on inconsistent settings.
    """

    n: int = 3
    r: int = 2
    w: int = 2
    sloppy: bool = True
    # Dotted version vectors: plain per-coordinator clocks lose concurrent writes through one
    # coordinator (node_versions explains why); VCLOCK and LWW stay as modes and negative controls.
    mode: VersionMode = VersionMode.DVV
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
    # A peer's timestamps this far ahead of this node's wall clock are reported (status, log):
    # under LWW its writes win over later ones until real time catches up.
    skew_warning: float = 5.0
    # Tombstones go once every replica holds them, reap_delay after that is known; or never.
    reap_tombstones: bool = True
    reap_delay: float = 5.0
    prune: PruneSettings = field(default_factory=PruneSettings)
    merkle_fanout: int = 8
    merkle_depth: int = 2
    transfer_chunk: int = 100
    handoff_batch: int = 256
    # Q, fixed when the cluster is created: a power of two (core.ring's strategy 3).
    partitions: int = 64

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
            "skew_warning": self.skew_warning,
        }
        if self.forward_timeout is not None:
            times["forward_timeout"] = self.forward_timeout
        bad = [name for name, t in times.items() if not (math.isfinite(t) and t > 0)]
        if bad:
            raise ValueError(f"these times must be positive and finite: {', '.join(bad)}")
        if self.reap_tombstones and self.reap_delay <= self.forward_deadline:
            # The spec's ReapQuiet: an older request still in progress (a forwarded one lives
            # for the forward deadline) would write a reaped version back by read repair.
            raise ValueError(
                f"reap_delay ({self.reap_delay:g} s) must outlast request_timeout and the "
                f"forward deadline ({self.forward_deadline:g} s): a request still in progress "
                "when its key's tombstones are reaped would write what they deleted back"
            )
        if not math.isfinite(self.clock_skew):
            raise ValueError("clock_skew must be finite")
        if self.prune.small < 1 or self.prune.big < self.prune.small:
            raise ValueError("vclock pruning needs 1 <= small <= big: a write keeps its entry")
        for name in ("max_key_size", "max_value_size", "max_pending", "transfer_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        q = self.partitions
        if type(q) is not int or not 1 <= q <= MAX_Q or q & (q - 1):
            raise ValueError(f"partitions must be a power of two in 1..{MAX_Q}, got {q!r}")

    @property
    def forward_deadline(self) -> float:
        return 2 * self.request_timeout if self.forward_timeout is None else self.forward_timeout

    def initial_ring(self, nodes: Sequence[NodeId]) -> Ring:
        """The ring every node of a new cluster of ``nodes`` starts from, without gossip.

        :raises ValueError: no nodes, or duplicates.
        """
        return Ring.create(nodes, self.partitions, target_n=self.n)


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
