"""Bad client input gets a clear error with a stable code, and the node keeps serving."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest
from test_node_cluster import CONFIG, cluster, err, ok

from dynamo_ref.core.effects import ClientRequest, PeerReceived, Reply
from dynamo_ref.core.messages import (
    Delete,
    ErrorCode,
    ErrorReply,
    Get,
    Leave,
    MessageError,
    Put,
    SetClockSkew,
    Store,
    WireVersion,
    decode_client,
    encode,
)
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.core.node_versions import PruneSettings, VersionMode
from dynamo_ref.core.quorum import QuorumError

KEY = b"k"


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (Get(b""), "invalid_key", "non-empty"),
        (Put(b"", b"v"), "invalid_key", "non-empty"),
        (Get(b"x" * 65), "invalid_key", "limit is 64"),
        (Delete(b"x" * 65), "invalid_key", "65 bytes"),
        (Put(KEY, b"v" * 101), "invalid_value", "limit is 100"),
        (Get(KEY, r=4), "invalid_quorum", "R=4 exceeds N=3"),
        (Get(KEY, r=0), "invalid_quorum", "R must be at least 1"),
        (Get(KEY, r=2, pr=3), "invalid_quorum", "PR=3 exceeds R=2"),
        (Put(KEY, b"v", w=4), "invalid_quorum", "W=4 exceeds N=3"),
        (Put(KEY, b"v", w=1, pw=2), "invalid_quorum", "PW=2 exceeds W=1"),
        (Put(KEY, b"v", b"\xc1garbage"), "invalid_context", "context"),
        (Delete(KEY, b"\x92\x01"), "invalid_context", "context"),
        (Leave("nobody"), "not_found", "nobody"),
        (SetClockSkew(float("inf")), "invalid_request", "finite"),
    ],
)
def test_bad_requests_get_an_error_reply_and_the_node_keeps_serving(
    request_: object, code: str, words: str
) -> None:
    c = cluster(replace(CONFIG, max_key_size=64, max_value_size=100))
    node = c.replicas(KEY)[0]
    reply = err(c.call(node, request_), code)  # type: ignore[arg-type]
    assert words in reply.message
    ok(c.put(node, KEY, b"fine"))
    assert c.get(node, KEY).siblings == [b"fine"]


def test_an_unknown_request_object_gets_unknown_message() -> None:
    c = cluster()
    node = c.names[0]
    effects = c.nodes[node].handle(ClientRequest(1, "frobnicate"), c.now)  # type: ignore[arg-type]
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert isinstance(reply.msg, ErrorReply)
    assert reply.msg.code == "unknown_message"


def test_an_unknown_admin_frame_is_refused_before_it_reaches_the_node() -> None:
    frame = msgspec.msgpack.encode({"type": "rebalance_everything", "rid": 1})
    with pytest.raises(MessageError) as info:
        decode_client(frame)
    assert info.value.code is ErrorCode.UNKNOWN_MESSAGE
    assert "set_clock_skew" in info.value.message  # it lists what exists


def test_overload_is_refused_with_a_clear_code() -> None:
    c = cluster(replace(CONFIG, max_pending=2, w=3))
    node, slow, _ = c.replicas(KEY)
    c.hold = lambda src, dst, msg: dst == slow
    c.send(node, Put(KEY, b"1"))
    c.send(node, Put(KEY, b"2"))
    reply = err(c.call(node, Put(KEY, b"3")), "overload")
    assert "2 requests in progress" in reply.message


def test_a_peer_message_with_a_bad_clock_is_dropped_without_harm() -> None:
    c = cluster()
    node = c.replicas(KEY)[0]
    bad = WireVersion(b"v", [("a", 0, 1.0)], 1.0, "a")  # counter 0 is not a clock entry
    effects = c.nodes[node].handle(PeerReceived("b", Store(1, KEY, [bad])), c.now)
    assert [type(e).__name__ for e in effects] == ["Action"]
    assert effects[0].name == "RejectMessage"  # type: ignore[union-attr]
    assert c.stored(node, KEY) == ()
    ok(c.put(node, KEY, b"fine"))


def test_every_reply_echoes_the_request_id() -> None:
    c = cluster()
    node = c.replicas(KEY)[0]
    assert ok(c.put(node, KEY, b"v", rid=11)).rid == 11
    assert c.get(node, KEY, rid=12).rid == 12
    assert err(c.call(node, Get(b"", rid=13)), "invalid_key").rid == 13
    assert encode(Get(KEY, rid=14))  # rid travels on the wire


def test_config_takes_mode_names_and_refuses_inconsistent_settings() -> None:
    assert NodeConfig(mode="dvv").mode is VersionMode.DVV  # type: ignore[arg-type]
    with pytest.raises(QuorumError, match="R=4 exceeds N=3"):
        NodeConfig(n=3, r=4)
    with pytest.raises(ValueError, match="request_timeout"):
        NodeConfig(request_timeout=0.0)
    # Tombstones reaped while a request that read what they deleted is still in progress.
    with pytest.raises(ValueError, match=r"reap_delay .* must outlast"):
        NodeConfig(request_timeout=3.0, reap_delay=5.0)  # forward deadline 6 s
    with pytest.raises(ValueError, match=r"reap_delay .* must outlast"):
        NodeConfig(forward_timeout=5.0, reap_delay=5.0)
    assert NodeConfig(request_timeout=3.0, reap_delay=5.0, reap_tombstones=False).reap_delay == 5
    assert NodeConfig(request_timeout=2.0, reap_delay=5.0).forward_deadline == 4.0
    with pytest.raises(ValueError, match="small"):
        NodeConfig(prune=PruneSettings(small=0))
    with pytest.raises(ValueError, match="'nonsense'"):
        NodeConfig(mode="nonsense")  # type: ignore[arg-type]
