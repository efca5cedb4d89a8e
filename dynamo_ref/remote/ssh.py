"""SSH to the hosts a cluster runs on, on asyncssh: one connection per host, reused; a timeout
on every command; errors that name the host, the command, its exit status and its stderr.

A host that stops answering (``probe``) is marked lost in ``lost``, a map the pool may share
with others (the network backend's pool, say): every later call to it fails at once, naming
the host and why, instead of waiting out its timeout again.

Known-hosts checking is on unless a caller turns it off by name (``known_hosts=False``): by
default the user's ``~/.ssh/known_hosts``, or the file given. Keys come from the usual places
(``~/.ssh/id_*`` and an agent), or the ones given.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

__all__ = ["HostPool", "RemoteError", "SshOptions"]

T = TypeVar("T")


class RemoteError(Exception):
    """A host that cannot be reached, or a command that failed or hung there."""

    def __init__(
        self,
        host: str,
        what: str,
        *,
        command: str | None = None,
        status: int | None = None,
        stderr: str = "",
    ) -> None:
        self.host, self.command, self.status, self.stderr = host, command, status, stderr
        parts = [f"{host}: {what}"]
        if command is not None:
            parts.append(f"command: {command}")
        if status is not None:
            parts.append(f"exit status {status}")
        if stderr.strip():
            parts.append("stderr: " + stderr.strip()[-2000:])
        super().__init__("; ".join(parts))


@dataclass(frozen=True)
class SshOptions:
    """How to reach the hosts. ``known_hosts``: a file, None for ``~/.ssh/known_hosts``, or
    False to skip the check (never the default). ``keys``: private key files (default: the
    usual places and an agent)."""

    user: str | None = None
    keys: tuple[Path, ...] = ()
    known_hosts: Path | bool | None = None
    port: int = 22
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    sudo: bool = False  # prefix commands that need root (iptables) with sudo -n
    probe_timeout: float = 3.0  # how long a host may take to run `true` before it is lost


def _host_port(host: str, default: int) -> tuple[str, int]:
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name and not name.endswith("]"):
        return name, int(port)
    return host, default


@dataclass
class HostPool:
    """Connections to ``hosts`` (``name`` or ``name:port``), opened on first use."""

    options: SshOptions
    # host -> why it was given up on; shared between pools that reach the same hosts.
    lost: dict[str, str] = field(default_factory=dict)
    _conns: dict[str, asyncssh.SSHClientConnection] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _check_lost(self, host: str) -> None:
        why = self.lost.get(host)
        if why is not None:
            raise RemoteError(host, f"the host was lost earlier ({why})")

    async def probe(self, host: str) -> bool:
        """Whether ``host`` still runs a command (``true``) within the probe timeout; if not,
        it is marked lost (its connection dropped), and False."""
        if host in self.lost:
            return False
        try:
            await self.run(host, "true", timeout=self.options.probe_timeout)
        except RemoteError as e:
            self.lost.setdefault(host, str(e).removeprefix(f"{host}: "))
            self.drop(host)
            return False
        return True

    def drop(self, host: str) -> None:
        """Abort the connection to ``host`` (what waits on it ends at once)."""
        conn = self._conns.pop(host, None)
        if conn is not None:
            conn.abort()

    async def connection(self, host: str) -> asyncssh.SSHClientConnection:
        self._check_lost(host)
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            conn = self._conns.get(host)
            if conn is not None and not conn.is_closed():
                return conn
            self._conns[host] = conn = await self._connect(host)
            return conn

    async def _connect(self, host: str) -> asyncssh.SSHClientConnection:
        o = self.options
        name, port = _host_port(host, o.port)
        kwargs: dict[str, Any] = {"port": port, "connect_timeout": o.connect_timeout}
        if o.user is not None:
            kwargs["username"] = o.user
        if o.keys:
            kwargs["client_keys"] = [str(k) for k in o.keys]
        if o.known_hosts is False:
            kwargs["known_hosts"] = None
        elif isinstance(o.known_hosts, Path):
            kwargs["known_hosts"] = str(o.known_hosts)
        try:
            return await asyncio.wait_for(
                asyncssh.connect(name, **kwargs), timeout=o.connect_timeout + 1
            )
        except asyncssh.HostKeyNotVerifiable as e:
            raise RemoteError(
                host, f"its host key is not in the known hosts ({e}); add it, or give --known-hosts"
            ) from None
        except asyncssh.PermissionDenied:
            raise RemoteError(host, "the SSH login was refused (no key it accepts)") from None
        except TimeoutError:
            raise RemoteError(host, f"no SSH answer within {o.connect_timeout:g}s") from None
        except (OSError, asyncssh.Error) as e:
            raise RemoteError(host, f"cannot connect over SSH: {e}") from None

    async def run(
        self,
        host: str,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = True,
        root: bool = False,
        stdin: str | None = None,
    ) -> str:
        """Run ``command`` (a shell string, or argv quoted for the shell) on ``host``; its
        stdout. ``root``: through ``sudo -n`` when the options say so.

        :raises RemoteError: unreachable, a non-zero exit (``check``) or no end within the
            timeout (the command is then killed with its channel).
        """
        text = command if isinstance(command, str) else shlex.join(command)
        if root and self.options.sudo:
            text = "sudo -n sh -c " + shlex.quote(text)
        limit = self.options.command_timeout if timeout is None else timeout
        conn = await self.connection(host)
        try:
            result = await asyncio.wait_for(conn.run(text, check=False, input=stdin), timeout=limit)
        except TimeoutError:
            raise RemoteError(host, f"no end within {limit:g}s", command=text) from None
        except (OSError, asyncssh.Error) as e:
            raise RemoteError(host, f"the command failed to run: {e}", command=text) from None
        status = result.exit_status
        if check and status != 0:
            raise RemoteError(
                host, "the command failed", command=text, status=status, stderr=str(result.stderr)
            )
        return str(result.stdout)

    async def _sftp(self, host: str, what: str, step: Callable[[Any], Awaitable[T]]) -> T:
        """``step(sftp)`` on ``host`` within the command timeout; errors name ``what``."""
        conn = await self.connection(host)
        limit = self.options.command_timeout

        async def go() -> T:
            async with conn.start_sftp_client() as sftp:
                return await step(sftp)

        try:
            return await asyncio.wait_for(go(), timeout=limit)
        except TimeoutError:
            raise RemoteError(host, f"cannot {what}: no end within {limit:g}s") from None
        except (OSError, asyncssh.Error) as e:
            raise RemoteError(host, f"cannot {what}: {e}") from None

    async def write(self, host: str, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` on ``host`` (made with ``mode`` before the data goes in,
        so a secret is never readable by others, even for a moment)."""

        async def step(sftp: Any) -> None:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(path, "wb", attrs) as f:
                await f.write(data)
            await sftp.chmod(path, mode)

        await self._sftp(host, f"write {path}", step)

    async def put(self, host: str, files: Sequence[Path], directory: str) -> None:
        """Copy local ``files`` into ``directory`` on ``host``."""

        async def step(sftp: Any) -> None:
            await sftp.put([str(f) for f in files], directory)

        await self._sftp(host, f"copy files to {directory}", step)

    async def get(self, host: str, path: str, local: Path) -> bool:
        """Copy ``path`` from ``host`` to ``local`` (recursively); False when it is absent."""

        async def step(sftp: Any) -> bool:
            if not await sftp.exists(path):
                return False
            local.parent.mkdir(parents=True, exist_ok=True)
            await sftp.get(path, str(local), recurse=True)
            return True

        return await self._sftp(host, f"fetch {path}", step)

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            # A connection to a host that went away never hears back: abort it.
            try:
                await asyncio.wait_for(conn.wait_closed(), timeout=5.0)
            except TimeoutError:
                conn.abort()

    async def __aenter__(self) -> HostPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
