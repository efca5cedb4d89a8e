"""Real runs of another implementation checked against the spec: `harness/examples/
process_node.py`, a Dynamo-style node written without dynamo_ref, runs as three processes over
TCP, each logging its own steps (docs/trace-format.md, version 2). A correct run with a kill
and a restart is accepted by `dynamo-ref spec validate-run`; each of two planted bugs is
rejected at the step where it shows, with the variable that differs named."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dynamo_ref.cli import main
from dynamo_ref.tla.models import default_spec_dir
from dynamo_ref.tla.process_trace import validate_run

pytestmark = [
    pytest.mark.net,
    pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed"),
]

PROGRAM = Path(__file__).resolve().parent.parent / "harness" / "examples" / "process_node.py"
NODES = ("n1", "n2", "n3")
SPEC = default_spec_dir()


def _free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """The three node processes, started and stopped by PID."""

    def __init__(self, out: Path, bug: str | None) -> None:
        self.out = out
        self.bug = bug
        ports = _free_ports(len(NODES))
        self.ports = dict(zip(NODES, ports, strict=True))
        self.peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in self.ports.items())
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        # `-I -S`: no site-packages, so the program can only use the standard library.
        argv = [sys.executable, "-I", "-S", str(PROGRAM), "--name", node, "--peers", self.peers]
        argv += [
            "--data",
            str(self.out / f"{node}.json"),
            "--trace",
            str(self.out / f"{node}.jsonl"),
        ]
        if self.bug:
            argv += ["--bug", self.bug]
        self.procs[node] = subprocess.Popen(argv, stderr=subprocess.DEVNULL)

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for node in list(self.procs):
            proc = self.procs.pop(node)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)

    async def ready(self, node: str) -> None:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", self.ports[node])
                w.close()
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{node} does not listen")

    async def call(self, node: str, request: dict[str, Any]) -> dict[str, Any]:
        r, w = await asyncio.open_connection("127.0.0.1", self.ports[node])
        try:
            w.write(json.dumps(request).encode() + b"\n")
            await w.drain()
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(r.readline(), 10))
            return reply
        finally:
            w.close()

    async def put(self, node: str, key: str, value: str, ctx: dict[str, int] | None = None) -> Any:
        req = {"op": "put", "key": key, "value": value, "context": ctx or {}}
        return await self.call(node, req)

    async def get(self, node: str, key: str) -> Any:
        return await self.call(node, {"op": "get", "key": key})


async def scenario(c: Cluster) -> None:
    """Blind puts through one coordinator, a read and a put with its context, siblings from
    two coordinators, a replica killed and restarted, and reads that repair it."""
    for node in NODES:
        await c.ready(node)
    assert (await c.put("n1", "a", "v1"))["ok"]
    assert (await c.put("n1", "a", "v2"))["ok"]  # after v1 at n1: its clock descends
    read = await c.get("n2", "a")
    assert read["ok"]
    assert (await c.put("n2", "a", "v3", read["context"]))["ok"]
    await asyncio.gather(c.put("n2", "b", "x"), c.put("n3", "b", "y"))
    await asyncio.sleep(0.2)
    c.kill("n3")
    assert (await c.put("n1", "c", "z"))["ok"]  # W=2 without n3
    assert (await c.get("n1", "b"))["ok"]
    c.start("n3")
    await c.ready("n3")
    await asyncio.sleep(0.2)
    read = await c.get("n3", "c")  # n3 missed c: repaired
    assert read["values"] == ["z"], read
    await asyncio.sleep(0.3)  # late responses and repairs land


@contextlib.contextmanager
def cluster(out: Path, bug: str | None) -> Iterator[Cluster]:
    c = Cluster(out, bug)
    try:
        for node in NODES:
            c.start(node)
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("good")
    with cluster(out, None) as c:
        asyncio.run(scenario(c))
    return out


def test_the_program_uses_no_dynamo_ref() -> None:
    imports = [
        line.strip()
        for line in PROGRAM.read_text().splitlines()
        if line.strip().startswith(("import ", "from ")) and "__future__" not in line
    ]
    assert imports
    assert not [line for line in imports if "dynamo_ref" in line or "harness" in line]


def test_a_run_of_three_processes_is_a_behaviour_of_the_spec(good_run: Path) -> None:
    headers = [
        json.loads(line)
        for p in sorted(good_run.glob("n*.jsonl"))
        for line in p.read_text().splitlines()
        if '"trace"' in line
    ]
    assert len({h["pid"] for h in headers}) == 4  # three processes and n3's restart
    verdict = validate_run([good_run], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert verdict.actions["Crash"] == verdict.actions["Recover"] == 1
    assert verdict.actions["ReadRepair"] >= 1
    assert {"ClientPut", "ReplicaStore", "StoreAck", "ReplicaRead", "ReadResponse"} <= set(
        verdict.actions
    )


def test_the_cli_validates_the_run(good_run: Path) -> None:
    result = CliRunner().invoke(main, ["spec", "validate-run", str(good_run)])
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output


@pytest.mark.parametrize(
    ("bug", "action", "variable"),
    [
        # n1's second blind put of a: the spec's counter is one above the clock n1 holds
        ("stale-counter", "ClientPut", "store"),
        # the first store a replica acks without applying it
        ("ack-without-store", "ReplicaStore", "store"),
    ],
)
def test_a_planted_bug_is_rejected_where_it_shows(
    tmp_path: Path, bug: str, action: str, variable: str
) -> None:
    with cluster(tmp_path, bug) as c, contextlib.suppress(AssertionError, TimeoutError):
        asyncio.run(scenario(c))  # the bug may also show to the client
    verdict = validate_run([tmp_path], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted, f"{bug} was accepted"
    assert verdict.failed_at is not None, verdict.describe()
    path, _, lineno = verdict.failed_at.rpartition(":")
    step = json.loads(Path(path).read_text().splitlines()[int(lineno) - 1])
    assert action in [a[0] for a in step["actions"]], verdict.describe()
    assert variable in verdict.differing, verdict.describe()
    first = _first_step_with(tmp_path, action, bug)
    assert verdict.failed_at == first, verdict.describe()


def _first_step_with(run: Path, action: str, bug: str) -> str:
    """Where the bug first shows: n1's second ClientPut of a, or the first ReplicaStore of a
    put (a store with an op, which the buggy replica acks without applying)."""
    found: list[tuple[float, str]] = []
    for p in sorted(run.glob("n*.jsonl")):
        seen = 0
        for k, line in enumerate(p.read_text().splitlines(), start=1):
            step = json.loads(line)
            for a in step.get("actions", []):
                if a[0] != action:
                    continue
                if bug == "stale-counter" and a[1:3] == ["n1", "a"]:
                    seen += 1
                    if seen == 2:
                        found.append((step["t"], f"{p}:{k}"))
                elif bug == "ack-without-store" and a[4] != "0":
                    found.append((step["t"], f"{p}:{k}"))
    return min(found)[1]
