"""Bad input and refused connections: each gets a clear error, and the node keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from net_support import FAST, LocalCluster, raw_client, read_all, wait_for

from dynamo_ref.client import AsyncClient, ClientError
from dynamo_ref.core.effects import ClientRequest
from dynamo_ref.core.messages import (
    ErrorReply,
    Get,
    GetOk,
    Put,
    PutOk,
    Store,
    decode_reply,
    encode,
)
from dynamo_ref.core.node import Node
from dynamo_ref.net.connect import FramedStream, connect
from dynamo_ref.net.framing import encode_frame
from dynamo_ref.net.handshake import (
    MAX_HANDSHAKE,
    PROTOCOL_VERSION,
    HandshakeError,
    Hello,
    Proof,
    encode_handshake,
)
from dynamo_ref.net.server import NodeServer, ServerOptions

pytestmark = pytest.mark.net

PUT = {"type": "put", "key": b"k", "value": b"v", "rid": 7}
SOLO = FAST.__class__(n=1, r=1, w=1, max_key_size=64)


def with_node(
    test: Callable[[NodeServer], Awaitable[None]], *, secret: bytes | None = None
) -> None:
    """Run ``test`` against a one-node cluster; afterwards the node must still serve."""

    async def main() -> None:
        server = NodeServer(
            ServerOptions(node_id="solo", config=SOLO, secret=secret, max_frame=1 << 16)
        )
        await server.start()
        try:
            client = await AsyncClient.connect([server.address])
            await client.put(b"kept", b"value")
            await test(server)
            assert (await client.get(b"kept")).siblings == [b"value"]
            await client.close()
        finally:
            await server.stop()

    asyncio.run(main())


async def exchange(server: NodeServer, data: bytes, *, eof: bool = False) -> list[object]:
    stream, _ = await raw_client(server.address)
    stream.writer.write(data)
    if eof:
        stream.writer.write_eof()
    try:
        return list(await read_all(stream)) if eof else [await one_reply(stream)]
    finally:
        stream.close()


async def one_reply(stream: FramedStream) -> object:
    return decode_reply(await asyncio.wait_for(stream.recv(), 10.0))


def error_of(replies: list[object], code: str) -> ErrorReply:
    assert replies, "no reply"
    err = replies[0]
    assert isinstance(err, ErrorReply), err
    assert err.code == code, err
    assert err.message
    return err


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("zero length", b"\x00\x00\x00\x00", "malformed"),
        ("oversized", (1 << 20).to_bytes(4, "big") + b"x" * 10, "too_large"),
        ("not msgpack", encode_frame(b"\xc1\xc1\xc1"), "malformed"),
        ("not a map", encode_frame(msgspec.msgpack.encode([1, 2])), "malformed"),
    ],
)
def test_connection_level_errors_close_the_connection(name: str, data: bytes, code: str) -> None:
    async def test(server: NodeServer) -> None:
        stream, _ = await raw_client(server.address)
        stream.writer.write(data)
        replies = await read_all(stream)  # returns once the node closed the connection
        stream.close()
        error_of(list(replies), code)

    with_node(test)


def test_a_truncated_frame_is_reported_when_the_stream_ends() -> None:
    async def test(server: NodeServer) -> None:
        frame = encode_frame(encode(Get(b"kept")))
        error_of(await exchange(server, frame[:-3], eof=True), "malformed")

    with_node(test)


@pytest.mark.parametrize(
    ("name", "msg", "code"),
    [
        ("unknown type", {"type": "explode", "rid": 7}, "unknown_message"),
        ("wrong field type", {"type": "get", "key": 42, "rid": 7}, "invalid_request"),
        ("unknown field", {"type": "get", "key": b"k", "bogus": 1, "rid": 7}, "invalid_request"),
        ("peer message", {"type": "ping", "rid": 7}, "unknown_message"),
        ("empty key", {"type": "get", "key": b"", "rid": 7}, "invalid_key"),
        ("oversized key", {"type": "get", "key": b"k" * 65, "rid": 7}, "invalid_key"),
        ("R above N", {"type": "get", "key": b"k", "r": 2, "rid": 7}, "invalid_quorum"),
        (
            "W of zero",
            {"type": "put", "key": b"k", "value": b"v", "w": 0, "rid": 7},
            "invalid_quorum",
        ),
        (
            "negative W",
            {"type": "put", "key": b"k", "value": b"v", "w": -1, "rid": 7},
            "invalid_request",
        ),
        (
            "bad context",
            {"type": "put", "key": b"k", "value": b"v", "context": b"??", "rid": 7},
            "invalid_context",
        ),
    ],
)
def test_bad_requests_get_an_error_and_the_connection_stays(
    name: str, msg: dict[str, object], code: str
) -> None:
    async def test(server: NodeServer) -> None:
        stream, _ = await raw_client(server.address)
        try:
            stream.send(msgspec.msgpack.encode(msg))
            err = error_of([await one_reply(stream)], code)
            assert err.rid == 7  # matched to the request even when it did not validate
            # The same connection still serves.
            stream.send(encode(Put(b"after", b"ok", rid=8)))
            assert isinstance(await one_reply(stream), PutOk)
            stream.send(encode(Get(b"after", rid=9)))
            got = await one_reply(stream)
            assert isinstance(got, GetOk)
            assert got.siblings == [b"ok"]
        finally:
            stream.close()

    with_node(test)


def test_a_client_without_the_token_is_refused() -> None:
    async def main() -> None:
        async with LocalCluster(1, SOLO, client_token="open-sesame") as cluster:
            address = cluster.address("n1")
            for token in (None, "wrong"):
                with pytest.raises(ClientError) as err:
                    await AsyncClient.connect([address], token=token)
                assert err.value.code == "unauthorized"
            client = await AsyncClient.connect([address], token="open-sesame")
            await client.put(b"k", b"v")
            await client.close()

    asyncio.run(main())


def test_a_peer_without_the_secret_cannot_store_replicas() -> None:
    async def main() -> None:
        async with LocalCluster(1, SOLO, secret=b"right") as cluster:
            address = cluster.address("n1")
            node = cluster.servers["n1"].node
            for secret in (None, b"wrong"):
                with pytest.raises(HandshakeError) as err:
                    await connect(address, "peer", node="intruder", secret=secret)
                assert err.value.code == "unauthorized"
            # Sending a Store after the refused proof: the node has closed the connection
            # and stored nothing.
            host, port = address.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            hello = Hello(PROTOCOL_VERSION, "peer", "intruder", b"n" * 16)
            writer.write(encode_frame(encode_handshake(hello)))
            writer.write(encode_frame(encode_handshake(Proof(b"x" * 32))))
            writer.write(encode_frame(encode(Store(1, b"stolen", []))))
            writer.write_eof()
            while await asyncio.wait_for(reader.read(4096), 10.0):
                pass
            writer.close()
            assert node.engine.get(b"stolen") == ()
            # The right secret gets through (the control).
            stream, welcome = await connect(address, "peer", node="friend", secret=b"right")
            assert welcome.node == "n1"
            stream.close()

    asyncio.run(main())


def test_a_node_with_the_wrong_secret_can_neither_join_nor_get_replicas() -> None:
    async def main() -> None:
        async with LocalCluster(3, secret=b"right") as cluster:
            seed = cluster.address("n1")
            rogue = NodeServer(
                ServerOptions(node_id="rogue", seeds=[seed], config=FAST, secret=b"wrong")
            )
            await rogue.start()
            try:
                client = await AsyncClient.connect([seed])
                for i in range(30):
                    await client.put(b"k%d" % i, b"v", w=2)
                # A client without the secret may read and write but not change the ring.
                with pytest.raises(ClientError) as err:
                    await client.join("rogue", rogue.address)
                assert err.value.code == "unauthorized"
                await client.close()
                with pytest.raises(ClientError) as err:
                    await AsyncClient.connect([seed], secret=b"wrong")
                assert err.value.code == "unauthorized"
                # Never let in, so it holds no data: its parts are not even built.
                assert not rogue.node.joined
                assert all("rogue" not in s.node.membership for s in cluster.servers.values())
            finally:
                await rogue.stop()

    asyncio.run(main())


def test_an_admin_with_the_secret_changes_the_ring() -> None:
    async def main() -> None:
        async with LocalCluster(3, secret=b"right") as cluster:
            plain = await AsyncClient.connect([cluster.address("n1")])
            with pytest.raises(ClientError) as err:
                await plain.set_clock_skew(0.25)
            assert err.value.code == "unauthorized"
            await plain.close()
            admin = await AsyncClient.connect([cluster.address("n1")], secret=b"right")
            assert await admin.set_clock_skew(0.25)
            await admin.close()
            assert cluster.servers["n1"].node.status(0.0).clock_skew == 0.25

    asyncio.run(main())


def test_a_node_with_the_secret_joins_through_a_seed() -> None:
    async def main() -> None:
        async with LocalCluster(3, secret=b"right") as cluster:
            newcomer = NodeServer(
                ServerOptions(
                    node_id="n4",
                    seeds=[cluster.address("n2")],
                    config=FAST,  # 64 partitions: Q is learned from the cluster's claims (16)
                    secret=b"right",
                )
            )
            await newcomer.start()
            try:
                await wait_for(lambda: newcomer.node.joined and "n4" in newcomer.node.ring.nodes)
                assert newcomer.node.ring.q == 16
                await wait_for(
                    lambda: all("n4" in s.node.ring.nodes for s in cluster.servers.values())
                )
                owned = newcomer.node.ring.partitions_of("n4")
                assert owned
                client = await AsyncClient.connect([cluster.address("n1")])
                keys = [f"key-{i}".encode() for i in range(40)]
                for key in keys:
                    await client.put(key, key)
                await client.close()
                mine = [k for k in keys if "n4" in newcomer.node.ring.preference_list(k, 3)]
                assert mine
                await wait_for(lambda: all(newcomer.node.engine.get(k) for k in mine))
            finally:
                await newcomer.stop()

    asyncio.run(main())


def test_a_client_token_without_a_secret_does_not_start() -> None:
    with pytest.raises(ValueError, match="needs a cluster secret"):
        NodeServer(ServerOptions(node_id="n1", client_token="t"))
    NodeServer(ServerOptions(node_id="n1", client_token="t", secret=b"s"))  # the control


def test_a_node_without_a_secret_warns_that_anyone_can_join(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(secret: bytes | None) -> None:
        server = NodeServer(ServerOptions(node_id="n1", config=SOLO, secret=secret))
        await server.start()
        await server.stop()

    with caplog.at_level("WARNING", logger="dynamo_ref.net"):
        asyncio.run(main(None))
    assert any("anyone who can reach" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dynamo_ref.net"):
        asyncio.run(main(b"s"))
    assert not any("anyone who can reach" in r.getMessage() for r in caplog.records)


def test_a_request_the_core_fails_on_is_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's last line of defence: the client gets ``internal_error``, not silence."""
    handle = Node.handle

    def failing(self: Node, event: object, now: float, **kwargs: float) -> object:
        if isinstance(event, ClientRequest) and getattr(event.msg, "key", b"") == b"boom":
            raise RuntimeError("a bug in the core")
        return handle(self, event, now, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Node, "handle", failing)

    async def test(server: NodeServer) -> None:
        client = await AsyncClient.connect([server.address], timeout=2.0)
        try:
            with pytest.raises(ClientError) as err:
                await client.put(b"boom", b"x")
            assert err.value.code == "internal_error"
            await client.put(b"fine", b"x")  # the same connection serves on
            assert server._inflight_total == 0
        finally:
            await client.close()

    with_node(test)


def test_before_the_handshake_a_frame_is_small() -> None:
    async def test(server: NodeServer) -> None:
        host, port = server.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write((MAX_HANDSHAKE + 1).to_bytes(4, "big"))
        stream = FramedStream(reader, writer, 1 << 20)
        error_of([decode_reply(await asyncio.wait_for(stream.recv(), 10))], "too_large")
        stream.close()
        # After the hello the node's own limit holds.
        stream, _ = await raw_client(server.address)
        stream.send(encode(Put(b"k", b"v" * (MAX_HANDSHAKE * 2))))
        assert isinstance(await one_reply(stream), PutOk)
        stream.close()

    with_node(test)


def test_a_connection_past_the_cap_is_refused_with_a_reason() -> None:
    async def main() -> None:
        server = NodeServer(ServerOptions(node_id="solo", config=SOLO, max_connections=3))
        await server.start()
        try:
            clients = [await AsyncClient.connect([server.address]) for _ in range(3)]
            with pytest.raises(ClientError) as err:
                await AsyncClient.connect([server.address])
            # The client library tries the next node, and says why none took it.
            assert "overload" in err.value.message
            assert "client connections are open" in err.value.message
            await clients[0].close()
            await wait_for(lambda: len(server._conns) == 2)
            again = await AsyncClient.connect([server.address])  # room again
            await again.put(b"k", b"v")
            for c in [*clients[1:], again]:
                await c.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_idle_clients_and_stuck_frames_are_closed() -> None:
    async def main() -> None:
        server = NodeServer(
            ServerOptions(node_id="solo", config=SOLO, idle_timeout=0.3, frame_timeout=0.3)
        )
        await server.start()
        try:
            idle, _ = await raw_client(server.address)
            stuck, _ = await raw_client(server.address)
            stuck.writer.write((1000).to_bytes(4, "big") + b"x")
            busy = await AsyncClient.connect([server.address])
            for _ in range(8):  # a client that keeps asking is never idle
                await busy.put(b"k", b"v")
                await asyncio.sleep(0.1)
            for stream, reason in ((idle, "idle"), (stuck, "still not whole")):
                (err,) = await read_all(stream)
                assert isinstance(err, ErrorReply)
                assert err.code == "timeout"
                assert reason in err.message
                stream.close()
            await busy.put(b"k", b"v2")
            await busy.close()
        finally:
            await server.stop()

    asyncio.run(main())
