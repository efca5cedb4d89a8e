"""The adaptive admission limit, against a simulated node: a server of fixed throughput X,
where by Little's law a request waits (requests in it) / X."""

from __future__ import annotations

import pytest

from dynamo_ref.net.admission import AdaptiveLimit

TARGET = 0.125


def settle(limiter: AdaptiveLimit | None, throughput: float, demand: int, fixed: int = 64) -> int:
    """Run 30 s of 100 ms periods with ``demand`` requests wanting in; the limit at the end."""
    limit = fixed if limiter is None else limiter.limit
    for step in range(300):
        inflight = min(limit, demand)
        latency = inflight / throughput
        if limiter is None:
            continue
        for _ in range(max(1, int(throughput * 0.1))):
            limiter.sample(latency)
        if demand > limit:
            limiter.held_back()
        limit = limiter.update(step * 0.1)
    return limit


@pytest.mark.parametrize("throughput", [100.0, 2_000.0, 20_000.0])
def test_the_limit_settles_near_throughput_times_the_target(throughput: float) -> None:
    limiter = AdaptiveLimit(64, 8, 100_000, TARGET)
    limit = settle(limiter, throughput, demand=1_000_000)
    # Requests then wait about the target, neither far past it nor far below.
    assert TARGET / 2 <= limit / throughput <= TARGET * 1.25, limit


def test_without_demand_the_limit_does_not_grow() -> None:
    limiter = AdaptiveLimit(64, 8, 100_000, TARGET)
    assert settle(limiter, 20_000.0, demand=10) == 64


def test_the_limit_stays_within_its_bounds() -> None:
    assert settle(AdaptiveLimit(64, 8, 300, TARGET), 20_000.0, demand=10**6) == 300
    assert settle(AdaptiveLimit(64, 8, 300, TARGET), 10.0, demand=10**6) == 8


def test_negative_control_a_fixed_limit_lets_a_slow_node_queue() -> None:
    # The property above, for a fixed limit of 64 on a node of 100 requests/s: it fails.
    limit = settle(None, 100.0, demand=10**6, fixed=64)
    assert limit / 100.0 > TARGET * 1.25


def test_it_changes_at_most_once_a_period() -> None:
    limiter = AdaptiveLimit(64, 8, 1000, TARGET, period=0.1)
    limiter.sample(1.0)
    assert limiter.update(0.0) == 32  # cut in proportion, at most by half
    limiter.sample(1.0)
    assert limiter.update(0.05) == 32  # within the period: the sample waits
    assert limiter.update(0.2) == 16
    assert limiter.update(0.4) == 16  # nothing sampled since: unchanged
    with pytest.raises(ValueError, match="bounds"):
        AdaptiveLimit(8, 9, 8, TARGET)
