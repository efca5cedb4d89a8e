"""etcd as a target: a local etcd cluster the harness can kill, pause and restart, and a client.

``EtcdCluster`` runs ``size`` etcd members (Debian's ``etcd-server``, 3.4) as local processes
on free loopback ports, each with its own data directory and log file under ``base_dir``.
Members are controlled by PID only: ``stop`` (SIGTERM, then SIGKILL), ``kill`` (SIGKILL),
``pause`` (SIGSTOP), ``resume`` (SIGCONT), ``start`` (again, same data directory).

``EtcdClient`` speaks etcd's v3 JSON gateway (``/v3/kv/put``, ``/v3/kv/range``, ``/v3/kv/txn``)
over plain asyncio HTTP/1.1 keep-alive connections. Its errors say what the harness must
record: ``EtcdFailed`` means the operation certainly did not take effect (a ``fail``),
``EtcdUnknown`` that it may have (an ``info``): a timeout or a connection lost after the
request was sent, or a server error that etcd may raise after proposing the write.

Partitions: every member advertises one peer URL to all others (etcd derives member ids from
it), so ``peer_url_for`` can put one proxy in front of each member's peer port, but a proxy
keyed by its listening port alone cannot tell which member a connection comes from. Cutting
single directed links needs network namespaces (``hosts`` and ``command_prefix``).

This module does not import ``dynamo_ref``: the harness drives other systems the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final
from urllib.parse import urlsplit

__all__ = [
    "EtcdClient",
    "EtcdCluster",
    "EtcdError",
    "EtcdFailed",
    "EtcdMember",
    "EtcdStartError",
    "EtcdUnknown",
]

_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 10.0


class EtcdStartError(RuntimeError):
    """etcd is missing, or a member did not come up (the message quotes its log)."""


@dataclass
class EtcdMember:
    """One member: where it listens, what it advertises, and its process while it runs."""

    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    advertised_peer_url: str = ""
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """Where the member listens for peers (``advertised_peer_url`` is what others dial)."""
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        """The PID of the running process, None when it is not running."""
        p = self.process
        return p.pid if p is not None and p.poll() is None else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _free_ports(host: str, count: int) -> list[int]:
    # All held open at once so the ports are distinct; the OS may still hand one out again
    # before etcd binds it, which _start_all notices and retries.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    """A local etcd cluster of ``size`` members, started and healthy on return.

    ``peer_url_for(i, listen_url)`` gives the peer URL member ``i`` advertises (default: where
    it listens), so a proxy can sit in front of peer ports. ``hosts`` gives each member its own
    address (default: all on ``host``); ``command_prefix(i)`` is prepended to member ``i``'s
    command line (for example ``ip netns exec ns_i``; it must exec etcd so the PID is etcd's).
    ``ports(i)`` gives member ``i``'s (client, peer) ports (default: free loopback ports).

    :raises EtcdStartError: etcd is not installed, or the cluster did not become healthy.
    """

    def __init__(
        self,
        size: int,
        base_dir: Path,
        *,
        host: str = "127.0.0.1",
        hosts: Sequence[str] | None = None,
        peer_url_for: Callable[[int, str], str] | None = None,
        command_prefix: Callable[[int], Sequence[str]] | None = None,
        etcd_bin: str | None = None,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        start_timeout: float = _START_TIMEOUT,
        extra_args: Sequence[str] = (),
        ports: Callable[[int], tuple[int, int]] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("an etcd cluster needs at least one member")
        if hosts is not None and len(hosts) != size:
            raise ValueError(f"hosts names {len(hosts)} addresses for {size} members")
        found = shutil.which(etcd_bin or "etcd")
        if found is None:
            raise EtcdStartError(
                f"etcd binary {etcd_bin or 'etcd'!r} not found: install Debian's etcd-server"
                " (`apt-get install etcd-server etcd-client`, or `make sysdeps` as root)"
            )
        self.etcd_bin = found
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.size = size
        self._hosts = list(hosts) if hosts is not None else [host] * size
        self._peer_url_for = peer_url_for
        self._prefix = command_prefix
        self._ports = ports
        self._timing = ["--heartbeat-interval", str(heartbeat_ms)]
        self._timing += ["--election-timeout", str(election_ms)]
        self._extra = list(extra_args)
        self.start_timeout = start_timeout
        self.token = f"dynamo-ref-{uuid.uuid4().hex[:12]}"
        self.members: list[EtcdMember] = []
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise

    # ---- lifecycle ---------------------------------------------------------------------------

    def _layout(self) -> None:
        self.members = []
        for i in range(self.size):
            h = self._hosts[i]
            client_port, peer_port = self._ports(i) if self._ports else _free_ports(h, 2)
            m = EtcdMember(
                name=f"etcd{i}",
                host=h,
                client_port=client_port,
                peer_port=peer_port,
                data_dir=self.base_dir / f"etcd{i}.data",
                log_path=self.base_dir / f"etcd{i}.log",
            )
            m.advertised_peer_url = (
                self._peer_url_for(i, m.peer_url) if self._peer_url_for else m.peer_url
            )
            self.members.append(m)

    def _start_all(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self._layout()
            for i in range(self.size):
                self._spawn(i)
            try:
                self._wait_healthy(range(self.size))
                return
            except EtcdStartError:
                in_use = any("address already in use" in m.log_tail(200) for m in self.members)
                self.close()
                if not in_use or attempt == attempts - 1:
                    raise
                for m in self.members:  # another process took a port: start over, new ports
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                    m.log_path.unlink(missing_ok=True)

    def _command(self, i: int) -> list[str]:
        m = self.members[i]
        cluster = ",".join(f"{x.name}={x.advertised_peer_url}" for x in self.members)
        cmd = [
            self.etcd_bin,
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            m.peer_url,
            "--initial-advertise-peer-urls",
            m.advertised_peer_url,
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            self.token,
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
            *self._timing,
            *self._extra,
        ]
        return [*(self._prefix(i) if self._prefix else ()), *cmd]

    def _spawn(self, i: int) -> None:
        m = self.members[i]
        if m.pid is not None:
            raise RuntimeError(f"{m.name} is already running (pid {m.pid})")
        # etcd reads ETCD_* variables as flags: none from our environment may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        if m._log is not None:
            m._log.close()
        m._log = open(m.log_path, "ab")  # noqa: SIM115  # lives as long as the process
        m.process = subprocess.Popen(
            self._command(i),
            stdin=subprocess.DEVNULL,
            stdout=m._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the harness, not to etcd
        )
        m.paused = False

    def _wait_healthy(self, indices: Sequence[int] | range) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = list(indices)
        while pending:
            for i in list(pending):
                m = self.members[i]
                if m.process is None or m.process.poll() is not None:
                    code = None if m.process is None else m.process.returncode
                    raise EtcdStartError(
                        f"{m.name} exited with {code} while starting; log {m.log_path}:\n"
                        f"{m.log_tail()}"
                    )
                if self.healthy(i):
                    pending.remove(i)
            if pending and time.monotonic() > deadline:
                names = ", ".join(self.members[i].name for i in pending)
                tails = "\n".join(
                    f"--- {self.members[i].log_path}:\n{self.members[i].log_tail()}"
                    for i in pending
                )
                raise EtcdStartError(
                    f"not healthy after {self.start_timeout:.0f} s: {names}\n{tails}"
                )
            if pending:
                time.sleep(0.1)

    def healthy(self, i: int, timeout: float = 1.0) -> bool:
        """Whether member ``i`` answers ``/health`` with health true (it sees a leader)."""
        m = self.members[i]
        conn = http.client.HTTPConnection(m.host, m.client_port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = json.loads(resp.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()
        return resp.status == 200 and str(body.get("health")) == "true"

    # ---- faults, by PID ----------------------------------------------------------------------

    def _signal(self, i: int, sig: signal.Signals) -> int:
        m = self.members[i]
        pid = m.pid
        if pid is None:
            raise RuntimeError(f"{m.name} is not running")
        os.kill(pid, sig)
        return pid

    def start(self, i: int, *, wait: bool = True) -> None:
        """Start member ``i`` again on its data directory; ``wait`` until it is healthy."""
        self._spawn(i)
        if wait:
            self._wait_healthy([i])

    def stop(self, i: int, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM, and SIGKILL if it has not exited after ``timeout`` seconds."""
        self._terminate(i)
        self._await_exit(i, timeout)

    def _terminate(self, i: int) -> None:
        m = self.members[i]
        if m.pid is None:
            return
        self._signal(i, signal.SIGTERM)
        if m.paused:
            self.resume(i)  # a stopped process handles SIGTERM only once continued

    def _await_exit(self, i: int, timeout: float) -> None:
        m = self.members[i]
        if m.process is None:
            return
        try:
            m.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(i)
        self._reaped(m)

    def kill(self, i: int) -> None:
        """SIGKILL (``kill -9``); returns once the process is gone."""
        m = self.members[i]
        if m.pid is None:
            return
        self._signal(i, signal.SIGKILL)
        assert m.process is not None
        m.process.wait()
        self._reaped(m)

    def pause(self, i: int) -> None:
        """SIGSTOP: the member stays in the cluster but does nothing until ``resume``."""
        self._signal(i, signal.SIGSTOP)
        self.members[i].paused = True

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)
        self.members[i].paused = False

    def _reaped(self, m: EtcdMember) -> None:
        m.paused = False
        if m._log is not None:
            m._log.close()
            m._log = None

    def pids(self) -> list[int | None]:
        """Each member's PID, None for a member not running."""
        return [m.pid for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _stop_all(self, timeout: float = _STOP_TIMEOUT) -> None:
        # One at a time: a leader stopping with its followers hands leadership to a live one
        # at once, while members all stopped together wait seconds for a transfer that fails.
        for i in range(len(self.members)):
            self.stop(i, timeout)

    def close(self, timeout: float = 3.0) -> None:
        """Stop every member by PID: SIGTERM, then SIGKILL after ``timeout`` seconds (a member
        shutting down waits for its requests in flight, seconds for one that cannot commit).
        Data directories stay."""
        self._stop_all(timeout)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---- the client ------------------------------------------------------------------------------


class EtcdError(Exception):
    """A request to etcd did not succeed."""


class EtcdFailed(EtcdError):
    """The operation certainly did not take effect (nothing was sent, or etcd refused it)."""


class EtcdUnknown(EtcdError):
    """The operation may or may not have taken effect (timeout, connection lost after sending,
    or an error etcd can raise after proposing it)."""


# gRPC codes etcd returns only before a request is proposed: the request did nothing.
# (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
# FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED, UNAUTHENTICATED.) Others, UNAVAILABLE
# ("request timed out", "leader changed") above all, may follow a proposal that commits.
_DEFINITE_CODES: Final = frozenset({3, 5, 6, 7, 8, 9, 11, 12, 16})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdUnknown(f"etcd sent a non-string where base64 was expected: {text!r}")
    return base64.b64decode(text)


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EtcdClient:
    """An asyncio client for one etcd member's v3 JSON gateway.

    Up to ``max_connections`` requests run at once, each on its own keep-alive connection;
    more wait for one. ``timeout`` bounds each request, waiting for a connection included.
    Reads are linearizable (etcd's default for range). ``connect`` opens a connection to the
    member in place of ``asyncio.open_connection(host, port)`` (e.g. from inside a namespace).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_connections: int = 8,
        connect: Callable[[], Awaitable[_Conn]] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"expected http://host:port, not {url!r}")
        self.url = url
        self.host: str = parts.hostname
        self.port: int = parts.port
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False
        self._connect = connect

    async def put(self, key: bytes, value: bytes) -> None:
        await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def get(self, key: bytes) -> bytes | None:
        """The key's value, None when absent."""
        body = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = body.get("kvs") or []
        if not kvs:
            return None
        return _unb64(kvs[0].get("value", ""))  # the gateway omits an empty value

    async def cas(self, key: bytes, old: bytes | None, new: bytes) -> bool:
        """Set ``key`` to ``new`` if its value is ``old`` (None: absent); True if it did."""
        if old is None:
            compare = {"key": _b64(key), "target": "CREATE", "result": "EQUAL"}
            compare["create_revision"] = "0"
        else:
            compare = {"key": _b64(key), "target": "VALUE", "result": "EQUAL"}
            compare["value"] = _b64(old)
        txn = {
            "compare": [compare],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(new)}}],
        }
        body = await self._call("/v3/kv/txn", txn)
        return bool(body.get("succeeded", False))  # omitted when false

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- HTTP ----------------------------------------------------------------------------

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise EtcdFailed("the client is closed")
        data = json.dumps(payload).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        progress = {"sent": False}
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                status, body = await self._exchange(request, progress)
        except TimeoutError as e:
            if progress["sent"]:
                raise EtcdUnknown(f"{path}: no answer within {self.timeout} s") from e
            raise EtcdFailed(f"{path}: not sent within {self.timeout} s") from e
        return self._result(path, status, body)

    async def _exchange(self, request: bytes, progress: dict[str, bool]) -> tuple[int, bytes]:
        conn = self._take_idle()
        if conn is None:
            try:
                if self._connect is not None:
                    conn = await self._connect()
                else:
                    conn = await asyncio.open_connection(self.host, self.port)
            except OSError as e:
                raise EtcdFailed(f"cannot connect to {self.url}: {e}") from e
        reader, writer = conn
        keep = False
        try:
            progress["sent"] = True
            writer.write(request)
            await writer.drain()
            status, body, keep = await _read_response(reader)
            return status, body
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as e:
            raise EtcdUnknown(f"connection to {self.url} lost after sending: {e!r}") from e
        finally:
            if keep and not self._closed:
                self._idle.append(conn)
            else:
                writer.close()

    def _take_idle(self) -> _Conn | None:
        while self._idle:
            reader, writer = self._idle.pop()
            # A connection the server has closed meanwhile (restart, kill, idle timeout) is
            # dropped here rather than found dead after sending, which would make the outcome
            # unknown. An idle connection has nothing to read: if it has, it is closing.
            if reader.at_eof() or writer.is_closing() or _readable(writer):
                writer.close()
                continue
            return reader, writer
        return None

    def _result(self, path: str, status: int, body: bytes) -> dict[str, Any]:
        try:
            decoded = json.loads(body) if body else {}
        except ValueError as e:
            raise EtcdUnknown(f"{path}: HTTP {status} with a body that is not JSON") from e
        if not isinstance(decoded, dict):
            raise EtcdUnknown(f"{path}: HTTP {status} with unexpected JSON {decoded!r}")
        if status == 200 and "error" not in decoded:
            return decoded
        code = decoded.get("code")
        message = (
            decoded.get("message") or decoded.get("error") or body[:200].decode(errors="replace")
        )
        text = f"{path}: HTTP {status}, code {code}: {message}"
        if isinstance(code, int) and code in _DEFINITE_CODES:
            raise EtcdFailed(text)
        raise EtcdUnknown(text)


def _readable(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection can be reused) of one HTTP/1.1 response.

    :raises ValueError: not an HTTP/1.1 response we understand.
    """
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get(b"connection", b"").lower() != b"close" and parts[0] == b"HTTP/1.1"
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            chunks.append((await reader.readexactly(size + 2))[:-2])
        return status, b"".join(chunks), keep
    length = headers.get(b"content-length")
    if length is None:
        return status, await reader.read(), False  # the body runs to the end of the stream
    return status, await reader.readexactly(int(length)), keep
