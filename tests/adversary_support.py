"""Helpers for the adversarial tests: node processes, a legitimate client probing them while an
attack runs, raw connections, and the figures each test prints.

Every node runs ``tests/adversary_node.py`` in its own process (stopped by its PID, even when
the test fails), so its RSS and its peak RSS (``VmHWM``) are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dynamo_ref.client import Client, ClientError
from dynamo_ref.core.messages import ReplyMessage, decode_reply
from dynamo_ref.localcluster import free_ports, wait_healthy
from dynamo_ref.net.connect import FramedStream
from dynamo_ref.net.framing import encode_frame
from dynamo_ref.net.handshake import PROTOCOL_VERSION, Hello, encode_handshake

NODE_SCRIPT = Path(__file__).with_name("adversary_node.py")
FIGURES_ENV = "ADVERSARY_FIGURES"  # a file the figures are appended to as JSON lines


def figures(test: str, **values: object) -> None:
    """Print what an attack did (and append it to $ADVERSARY_FIGURES): the report's numbers."""
    line = json.dumps({"test": test, **values}, sort_keys=True)
    print(f"FIGURES {line}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def proc_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


class NodeProcess:
    """One node in a process of its own (see ``adversary_node.py`` for ``config``/``options``)."""

    def __init__(
        self,
        tmp: Path,
        *,
        node_id: str = "solo",
        config: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        sqlite: Path | None = None,
        sync: str = "off",
        nofile: int | None = None,
        contracts: bool = True,
        plant: str | None = None,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.state_file = tmp / f"{node_id}.state.json"
        self.log = tmp / f"{node_id}.log"
        spec = {
            "node_id": node_id,
            "config": config or {},
            "options": options or {},
            "sqlite": str(sqlite) if sqlite else None,
            "sync": sync,
            "state_file": str(self.state_file),
            "nofile": nofile,
            "plant": plant,
        }
        env = dict(os.environ)
        if not contracts:
            env["DYNAMO_REF_CONTRACTS"] = "0"

        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(NODE_SCRIPT), json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            assert self.process.stdout is not None
            line = self.process.stdout.readline().decode()
            if not line.startswith("listening on "):
                raise RuntimeError(f"the node did not start: {self.log.read_text()[-2000:]}")
            self.address = line.split()[-1]
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        return proc_kb(self.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        """The most RSS the process ever had (the kernel's high-water mark)."""
        return proc_kb(self.pid, "VmHWM") / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def state(self, timeout: float = 10.0) -> dict[str, Any]:
        """The node's request state (``adversary_node.request_state``), asked by SIGUSR1."""
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                got: dict[str, Any] = json.loads(self.state_file.read_text())
                return got
            time.sleep(0.02)
        raise AssertionError("the node did not report its state")

    def settled_state(self, timeout: float = 15.0, **want: int) -> dict[str, Any]:
        """Poll the state until each ``want`` count is reached (or timeout); the last state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if all(state.get(k) == v for k, v in want.items()):
                return state
            if time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def errors_logged(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or "ERROR" in line]

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def node_cluster(
    tmp: Path, count: int, *, config: dict[str, Any], options: dict[str, Any] | None = None
) -> Iterator[list[NodeProcess]]:
    """``count`` node processes with one initial ring (ids n1..), every one stopped after."""
    ids = [f"n{i + 1}" for i in range(count)]
    members = [[n, f"127.0.0.1:{p}"] for n, p in zip(ids, free_ports(count), strict=True)]
    nodes: list[NodeProcess] = []
    try:
        for (node_id, address), _ in zip(members, ids, strict=True):
            host, port = address.rsplit(":", 1)
            opts = {**(options or {}), "members": members, "host": host, "port": int(port)}
            nodes.append(NodeProcess(tmp, node_id=node_id, config=config, options=opts))
        wait_healthy([n.address for n in nodes])
        yield nodes
    finally:
        for n in nodes:
            n.stop()


@dataclass
class Probe:
    """A legitimate client that puts and reads a key every ``interval`` while an attack runs.

    Each answer (a success or a refusal with an error code) is recorded with its latency; a
    request that got no answer within the client's timeout is recorded as "timeout".
    """

    address: str
    token: str | None = None
    interval: float = 0.1
    timeout: float = 5.0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(30), "the probe could not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with Client([self.address], token=self.token, timeout=self.timeout) as client:
            client.put(b"probe", b"0")
            self._ready.set()
            i = 0
            while not self._stop.is_set():
                i += 1
                t0 = time.perf_counter()
                try:
                    if i % 2:
                        client.put(b"probe", str(i).encode())
                    else:
                        client.get(b"probe")
                    outcome = "ok"
                except ClientError as e:
                    outcome = e.code
                self.latencies.append(time.perf_counter() - t0)
                self.outcomes[outcome] += 1
                self._stop.wait(self.interval)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


async def raw_connection(
    address: str, *, hello: bool = True, token: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that sent a client hello (and read the welcome), or nothing at all."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    if hello:
        writer.write(encode_frame(encode_handshake(Hello(PROTOCOL_VERSION, "client", token=token))))
        stream = FramedStream(reader, writer, 1 << 24)
        await asyncio.wait_for(stream.recv(), 10)
    return reader, writer


async def replies(reader: asyncio.StreamReader, count: int, timeout: float) -> list[ReplyMessage]:
    """Up to ``count`` replies, until the connection closes or ``timeout`` passes without one."""
    stream = FramedStream(reader, None, 1 << 24)  # type: ignore[arg-type]
    out: list[ReplyMessage] = []
    with contextlib.suppress(TimeoutError, ConnectionError):
        while len(out) < count:
            out.append(decode_reply(await asyncio.wait_for(stream.recv(), timeout)))
    return out


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the other side closes the connection within ``timeout`` (data is skipped)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(1 << 16), deadline - time.monotonic())
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return False
