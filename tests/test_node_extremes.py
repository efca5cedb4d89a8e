"""Well-typed but extreme requests and peer messages leave no request state behind.

Hypothesis drives real nodes in the simulator with what a buggy or hostile client or peer can
send once a frame has decoded: keys and values at and past their limits, contexts with huge
counters and many entries, quorums out of range, acks and responses for requests that do not
exist, forwards that hop too often, Merkle queries of partitions and levels that do not exist,
versions with extreme timestamps. After every timer has fired, no node may still hold a put,
get or forward in progress; a handler that raises fails the test (``HandlerError``), and the
node must have answered each client.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamo_ref.core.effects import PeerReceived
from dynamo_ref.core.messages import (
    Delete,
    Forward,
    ForwardReply,
    Get,
    GetOk,
    MerkleAnswer,
    MerkleQuery,
    Put,
    Read,
    ReadResp,
    Reap,
    Store,
    StoreAck,
    SyncKeys,
    SyncKeysReply,
    Transfer,
    TransferAck,
    WireContext,
    WireVersion,
)
from dynamo_ref.core.node import Node, NodeConfig
from dynamo_ref.sim import ClientHandle, LinkConfig
from dynamo_ref.sim.cluster import Cluster
from dynamo_ref.sim.simulation import HandlerError

CONFIG = NodeConfig(max_key_size=16, max_value_size=64, request_timeout=0.5)
NODES = ("n1", "n2", "n3", "n4")
U64 = (1 << 64) - 1

nodes = st.sampled_from(NODES)
senders = st.sampled_from((*NODES, "stranger"))
keys = st.one_of(st.sampled_from([b"k", b"key"]), st.binary(max_size=18))
values = st.binary(max_size=66)
counters = st.one_of(st.integers(1, 3), st.sampled_from([1 << 62, (1 << 63) - 1, 1 << 63, U64]))
stamps = st.one_of(st.floats(-1e9, 1e9), st.sampled_from([0.0, 1e300, -1e300]))
entries = st.lists(st.tuples(st.sampled_from(NODES), counters, stamps), max_size=6)
contexts = st.one_of(
    st.just(b""),
    st.binary(max_size=12),
    # Every node's entry at one extreme counter: whoever coordinates meets it.
    counters.map(lambda c: msgspec.msgpack.encode(WireContext([(n, c, 1.0) for n in NODES]))),
    entries.map(
        lambda es: msgspec.msgpack.encode(WireContext(sorted({e[0]: e for e in es}.values())))
    ),
)
quorums = st.one_of(st.none(), st.integers(0, 70))
ids = st.one_of(st.integers(0, 3), st.sampled_from([1 << 32, (1 << 63) - 1]))
versions = st.lists(
    st.builds(
        WireVersion,
        st.one_of(st.none(), values),
        entries.map(lambda es: sorted({e[0]: e for e in es}.values())),
        stamps,
        st.sampled_from((*NODES, "")),
        st.one_of(st.just(0), counters),
    ),
    max_size=3,
)
requests = st.one_of(
    st.builds(Get, keys, quorums, quorums),
    st.builds(Put, keys, values, contexts, quorums, quorums, st.booleans()),
    st.builds(Delete, keys, contexts, quorums, quorums, st.booleans()),
)
peer_messages = st.one_of(
    st.builds(Store, ids, keys, versions, st.one_of(st.none(), senders)),
    st.builds(StoreAck, ids, keys, versions, st.one_of(st.none(), senders)),
    st.builds(Read, ids, keys, st.one_of(st.none(), senders)),
    st.builds(ReadResp, ids, keys, versions),
    st.builds(Reap, keys, versions),
    st.builds(Forward, ids, requests, st.integers(0, 5)),
    st.builds(ForwardReply, ids, st.builds(GetOk, st.lists(values, max_size=2), contexts)),
    st.builds(
        MerkleQuery,
        ids,
        st.integers(-2, 1 << 20),
        st.integers(-1, 9),
        st.lists(st.integers(-1, 1 << 20), max_size=3),
        st.binary(max_size=16),
        st.integers(0, 16),
        st.integers(0, 4),
    ),
    st.builds(MerkleAnswer, ids, st.integers(-2, 64), st.integers(-1, 5), st.binary(max_size=16)),
    st.builds(SyncKeys, ids, st.integers(-2, 64), st.lists(st.tuples(keys, versions), max_size=3)),
    st.builds(
        SyncKeysReply, ids, st.integers(-2, 64), st.lists(st.tuples(keys, versions), max_size=3)
    ),
    st.builds(
        Transfer,
        ids,
        st.integers(-2, 64),
        st.lists(st.tuples(keys, versions), max_size=3),
        st.booleans(),
    ),
    st.builds(TransferAck, ids, st.integers(-2, 64)),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("client"), nodes, requests),
        st.tuples(st.just("peer"), nodes, st.tuples(senders, peer_messages)),
        st.tuples(st.just("wait"), st.just(""), st.sampled_from([0.0, 0.01, 0.3])),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), script=steps)
def test_extreme_messages_leave_no_request_pending(
    seed: int, script: list[tuple[str, str, object]]
) -> None:
    sim = Cluster(NODES, CONFIG, seed=seed, q=8, link=LinkConfig(delay=0.001, jitter=0.002))
    sim.run_for(1.0)
    handles: list[ClientHandle] = []
    for kind, node, what in script:
        if kind == "client":
            assert isinstance(what, Get | Put | Delete)
            handles.append(sim.client_request(node, what))
        elif kind == "peer":
            src, msg = what  # type: ignore[misc]
            sim.inject(node, PeerReceived(src, msg))
        else:
            assert isinstance(what, float)
            sim.run_for(what)
    # Long past every request's deadline (forwards wait twice as long).
    sim.run_for(10 * CONFIG.request_timeout)
    for name in NODES:
        node = sim.nodes[name]
        assert isinstance(node, Node)
        assert node.in_progress() == 0, f"{name} still holds requests"
    assert all(h.done for h in handles), "a client got no answer"


def test_a_handler_that_raises_answers_the_client_and_keeps_nothing_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A planted bug: the replica's merge raises after the coordinator registered the put
    # (the shape of the crafted-context bug: an encoder overflow half way through ClientPut).
    sim = Cluster(NODES, CONFIG, seed=1, q=8)
    sim.run_for(1.0)
    key = b"k"
    coordinator = sim.replicas(key)[0]
    node = sim.nodes[coordinator]
    assert isinstance(node, Node)
    replica = node._parts.replica  # type: ignore[union-attr]

    def broken(*args: object, **kwargs: object) -> object:
        raise OverflowError("int too big to convert")

    monkeypatch.setattr(replica, "merge", broken)
    sim.fail_on_handler_error = False
    h = sim.client_request(coordinator, Put(key, b"v", b""))
    sim.run_for(0.1)
    assert h.reply is not None
    assert getattr(h.reply, "code", "") == "internal_error", h.reply
    assert "OverflowError" in getattr(h.reply, "message", "")
    assert node.in_progress() == 0
    assert [name for _, a in sim.handler_failures for name in (a.name,)] == ["HandlerFailed"]
    # Without the rollback the put would stay registered, with no timer to remove it.
    sim.fail_on_handler_error = True
    monkeypatch.undo()
    ok = sim.client_request(coordinator, Put(key, b"v2", b""))
    sim.run_until_done([ok])
    assert type(ok.reply).__name__ == "PutOk"


def test_the_simulator_fails_a_run_whose_handler_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Cluster(NODES, CONFIG, seed=1, q=8)
    sim.run_for(1.0)
    coordinator = sim.replicas(b"k")[0]
    node = sim.nodes[coordinator]
    assert isinstance(node, Node)
    monkeypatch.setattr(node._parts.replica, "merge", lambda *a, **k: 1 / 0)  # type: ignore[union-attr]
    sim.client_request(coordinator, Put(b"k", b"v", b""))
    with pytest.raises(HandlerError, match="ZeroDivisionError"):
        sim.run_for(0.1)
