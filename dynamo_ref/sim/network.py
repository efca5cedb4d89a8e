"""The simulated network: per-link behaviour, cut links, and the messages in flight.

The network decides nothing by itself: the simulation draws from its one seeded ``Random`` with
the link's settings, and keeps messages here until it delivers, holds, loses or duplicates them.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dynamo_ref.core.messages import PeerMessage
from dynamo_ref.core.vclock import NodeId

Link = tuple[NodeId, NodeId]


class Delay(enum.Enum):
    """How the extra delay above a link's minimum is drawn."""

    UNIFORM = "uniform"  # in [0, jitter)
    EXPONENTIAL = "exponential"  # mean jitter: a long tail, reorders more


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One directed link. Jitter reorders: a later message may draw a shorter delay."""

    delay: float = 0.001
    jitter: float = 0.0
    distribution: Delay = Delay.UNIFORM
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not (self.delay >= 0.0 and self.jitter >= 0.0):
            raise ValueError("delay and jitter must be >= 0")
        if not (0.0 <= self.loss <= 1.0 and 0.0 <= self.duplicate <= 1.0):
            raise ValueError("loss and duplicate are probabilities")

    def draw_delay(self, rng: random.Random) -> float:
        if self.jitter == 0.0:
            return self.delay
        if self.distribution is Delay.UNIFORM:
            return self.delay + rng.random() * self.jitter
        return self.delay + rng.expovariate(1.0 / self.jitter)


@dataclass(slots=True, eq=False)
class InFlight:
    """A message on the wire. ``id`` is unique in a run and increases with send order."""

    id: int
    src: NodeId
    dst: NodeId
    msg: PeerMessage
    sent: float
    due: float
    # Waiting on a cut link for it to heal (the spec keeps such messages in flight).
    held: bool = False
    # Settled by the simulation at ``due``: dropped in transit.
    doomed: bool = False
    # The spec's record of the message as trace text (None: not a spec message), once known.
    spec_text: str | None = None
    spec_known: bool = False


class SimNetwork:
    """Link settings, cut directed links and the messages in flight, keyed by id."""

    def __init__(self, default: LinkConfig | None = None) -> None:
        self.default = default or LinkConfig()
        self._links: dict[Link, LinkConfig] = {}
        # Read by the simulation's hot path; change it through ``cut`` and ``restore`` only.
        self.cut_set: set[Link] = set()
        self.in_flight: dict[int, InFlight] = {}
        self._next_id = 0

    # Settings.

    def link(self, src: NodeId, dst: NodeId) -> LinkConfig:
        return self._links.get((src, dst), self.default)

    def configure(self, src: NodeId, dst: NodeId, config: LinkConfig) -> None:
        self._links[(src, dst)] = config

    def configure_all(self, config: LinkConfig) -> None:
        """Every link, including the ones set one by one before."""
        self.default = config
        self._links.clear()

    # Partitions.

    def is_cut(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) in self.cut_set

    def cut_links(self) -> list[Link]:
        return sorted(self.cut_set)

    def cut(self, links: Iterable[Link]) -> list[Link]:
        """Cut links; returns the ones newly cut, sorted."""
        new = sorted({link for link in links if link not in self.cut_set and link[0] != link[1]})
        self.cut_set.update(new)
        return new

    def restore(self, links: Iterable[Link] | None = None) -> list[Link]:
        """Heal the given links (all when None); returns the ones healed, sorted."""
        healed = sorted(self.cut_set if links is None else {x for x in links if x in self.cut_set})
        self.cut_set.difference_update(healed)
        return healed

    # Messages.

    def add(self, src: NodeId, dst: NodeId, msg: PeerMessage, sent: float, due: float) -> InFlight:
        self._next_id += 1
        mid = self._next_id
        m = self.in_flight[mid] = InFlight(mid, src, dst, msg, sent, due)
        return m

    def pending(self) -> Iterator[InFlight]:
        """Messages in flight, in send order."""
        return iter(self.in_flight.values())
