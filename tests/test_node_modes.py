"""Version modes (vector clocks, LWW, dotted version vectors) and clock skew.

The sibling-explosion scenario is Riak's (the documentation of its ``dvv_enabled`` setting):
two clients write through one coordinator, each with the context its own previous write
returned. Three stores run it:

- Riak before DVV kept one clock per object and every value it could not order: false
  siblings pile up (modelled below in a few lines, as the reference point);
- this node with per-version vector clocks and the spec's counter rule: each write's clock
  claims the coordinator's earlier writes, so concurrent writes are silently lost;
- this node in DVV mode: exactly the truly concurrent writes remain.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_node_cluster import CONFIG, Cluster, cluster, ok

from dynamo_ref.core.messages import AdminOk, Put, SetClockSkew, StatusReply, StatusRequest
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.core.vclock import VClock

KEY = b"profile"


def put_body(c: Cluster, node: str, value: bytes, context: bytes) -> bytes:
    reply = ok(c.call(node, Put(KEY, value, context, return_body=True)))
    return reply.context


def riak_object_clock_counts(writes: list[tuple[str, bytes]]) -> list[int]:
    """Riak's pre-DVV vnode: one clock per object; a put whose context does not descend it
    keeps every stored value next to the new one."""
    clock, values = VClock.empty(), list[bytes]()
    contexts: dict[str, VClock] = {}
    counts = []
    for client, value in writes:
        ctx = contexts.get(client, VClock.empty())
        values = [value] if ctx.descends(clock) else [*values, value]
        clock = clock.merge(ctx).increment("a", 0.0)
        contexts[client] = clock
        counts.append(len(values))
    return counts


RIAK_SCENARIO = [
    ("bob", b"Bob"),
    ("sue", b"Sue"),
    ("bob", b"Rita"),
    ("sue", b"Michelle"),
    ("bob", b"Bob2"),
    ("sue", b"Sue2"),
]


def node_counts(mode: VersionMode) -> tuple[list[int], list[bytes]]:
    c = cluster(replace(CONFIG, mode=mode))
    coordinator = c.replicas(KEY)[0]
    contexts: dict[str, bytes] = {}
    counts = []
    for client, value in RIAK_SCENARIO:
        contexts[client] = put_body(c, coordinator, value, contexts.get(client, b""))
        counts.append(len(c.get(coordinator, KEY).siblings))
    return counts, sorted(c.get(coordinator, KEY).siblings)


def test_sibling_explosion_scenario_with_and_without_dotted_version_vectors() -> None:
    riak = riak_object_clock_counts(RIAK_SCENARIO)
    vclock, vclock_final = node_counts(VersionMode.VCLOCK)
    dvv, dvv_final = node_counts(VersionMode.DVV)
    # The truly concurrent writes at each step: the latest write of each client.
    truth = [1, 2, 2, 2, 2, 2]
    assert riak == [1, 2, 3, 4, 5, 6]  # false siblings pile up
    assert vclock == [1, 1, 1, 1, 1, 1]  # every concurrent write but the last is lost
    assert vclock_final == [b"Sue2"]
    assert dvv == truth
    assert dvv_final == [b"Bob2", b"Sue2"]


def interleaved_read_modify_write(mode: VersionMode, rounds: int) -> list[int]:
    """Two clients through one coordinator: both read, then both write what they read."""
    c = cluster(replace(CONFIG, mode=mode))
    node = c.replicas(KEY)[0]
    counts = []
    for i in range(rounds):
        x = c.get(node, KEY).context
        y = c.get(node, KEY).context
        ok(c.put(node, KEY, b"x%d" % i, x))
        ok(c.put(node, KEY, b"y%d" % i, y))
        counts.append(len(c.get(node, KEY).siblings))
    return counts


def test_interleaved_read_modify_write_keeps_exactly_the_concurrent_writes_with_dvv() -> None:
    assert interleaved_read_modify_write(VersionMode.DVV, 5) == [2] * 5
    # Plain vector clocks through one coordinator: y's clock claims x, so x is lost.
    assert interleaved_read_modify_write(VersionMode.VCLOCK, 5) == [1] * 5


def test_dvv_writes_through_different_coordinators_are_siblings_until_merged() -> None:
    c = cluster(replace(CONFIG, mode=VersionMode.DVV))
    first, second, _ = c.replicas(KEY)
    ok(c.put(first, KEY, b"one"))
    ok(c.put(second, KEY, b"two"))
    got = c.get(first, KEY)
    assert sorted(got.siblings) == [b"one", b"two"]
    ok(c.put(second, KEY, b"both", got.context))
    for n in c.replicas(KEY):
        assert c.values(n, KEY) == {b"both"}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(VersionMode.VCLOCK, [b"early", b"late"]), (VersionMode.LWW, [b"late"])],
)
def test_lww_loses_a_concurrent_write_that_vector_clocks_keep(
    mode: VersionMode, expected: list[bytes]
) -> None:
    c = cluster(replace(CONFIG, mode=mode))
    first, second, _ = c.replicas(KEY)
    ok(c.put(first, KEY, b"early"))
    c.advance(0.5)
    ok(c.put(second, KEY, b"late"))  # concurrent: no context
    assert sorted(c.get(first, KEY).siblings) == expected
    for n in c.replicas(KEY):
        assert len(c.stored(n, KEY)) == len(expected)


def test_clock_skew_moves_timestamps_and_decides_lww() -> None:
    c = cluster(replace(CONFIG, mode=VersionMode.LWW))
    ahead, behind, _ = c.replicas(KEY)
    reply = c.call(ahead, SetClockSkew(100.0))
    assert isinstance(reply, AdminOk)
    status = c.call(ahead, StatusRequest())
    assert isinstance(status, StatusReply)
    assert status.clock_skew == 100.0
    written = ok(c.put(ahead, KEY, b"from the future"))
    assert written.ts == pytest.approx(c.now + 100.0)
    assert all(v.timestamp == c.now + 100.0 for v in c.stored(ahead, KEY))
    c.advance(1.0)
    ok(c.put(behind, KEY, b"really later"))
    # Last write wins by timestamp: the skewed clock wins although its write came first.
    assert c.get(behind, KEY).siblings == [b"from the future"]
    c.call(ahead, SetClockSkew(0.0))
    assert c.nodes[ahead].clock_skew == 0.0


def test_config_skew_is_the_starting_skew() -> None:
    c = cluster(replace(CONFIG, clock_skew=-5.0))
    node = c.replicas(KEY)[0]
    assert ok(c.put(node, KEY, b"v")).ts == pytest.approx(c.now - 5.0)


def test_vector_clocks_are_pruned_by_the_core_rule() -> None:
    small = replace(CONFIG.prune, small=1, big=2, young=0.0)
    c = cluster(replace(CONFIG, prune=small, n=4, r=1, w=1), names=("a", "b", "c", "d", "e"))
    context = b""
    for node in c.replicas(KEY):  # four coordinators: four clock entries without pruning
        c.advance(1.0)
        ok(c.put(node, KEY, b"v", context))
        context = c.get(node, KEY).context
    stored = c.stored(c.replicas(KEY)[-1], KEY)
    latest = max(stored, key=lambda v: v.timestamp)
    # Four entries pruned to big=2, oldest first; the writer's own entry stays.
    assert len(latest.clock) == 2
    assert c.replicas(KEY)[-1] in latest.clock
    assert all(len(v.clock) <= 2 for v in stored)
