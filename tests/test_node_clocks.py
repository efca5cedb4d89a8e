"""Two clocks: the driver's monotonic ``now`` runs timers and the failure detector, the wall
clock only stamps versions; and a node reports peers whose timestamps run ahead of its own."""

from __future__ import annotations

import random
from dataclasses import replace

from test_node_cluster import CONFIG, cluster, ok

from dynamo_ref.core.effects import ClientRequest, Persist, SetTimer
from dynamo_ref.core.messages import AdminOk, Put, SetClockSkew, StatusReply, StatusRequest
from dynamo_ref.core.node import DurableState, Node, NodeConfig, TimerKind, VersionMode
from dynamo_ref.storage.memory import MemoryEngine

KEY = b"k"


def test_timers_follow_the_monotonic_clock_and_versions_the_wall_clock() -> None:
    config = NodeConfig(n=1, r=1, w=1, partitions=8)
    node = Node(
        "a",
        config,
        config.initial_ring(["a"]),
        [],
        DurableState(),
        random.Random(1),
        100.0,
        engine=MemoryEngine,
    )
    node.start(100.0, wall=5_000.0)
    # The wall clock jumped back an hour; the monotonic one went on.
    effects = node.handle(ClientRequest(1, Put(KEY, b"v")), 101.0, wall=1_400.0)
    (stored,) = [e for e in effects if isinstance(e, Persist)]
    assert stored.siblings[0].timestamp == 1_400.0
    timers = {e.timer[0]: e.at for e in effects if isinstance(e, SetTimer)}
    assert (
        timers.get(TimerKind.PUT, 101.0 + config.request_timeout) == 101.0 + config.request_timeout
    )


def test_a_peer_whose_timestamps_run_ahead_is_reported_once_per_new_worst_case() -> None:
    c = cluster(replace(CONFIG, mode=VersionMode.LWW, skew_warning=1.0))
    fast, *others = c.replicas(KEY)
    assert isinstance(c.call(fast, SetClockSkew(3600.0)), AdminOk)
    ok(c.put(fast, KEY, b"from the future"))
    ok(c.put(fast, KEY, b"again"))  # no worse than before: no second report
    for peer in others:
        reports = [a for n, a in c.actions or [] if n == peer and a.name == "ClockAhead"]
        assert len(reports) == 1, reports
        assert reports[0].args[1] == fast
        assert float(reports[0].args[2]) > 3500
        status = c.call(peer, StatusRequest())
        assert isinstance(status, StatusReply)
        assert status.clocks_ahead[fast] > 3500
    # The negative control: a node whose clock is right is never reported.
    slow_status = c.call(fast, StatusRequest())
    assert isinstance(slow_status, StatusReply)
    assert slow_status.clocks_ahead == {}
