"""A peer link tries every address a peer may listen at: after both ends of a link restarted at
new ports, the address gossip gave is stale and only the configured one answers. The negative
control gives the link the stale address alone, as the runtime once did: it never connects."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dynamo_ref.core.messages import Ping, encode
from dynamo_ref.core.node import NodeConfig
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
