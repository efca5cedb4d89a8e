"""How many client requests a node takes at once: a limit that adapts to what the node achieves.

Sans-I/O, like the node: the server tells it each answered request's latency (``sample``),
whether the limit held a request back (``held_back``), and asks it for the limit to apply
(``update``, at most every ``period`` seconds of the time it is given). The limit grows while
requests finish well within ``target`` and the limit is what holds them back, and is cut in
proportion when they take longer than ``target`` (never below ``low``, never above ``high``).
A node that is slowed (a busy CPU, a slow disk, contracts on) thus takes fewer requests at
once, and its requests stay fast; a fast one takes more. By Little's law the limit settles
near throughput times ``target``.
"""

from __future__ import annotations

import math


class AdaptiveLimit:
    """See the module docstring."""

    def __init__(
        self, initial: int, low: int, high: int, target: float, period: float = 0.1
    ) -> None:
        if not 1 <= low <= high:
            raise ValueError("the limit's bounds must be 1 <= low <= high")
        if not (target > 0 and period > 0 and math.isfinite(target)):
            raise ValueError("target latency and period must be positive")
        self.low, self.high = low, high
        self.target = target
        self.period = period
        self.limit = min(high, max(low, initial))
        self._count = 0
        self._sum = 0.0
        self._held_back = False
        self._at = -math.inf

    def sample(self, latency: float) -> None:
        """A request was answered ``latency`` seconds after it was taken."""
        self._count += 1
        self._sum += latency

    def held_back(self) -> None:
        """The limit kept a request out (refused, or its connection not read)."""
        self._held_back = True

    def update(self, now: float) -> int:
        """The limit to apply from ``now`` (changed at most once a period)."""
        if now - self._at < self.period:
            return self.limit
        self._at = now
        if self._count:
            mean = self._sum / self._count
            if mean > self.target:
                self.limit = max(self.low, int(self.limit * max(0.5, self.target / mean)))
            elif self._held_back and mean < self.target / 2:
                self.limit = min(self.high, self.limit + max(1, self.limit // 8))
        self._count = 0
        self._sum = 0.0
        self._held_back = False
        return self.limit
