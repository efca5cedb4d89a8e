"""Helpers for the TCP runtime tests: in-process clusters on loopback, raw connections."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from dynamo_ref.core.messages import ReplyMessage, decode_reply, encode
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.net.connect import FramedStream, connect
from dynamo_ref.net.framing import FrameDecoder, encode_frame
from dynamo_ref.net.handshake import PROTOCOL_VERSION, Hello, encode_handshake
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore

# Small times: failures are noticed and hints handed off within a fraction of a second.
FAST = NodeConfig(
    gossip_interval=0.1,
    request_timeout=1.0,
    fallback_delay=0.2,
    handoff_interval=0.1,
    transfer_interval=0.2,
    anti_entropy_interval=60.0,  # off: tests see handoff and repair, not anti-entropy
    detector_pause=0.5,
)


def bound_socket(port: int = 0) -> socket.socket:
    """A loopback socket bound to ``port`` (0: the OS picks one), not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class LocalCluster:
    """``count`` NodeServers in this event loop, on ports the OS picked, with MemoryStores."""

    def __init__(
        self,
        count: int = 3,
        config: NodeConfig = FAST,
        *,
        partitions: int = 16,
        secret: bytes | None = b"cluster-secret",
        client_token: str | None = None,
        clocks: dict[str, Callable[[], float]] | None = None,
    ) -> None:
        self.ids = [f"n{i}" for i in range(1, count + 1)]
        self.clocks = clocks or {}  # ServerOptions' monotonic and wall, when injected
        self.config = config
        self.partitions = partitions
        self.secret = secret
        self.client_token = client_token
        self.stores = {n: MemoryStore() for n in self.ids}
        socks = {n: bound_socket() for n in self.ids}
        self.ports = {n: s.getsockname()[1] for n, s in socks.items()}
        self.members = [(n, f"127.0.0.1:{p}") for n, p in self.ports.items()]
        self.servers: dict[str, NodeServer] = {}
        self._socks = socks

    def address(self, node: str) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def options(self, node: str, sock: socket.socket) -> ServerOptions:
        return ServerOptions(
            node_id=node,
            sock=sock,
            members=self.members,
            config=replace(self.config, partitions=self.partitions),
            store=self.stores[node],
            secret=self.secret,
            client_token=self.client_token,
            **self.clocks,  # type: ignore[arg-type]
        )

    async def start(self) -> None:
        for n in self.ids:
            self.servers[n] = NodeServer(self.options(n, self._socks.pop(n)))
        for server in self.servers.values():
            await server.start()
        await self.wait_connected()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until every running node has heard from every other (none suspects another)."""

        def ready() -> bool:
            return all(not s.node.suspected(s.options.monotonic()) for s in self.servers.values())

        await wait_for(ready, timeout)

    async def stop_node(self, node: str) -> None:
        await self.servers.pop(node).stop()

    async def restart_node(self, node: str) -> NodeServer:
        """Start ``node`` again at its address, from what its store holds."""
        server = NodeServer(self.options(node, bound_socket(self.ports[node])))
        await server.start()
        self.servers[node] = server
        return server

    async def stop(self) -> None:
        for server in list(self.servers.values()):
            await server.stop()
        self.servers.clear()
        for sock in self._socks.values():
            sock.close()

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def wait_for(
    pred: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float = 10.0
) -> None:
    """Poll ``pred`` until it holds; fail the test if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def raw_client(address: str, token: str = "") -> tuple[FramedStream, FrameDecoder]:
    """A handshaken client connection for sending hand-made frames."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    stream = FramedStream(reader, writer, 1 << 24)
    stream.send(encode_handshake(Hello(PROTOCOL_VERSION, "client", token=token)))
    await stream.recv()  # the welcome
    return stream, FrameDecoder()


async def read_all(stream: FramedStream) -> list[ReplyMessage]:
    """Every reply until the node closes the connection."""
    out: list[ReplyMessage] = []
    while True:
        try:
            frame = await asyncio.wait_for(stream.recv(), 10.0)
        except ConnectionError:
            return out
        out.append(decode_reply(frame))


__all__ = ["FAST", "LocalCluster", "connect", "encode", "encode_frame", "raw_client", "wait_for"]
