"""The etcd target: a real 3-member cluster on loopback, its faults by PID, and the JSON client,
whose errors must tell a certain failure from an unknown outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from harness.targets.etcd import (
    EtcdClient,
    EtcdCluster,
    EtcdFailed,
    EtcdStartError,
    EtcdUnknown,
)

pytestmark = pytest.mark.net


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    assert shutil.which("etcd"), (
        "etcd is not installed: `apt-get install etcd-server etcd-client` (or `make sysdeps`)"
    )
    with EtcdCluster(3, tmp_path) as c:
        yield c
    _assert_gone(c)


def _assert_gone(c: EtcdCluster) -> None:
    pids = [m.process.pid for m in c.members if m.process is not None]
    assert len(pids) == c.size
    assert c.pids() == [None] * c.size
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        await coro

    asyncio.run(main())


async def _eventually(fn: Callable[[], Awaitable[bytes | None]], seconds: float) -> bytes | None:
    """fn's result once it stops raising (a member catching up after resume or restart)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await fn()
        except (EtcdFailed, EtcdUnknown):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EtcdStartError, match="not found: install Debian's etcd-server"):
        EtcdCluster(3, tmp_path, etcd_bin=str(tmp_path / "no-such-etcd"))


def test_a_member_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(EtcdStartError, match=r"etcd0 exited with 2 while starting; log .*\.log"):
        EtcdCluster(1, tmp_path, extra_args=["--no-such-flag"])


def test_three_members_serve_put_get_and_cas(cluster: EtcdCluster, tmp_path: Path) -> None:
    assert all(cluster.healthy(i) for i in range(3))
    assert len(set(cluster.pids())) == 3
    assert all((tmp_path / f"etcd{i}.log").stat().st_size > 0 for i in range(3))

    async def ops() -> None:
        async with EtcdClient(cluster.client_urls[0]) as a, EtcdClient(cluster.client_urls[2]) as c:
            key = b"\x00bin\xffkey"
            assert await a.get(key) is None
            await a.put(key, b"\xfe\x00v1")
            assert await c.get(key) == b"\xfe\x00v1"  # linearizable read on another member
            assert await c.cas(key, b"wrong", b"v2") is False
            assert await c.get(key) == b"\xfe\x00v1"
            assert await c.cas(key, b"\xfe\x00v1", b"v2") is True
            assert await a.get(key) == b"v2"
            assert await a.cas(b"fresh", None, b"") is True  # absent -> created, empty value
            assert await a.get(b"fresh") == b""
            assert await a.cas(b"fresh", None, b"again") is False  # present now
            # Concurrent requests share the pool.
            await asyncio.gather(*(a.put(b"k%d" % i, b"v%d" % i) for i in range(20)))
            values = await asyncio.gather(*(c.get(b"k%d" % i) for i in range(20)))
            assert values == [b"v%d" % i for i in range(20)]

    _run(ops())


def test_killing_members(cluster: EtcdCluster) -> None:
    async def ops() -> None:
        async with (
            EtcdClient(cluster.client_urls[0], timeout=2.0) as a,
            EtcdClient(cluster.client_urls[1], timeout=2.0) as b,
            EtcdClient(cluster.client_urls[2], timeout=2.0) as c,
        ):
            await a.put(b"before", b"1")
            pid = cluster.pids()[0]
            assert pid is not None
            cluster.kill(0)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            with pytest.raises(EtcdFailed, match="cannot connect"):  # nothing was sent
                await a.put(b"x", b"y")
            await _eventually(lambda: b.put(b"during", b"2"), 10)  # two of three serve
            assert await c.get(b"during") == b"2"

            cluster.kill(1)  # one of three: no quorum, a write cannot commit nor be refused
            with pytest.raises(EtcdUnknown):
                await c.put(b"lost?", b"3")

            cluster.start(1)
            cluster.start(0)  # same data directory: it catches up
            assert await _eventually(lambda: a.get(b"during"), 10) == b"2"
            assert await a.get(b"before") == b"1"

    _run(ops())


def test_pause_and_resume(cluster: EtcdCluster) -> None:
    async def ops() -> None:
        async with (
            EtcdClient(cluster.client_urls[0], timeout=1.0) as a,
            EtcdClient(cluster.client_urls[1]) as b,
        ):
            cluster.pause(0)
            with pytest.raises(EtcdUnknown, match="no answer"):  # sent, never answered
                await a.put(b"maybe", b"1")
            await _eventually(lambda: b.put(b"while-paused", b"2"), 10)
            cluster.resume(0)
            assert await _eventually(lambda: a.get(b"while-paused"), 10) == b"2"
            cluster.pause(2)  # left paused: closing must still stop it

    _run(ops())


def test_stop_and_start_keep_the_data(cluster: EtcdCluster) -> None:
    async def ops() -> None:
        async with EtcdClient(cluster.client_urls[2]) as c:
            await c.put(b"durable", b"yes")
            for i in range(3):
                cluster.stop(i)
            assert cluster.pids() == [None, None, None]
            for i in range(3):
                cluster.start(i, wait=False)
            assert await _eventually(lambda: c.get(b"durable"), 15) == b"yes"

    _run(ops())


# ---- advertised peer URLs: a proxy in front of every peer port ------------------------------


class _Forwarder:
    """A loopback TCP forwarder counting the connections it carried."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self._socks: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target)
            except OSError:  # the member is not listening yet
                client.close()
                continue
            self.connections += 1
            self._socks += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_members_advertise_the_peer_urls_they_are_given(tmp_path: Path) -> None:
    forwarders: list[_Forwarder] = []

    def via_forwarder(i: int, listen_url: str) -> str:
        host, port = listen_url.removeprefix("http://").split(":")
        forwarders.append(_Forwarder((host, int(port))))
        return f"http://127.0.0.1:{forwarders[-1].port}"

    try:
        with EtcdCluster(3, tmp_path, peer_url_for=via_forwarder) as c:
            assert [m.advertised_peer_url for m in c.members] == [
                f"http://127.0.0.1:{f.port}" for f in forwarders
            ]
            _run(_put_get(c.client_urls[1]))
        _assert_gone(c)
        # Peers reached each member only through its forwarder.
        assert all(f.connections > 0 for f in forwarders)
    finally:
        for f in forwarders:
            f.close()


async def _put_get(url: str) -> None:
    async with EtcdClient(url) as client:
        await client.put(b"k", b"v")
        assert await client.get(b"k") == b"v"


# ---- the client's verdicts against scripted servers (no etcd) -------------------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server; yields its URL and a list that counts accepted connections."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        srv.close()
        await srv.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


def _answer(status: int, body: dict[str, object], *, chunked: bool = False) -> bytes:
    data = json.dumps(body).encode()
    if chunked:
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:5], data[5:]))
        return b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (status, payload)
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(data), data)


def _serve_forever(status: int, body: dict[str, object], *, chunked: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await _read_request(reader)
                writer.write(_answer(status, body, chunked=chunked))
                await writer.drain()

    return handler


def test_refused_connection_is_a_definite_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    # Nothing listens on port now.

    async def go() -> None:
        async with EtcdClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(EtcdFailed, match="cannot connect"):
                await client.put(b"k", b"v")

    _run(go())


def test_no_answer_is_an_unknown_outcome() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async def go() -> None:
        async with _server(silent) as (url, _), EtcdClient(url, timeout=0.3) as client:
            with pytest.raises(EtcdUnknown, match="no answer"):
                await client.put(b"k", b"v")

    _run(go())


def test_connection_lost_after_sending_is_an_unknown_outcome() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async def go() -> None:
        async with _server(hang_up) as (url, _), EtcdClient(url) as client:
            with pytest.raises(EtcdUnknown, match="lost after sending"):
                await client.cas(b"k", None, b"v")

    _run(go())


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, {"error": "etcdserver: key is not provided", "code": 3}, EtcdFailed),
        (429, {"error": "etcdserver: too many requests", "code": 8}, EtcdFailed),
        (503, {"error": "etcdserver: request timed out", "code": 14}, EtcdUnknown),
        (503, {"error": "etcdserver: leader changed", "code": 14}, EtcdUnknown),
        (500, {"unexpected": True}, EtcdUnknown),
        (200, {"error": "odd", "code": 2}, EtcdUnknown),
    ],
)
def test_server_errors_are_classified(
    status: int, body: dict[str, object], verdict: type[Exception]
) -> None:
    async def go() -> None:
        async with _server(_serve_forever(status, body)) as (url, _), EtcdClient(url) as client:
            with pytest.raises(verdict, match=f"HTTP {status}"):
                await client.put(b"k", b"v")

    _run(go())


def test_connections_are_kept_alive_and_chunked_bodies_read() -> None:
    found: dict[str, object] = {"kvs": [{"key": "aw==", "value": "dg=="}]}

    async def go() -> None:
        handler = _serve_forever(200, found, chunked=True)
        async with _server(handler) as (url, accepted), EtcdClient(url) as client:
            for _ in range(5):
                assert await client.get(b"k") == b"v"
            assert len(accepted) == 1

    _run(go())


def test_a_connection_the_server_closed_while_idle_is_not_an_unknown_outcome() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(200, {}))
        await writer.drain()  # then the handler returns and the connection closes

    async def go() -> None:
        async with _server(one_answer) as (url, accepted), EtcdClient(url) as client:
            await client.put(b"k", b"v")
            await asyncio.sleep(0.1)  # lets the client's loop see the server's close
            await client.put(b"k", b"v")  # on a new connection, not a failed old one
            assert len(accepted) == 2

    _run(go())
