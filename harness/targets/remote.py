"""Targets on hosts over SSH (``campaign --hosts``): dynamo-ref nodes, or external node
programs speaking the Maelstrom protocol (``RemoteMaelstromTarget``, at the end).

dynamo-ref nodes on hosts:

The node processes are deployed and started by ``dynamo_ref.remote`` (one node per host, a
venv installed from this checkout's wheels), killed, stopped, paused and resumed by PID over
SSH; partitions are iptables rules on the hosts (``harness.net.hosts``). Clients, replica reads
and clock skew go straight to the nodes' addresses from this machine, which is not cut off by
the rules: only the links between hosts are. At teardown every node is stopped and its log
(and trace) is fetched into ``base_dir/<node>/``, where a local run keeps them.

A host that dies mid-run: a fault step against it fails, the host is probed, and when it does
not answer it is lost (``check_hosts``, which the nemesis records as ``host-down``); every
later SSH call to it, teardown's too, fails at once instead of waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import signal
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncssh

from dynamo_ref.client import AsyncClient
from dynamo_ref.remote.deploy import RemoteCluster, _bare
from dynamo_ref.remote.ssh import HostPool, RemoteError, SshOptions
from harness.net.hosts import HostsNetwork
from harness.targets.base import OpFailed
from harness.targets.dynamo import DynamoClient, DynamoTarget, ModeKind, QuorumKind, Timing
from harness.targets.maelstrom import MaelstromTarget, Proc, Reader, Writer

__all__ = ["RemoteDynamoTarget", "RemoteMaelstromTarget"]

T = TypeVar("T")


class RemoteDynamoTarget(DynamoTarget):
    def __init__(
        self,
        hosts: Sequence[str],
        base_dir: Path,
        *,
        ssh: SshOptions,
        remote_dir: str = "dynamo-ref",
        python: str = "python3",
        venv: str | None = None,
        port: int = 7100,
        mode: ModeKind = "dvv",
        quorum: QuorumKind = "sloppy",
        n: int = 3,
        r: int = 2,
        w: int = 2,
        seed: int = 0,
        timing: Timing | None = None,
        trace: bool = False,
    ) -> None:
        super().__init__(
            len(hosts),
            base_dir,
            mode=mode,
            quorum=quorum,
            n=n,
            r=r,
            w=w,
            seed=seed,
            timing=timing,
            trace=trace,
        )
        self.hosts = list(hosts)
        self._ssh = ssh
        self._remote = (remote_dir, python, venv, port)
        self._rc: RemoteCluster | None = None
        self._lost_hosts: dict[str, str] = {}  # SSH host -> why it was given up on
        self._secret = secrets.token_hex(32).encode()
        self._up: set[str] = set()
        self._paused: set[str] = set()

    @property
    def name(self) -> str:
        return f"{super().name} on {len(self.hosts)} hosts"

    @property
    def cluster(self) -> RemoteCluster:
        if self._rc is None:
            raise RuntimeError("the target is not set up")
        return self._rc

    async def setup(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        remote_dir, python, venv, port = self._remote
        self._lost_hosts.clear()
        self._rc = RemoteCluster(
            self.hosts,
            HostPool(self._ssh, self._lost_hosts),
            self.base_dir,
            remote_dir=remote_dir,
            port=port,
            python=python,
            venv=venv,
            config=self.config,
            log_level="info",
            trace=self.trace,
            start_timeout=self.timing.start_timeout,
        )
        try:
            await self._rc.up(self._secret, wipe=True)
            self._up = set(self._names)
            hosts = {n.node_id: (n.host, _bare(n.host)) for n in self._rc.nodes}
            network = HostsNetwork(hosts, self._ssh, self._lost_hosts)
            self._network = network
            await asyncio.to_thread(network.start)
            await self._wait_healthy()
        except BaseException:
            await self.teardown()
            raise

    def pid(self, node: str) -> int | None:
        return self.cluster.pids.get(node) if node in self._up else None

    async def start(self, node: str) -> None:
        if node in self._up:
            if node in self._paused:
                await self.resume(node)
            return
        await self._remote_call(self.cluster.start(node), node, "start")
        self._up.add(node)

    async def stop(self, node: str) -> None:
        await self._remote_call(
            self.cluster.signal(node, "TERM", wait=self.timing.stop_timeout), node, "stop"
        )
        self._gone(node)
        await self._drop_admin(node)

    async def kill(self, node: str) -> None:
        await self._remote_call(self.cluster.signal(node, "KILL"), node, "kill")
        self._gone(node)
        await self._drop_admin(node)

    async def pause(self, node: str) -> None:
        if node in self._up:
            await self._remote_call(self.cluster.signal(node, "STOP"), node, "pause")
            self._paused.add(node)

    async def resume(self, node: str) -> None:
        await self._remote_call(self.cluster.signal(node, "CONT"), node, "resume")
        self._paused.discard(node)

    def is_running(self, node: str) -> bool:
        return node in self._up

    def is_paused(self, node: str) -> bool:
        return node in self._paused

    def _gone(self, node: str) -> None:
        self._up.discard(node)
        self._paused.discard(node)

    async def _remote_call(self, coro: Awaitable[T], node: str, what: str) -> T:
        try:
            return await coro
        except RemoteError as e:
            # A host that dies mid-run: probed (lost if silent), the nemesis records it.
            if self._rc is not None:
                await self._rc.pool.probe(self._rc.node(node).host)
            raise OpFailed(f"{what} {node}: {e}") from None

    async def check_hosts(self, probe: bool = True) -> dict[str, str]:
        """node -> why its host was lost (``probe``: after asking every host not lost yet)."""
        rc = self._rc
        if rc is None:
            return {}
        if probe:
            await asyncio.gather(*(rc.pool.probe(n.host) for n in rc.nodes))
        return {
            n.node_id: f"{n.host}: the host stopped answering ({self._lost_hosts[n.host]})"
            for n in rc.nodes
            if n.host in self._lost_hosts
        }

    async def teardown(self) -> None:
        for c in self._clients:
            await c.close()
        self._clients.clear()
        for name in list(self._admin):
            await self._drop_admin(name)
        net, self._network = self._network, None
        if isinstance(net, HostsNetwork):
            await asyncio.to_thread(net.stop)
        rc, self._rc = self._rc, None
        if rc is not None:
            try:
                with contextlib.suppress(RemoteError):
                    await rc.down()
                with contextlib.suppress(RemoteError):
                    await rc.collect(self.base_dir)
            finally:
                await rc.pool.close()
        self._up.clear()
        self._paused.clear()

    async def client(self, node: str) -> DynamoClient:
        c = DynamoClient(
            node,
            self.cluster.node(node).address,
            timeout=self.timing.client_timeout,
            dvv=self.mode == "dvv",
        )
        self._clients.append(c)
        return c

    async def _admin_client(self, node: str) -> AsyncClient:
        async with self._admin_lock:
            c = self._admin.get(node)
            if c is None:
                c = await AsyncClient.connect(
                    [self.cluster.node(node).address],
                    timeout=self.timing.client_timeout,
                    secret=self._secret,
                )
                self._admin[node] = c
            return c


# Seconds a signal's `kill` may take on a host, and between probes of a host while waiting
# for its program to exit.
SIGNAL_TIMEOUT: Final = 10.0
WAIT_PROBE_EVERY: Final = 5.0


class SshProc:
    """A node program running on a host, its pipes carried by the SSH channel; signals go by
    its PID (the shell that starts it prints its own PID, then becomes the program)."""

    def __init__(
        self, process: asyncssh.SSHClientProcess[bytes], pid: int, pool: HostPool, host: str
    ) -> None:
        self._process = process
        self.pid = pid
        self._pool = pool
        self._host = host

    @classmethod
    async def start(
        cls, pool: HostPool, host: str, command: Sequence[str], env: Sequence[str] = ()
    ) -> SshProc:
        """``env``: ``NAME=value`` settings for the program (``env`` execs it: same PID)."""
        conn = await pool.connection(host)
        argv = ["env", *env, *command] if env else list(command)
        process = await conn.create_process("echo $$; exec " + shlex.join(argv), encoding=None)
        first = await process.stdout.readline()
        try:
            pid = int(first.strip())
        except ValueError:
            process.close()
            raise RemoteError(host, f"the program did not start: {first!r}") from None
        return cls(process, pid, pool, host)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> Writer | None:
        return self._process.stdin

    @property
    def stdout(self) -> Reader | None:
        return self._process.stdout

    @property
    def stderr(self) -> Reader | None:
        return self._process.stderr

    async def wait(self) -> int:
        """The program's exit status; -1 when its host was lost (a dead host never closes the
        channel, so the host is probed while the wait lasts, and a lost one ends it)."""
        waiter = asyncio.ensure_future(self._process.wait(check=False))
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=WAIT_PROBE_EVERY)
                if not waiter.done() and not await self._pool.probe(self._host):
                    break
        finally:
            if not waiter.done():
                waiter.cancel()
        code = self._process.returncode
        return -1 if code is None else code

    async def send(self, sig: signal.Signals) -> None:
        if self._process.returncode is None:
            name = sig.name.removeprefix("SIG")
            try:
                await self._pool.run(
                    self._host, f"kill -{name} {self.pid}", check=False, timeout=SIGNAL_TIMEOUT
                )
            except RemoteError:
                # Silent host: probed, and dropped if lost, which ends the channel's waits.
                await self._pool.probe(self._host)


# Where Debian's libfaketime (package faketime) and a build from source put the library.
FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


class RemoteMaelstromTarget(MaelstromTarget):
    """External node programs (the Maelstrom protocol), one on each host over SSH: the harness
    still routes their messages, so partitions are the router's; kills and pauses go by PID.

    ``faketime``: each program runs under libfaketime (``LD_PRELOAD``), its offset read from a
    file of its own under ``remote_dir`` on every clock read, so ``set_clock_skew`` moves its
    wall clock (not its monotonic clock) while it runs. Only programs that read the time
    through the C library follow it: a statically linked one is refused at setup; Go programs
    read the clock past libc and ignore it."""

    def __init__(
        self,
        command: Sequence[str],
        hosts: Sequence[str],
        *,
        ssh: SshOptions,
        faketime: bool = False,
        remote_dir: str = "dynamo-ref",
        **kw: Any,
    ) -> None:
        super().__init__(command, len(hosts), **kw)
        self.hosts = list(hosts)
        self._lost_hosts: dict[str, str] = {}
        self._pool = HostPool(ssh, self._lost_hosts)
        self._host_of = dict(zip(self.nodes(), self.hosts, strict=True))
        self.faketime = faketime
        self._remote_dir = remote_dir
        self._faketime_lib: dict[str, str] = {}  # host -> the library's path there

    @property
    def name(self) -> str:
        return f"{super().name} on {len(self.hosts)} hosts"

    def _clock_file(self, node: str) -> str:
        host = _bare(self._host_of[node])
        return f"{self._remote_dir.replace('{host}', host)}/{node}.faketime"

    async def setup(self) -> None:
        if self.faketime:
            try:
                await asyncio.gather(*(self._prepare_faketime(n) for n in self.nodes()))
            except BaseException:
                await self.teardown()
                raise
        await super().setup()

    async def _prepare_faketime(self, node: str) -> None:
        host, q = self._host_of[node], shlex.quote
        libs = " ".join(q(lib) for lib in FAKETIME_LIBS)
        program = q(self.command[0])
        out = await self._pool.run(
            host,
            f"for lib in {libs}; do [ -f $lib ] && echo lib=$lib && break; done; "
            # the program's binary, or the interpreter its #! line names
            f"p=$(command -v {program}) || {{ echo missing; exit 0; }}; "
            'if [ "$(head -c 2 "$p")" = "#!" ]; then '
            'p=$(head -n 1 "$p" | sed "s/^#! *//; s/ .*//"); fi; '
            'ldd "$p" 2>&1 | grep -qE "not a dynamic executable|statically linked" && echo static; '
            f"mkdir -p $(dirname {q(self._clock_file(node))}) && "
            f"echo +0 > {q(self._clock_file(node))}",
        )
        lines = out.split()
        lib = next((x.removeprefix("lib=") for x in lines if x.startswith("lib=")), None)
        if lib is None:
            raise RemoteError(
                host, "libfaketime is not installed there (Debian: faketime): it skews clocks"
            )
        if "missing" in lines:
            raise RemoteError(host, f"the program {self.command[0]} is not there")
        if "static" in lines:
            raise RemoteError(
                host,
                f"{self.command[0]} is statically linked: libfaketime cannot skew its clock "
                "(drop skew from --nemesis)",
            )
        self._faketime_lib[host] = lib

    async def _spawn(self, node: str) -> Proc:
        host = self._host_of[node]
        env: list[str] = []
        if self.faketime:
            env = [
                f"LD_PRELOAD={self._faketime_lib[host]}",
                f"FAKETIME_TIMESTAMP_FILE={self._clock_file(node)}",
                "FAKETIME_NO_CACHE=1",  # read the offset on every call: skews act at once
                "FAKETIME_DONT_FAKE_MONOTONIC=1",  # a wall-clock skew, as for dynamo-ref
            ]
        return await SshProc.start(self._pool, host, self.command, env)

    async def set_clock_skew(self, node: str, seconds: float) -> None:
        """Move ``node``'s program's wall clock ``seconds`` from the host's (libfaketime)."""
        host = self._host_of[node]
        if not self.faketime:
            raise RemoteError(host, "clock skew needs the program run under libfaketime")
        path = shlex.quote(self._clock_file(node))
        # Replaced whole (rename): the library never reads a half-written offset.
        await self._pool.run(
            host, f"echo {seconds:+.3f} > {path}.tmp && mv {path}.tmp {path}", timeout=10
        )

    async def teardown(self) -> None:
        try:
            await super().teardown()
        finally:
            await self._pool.close()
