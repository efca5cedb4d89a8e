"""The proxy network backend: bytes flow, one-way cuts, heal, delay, drop, slow, clean stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from harness.net import ProxyNetwork
from harness.net.network import NetEvent

pytestmark = pytest.mark.net


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Node b's real port: the test accepts on it by hand."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(5)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def net(listener: socket.socket) -> Iterator[ProxyNetwork]:
    # Node a's own port is never dialled in these tests; any loopback port will do.
    network = ProxyNetwork({"a": ("127.0.0.1", 9), "b": listener.getsockname()}, seed=1)
    network.start()
    try:
        yield network
    finally:
        network.stop()


def connect(net: ProxyNetwork, srv: socket.socket) -> tuple[socket.socket, socket.socket]:
    """a's end and b's end of a connection a opened to b through the proxy."""
    client = socket.create_connection(net.address_for("a", "b"), timeout=5)
    server, _ = srv.accept()
    server.settimeout(5)
    return client, server


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def nothing_arrives(sock: socket.socket, within: float = 0.5) -> bool:
    sock.settimeout(within)
    try:
        data = sock.recv(100)
    except (TimeoutError, ConnectionResetError):
        return True
    finally:
        sock.settimeout(5)
    return data == b""  # an end of stream also means no bytes got through


def is_reset(sock: socket.socket) -> bool:
    """The connection has ended: a reset or an end of stream, within a few seconds."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_bytes_flow_both_ways(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        client.sendall(b"hello")
        assert recv_exactly(server, 5) == b"hello"
        server.sendall(b"world")
        assert recv_exactly(client, 5) == b"world"
    # The proxy is really in between: a's address for b is not b's own port.
    assert net.address_for("a", "b")[1] != listener.getsockname()[1]


def test_one_way_cut_blocks_only_that_direction(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        client.sendall(b"before")
        assert recv_exactly(server, 6) == b"before"
        net.cut({("a", "b")})
        client.sendall(b"lost")
        assert nothing_arrives(server)
        server.sendall(b"still")
        assert recv_exactly(client, 5) == b"still"


def test_cut_of_the_reverse_direction(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.cut({("b", "a")})
        server.sendall(b"lost")
        assert nothing_arrives(client)
        client.sendall(b"flows")
        assert recv_exactly(server, 5) == b"flows"


def test_heal_restores_and_resets_torn_connections(
    net: ProxyNetwork, listener: socket.socket
) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.cut({("a", "b")})
        client.sendall(b"lost")
        assert nothing_arrives(server)
        net.heal()
        # The stream lost bytes, so it is ended rather than resumed with a hole.
        assert is_reset(client)
    client, server = connect(net, listener)
    with client, server:
        client.sendall(b"again")
        assert recv_exactly(server, 5) == b"again"


def test_a_connection_that_lost_nothing_survives_heal(
    net: ProxyNetwork, listener: socket.socket
) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.cut({("a", "b")})
        net.heal()
        client.sendall(b"intact")
        assert recv_exactly(server, 6) == b"intact"


def test_new_connection_across_a_cut_never_reaches_the_node(
    net: ProxyNetwork, listener: socket.socket
) -> None:
    net.cut({("b", "a")})  # either direction stops a handshake
    client = socket.create_connection(net.address_for("a", "b"), timeout=5)
    with client:
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
        net.heal()
        assert is_reset(client)


def test_delay_delays(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.delay(("a", "b"), 0.3)
        started = time.monotonic()
        client.sendall(b"late")
        assert recv_exactly(server, 4) == b"late"
        assert time.monotonic() - started >= 0.3
        # The other direction is not delayed; only a lower bound is asserted above.
        net.delay(("a", "b"), 0.0)
        assert net.faults(("a", "b")).healthy


def test_drop_everything_lets_nothing_through(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.drop(("a", "b"), 1.0)
        client.sendall(b"gone")
        assert nothing_arrives(server)
        assert is_reset(client)


def test_slow_limits_throughput(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.slow(("a", "b"), 20_000)
        started = time.monotonic()
        client.sendall(b"x" * 10_000)
        assert recv_exactly(server, 10_000) == b"x" * 10_000
        assert time.monotonic() - started >= 0.4


def test_stop_closes_every_listener_and_connection(listener: socket.socket) -> None:
    network = ProxyNetwork({"a": ("127.0.0.1", 9), "b": listener.getsockname()})
    network.start()
    try:
        ports = network.listening_ports()
        assert set(ports) == {("a", "b"), ("b", "a")}
        client, server = connect(network, listener)
    finally:
        network.stop()
    with client, server:
        assert is_reset(client)
    for port in ports.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_events_record_what_was_applied_when(net: ProxyNetwork) -> None:
    net.cut({("a", "b")})
    net.drop(("b", "a"), 0.5)
    net.heal()
    kinds = [(e.kind, e.links) for e in net.events]
    assert kinds == [("cut", (("a", "b"),)), ("drop", (("b", "a"),)), ("heal", ())]
    assert net.events[1] == NetEvent(
        net.events[1].time, "drop", (("b", "a"),), {"probability": 0.5}
    )
    times = [e.time for e in net.events]
    assert times == sorted(times)
    assert not net.cut_links()
    assert net.faults(("b", "a")).healthy


def test_unknown_links_are_refused(net: ProxyNetwork) -> None:
    with pytest.raises(ValueError, match="unknown link"):
        net.cut({("a", "c")})
    with pytest.raises(ValueError, match="unknown link"):
        net.delay(("a", "a"), 1.0)


def test_async_use_on_the_callers_loop() -> None:
    async def main() -> bytes:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readexactly(4))
            await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        net = ProxyNetwork({"a": ("127.0.0.1", 9), "b": server.sockets[0].getsockname()})
        await net.start_async()
        try:
            reader, writer = await asyncio.open_connection(*net.address_for("a", "b"))
            writer.write(b"ping")
            data = await asyncio.wait_for(reader.readexactly(4), 5)
            writer.close()
            return data
        finally:
            await net.stop_async()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == b"ping"


def test_half_close_is_forwarded(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        assert recv_exactly(server, 100) == b"request"  # then end of stream
        server.sendall(b"reply")
        server.shutdown(socket.SHUT_WR)
        assert recv_exactly(client, 100) == b"reply"


def test_jitter_never_reorders_a_stream(net: ProxyNetwork, listener: socket.socket) -> None:
    client, server = connect(net, listener)
    with client, server:
        net.delay(("a", "b"), 0.01, jitter=0.05)
        sent = b"".join(b"%04d," % i for i in range(200))
        for i in range(0, len(sent), 50):
            client.sendall(sent[i : i + 50])
            time.sleep(0.001)
        assert recv_exactly(server, len(sent)) == sent


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def test_frames_are_followed_across_chunks() -> None:
    from harness.net.proxy import _Frames

    frames = _Frames(4)
    stream = _frame(b"one") + _frame(b"") + _frame(b"three") + _frame(b"four")
    # Byte by byte, with the middle frames lost: exactly those are named, whole.
    named = [
        p for i, byte in enumerate(stream) for p in frames.feed(bytes([byte]), lost=11 <= i < 20)
    ]
    assert named == [b"three"]
    # A frame that lost one byte of its header counts as lost too.
    frames = _Frames(4)
    assert frames.feed(_frame(b"x")[:2], lost=True) == []
    assert frames.feed(_frame(b"x")[2:] + _frame(b"y"), lost=False) == [b"x"]


def test_the_frames_a_cut_loses_are_named(listener: socket.socket) -> None:
    lost: list[tuple[tuple[str, str], bytes]] = []
    network = ProxyNetwork(
        {"a": ("127.0.0.1", 9), "b": listener.getsockname()},
        seed=1,
        frame_header=4,
        on_lost=lambda link, payload: lost.append((link, payload)),
    )
    network.start()
    try:
        client, server = connect(network, listener)
        with client, server:
            client.sendall(_frame(b"before"))
            assert recv_exactly(server, 10) == _frame(b"before")
            network.cut({("a", "b")})
            client.sendall(_frame(b"gone-1") + _frame(b"gone-2"))
            server.sendall(_frame(b"back"))  # the other direction is not cut
            assert recv_exactly(client, 8) == _frame(b"back")
            deadline = time.monotonic() + 5
            while len(lost) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        network.stop()
    assert lost == [(("a", "b"), b"gone-1"), (("a", "b"), b"gone-2")]


def test_control_without_a_hook_nothing_is_followed(
    net: ProxyNetwork, listener: socket.socket
) -> None:
    with pytest.raises(ValueError, match="go together"):
        ProxyNetwork({"a": ("127.0.0.1", 9)}, frame_header=4)
    client, server = connect(net, listener)
    with client, server:
        net.cut({("a", "b")})
        client.sendall(_frame(b"gone"))
        assert nothing_arrives(server)
