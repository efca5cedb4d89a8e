"""Framing and the handshake's proofs, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.net.framing import FrameDecoder, FrameError, encode_frame
from dynamo_ref.net.handshake import (
    PROTOCOL_VERSION,
    HandshakeError,
    Hello,
    Proof,
    Welcome,
    acceptor_proof,
    check_hello,
    check_proof,
    connector_proof,
    decode_handshake,
)


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.integers(1, 50), min_size=1, max_size=20),
)
def test_frames_come_out_whole_however_the_bytes_are_split(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=300)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += decoder.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert out == payloads
    assert decoder.buffered == 0


def test_a_partial_frame_stays_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"hello")[:-1]) == []
    assert decoder.buffered == 8
    assert decoder.feed(b"o") == [b"hello"]


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"\x00\x00\x00\x00", "malformed"), ((101).to_bytes(4, "big"), "too_large")],
)
def test_bad_lengths_are_refused(data: bytes, code: str) -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(encode_frame(b"x" * 100)) == [b"x" * 100]  # at the limit: fine
    with pytest.raises(FrameError) as err:
        decoder.feed(data)
    assert err.value.code == code


def test_proofs_need_the_same_secret_and_the_same_connection() -> None:
    hello = Hello(PROTOCOL_VERSION, "peer", "n2", b"a" * 16)
    welcome = Welcome(PROTOCOL_VERSION, "n1", b"b" * 16)
    good = connector_proof(b"secret", hello, welcome)
    check_proof(Proof(good), connector_proof(b"secret", hello, welcome))
    for other in (
        connector_proof(b"other", hello, welcome),
        connector_proof(b"secret", hello, Welcome(PROTOCOL_VERSION, "n1", b"c" * 16)),
        acceptor_proof(b"secret", hello, welcome.nonce, "n1"),  # the other side's proof
    ):
        assert other != good
        with pytest.raises(HandshakeError) as err:
            check_proof(Proof(other), good)
        assert err.value.code == "unauthorized"


def test_hello_checks() -> None:
    ok = Hello(PROTOCOL_VERSION, "client", token="t")
    assert check_hello(ok, secret=None, client_token="t") is ok
    bad: list[tuple[Hello | Proof, str]] = [
        (Hello(PROTOCOL_VERSION + 1, "client"), "invalid_request"),
        (Hello(PROTOCOL_VERSION, "client", token="u"), "unauthorized"),
        (Hello(PROTOCOL_VERSION, "peer", "", b"a" * 16), "invalid_request"),
        (Hello(PROTOCOL_VERSION, "peer", "n2", b"short"), "invalid_request"),
        (Proof(b""), "malformed"),
    ]
    for msg, code in bad:
        with pytest.raises(HandshakeError) as err:
            check_hello(msg, secret=b"s", client_token="t")
        assert err.value.code == code
    with pytest.raises(HandshakeError) as err:
        decode_handshake(b"\x93\x01\x02\x03")
    assert err.value.code == "malformed"


def test_frames_are_handed_out_one_at_a_time_under_the_limit_of_the_moment() -> None:
    # The server takes the hello under a handshake-sized limit, then raises it.
    decoder = FrameDecoder(max_frame=8)
    decoder.receive(encode_frame(b"hello") + encode_frame(b"x" * 20) + encode_frame(b"y"))
    assert decoder.next_frame() == b"hello"
    assert decoder.frames == 1
    decoder.max_frame = 100
    assert decoder.next_frame() == b"x" * 20
    assert decoder.next_frame() == b"y"
    assert decoder.next_frame() is None
    assert decoder.buffered == 0
    # Negative control: under the small limit the second frame is refused.
    small = FrameDecoder(max_frame=8)
    small.receive(encode_frame(b"hello") + encode_frame(b"x" * 20))
    assert small.next_frame() == b"hello"
    with pytest.raises(FrameError) as err:
        small.next_frame()
    assert err.value.code == "too_large"
    assert small.buffered == 0


def test_a_frame_left_in_the_decoder_waits_for_the_next_call() -> None:
    decoder = FrameDecoder()
    decoder.receive(encode_frame(b"a") + encode_frame(b"b")[:3])
    assert decoder.next_frame() == b"a"
    assert decoder.next_frame() is None
    assert decoder.buffered == 3
    decoder.receive(encode_frame(b"b")[3:])
    assert decoder.next_frame() == b"b"
    decoder.receive(encode_frame(b"c")[:2])
    decoder.clear()
    assert decoder.buffered == 0
    assert decoder.next_frame() is None


def test_a_peer_skips_the_token_only_where_it_must_prove_the_secret() -> None:
    peer = Hello(PROTOCOL_VERSION, "peer", "n2", b"a" * 16)
    # With a secret the proof follows: no token needed.
    assert check_hello(peer, secret=b"s", client_token="t") is peer
    # Without one, calling oneself a peer must not open the door.
    with pytest.raises(HandshakeError) as err:
        check_hello(peer, secret=None, client_token="t")
    assert err.value.code == "unauthorized"
    with_token = Hello(PROTOCOL_VERSION, "peer", "n2", b"a" * 16, token="t")
    assert check_hello(with_token, secret=None, client_token="t") is with_token
