"""etcd on hosts over SSH (``campaign --hosts ... --target etcd``): one member on each host.

Each member runs the hosts' own etcd (``etcd_bin``, Debian's ``etcd-server``) detached from
the SSH session, in ``<remote_dir>/<member>/`` on its host with its data directory, its log and
a pid file; it listens for clients and peers on the host's address (ports 2379 and 2380), so
partitions are iptables rules on the hosts (``harness.net.hosts``), which drop packets by the
peer's address. The clients run here and reach each member at its address directly, as for
dynamo-ref nodes on hosts. Kill, pause, resume and restart go by PID over SSH; every run starts
a new cluster (its data directories wiped); at teardown every member is stopped, one at a time
(a leader stopping with its followers waits seconds for a transfer that fails), and its log is
fetched into ``base_dir/<member>.log``.

A host without that etcd, or a member that is not healthy within ``start_timeout``, is an
error naming the host. A host that dies mid-run is handled as for dynamo-ref nodes on hosts:
lost after a failed probe, recorded by the nemesis, skipped from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dynamo_ref.remote.deploy import _bare, signal_script, start_script
from dynamo_ref.remote.ssh import HostPool, RemoteError, SshOptions
from harness.net.hosts import HostsNetwork
from harness.net.network import Link, Network
from harness.targets.base import OpFailed
from harness.targets.etcd import EtcdClient
from harness.targets.etcd_target import EtcdRegisterClient

__all__ = ["RemoteEtcdTarget"]

CLIENT_PORT = 2379
PEER_PORT = 2380
T = TypeVar("T")


@dataclass(frozen=True)
class _Member:
    name: str
    host: str  # as SSH reaches it
    address: str  # the host's address, where the member listens
    dir: str  # on its host

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{PEER_PORT}"


class RemoteEtcdTarget:
    """An etcd cluster of 3 or 5 members on ``hosts``, named ``etcd0``..."""

    def __init__(
        self,
        hosts: Sequence[str],
        base_dir: Path,
        *,
        ssh: SshOptions,
        remote_dir: str = "dynamo-ref",
        etcd_bin: str = "etcd",
        client_timeout: float = 2.0,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        start_timeout: float = 30.0,
        stop_timeout: float = 3.0,
    ) -> None:
        if len(hosts) not in (3, 5):
            raise ValueError(f"an etcd target has 3 or 5 members, not {len(hosts)}")
        self.hosts = list(hosts)
        self.base_dir = Path(base_dir)
        self.etcd_bin = etcd_bin
        self.client_timeout = client_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._timing = (heartbeat_ms, election_ms)
        self._ssh = ssh
        self._members = [
            _Member(
                f"etcd{i}",
                host,
                _bare(host),
                f"{remote_dir.replace('{host}', _bare(host))}/etcd{i}",
            )
            for i, host in enumerate(self.hosts)
        ]
        self._lost: dict[str, str] = {}  # SSH host -> why it was given up on
        self._pool = HostPool(ssh, self._lost)
        self._network = HostsNetwork(
            {m.name: (m.host, m.address) for m in self._members}, ssh, self._lost
        )
        self._net_started = False
        self._pids: dict[str, int | None] = {m.name: None for m in self._members}
        self._token = f"dynamo-ref-{secrets.token_hex(6)}"
        self._clients: list[EtcdRegisterClient] = []

    # -- Target ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"etcd on {len(self.hosts)} hosts"

    @property
    def network(self) -> Network:
        return self._network

    def nodes(self) -> list[str]:
        return [m.name for m in self._members]

    def links(self) -> set[Link]:
        return self._network.links()

    def pid(self, node: str) -> int | None:
        return self._pids[self._member(node).name]

    async def setup(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            await _each(self._members, self._prepare)
            await _each(self._members, self._spawn)
            await asyncio.to_thread(self._network.start)
            self._net_started = True
            await _each(self._members, self._wait_healthy)
        except BaseException:
            await self.teardown()
            raise

    async def _prepare(self, m: _Member) -> None:
        q = shlex.quote
        out = await self._pool.run(
            m.host,
            f"command -v {q(self.etcd_bin)} >/dev/null && {q(self.etcd_bin)} --version "
            f"2>&1 | head -n 1",
            check=False,
        )
        if "etcd Version" not in out:
            raise RemoteError(
                m.host,
                f"etcd ({self.etcd_bin}) is not installed there (Debian: etcd-server): "
                f"{out.strip() or 'not found'}",
            )
        # A new cluster each run: no data of an earlier one.
        await self._pool.run(
            m.host, f"rm -rf {q(m.dir)}/data {q(m.dir)}/etcd.log; mkdir -p {q(m.dir)}"
        )

    def _argv(self, m: _Member) -> list[str]:
        heartbeat, election = self._timing
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self._members)
        return [
            self.etcd_bin,
            "--name",
            m.name,
            "--data-dir",
            f"{m.dir}/data",
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            m.peer_url,
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            self._token,
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
            "--heartbeat-interval",
            str(heartbeat),
            "--election-timeout",
            str(election),
        ]

    async def _spawn(self, m: _Member) -> None:
        # etcd reads ETCD_* variables as flags: none from the SSH session may leak in.
        unset = "for v in $(env | sed -n 's/^\\(ETCD[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset $v; done;"
        text = await self._pool.run(
            m.host,
            unset + start_script(m.dir, self._argv(m), f"{m.dir}/etcd.log", f"{m.dir}/etcd.pid"),
        )
        self._pids[m.name] = int(text.strip())

    async def _wait_healthy(self, m: _Member) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not await self._healthy(m):
            pid = self._pids[m.name]
            alive = await self._pool.run(
                m.host, f"kill -0 {pid} 2>/dev/null && echo yes", check=False
            )
            if alive.strip() != "yes" or time.monotonic() > deadline:
                tail = await self._pool.run(
                    m.host, f"tail -n 15 {shlex.quote(m.dir)}/etcd.log", check=False
                )
                what = (
                    f"not healthy within {self.start_timeout:g}s"
                    if alive.strip() == "yes"
                    else "exited at start"
                )
                raise RemoteError(m.host, f"etcd member {m.name} {what}; its log ends:\n{tail}")
            await asyncio.sleep(0.2)

    async def _healthy(self, m: _Member) -> bool:
        """Whether the member answers ``/health`` with health true (it sees a leader)."""
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(m.address, CLIENT_PORT)
                try:
                    writer.write(f"GET /health HTTP/1.0\r\nHost: {m.address}\r\n\r\n".encode())
                    body = await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return False
        return b" 200 " in body.split(b"\r\n", 1)[0] and b'"health":"true"' in body

    async def teardown(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.close()
        try:
            if self._net_started:
                self._net_started = False
                await asyncio.to_thread(self._network.stop)
            for m in self._members:
                with contextlib.suppress(RemoteError):
                    await self._signal(m, "TERM", wait=self.stop_timeout)

            async def fetch(m: _Member) -> None:
                with contextlib.suppress(RemoteError):
                    await self._pool.get(
                        m.host, f"{m.dir}/etcd.log", self.base_dir / f"{m.name}.log"
                    )

            await _each(self._members, fetch)
        finally:
            await self._pool.close()

    async def _signal(self, m: _Member, sig: str, *, wait: float = 10.0) -> bool:
        script = signal_script(
            self._pids[m.name], sig, f"{m.dir}/etcd.pid", f"{m.dir}/data", wait=wait
        )
        if script is None:
            return False
        try:
            await self._pool.run(m.host, script, timeout=wait + 10)
        except RemoteError as e:
            if e.status == 3:
                return False
            raise
        if sig in ("TERM", "KILL"):
            self._pids[m.name] = None
        return True

    async def _call(self, coro: Awaitable[T], m: _Member, what: str) -> T:
        try:
            return await coro
        except RemoteError as e:
            await self._pool.probe(m.host)  # a host that died mid-run is lost from now on
            raise OpFailed(f"{what} {m.name}: {e}") from None

    async def start(self, node: str) -> None:
        m = self._member(node)
        if self._pids[m.name] is not None:
            await self._call(self._signal(m, "CONT"), m, "resume")
            return
        await self._call(self._spawn(m), m, "start")
        await self._call(self._wait_healthy(m), m, "start")

    async def stop(self, node: str) -> None:
        m = self._member(node)
        await self._call(self._signal(m, "TERM", wait=self.stop_timeout), m, "stop")

    async def kill(self, node: str) -> None:
        m = self._member(node)
        await self._call(self._signal(m, "KILL"), m, "kill")

    async def pause(self, node: str) -> None:
        m = self._member(node)
        await self._call(self._signal(m, "STOP"), m, "pause")

    async def resume(self, node: str) -> None:
        m = self._member(node)
        await self._call(self._signal(m, "CONT"), m, "resume")

    async def client(self, node: str) -> EtcdRegisterClient:
        m = self._member(node)
        client = EtcdRegisterClient(node, EtcdClient(m.client_url, timeout=self.client_timeout))
        self._clients.append(client)
        return client

    async def check_hosts(self, probe: bool = True) -> dict[str, str]:
        """node -> why its host was lost (``probe``: after asking every host not lost yet)."""
        if probe:
            await asyncio.gather(*(self._pool.probe(m.host) for m in self._members))
        return {
            m.name: f"{m.host}: the host stopped answering ({self._lost[m.host]})"
            for m in self._members
            if m.host in self._lost
        }

    def _member(self, node: str) -> _Member:
        for m in self._members:
            if m.name == node:
                return m
        raise KeyError(f"unknown node {node!r}; nodes are {self.nodes()}")


async def _each(items: Sequence[_Member], step: Callable[[_Member], Awaitable[None]]) -> None:
    """``step`` on every member at once; the first error, after all have ended."""
    results = await asyncio.gather(*(step(i) for i in items), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
