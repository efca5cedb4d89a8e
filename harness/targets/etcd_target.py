"""etcd as a `Target[RegisterClient]`: members in network namespaces (partitions per directed
link) or on loopback (kill and pause only).

Layout with ``net="netns"``: a `NetnsNetwork` gives each member its own namespace and address
(10.213.0.x); etcd listens for clients and peers on that address (fixed ports 2379/2380: each
namespace has its own port space). Those addresses exist only inside the namespaces, so the
harness, which runs in the host namespace, reaches a member through a socket created *in the
member's namespace*: one thread per namespace enters it (``setns``) and does nothing but create
sockets and run health probes; the event loop connects those sockets to the member's own address.
A connection from inside the member's namespace to its own address never crosses the bridge, so
the iptables cuts (which drop packets by peer source address) never touch clients: as in Jepsen,
clients keep talking to their member while members are cut from each other. Nothing listens in,
or is added to, the host namespace.

With ``net="none"`` members listen on free loopback ports and the network refuses every fault
(`UnsupportedFault`) except heal.

Clients map values to JSON (a read of an absent key gives None) and errors to the harness's:
`EtcdFailed` -> `OpFailed` (certainly not applied; e.g. the member is down and the connection
was refused), `EtcdUnknown` -> `OpUnknown`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import http.client
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.net.netns import NetnsNetwork
from harness.net.network import Link, Network, UnsupportedFault
from harness.targets.base import OpFailed, OpUnknown
from harness.targets.etcd import EtcdClient, EtcdCluster, EtcdFailed, EtcdUnknown

__all__ = ["EtcdRegisterClient", "EtcdTarget", "LoopbackNetwork"]

_CLIENT_PORT = 2379
_PEER_PORT = 2380
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class LoopbackNetwork(Network):
    """Members on loopback share one address: links cannot be cut. Only `heal` is accepted."""

    def cut(self, links: Iterable[Link]) -> None:
        if frozenset(links):
            raise UnsupportedFault("etcd on loopback cannot cut links; use net='netns'")
        super().cut(())

    def delay(self, link: Link, seconds: float, jitter: float = 0.0) -> None:
        raise UnsupportedFault("etcd on loopback cannot delay links")

    def drop(self, link: Link, probability: float) -> None:
        raise UnsupportedFault("etcd on loopback cannot drop packets; use net='netns'")

    def slow(self, link: Link, bytes_per_second: float | None) -> None:
        raise UnsupportedFault("etcd on loopback cannot slow links; use net='netns'")

    def _apply(self) -> None:
        pass


def _enter_netns(namespace: str) -> None:
    """Move the calling thread into `namespace` (setns affects only the calling thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {namespace}: {os.strerror(err)}")
    finally:
        os.close(fd)


class _NamespaceThreads:
    """One single-thread executor per node, its thread inside the node's namespace."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self._pools = {
            node: concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{ns}", initializer=_enter_netns, initargs=(ns,)
            )
            for node, ns in namespaces.items()
        }

    def call(self, node: str, fn: Callable[[], T]) -> T:
        return self._pools[node].submit(fn).result()

    async def socket(self, node: str) -> socket.socket:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pools[node], socket.socket)

    def close(self) -> None:
        # Threads hold their namespace alive: they must exit before the namespaces go.
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()


class _NetnsEtcdCluster(EtcdCluster):
    """Health probes run from inside the member's namespace, where its address exists."""

    def __init__(
        self, threads: _NamespaceThreads, names: list[str], base_dir: Path, **kwargs: Any
    ) -> None:
        self._threads = threads
        self._names = names
        super().__init__(len(names), base_dir, **kwargs)

    def healthy(self, i: int, timeout: float = 1.0) -> bool:
        base = super().healthy
        return self._threads.call(self._names[i], lambda: base(i, timeout))


class EtcdRegisterClient:
    """`RegisterClient` over one member's `EtcdClient`; values are stored as JSON."""

    def __init__(self, node: str, client: EtcdClient) -> None:
        self._node = node
        self._client = client

    @property
    def node(self) -> str:
        return self._node

    async def read(self, key: str) -> object:
        raw = await self._guard(self._client.get(key.encode()))
        return None if raw is None else json.loads(raw)

    async def write(self, key: str, value: object) -> None:
        await self._guard(self._client.put(key.encode(), _encode(value)))

    async def cas(self, key: str, expected: object, new: object) -> bool:
        old = None if expected is None else _encode(expected)
        return await self._guard(self._client.cas(key.encode(), old, _encode(new)))

    async def close(self) -> None:
        await self._client.close()

    @staticmethod
    async def _guard(call: Awaitable[T]) -> T:
        try:
            return await call
        except EtcdFailed as e:
            raise OpFailed(str(e)) from e
        except EtcdUnknown as e:
            raise OpUnknown(str(e)) from e


def _encode(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


class EtcdTarget:
    """A ``nodes``-member etcd cluster (3 or 5) under ``base_dir``; members are ``etcd0``...

    ``net="netns"`` (root) puts each member in its own namespace, so `network.cut` partitions
    per directed link; ``net="none"`` runs on loopback (kill, pause, restart only).
    """

    def __init__(
        self,
        nodes: int = 3,
        base_dir: str | Path = ".",
        *,
        net: Literal["netns", "none"] = "netns",
        client_timeout: float = 2.0,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
    ) -> None:
        if nodes not in (3, 5):
            raise ValueError(f"an etcd target has 3 or 5 members, not {nodes}")
        self.base_dir = Path(base_dir)
        self.mode = net
        self.client_timeout = client_timeout
        self._timing = {"heartbeat_ms": heartbeat_ms, "election_ms": election_ms}
        self._names = [f"etcd{i}" for i in range(nodes)]
        self._network: Network = (
            NetnsNetwork(self._names) if net == "netns" else LoopbackNetwork(self._names)
        )
        self._threads: _NamespaceThreads | None = None
        self._cluster: EtcdCluster | None = None
        self._clients: list[EtcdRegisterClient] = []

    # -- Target ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"etcd-{self.mode}"

    @property
    def network(self) -> Network:
        return self._network

    @property
    def cluster(self) -> EtcdCluster:
        if self._cluster is None:
            raise RuntimeError("the etcd target is not set up")
        return self._cluster

    def nodes(self) -> list[str]:
        return list(self._names)

    def links(self) -> set[Link]:
        return self._network.links()

    def pid(self, node: str) -> int | None:
        return None if self._cluster is None else self._cluster.pids()[self._index(node)]

    async def setup(self) -> None:
        try:
            await asyncio.to_thread(self._setup)
        except BaseException:
            await self.teardown()
            raise

    def _setup(self) -> None:
        net = self._network
        if isinstance(net, NetnsNetwork):
            net.start()
            self._threads = _NamespaceThreads({n: net.namespace(n) for n in self._names})
            hosts = [net.address(n) for n in self._names]
            self._cluster = _NetnsEtcdCluster(
                self._threads,
                self._names,
                self.base_dir,
                **self._timing,
                hosts=hosts,
                command_prefix=lambda i: net.exec_args(self._names[i], []),
                ports=lambda i: (_CLIENT_PORT, _PEER_PORT),
            )
        else:
            self._cluster = EtcdCluster(
                len(self._names),
                self.base_dir,
                heartbeat_ms=self._timing["heartbeat_ms"],
                election_ms=self._timing["election_ms"],
            )

    async def teardown(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()
        await asyncio.to_thread(self._teardown)

    def _teardown(self) -> None:
        try:
            if self._cluster is not None:
                self._cluster.close()
        finally:
            if self._threads is not None:
                self._threads.close()
                self._threads = None
            if isinstance(self._network, NetnsNetwork):
                self._network.stop()

    async def start(self, node: str) -> None:
        await asyncio.to_thread(self.cluster.start, self._index(node))

    async def stop(self, node: str) -> None:
        await asyncio.to_thread(self.cluster.stop, self._index(node))

    async def kill(self, node: str) -> None:
        self.cluster.kill(self._index(node))

    async def pause(self, node: str) -> None:
        self.cluster.pause(self._index(node))

    async def resume(self, node: str) -> None:
        self.cluster.resume(self._index(node))

    async def client(self, node: str) -> EtcdRegisterClient:
        m = self.cluster.members[self._index(node)]
        connect = None
        if self._threads is not None:
            threads = self._threads
            address = (m.host, m.client_port)

            async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                sock = await threads.socket(node)
                sock.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, address)
                except BaseException:
                    sock.close()
                    raise
                return await asyncio.open_connection(sock=sock)

        client = EtcdRegisterClient(
            node, EtcdClient(m.client_url, timeout=self.client_timeout, connect=connect)
        )
        self._clients.append(client)
        return client

    # -- beyond the protocol ---------------------------------------------------------------

    async def leader(self, among: Iterable[str] | None = None) -> str | None:
        """The leader named by every running member of ``among`` (default: all) that answers,
        if they agree (under a partition, ask one side)."""
        asked = set(self._names if among is None else among)
        return await asyncio.to_thread(self._leader, asked)

    def _leader(self, asked: set[str]) -> str | None:
        ids: dict[str, str] = {}
        leaders: set[str] = set()
        for i, node in enumerate(self._names):
            if node not in asked:
                continue
            if self.cluster.pids()[i] is None or self.cluster.members[i].paused:
                continue
            status = self._status(i)
            if status is None:
                continue
            ids[str(status.get("header", {}).get("member_id"))] = node
            leaders.add(str(status.get("leader")))
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader in ids:
            return ids[leader]
        # A leader outside `asked`: match its id by asking it.
        for i, node in enumerate(self._names):
            status = self._status(i) if node not in asked and self.cluster.pids()[i] else None
            if status is not None and str(status.get("header", {}).get("member_id")) == leader:
                return node
        return None

    def _status(self, i: int) -> dict[str, dict[str, object]] | None:
        m = self.cluster.members[i]

        def probe() -> dict[str, dict[str, object]] | None:
            conn = http.client.HTTPConnection(m.host, m.client_port, timeout=1.0)
            try:
                conn.request("POST", "/v3/maintenance/status", body=b"{}")
                resp = conn.getresponse()
                body = json.loads(resp.read() or b"{}")
            except (OSError, http.client.HTTPException, ValueError):
                return None
            finally:
                conn.close()
            return body if resp.status == 200 and isinstance(body, dict) else None

        if self._threads is not None:
            return self._threads.call(self._names[i], probe)
        return probe()

    def _index(self, node: str) -> int:
        try:
            return self._names.index(node)
        except ValueError:
            raise KeyError(f"unknown node {node!r}; nodes are {self._names}") from None
