"""Random and mutated frames thrown at a live node; afterwards it answers and has lost nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_support import FAST

from dynamo_ref.client import Client
from dynamo_ref.core.messages import Delete, Get, Put, StatusRequest, encode
from dynamo_ref.net.framing import encode_frame
from dynamo_ref.net.handshake import PROTOCOL_VERSION, Hello, encode_handshake
from dynamo_ref.net.server import NodeServer, ServerOptions

pytestmark = pytest.mark.net

KEPT = {b"\x00kept-%d\xff" % i: b"value-%d" % i for i in range(20)}
TEMPLATES = [
    encode(Get(b"fuzz-key", rid=1)),
    encode(Put(b"fuzz-key", b"fuzz-value", rid=2)),
    encode(Delete(b"fuzz-key", rid=3)),
    encode(StatusRequest(rid=4)),
]


@pytest.fixture(scope="module")
def live_node() -> Iterator[str]:
    """A one-node cluster serving from its own thread, with KEPT written."""
    ready = threading.Event()
    stop = threading.Event()
    address: list[str] = []

    def run() -> None:
        async def main() -> None:
            config = FAST.__class__(n=1, r=1, w=1)
            server = NodeServer(ServerOptions(node_id="solo", config=config, max_frame=1 << 16))
            await server.start()
            try:
                address.append(server.address)
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.02)
            finally:
                await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(30)
        with Client(address) as client:
            for key, value in KEPT.items():
                client.put(key, value)
        yield address[0]
    finally:
        stop.set()
        thread.join()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    return bytes(buf[: max(1, len(buf) - cut)])


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.binary(), st.text()
)
random_maps = st.dictionaries(
    st.sampled_from(["type", "key", "value", "context", "r", "w", "pr", "pw", "rid", "x"]),
    scalars,
).map(msgspec.msgpack.encode)
typed_maps = st.builds(
    lambda kind, rest: msgspec.msgpack.encode({**rest, "type": kind}),
    st.sampled_from(["get", "put", "delete", "status", "store", "gossip", "nope"]),
    st.dictionaries(st.sampled_from(["key", "value", "context", "r", "w", "rid"]), scalars),
)
mutated = st.builds(
    mutate,
    st.sampled_from(TEMPLATES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 8),
)
payloads = st.one_of(st.binary(min_size=1, max_size=64), random_maps, typed_maps, mutated)
frames = st.one_of(
    payloads.map(encode_frame),
    st.binary(max_size=16),  # raw bytes: a bad length, a truncated header
    st.builds(lambda n, body: n.to_bytes(4, "big") + body, st.integers(0, 2**32 - 1), st.binary()),
)


def exchange(address: str, handshake: bool, data: list[bytes]) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        if handshake:
            hello = Hello(PROTOCOL_VERSION, "client")
            sock.sendall(encode_frame(encode_handshake(hello)))
        for chunk in data:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # until the node closes its side
            pass


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_fuzzed_frames_neither_crash_the_node_nor_lose_data(live_node: str) -> None:
    # An exception escaping a connection handler is logged by asyncio or by the server.
    errors = _Errors()
    watched = [logging.getLogger("asyncio"), logging.getLogger("dynamo_ref.net")]
    for logger in watched:
        logger.addHandler(errors)
    try:
        fuzz(live_node)
    finally:
        for logger in watched:
            logger.removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []


def fuzz(live_node: str) -> None:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(handshake=st.booleans(), data=st.lists(frames, min_size=1, max_size=4))
    def throw(handshake: bool, data: list[bytes]) -> None:
        # The node may close on us while we still send: a refusal (checked after).
        with contextlib.suppress(OSError):
            exchange(live_node, handshake, data)

    throw()
    with Client([live_node]) as client:
        for key, value in KEPT.items():
            assert client.get(key).siblings == [value]
        client.put(b"after-fuzz", b"ok")
        assert client.get(b"after-fuzz").siblings == [b"ok"]
