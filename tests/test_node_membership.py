"""Gossip, failure detection, and partitions moving on join and leave."""

from __future__ import annotations

from dataclasses import replace

from test_node_cluster import CONFIG, Cluster, cluster, err, ok

from dynamo_ref.core.effects import PeerReceived
from dynamo_ref.core.membership import Status
from dynamo_ref.core.messages import (
    AdminOk,
    Gossip,
    Join,
    Leave,
    Ping,
    StatusReply,
    StatusRequest,
    Transfer,
    TransferAck,
    siblings_to_wire,
)

FIVE = ("a", "b", "c", "d", "e")


def views(c: Cluster) -> set[bytes]:
    return {c.nodes[n].membership.digest() for n in c.nodes}


def copies(c: Cluster, key: bytes) -> int:
    return sum(1 for n in c.nodes if c.nodes[n].engine.get(key))


def test_gossip_spreads_a_membership_change_to_every_node() -> None:
    c = cluster(names=FIVE)
    assert len(views(c)) == 1
    reply = c.call("a", Leave("e"))
    assert isinstance(reply, AdminOk)
    assert len(views(c)) == 2  # a knows (and told e), the others do not yet
    c.advance(10.0)
    assert len(views(c)) == 1
    assert all(c.nodes[n].membership["e"].status in (Status.LEAVING, Status.LEFT) for n in FIVE)
    assert all(c.nodes[n].ring == c.nodes["a"].ring for n in FIVE)


def test_gossip_goes_to_the_seeds_first() -> None:
    c = cluster(names=FIVE, seeds=("c",))
    c.sent.clear()
    c.advance(0.99)  # each node's first round
    for n in ("a", "b", "d", "e"):
        i = next(i for i, (s, _, m) in enumerate(c.sent) if s == n and isinstance(m, Gossip))
        heard_seed = any(s == "c" and d == n for s, d, _ in c.sent[:i])
        # Until a seed has answered, a node gossips with the seed.
        assert c.sent[i][1] == "c" or heard_seed


def test_every_node_gossips_every_interval_and_pings_the_peers_it_has_not_heard() -> None:
    c = cluster(names=FIVE)
    c.advance(2.0)
    c.sent.clear()
    c.advance(10.0)
    for n in FIVE:
        rounds = sum(1 for s, _, m in c.sent if s == n and isinstance(m, Gossip) and m.reply)
        assert 7 <= rounds <= 14  # one per second, with jitter
    assert any(isinstance(m, Ping) for _, _, m in c.sent)
    assert all(not c.nodes[n].suspected(c.now) for n in FIVE)


def test_the_failure_detector_suspects_a_crashed_node_and_clears_it_when_it_returns() -> None:
    c = cluster(names=FIVE, notify=False)
    c.advance(5.0)
    c.crash("e")
    c.advance(10.0)
    assert all("e" in c.nodes[n].suspected(c.now) for n in c.nodes)
    c.boot("e")
    c.advance(5.0)
    assert all(not c.nodes[n].suspected(c.now) for n in c.nodes)


def test_status_shows_membership_hints_and_anti_entropy() -> None:
    c = cluster(names=FIVE)
    reply = c.call("a", StatusRequest(rid=3))
    assert isinstance(reply, StatusReply)
    assert reply.rid == 3
    assert reply.node == "a"
    assert [m.node for m in reply.members] == list(FIVE)
    assert sum(m.partitions for m in reply.members) == c.q
    assert reply.hints == {}
    assert reply.mode == "vclock"


def data(c: Cluster, count: int = 120) -> list[bytes]:
    keys = [f"key{i}".encode() for i in range(count)]
    for k in keys:
        ok(c.put(c.replicas(k)[0], k, k))
    return keys


def placed_right(c: Cluster, keys: list[bytes], ring_of: str) -> None:
    """Every key is on exactly its replicas under ``ring_of``'s ring, and reads back."""
    ring = c.nodes[ring_of].ring
    for k in keys:
        replicas = set(ring.preference_list(k, c.config.n))
        holders = {n for n in c.nodes if c.nodes[n].engine.get(k)}
        assert holders == replicas, (k, holders, replicas)


def test_join_moves_partitions_and_their_data_to_the_new_node() -> None:
    c = cluster(names=("a", "b", "c", "d"))
    keys = data(c)
    old_ring = c.ring
    joiner = c.boot("e", ring=old_ring)  # knows the cluster's ring, not yet in it
    assert "e" not in joiner.ring.nodes
    assert isinstance(c.call("a", Join("e")), AdminOk)
    c.advance(15.0)
    assert len(views(c)) == 1
    new_ring = c.nodes["e"].ring
    assert "e" in new_ring.nodes
    assert new_ring.partitions_of("e")
    placed_right(c, keys, "e")
    assert c.nodes["e"].engine.partitions()
    assert "DropPartition" in c.action_names()
    for k in keys:
        assert c.get("e", k).siblings == [k]


def test_leave_hands_partitions_off_before_dropping_them() -> None:
    c = cluster(replace(CONFIG, transfer_chunk=7), names=FIVE)
    keys = data(c)
    assert isinstance(c.call("b", Leave("e")), AdminOk)
    # At every step of the move, each key keeps at least N copies.
    for _ in range(150):
        c.advance(0.1)
        assert min(copies(c, k) for k in keys) >= c.config.n
    assert c.nodes["e"].membership["e"].status is Status.LEFT
    assert len(c.nodes["e"].engine) == 0
    assert "e" not in c.nodes["a"].ring.nodes
    placed_right(c, keys, "a")
    names = c.action_names("e")
    assert names.index("TransferPartition") < names.index("DropPartition")
    # The node that left still answers, by forwarding.
    assert c.get("e", keys[0]).siblings == [keys[0]]


def test_join_and_leave_refuse_what_cannot_be_done() -> None:
    c = cluster()
    err(c.call("a", Join("b")), "invalid_request")
    err(c.call("a", Leave("zz")), "not_found")


def test_a_node_refuses_a_transfer_of_a_partition_it_does_not_replicate_on_its_ring() -> None:
    # A node that has not learnt a ring change must not ack a partition it does not hold on
    # its own ring: the sender would drop it, and this node could hand it back and drop it on
    # the sender's ack (spec/Dynamo.tla RefuseTransfer, mutant 28_transfer_taken_off_ring).
    c = cluster(names=FIVE)
    key = b"moved"
    ok(c.put(c.replicas(key)[0], key, b"v"))
    c.settle()
    ring = c.nodes["a"].ring
    partition = ring.partition_of(key)
    outsider = next(n for n in FIVE if n not in ring.preference_list(key, c.config.n))
    holder = c.replicas(key)[0]
    items = [(key, siblings_to_wire(c.nodes[holder].engine.get(key)))]
    c.sent = []
    c.event(outsider, PeerReceived(holder, Transfer(7, partition, items, True)))
    assert not c.nodes[outsider].engine.get(key)
    assert not any(isinstance(m, TransferAck) for _, _, m in c.sent)
    assert c.action_names(outsider)[-1] == "RefuseTransfer"
    # A replica of the partition takes the same chunk and acks it.
    other = c.replicas(key)[1]
    c.event(other, PeerReceived(holder, Transfer(8, partition, items, True)))
    assert c.action_names(other)[-1] == "ReceiveTransfer"
    assert any(isinstance(m, TransferAck) and m.tid == 8 for _, _, m in c.sent)
