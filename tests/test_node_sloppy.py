"""Sloppy quorum and hinted handoff, strict quorum, and PR/PW."""

from __future__ import annotations

from dataclasses import replace

from test_node_cluster import CONFIG, Cluster, cluster, err, ok

from dynamo_ref.core.messages import Get, PeerMessage, Put, Store, StoreAck
from dynamo_ref.core.node import NodeConfig

KEY = b"user:7"


def hint_holders(c: Cluster, owner: str, key: bytes) -> list[str]:
    return [n for n in c.names if (owner, key) in c.disks[n].hints]


def test_a_down_replica_is_replaced_by_a_fallback_that_keeps_a_hint_and_hands_it_off() -> None:
    c = cluster(replace(CONFIG, w=3))  # W = N: the put needs the fallback
    coordinator, down, up = c.replicas(KEY)
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v"))
    (holder,) = hint_holders(c, down, KEY)
    assert holder not in c.replicas(KEY)
    assert holder == c.ring.extended_preference_list(KEY, 3)[3]  # the first fallback
    # Kept apart from its own store, durably.
    assert c.values(holder, KEY) == set()
    assert {v.value for v in c.disks[holder].hints[(down, KEY)]} == {b"v"}
    assert "SloppyFallback" in c.action_names(coordinator)
    assert c.nodes[holder].pending_hints() == {down: 1}

    # The replica comes back: handoff delivers, the owner acks, the hint goes.
    c.advance(2.0)
    assert hint_holders(c, down, KEY) == [holder]  # still down: the hint stays
    c.boot(down)
    c.advance(5.0)
    assert c.values(down, KEY) == {b"v"}
    assert hint_holders(c, down, KEY) == []
    assert c.nodes[holder].pending_hints() == {}
    assert "HandoffHint" in c.action_names(holder)
    assert up  # the third replica took the write directly
    assert c.values(up, KEY) == {b"v"}


def test_only_a_handoffs_ack_echoes_the_versions() -> None:
    # A put's ack drops no hint, so it carries no versions; the owner's ack of a handoff
    # carries what it stored, and the fallback drops exactly those.
    c = cluster(replace(CONFIG, w=3))
    coordinator, down, _ = c.replicas(KEY)
    acks: list[tuple[str, StoreAck]] = []

    def record(src: str, dst: str, msg: PeerMessage) -> bool:
        if isinstance(msg, StoreAck):
            acks.append((src, msg))
        return False

    c.drop = record
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v"))
    assert len(hint_holders(c, down, KEY)) == 1
    put_acks = [m for _, m in acks]
    assert len(put_acks) == 2  # the other replica and the fallback
    assert all(m.versions == [] for m in put_acks)
    assert {m.hint for m in put_acks} == {None, down}
    acks.clear()
    c.boot(down)
    c.advance(5.0)
    handoff = [(src, m) for src, m in acks if m.hint == src]
    assert [src for src, _ in handoff] == [down]
    assert [v.value for v in handoff[0][1].versions] == [b"v"]
    assert hint_holders(c, down, KEY) == []


def test_a_silent_replica_gets_a_fallback_after_the_fallback_delay() -> None:
    c = cluster(replace(CONFIG, w=3), notify=False)
    coordinator, silent, _ = c.replicas(KEY)
    # Silent: nothing reaches it and nothing it sends arrives (its gossip would clear the
    # suspicion, whenever its timers happen to fire).
    c.drop = lambda src, dst, msg: silent in (src, dst)
    client = c.send(coordinator, Put(KEY, b"v"))
    c.settle()
    assert client not in c.replies
    c.advance(0.6)  # past fallback_delay (0.5), before the request timeout
    ok(c.replies[client][0])
    assert len(hint_holders(c, silent, KEY)) == 1
    assert silent in c.nodes[coordinator].suspected(c.now)


def test_under_a_sloppy_quorum_a_get_reads_the_fallback_in_place_of_a_down_replica() -> None:
    c = cluster(replace(CONFIG, r=3, w=3))
    coordinator, down, _ = c.replicas(KEY)
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v"))
    # The coordinator now holds the replica down, so the read goes to the fallback too.
    assert c.get(coordinator, KEY).siblings == [b"v"]


def test_strict_quorum_fails_instead_of_using_fallbacks() -> None:
    c = cluster(replace(CONFIG, sloppy=False))
    coordinator, down1, down2 = c.replicas(KEY)
    c.crash(down1)
    c.crash(down2)
    # First attempt: the coordinator learns the replicas are unreachable and times out.
    client = c.send(coordinator, Put(KEY, b"v"))
    c.advance(1.5)
    reply = err(c.replies[client][0], "timeout")
    assert "1 of W=2" in reply.message
    assert all(not c.disks[n].hints for n in c.names)
    # Now it knows: the next request fails at once, naming the quorum it cannot reach.
    reply = err(c.put(coordinator, KEY, b"w"), "unavailable")
    assert "W=2" in reply.message
    assert "strict" in reply.message
    reply = err(c.call(coordinator, Get(KEY)), "unavailable")
    assert "R=2" in reply.message
    # With sloppy quorum the same cluster accepts the write.
    s = cluster(replace(CONFIG, sloppy=True))
    s.crash(down1)
    s.crash(down2)
    client = s.send(coordinator, Put(KEY, b"v"))
    s.settle()
    ok(s.replies[client][0])
    assert sum(len(hint_holders(s, d, KEY)) for d in (down1, down2)) >= 1


def test_strict_quorum_succeeds_with_one_replica_down_when_w_allows() -> None:
    c = cluster(replace(CONFIG, sloppy=False))
    coordinator, down, _ = c.replicas(KEY)
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v"))
    assert c.get(coordinator, KEY).siblings == [b"v"]


def test_pw_counts_only_primary_acks() -> None:
    c = cluster(replace(CONFIG, w=3))
    coordinator, down, _ = c.replicas(KEY)
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v", pw=2))  # W from a fallback, PW=2 from primaries
    reply = err(c.put(coordinator, KEY, b"w", pw=3), "unavailable")
    assert "PW=3" in reply.message


def test_pw_waits_for_primaries_even_when_w_is_met() -> None:
    c = cluster(replace(CONFIG, w=2))
    coordinator, slow, down = c.replicas(KEY)
    c.crash(down)
    c.put(coordinator, KEY, b"x")  # teaches the coordinator that the replica is down
    c.hold = lambda src, dst, msg: dst == slow and isinstance(msg, Store)
    client = c.send(coordinator, Put(KEY, b"v", pw=2))
    c.settle()
    # W=2 is met by the coordinator and the fallback, but PW=2 needs the held replica.
    assert client not in c.replies
    assert hint_holders(c, down, KEY)
    c.hold = None
    c.release()
    ok(c.replies[client][0])


def test_pr_counts_only_primary_responses() -> None:
    c = cluster(replace(CONFIG, r=2))
    coordinator, down, _ = c.replicas(KEY)
    ok(c.put(coordinator, KEY, b"v"))
    c.crash(down)
    c.put(coordinator, KEY, b"w")  # teaches the coordinator that the replica is down
    assert c.get(coordinator, KEY, pr=2).siblings
    reply = err(c.call(coordinator, Get(KEY, r=3, pr=3)), "unavailable")
    assert "PR=3" in reply.message


def test_a_read_with_r_met_by_a_fallback_still_waits_for_pr() -> None:
    c = cluster(replace(CONFIG, r=2))
    coordinator, down, silent = c.replicas(KEY)
    c.crash(down)
    c.put(coordinator, KEY, b"x")  # teaches the coordinator that the replica is down
    c.notify = False
    c.drop = lambda src, dst, msg: dst == silent
    client = c.send(coordinator, Get(KEY, pr=2))
    c.settle()
    assert client not in c.replies  # R=2 from the coordinator and the fallback, PR=1
    c.advance(1.5)
    reply = err(c.replies[client][0], "timeout")
    assert "1 of PR=2" in reply.message


def test_quorum_defaults_come_from_the_config() -> None:
    cfg = NodeConfig(n=3, r=1, w=1, pr=1, pw=1)
    c = cluster(cfg)
    ok(c.put(c.replicas(KEY)[0], KEY, b"v"))
    assert c.get(c.replicas(KEY)[0], KEY).siblings == [b"v"]
