"""Admission: the adaptive limit against a simulated node (a server of fixed throughput X,
where by Little's law a request waits (requests in it) / X), and the refusal budget of a live
node, past which clients wait for room instead of being refused."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Sequence

import pytest
from net_support import FAST, raw_client

from dynamo_ref.core.effects import Effect
from dynamo_ref.core.messages import ErrorReply, Put, decode_reply, encode
from dynamo_ref.net.admission import AdaptiveLimit
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore

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


class _GatedStore(MemoryStore):
    """Writes wait for the test to open the gate: requests stay in the node meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def apply(self, effects: Sequence[Effect]) -> None:
        self.gate.wait(30)
        super().apply(effects)


async def burst(refusals: float, clients: int = 30) -> Counter[str]:
    """``clients`` connections put one key each into a node that takes 4 at once (8 at
    most) and refuses ``refusals`` a second; the store is held shut until all have sent."""
    store = _GatedStore()
    config = FAST.__class__(n=1, r=1, w=1)
    server = NodeServer(
        ServerOptions(node_id="solo", config=config, store=store, max_inflight=4, refusals=refusals)
    )
    store.gate.set()
    await server.start()
    store.gate.clear()
    try:
        conns = [await raw_client(server.address) for _ in range(clients)]
        for i, (stream, _) in enumerate(conns):
            stream.send(encode(Put(b"k%d" % i, b"v", rid=i + 1)))
        await asyncio.sleep(0.5)
        assert server._inflight_total == 8  # twice the limit, the rest refused or waiting
        store.gate.set()
        answers: Counter[str] = Counter()
        for stream, _ in conns:
            reply = decode_reply(await asyncio.wait_for(stream.recv(), 10))
            answers[reply.code if isinstance(reply, ErrorReply) else type(reply).__name__] += 1
            stream.close()
        assert server._inflight_total == 0
        assert not server._waiting
        return answers
    finally:
        store.gate.set()
        await server.stop()


@pytest.mark.net
def test_past_the_refusal_budget_clients_wait_for_room_and_are_served() -> None:
    # A budget of 10 a second allows a refusal or two here: the others wait, then succeed.
    answers = asyncio.run(burst(refusals=10.0))
    assert 1 <= answers["overload"] <= 3, answers
    assert answers["PutOk"] == 30 - answers["overload"]


@pytest.mark.net
def test_negative_control_with_budget_to_spare_the_excess_is_refused() -> None:
    answers = asyncio.run(burst(refusals=1e6))
    assert answers == {"PutOk": 8, "overload": 22}
