"""A longer wire fuzz campaign against a live node process (``make test-slow``).

Hypothesis throws at one node: raw and mutated frames; well-typed client requests with
extreme fields (keys, values, contexts with huge or bad counters, quorums, request ids), each
of which must be answered, with its own request id, within 5 s; and, over a connection that
proved the cluster secret, well-typed peer messages with extreme fields. Afterwards the node
still answers, has no request in progress and no connection open, logged no error, and
stayed under its RSS bound.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from adversary_support import NodeProcess, Probe, figures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_net_fuzz import frames

from dynamo_ref.core import messages as m
from dynamo_ref.net.framing import FrameDecoder, encode_frame
from dynamo_ref.net.handshake import (
    PROTOCOL_VERSION,
    Hello,
    Proof,
    Ready,
    Welcome,
    connector_proof,
    decode_handshake,
    encode_handshake,
    new_nonce,
)

pytestmark = [pytest.mark.slow, pytest.mark.net]

SECRET = b"fuzz-secret"
EXAMPLES = 5000
RSS_LIMIT_MB = 200

# ---- strategies --------------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
counters = st.one_of(st.integers(-3, 3), st.integers(2**63 - 2, 2**64 - 1), u64)
stamps = st.floats(allow_nan=True, allow_infinity=True)
names = st.sampled_from(["", "solo", "n2", "fuzzer", "x" * 300])
entries = st.lists(st.tuples(names, counters, stamps), max_size=4)
wire_versions = st.lists(
    st.builds(
        m.WireVersion,
        value=st.none() | st.binary(max_size=40),
        clock=entries,
        ts=stamps,
        writer=names,
        dot=st.integers(-2, 2**64 - 1),
    ),
    max_size=3,
)
# Contexts at the edges of what is allowed: counters at 2^63 - 1, 2^63 and 2^64 - 1 for this
# node (the coordinator adds one to its own), and just over the entry limit.
EDGE_CONTEXTS = [
    msgspec.msgpack.encode([[(node, counter, 0.0)]])
    for node in ("solo", "n2")
    for counter in (2**63 - 1, 2**63, 2**64 - 1)
]
contexts = st.one_of(
    st.just(b""),
    st.sampled_from(EDGE_CONTEXTS),
    st.binary(max_size=40),
    entries.map(lambda e: msgspec.msgpack.encode([e])),
    st.integers(1020, 1030).map(
        lambda n: msgspec.msgpack.encode([[(f"n{i}", 1, 0.0) for i in range(n)]])
    ),
)
keys = st.one_of(st.binary(max_size=40), st.binary(min_size=1020, max_size=1030))
quorums = st.none() | st.integers(0, 70)
rids = st.integers(0, 2**63 - 1)

client_requests = st.one_of(
    st.builds(m.Get, key=keys, r=quorums, pr=quorums, rid=rids),
    st.builds(
        m.Put,
        key=keys,
        value=st.binary(max_size=64),
        context=contexts,
        w=quorums,
        pw=quorums,
        return_body=st.booleans(),
        rid=rids,
    ),
    st.builds(
        m.Delete, key=keys, context=contexts, w=quorums, pw=quorums, return_body=st.booleans(),
        rid=rids,
    ),
    # A valid put but for its context: the edges reach the coordinator's clock.
    st.builds(
        m.Put,
        key=st.binary(min_size=1, max_size=40),
        value=st.binary(max_size=8),
        context=st.sampled_from(EDGE_CONTEXTS),
        rid=rids,
    ),
    st.builds(m.StatusRequest, rid=rids),
    st.builds(m.ReplicaGet, key=keys, rid=rids),
    st.builds(m.SetClockSkew, skew=stamps, rid=rids),  # not an admin: refused
    st.builds(m.Join, node=names, rid=rids, address=st.just("127.0.0.1:1")),
    st.builds(m.Leave, node=names, rid=rids),
)  # fmt: skip

# Addresses a fuzzed membership may name: none of them leaves loopback.
addresses = st.sampled_from(["", "nowhere", "127.0.0.1:1", "[::1]:1", "127.0.0.1:99999"])
members = st.lists(
    st.builds(
        m.WireMember,
        node=names,
        incarnation=st.integers(-1, 2**64 - 1),
        status=st.sampled_from(["up", "joining", "leaving", "left", "zombie"]),
        address=addresses,
        zone=st.none() | names,
        claims=st.lists(st.integers(-1, 70), max_size=5),
    ),
    max_size=3,
)
small = st.integers(-1, 2**64 - 1)
items = st.lists(st.tuples(keys, wire_versions), max_size=3)
peer_messages = st.one_of(
    st.builds(m.Store, op=small, key=keys, versions=wire_versions, hint=st.none() | names),
    st.builds(m.StoreAck, op=small, key=keys, versions=wire_versions, hint=st.none() | names),
    st.builds(m.Read, op=small, key=keys, hint=st.none() | names),
    st.builds(m.ReadResp, op=small, key=keys, versions=wire_versions),
    st.builds(m.Reap, key=keys, versions=wire_versions),
    st.builds(m.Gossip, members=members, reply=st.booleans()),
    st.builds(
        m.MerkleQuery, session=small, partition=st.integers(-1, 70), level=st.integers(-1, 5),
        indexes=st.lists(st.integers(-1, 2**40), max_size=4), root=st.binary(max_size=20),
        fanout=st.integers(0, 9), depth=st.integers(0, 4),
    ),
    st.builds(
        m.MerkleAnswer, session=small, partition=st.integers(-1, 70), level=st.integers(-1, 5),
        root=st.binary(max_size=20),
        children=st.lists(st.lists(st.binary(max_size=20), max_size=3), max_size=3),
        leaves=st.lists(st.lists(st.tuples(keys, st.binary(max_size=20)), max_size=3), max_size=3),
        in_sync=st.booleans(), refused=st.text(max_size=5),
    ),
    st.builds(m.SyncKeys, session=small, partition=st.integers(-1, 70), items=items),
    st.builds(m.SyncKeysReply, session=small, partition=st.integers(-1, 70), items=items),
    st.builds(
        m.Transfer, tid=small, partition=st.integers(-1, 70), items=items, last=st.booleans()
    ),
    st.builds(m.TransferAck, tid=small, partition=st.integers(-1, 70)),
    st.builds(m.Forward, fid=small, request=client_requests.filter(
        lambda r: isinstance(r, m.Get | m.Put | m.Delete)), hops=st.integers(-1, 5)),
    st.builds(m.ForwardReply, fid=small, reply=st.builds(m.ErrorReply, code=names,
                                                         message=names)),
    st.just(m.Ping()),
    st.just(m.Pong()),
)  # fmt: skip


# ---- blocking connections ----------------------------------------------------------------------


class Conn:
    """A handshaken connection (client, or a peer proving the secret) on a plain socket."""

    def __init__(self, address: str, role: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.decoder = FrameDecoder(1 << 24)
        self.ready: list[bytes] = []
        if role == "client":
            self.send(encode_handshake(Hello(PROTOCOL_VERSION, "client")))
            assert isinstance(decode_handshake(self.recv()), Welcome)
            return
        hello = Hello(PROTOCOL_VERSION, "peer", "fuzzer", new_nonce())
        self.send(encode_handshake(hello))
        welcome = decode_handshake(self.recv())
        assert isinstance(welcome, Welcome)
        self.send(encode_handshake(Proof(connector_proof(SECRET, hello, welcome))))
        assert isinstance(decode_handshake(self.recv()), Ready)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(payload))

    def recv(self, timeout: float = 10.0) -> bytes:
        self.sock.settimeout(timeout)
        while not self.ready:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionResetError("closed by the node")
            self.ready.extend(self.decoder.feed(data))
        return self.ready.pop(0)

    def close(self) -> None:
        self.sock.close()


class Reconnecting:
    """A connection opened again whenever the node closed the last one."""

    def __init__(self, address: str, role: str) -> None:
        self.address, self.role = address, role
        self.conn: Conn | None = None
        self.opened = 0

    def get(self) -> Conn:
        if self.conn is None:
            self.conn = Conn(self.address, self.role)
            self.opened += 1
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@contextlib.contextmanager
def live_node(tmp: Path, plant: str | None = None) -> Iterator[NodeProcess]:
    config = {"n": 1, "r": 1, "w": 1, "gossip_interval": 0.2}
    options = {"secret": SECRET.decode()}
    with NodeProcess(tmp, config=config, options=options, plant=plant) as node:
        yield node


def campaign(tmp_path: Path, examples: int, plant: str | None = None) -> None:
    with live_node(tmp_path, plant) as node, Probe(node.address) as probe:
        client = Reconnecting(node.address, "client")
        peer = Reconnecting(node.address, "peer")
        unanswered: list[object] = []
        common = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )

        @common
        @given(msg=client_requests)
        def typed_requests(msg: m.ClientMessage) -> None:
            conn = client.get()
            conn.send(m.encode(msg))
            try:
                reply = m.decode_reply(conn.recv(5.0))
            except (TimeoutError, OSError) as e:
                unanswered.append((msg, repr(e)))
                client.drop()
                return
            assert m.rid_of(reply) == msg.rid, (msg, reply)

        @common
        @given(msg=peer_messages)
        def peer_fuzz(msg: m.PeerMessage) -> None:
            try:
                peer.get().send(m.encode(msg))
            except OSError:
                peer.drop()

        @common
        @given(data=st.lists(frames, min_size=1, max_size=4))
        def raw_frames(data: list[bytes]) -> None:
            host, port = node.address.rsplit(":", 1)
            with (
                contextlib.suppress(OSError),
                socket.create_connection((host, int(port)), timeout=10) as sock,
            ):
                sock.sendall(encode_frame(encode_handshake(Hello(PROTOCOL_VERSION, "client"))))
                for chunk in data:
                    sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(1 << 16):
                    pass

        t0 = time.perf_counter()
        typed_requests()
        peer_fuzz()
        raw_frames()
        took = time.perf_counter() - t0
        client.drop()
        peer.drop()
        time.sleep(2.5)  # request timers run out
        state = node.settled_state(pending=0, inflight=0, connections=1)
        peak = node.peak_mb()
        errors = node.errors_logged()
    figures(
        f"wire_fuzz_campaign{'_' + plant if plant else ''}",
        examples=3 * examples,
        seconds=round(took),
        unanswered=len(unanswered),
        client_reconnects=client.opened,
        peer_reconnects=peer.opened,
        peak_mb=round(peak),
        errors_logged=len(errors),
        probe=dict(probe.outcomes),
        probe_worst_ms=round(probe.worst * 1000),
    )
    assert unanswered == []
    assert errors == [], f"the node logged errors: {errors[:5]}"
    assert state["pending"] == 0, state
    assert state["inflight"] == 0, state
    assert state["connections"] <= 1, state
    assert peak < RSS_LIMIT_MB
    assert set(probe.outcomes) == {"ok"}, probe.outcomes


def test_a_long_wire_fuzz_campaign_leaves_the_node_serving(tmp_path: Path) -> None:
    campaign(tmp_path, EXAMPLES)


def test_negative_control_the_campaign_finds_a_planted_overflow(tmp_path: Path) -> None:
    # Contexts decoded without bounds: a counter of 2^64 - 1 overflows inside the handler.
    with pytest.raises(AssertionError, match="logged errors"):
        campaign(tmp_path, 1000, plant="unbounded_contexts")
