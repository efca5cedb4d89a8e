"""The in-memory backend: for targets whose messages the harness routes itself (Maelstrom).

Per message on link (src, dst), `route` decides its fate when it is sent:
- cut: lost;
- drop p: lost with probability p;
- otherwise delivered after `delay + uniform(0, jitter)`, plus, on a slowed link, the time
  to serialize it behind the messages already queued on that link (size / bytes_per_second).
Messages on one link are delivered in the order they were sent (like one TCP stream), so a
jittered message never overtakes an earlier one. A message is also lost if its link is cut
when it would arrive: a cut stops what is in flight, as it would on a wire.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from harness.net.network import Link, Network

__all__ = ["MemoryNetwork"]


class MemoryNetwork(Network):
    def __init__(self, nodes: Iterable[str], *, seed: int | None = None) -> None:
        super().__init__(nodes)
        self._rng = random.Random(seed)
        # The time (on the caller's clock) at which each link finishes its last message.
        self._busy_until: dict[Link, float] = {}

    def route(self, link: Link, size: int, now: float) -> float | None:
        """When (on the clock that gave `now`) a message sent now arrives; None if lost."""
        if self.is_cut(link):
            return None
        f = self.faults(link)
        if f.drop and self._rng.random() < f.drop:
            return None
        ready = now + f.delay + (self._rng.uniform(0.0, f.jitter) if f.jitter else 0.0)
        arrive = max(ready, self._busy_until.get(link, now))
        if f.bytes_per_second is not None:
            arrive += size / f.bytes_per_second
        self._busy_until[link] = arrive
        return arrive

    def delivers(self, link: Link) -> bool:
        """Whether a message in flight on `link` may arrive now."""
        return not self.is_cut(link)

    def _apply(self) -> None:
        pass  # the router reads the table on every message
