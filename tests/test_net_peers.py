"""A peer link tries every address a peer may listen at: after both ends of a link restarted at
new ports, the address gossip gave is stale and only the configured one answers. The negative
control gives the link the stale address alone, as the runtime once did: it never connects.

A link also outlives a connection attempt that fails in a way the socket layer does not call
an OSError: uvloop raises RuntimeError when the far end resets the connection during the
handshake (the harness's proxy does, when the node behind it is down). Such an attempt once
ended the link's task, and from then on every frame for that peer was queued and never sent:
a node killed and restarted under a fault campaign stayed deaf to two of its peers for the
rest of the run, and lost acknowledged writes."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

import dynamo_ref.net.connect
from dynamo_ref.core.effects import Event, PeerReceived
from dynamo_ref.core.messages import Ping, encode
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.net import peers
from dynamo_ref.net.peers import PeerLink
from dynamo_ref.net.server import NodeServer, ServerOptions

pytestmark = pytest.mark.net


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host, port = s.getsockname()
    return f"{host}:{port}"  # nothing listens there once the socket is closed


def _connects(addresses: list[str] | None) -> tuple[int, list[str]]:
    async def main() -> tuple[int, list[str]]:
        config = NodeConfig(n=1, r=1, w=1)
        server = NodeServer(ServerOptions(node_id="b", config=config))
        await server.start()
        unreachable: list[str] = []
        stale = _dead_address()
        candidates = [stale, server.address] if addresses is None else addresses
        link = PeerLink("b", lambda peer: candidates, unreachable.append, node_id="a", secret=None)
        try:
            link.send(encode(Ping()))
            for _ in range(50):
                if link.connects:
                    break
                await asyncio.sleep(0.02)
            return link.connects, unreachable
        finally:
            await link.close()
            await server.stop()

    return asyncio.run(main())


def test_a_stale_address_falls_back_to_the_configured_one() -> None:
    connects, unreachable = _connects(None)
    assert connects == 1
    assert unreachable == []


def test_control_the_stale_address_alone_never_connects() -> None:
    connects, unreachable = _connects([_dead_address()])
    assert connects == 0
    assert unreachable == ["b"]


def _delivered_after(failure: BaseException, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Frames the peer received, and attempts made, when the first connect fails with
    ``failure`` and the later ones succeed."""
    real = dynamo_ref.net.connect.connect
    attempts = 0

    async def flaky(*args: object, **kwargs: object) -> object:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise failure
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(peers, "connect", flaky)

    async def main() -> int:
        config = NodeConfig(n=1, r=1, w=1)
        server = NodeServer(ServerOptions(node_id="b", config=config))
        await server.start()
        received: list[object] = []
        handle = server.handle

        def counting(event: Event) -> None:
            if isinstance(event, PeerReceived) and event.src == "a":
                received.append(event)
            handle(event)

        server.handle = counting  # type: ignore[method-assign]
        link = PeerLink(
            "b", lambda peer: [server.address], lambda peer: None, node_id="a", secret=None
        )
        try:
            link.send(encode(Ping()))  # lost with the failed attempt
            for _ in range(100):
                await asyncio.sleep(0.02)
                link.send(encode(Ping()))
                if received:
                    break
            return len(received)
        finally:
            await link.close()
            await server.stop()

    return asyncio.run(main()), attempts


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("unable to perform operation on <TCPTransport closed=True>"),
        LookupError("a failure nothing foresaw"),
    ],
    ids=["uvloop-reset", "unforeseen"],
)
def test_a_link_outlives_a_connect_that_fails_oddly(
    failure: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivered, attempts = _delivered_after(failure, monkeypatch)
    assert attempts >= 2
    assert delivered >= 1


def test_the_frames_of_one_tick_go_out_in_one_write_and_all_arrive() -> None:
    async def main() -> tuple[int, int]:
        config = NodeConfig(n=1, r=1, w=1)
        server = NodeServer(ServerOptions(node_id="b", config=config))
        await server.start()
        received: list[object] = []
        handle = server.handle

        def counting(event: Event) -> None:
            if isinstance(event, PeerReceived) and event.src == "a":
                received.append(event)
            handle(event)

        server.handle = counting  # type: ignore[method-assign]
        link = PeerLink(
            "b", lambda peer: [server.address], lambda peer: None, node_id="a", secret=None
        )
        try:
            link.send(encode(Ping()))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if received:
                    break
            stream = link._stream
            assert stream is not None
            writes = 0
            write = stream.writer.write

            def counted(data: bytes) -> None:
                nonlocal writes
                writes += 1
                write(data)

            stream.writer.write = counted  # type: ignore[method-assign]
            for _ in range(20):  # one tick: no await between them
                link.send(encode(Ping()))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if len(received) >= 21:
                    break
            return writes, len(received) - 1
        finally:
            await link.close()
            await server.stop()

    writes, arrived = asyncio.run(main())
    assert writes == 1
    assert arrived == 20


def _close_while_connecting(monkeypatch: pytest.MonkeyPatch, swallow: bool) -> bool:
    """Whether ``close()`` ends, called while the link connects to a live peer, when the
    connect (``swallow``) returns its connection instead of raising the cancel."""
    real = dynamo_ref.net.connect.connect
    entered = asyncio.Event()

    async def connect(*args: object, **kwargs: object) -> object:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not swallow:
                raise
            # What Python 3.11's wait_for does when the connection completes at the cancel.
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(peers, "connect", connect)

    async def main() -> bool:
        server = NodeServer(ServerOptions(node_id="b", config=NodeConfig(n=1, r=1, w=1)))
        await server.start()  # the peer stays up, as the next node of a cluster's stop does
        link = PeerLink(
            "b", lambda peer: [server.address], lambda peer: None, node_id="a", secret=None
        )
        closing: asyncio.Task[None] | None = None
        try:
            link.send(encode(Ping()))
            await asyncio.wait_for(entered.wait(), 5)
            closing = asyncio.ensure_future(link.close())
            done, _ = await asyncio.wait({closing}, timeout=5)
            return bool(done)
        finally:
            await server.stop()  # ends a link still pumping: its peer closes the connection
            if closing is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(closing, 5)

    return asyncio.run(main())


def test_close_ends_a_link_whose_connect_swallowed_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _close_while_connecting(monkeypatch, swallow=True)


def test_control_close_ends_a_link_whose_connect_raised_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _close_while_connecting(monkeypatch, swallow=False)
