"""Read repair, Merkle anti-entropy and tombstone reaping."""

from __future__ import annotations

from dataclasses import replace

from test_node_cluster import CONFIG, Cluster, cluster, ok

from dynamo_ref.core.effects import TimerFired
from dynamo_ref.core.messages import Get, MerkleQuery, Put, ReadResp, Store, SyncKeys

KEY = b"user:7"


def test_read_repair_fixes_a_replica_that_missed_a_write() -> None:
    c = cluster()
    coordinator, _, stale = c.replicas(KEY)
    c.drop = lambda src, dst, msg: dst == stale and isinstance(msg, Store)
    ok(c.put(coordinator, KEY, b"v"))
    assert c.values(stale, KEY) == set()
    c.drop = None
    assert c.get(coordinator, KEY).siblings == [b"v"]
    assert c.values(stale, KEY) == {b"v"}
    assert "ReadRepair" in c.action_names(coordinator)


def test_read_repair_uses_a_response_that_arrives_after_the_answer() -> None:
    c = cluster()
    coordinator, _, late = c.replicas(KEY)
    c.drop = lambda src, dst, msg: dst == late and isinstance(msg, Store)
    ok(c.put(coordinator, KEY, b"v"))
    c.drop = None
    c.hold = lambda src, dst, msg: src == late and isinstance(msg, ReadResp)
    client = c.send(coordinator, Get(KEY))
    c.settle()
    assert c.replies[client][0].siblings == [b"v"]  # type: ignore[union-attr]
    assert c.values(late, KEY) == set()  # its response is still on the way
    c.hold = None
    c.release()
    assert c.values(late, KEY) == {b"v"}


def test_a_late_response_with_news_repairs_the_replicas_that_answered_first() -> None:
    c = cluster(replace(CONFIG, w=1))
    coordinator, second, ahead = c.replicas(KEY)
    ok(c.put(coordinator, KEY, b"old"))
    # Only ``ahead`` gets the newer write.
    context = c.get(coordinator, KEY).context
    c.drop = lambda src, dst, msg: isinstance(msg, Store) and dst != ahead
    ok(c.put(ahead, KEY, b"new", context))
    c.drop = None
    assert c.values(second, KEY) == {b"old"}
    c.hold = lambda src, dst, msg: src == ahead and isinstance(msg, ReadResp)
    client = c.send(coordinator, Get(KEY))
    c.settle()
    assert c.replies[client][0].siblings == [b"old"]  # type: ignore[union-attr]
    c.hold = None
    c.release()
    for n in c.replicas(KEY):
        assert c.values(n, KEY) == {b"new"}


# ---- anti-entropy -------------------------------------------------------------------------


def run_anti_entropy(c: Cluster, node: str) -> None:
    """One exchange per partition ``node`` replicates, each run to the end."""
    parts = c.nodes[node].ring.partitions_replicated_by(node, c.config.n)
    for _ in parts:
        c.event(node, TimerFired(("ae", 0)))
        c.settle()


def test_anti_entropy_converges_two_replicas_and_exchanges_only_the_differing_keys() -> None:
    c = cluster(names=("a", "b", "c"))  # N = 3 nodes: every node replicates every key
    keys = [f"key{i}".encode() for i in range(60)]
    for k in keys:
        ok(c.put("a", k, b"same"))
    missing = keys[:3]
    for k in missing:  # c misses these
        c.drop = lambda src, dst, msg: dst == "c" and isinstance(msg, Store)
        ok(c.put("a", k, b"newer", c.get("a", k).context))
    extra = [b"only-c-1", b"only-c-2"]
    for k in extra:  # and only c has these
        c.drop = lambda src, dst, msg: src == "c" and isinstance(msg, Store)
        ok(c.put("c", k, b"c", w=1))
    c.drop = None
    c.sent.clear()

    run_anti_entropy(c, "a")
    exchanged = [
        (dst, key) for src, dst, msg in c.sent if isinstance(msg, SyncKeys) for key, _ in msg.items
    ]
    # a and c exchange exactly the five keys that differ. a and b agreed until a learned c's
    # keys; a's next comparison with b (its root changed since) sends b those two, no more.
    assert sorted(key for dst, key in exchanged if dst == "c") == sorted(missing + extra)
    assert {key for dst, key in exchanged if dst == "b"} <= set(extra)
    assert {dst for dst, _ in exchanged} <= {"b", "c"}
    for k in [*keys, *extra]:
        assert c.stored("a", k) == c.stored("c", k)
    assert c.values("c", missing[0]) == {b"newer"}
    assert set(c.nodes["a"].last_anti_entropy()) == {"b", "c"}
    assert c.nodes["a"].last_anti_entropy()["c"].time == c.now

    run_anti_entropy(c, "b")
    for k in [*keys, *extra]:
        assert c.stored("a", k) == c.stored("b", k) == c.stored("c", k)
    # Converged: another round finds nothing to exchange.
    c.sent.clear()
    run_anti_entropy(c, "c")
    assert not [m for _, _, m in c.sent if isinstance(m, SyncKeys)]
    queries = [m for _, _, m in c.sent if isinstance(m, MerkleQuery)]
    assert queries
    assert all(q.level == 0 for q in queries)


def test_anti_entropy_runs_by_itself_on_its_timer() -> None:
    cfg = replace(CONFIG, anti_entropy_interval=0.05)
    c = cluster(cfg, names=("a", "b", "c"), q=4)
    c.drop = lambda src, dst, msg: dst == "c" and isinstance(msg, Store)
    ok(c.put("a", KEY, b"v"))
    c.drop = None
    c.advance(2.0)
    assert c.values("c", KEY) == {b"v"}


# ---- tombstones ---------------------------------------------------------------------------


def test_a_tombstone_held_by_every_replica_is_reaped_everywhere() -> None:
    c = cluster()
    node = c.replicas(KEY)[0]
    ok(c.put(node, KEY, b"v"))
    ok(c.delete(node, KEY, c.get(node, KEY).context))
    for n in c.replicas(KEY):
        assert c.stored(n, KEY)
        assert all(v.is_tombstone for v in c.stored(n, KEY))
    c.advance(c.config.reap_delay + 0.1)
    for n in c.names:
        assert c.stored(n, KEY) == ()
        assert KEY not in c.disks[n].store
    assert "ReapTombstone" in c.action_names()


def test_no_reaping_while_a_replica_lacks_the_tombstone_and_no_undoing_the_delete() -> None:
    c = cluster(
        replace(CONFIG, sloppy=False, anti_entropy_interval=0.5), names=("a", "b", "c"), q=4
    )
    node, other, away = c.replicas(KEY)
    ok(c.put(node, KEY, b"v"))
    context = c.get(node, KEY).context
    c.crash(away)  # it keeps the old value on disk
    ok(c.delete(node, KEY, context))
    c.advance(c.config.reap_delay + 1.0)
    # Two of three replicas hold the tombstone: nobody reaps it.
    for n in (node, other):
        assert all(v.is_tombstone for v in c.stored(n, KEY))
        assert c.stored(n, KEY)
    assert c.values(away, KEY) == {b"v"}
    # The replica comes back: anti-entropy gives it the tombstone, not the others the value.
    c.boot(away)
    c.advance(3.0)
    assert all(v.is_tombstone for v in c.stored(away, KEY)) or c.stored(away, KEY) == ()
    assert c.get(node, KEY).siblings == []
    # Once a read has seen the tombstone on all three, it is reaped, and stays gone.
    c.advance(c.config.reap_delay + 5.0)
    for n in c.names:
        assert c.stored(n, KEY) == ()
    assert c.get(node, KEY).siblings == []


def test_tombstones_are_kept_forever_when_reaping_is_off() -> None:
    c = cluster(replace(CONFIG, reap_tombstones=False))
    node = c.replicas(KEY)[0]
    ok(c.put(node, KEY, b"v"))
    ok(c.delete(node, KEY, c.get(node, KEY).context))
    c.get(node, KEY)
    c.advance(60.0)
    for n in c.replicas(KEY):
        assert all(v.is_tombstone for v in c.stored(n, KEY))
        assert c.stored(n, KEY)


def test_a_tombstone_with_a_concurrent_value_is_not_reaped() -> None:
    c = cluster()
    node, other, _ = c.replicas(KEY)
    ok(c.put(node, KEY, b"v"))
    context = c.get(node, KEY).context
    ok(c.delete(node, KEY, context))
    ok(c.put(other, KEY, b"concurrent", context))  # written without seeing the delete
    c.advance(c.config.reap_delay + 1.0)
    assert c.get(node, KEY).siblings == [b"concurrent"]
    assert any(v.is_tombstone for v in c.stored(node, KEY))


def test_a_put_to_a_reaped_key_starts_afresh() -> None:
    c = cluster()
    node = c.replicas(KEY)[0]
    ok(c.put(node, KEY, b"v"))
    ok(c.delete(node, KEY, c.get(node, KEY).context))
    c.advance(c.config.reap_delay + 0.1)
    client = c.send(node, Put(KEY, b"back"))
    c.settle()
    ok(c.replies[client][0])
    assert c.get(node, KEY).siblings == [b"back"]
