"""etcd under faults, checked for linearizability: a register workload against a 3-member
cluster while the leader is cut off (namespaces) or killed with SIGKILL (loopback), the history
checked with the etcd register model, and the same history with one read made stale rejected."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from harness.checkers import models as M
from harness.checkers.linearizable import CheckResult, check
from harness.history import Op, Operation, pair
from harness.net.network import UnsupportedFault
from harness.targets.base import OpFailed, OpUnknown
from harness.targets.etcd_target import EtcdRegisterClient, EtcdTarget

pytestmark = pytest.mark.net

KEYS = ("a", "b")
MISMATCH = "cas-mismatch"  # a cas that ran and saw another value (not a certain failure)


class Recorder:
    """A history in real-time order: the position of an op is when it happened."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.start = time.monotonic_ns()

    def add(self, process: int | str, type_: str, f: str, value: object, **kw: object) -> None:
        op = Op(
            process=process,
            type=type_,  # type: ignore[arg-type]
            f=f,
            value=value,
            time=time.monotonic_ns() - self.start,
            index=len(self.ops),
            **kw,  # type: ignore[arg-type]
        )
        self.ops.append(op)


async def worker(
    client: EtcdRegisterClient,
    *,
    process_ids: itertools.count[int],
    values: itertools.count[int],
    rec: Recorder,
    deadline: float,
    rng: random.Random,
    max_ops: int = 150,
) -> None:
    """Random reads, writes and cas on `KEYS` until the deadline; a new process id after an
    unknown outcome (that process may still be acting, as in Jepsen)."""
    process = next(process_ids)
    where: dict[str, object] = {"node": client.node}
    seen: dict[str, object] = {}
    for _ in range(max_ops):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(rng.uniform(0.02, 0.08))  # spread the ops over the faults
        key = rng.choice(KEYS)
        roll = rng.random()
        f: str = "read"
        value: object = None
        if roll > 0.5:
            f, value = "write", next(values)
        elif roll > 0.25:
            f, value = "cas", [seen.get(key, rng.randrange(5)), next(values)]
        rec.add(process, "invoke", f, value, key=key)
        try:
            if f == "read":
                got = await client.read(key)
                seen[key] = got
                rec.add(process, "ok", f, got, key=key, extra=where)
            elif f == "write":
                await client.write(key, value)
                seen[key] = value
                rec.add(process, "ok", f, value, key=key, extra=where)
            else:
                assert isinstance(value, list)
                if await client.cas(key, value[0], value[1]):
                    seen[key] = value[1]
                    rec.add(process, "ok", f, value, key=key, extra=where)
                else:
                    rec.add(process, "fail", f, value, key=key, error=MISMATCH, extra=where)
        except OpFailed as e:
            rec.add(process, "fail", f, value, key=key, error=str(e)[:200], extra=where)
            await asyncio.sleep(0.1)  # the member is down: do not spin
        except OpUnknown as e:
            rec.add(process, "info", f, value, key=key, error=str(e)[:200], extra=where)
            process = next(process_ids)


async def run_workload(
    target: EtcdTarget,
    seconds: float,
    nemesis: Callable[[Recorder], Awaitable[None]],
    seed: int,
) -> Recorder:
    rec = Recorder()
    rng = random.Random(seed)
    clients = [await target.client(n) for n in target.nodes() for _ in range(2)]
    process_ids = itertools.count()
    values = itertools.count(100)
    deadline = time.monotonic() + seconds
    workers = [
        worker(
            c,
            process_ids=process_ids,
            values=values,
            rec=rec,
            deadline=deadline,
            rng=random.Random(rng.random()),
        )
        for c in clients
    ]
    await asyncio.gather(nemesis(rec), *workers)
    return rec


def operations(history: list[Op]) -> list[Operation]:
    """Paired client operations, without those that certainly did not take effect (a `fail`
    that is not a cas mismatch: the etcd model would read a failed cas as one that saw
    another value)."""
    client_ops = [op for op in history if op.process != "nemesis"]
    return [
        o
        for o in pair(client_ops)
        if not (o.status == "fail" and o.completion is not None and o.completion.error != MISMATCH)
    ]


def verdict(history: list[Op]) -> CheckResult:
    model = dataclasses.replace(M.etcd_register(), partition=M.partition_by_key)
    return check(model, operations(history), time_limit=60)


def make_stale(history: list[Op]) -> tuple[list[Op], Op]:
    """The history with one ok read changed to return a value that two later, non-overlapping
    successful writes had already replaced before the read was called (values are unique, so
    nothing else could have brought it back)."""
    ops = pair([op for op in history if op.process != "nemesis"])
    writes = [o for o in ops if o.status == "ok" and o.f in ("write", "cas") and o.ret is not None]
    for read in ops:
        if read.f != "read" or read.status != "ok" or read.completion is None:
            continue
        before = [
            w for w in writes if w.key == read.key and w.ret is not None and w.ret < read.call
        ]
        for w1 in before:
            assert w1.ret is not None
            if any(w2.call > w1.ret and w2 is not w1 for w2 in before):
                stale = w1.input if w1.f == "write" else w1.input[1]  # type: ignore[index]
                if stale == read.output:
                    continue
                altered = msgspec.structs.replace(read.completion, value=stale)
                return [altered if op is read.completion else op for op in history], altered
    raise AssertionError("no read follows two successive writes: the workload is too small")


def assert_linearizable_and_control(history: list[Op]) -> CheckResult:
    ops = operations(history)
    reads = [o for o in ops if o.f == "read" and o.status == "ok"]
    swaps = [o for o in ops if o.f == "cas" and o.status == "ok"]
    assert len(reads) >= 20, "too few reads for a meaningful check"
    assert swaps, "no successful cas"
    result = verdict(history)
    assert result.verdict == "valid", result.describe()
    assert {p.key for p in result.partitions} == set(KEYS)
    # Negative control: the checker must reject the same history with one stale read.
    altered, read = make_stale(history)
    bad = verdict(altered)
    assert bad.verdict == "invalid", f"a stale read {read} went unnoticed"
    assert bad.failure is not None
    assert bad.failure.key == read.key
    return result


async def eventually_leader(
    target: EtcdTarget, other_than: str | None, seconds: float, among: list[str] | None = None
) -> str:
    deadline = time.monotonic() + seconds
    while True:
        leader = await target.leader(among)
        if leader is not None and leader != other_than:
            return leader
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader other than {other_than} after {seconds} s")
        await asyncio.sleep(0.1)


def assert_all_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def require_etcd() -> None:
    assert shutil.which("etcd"), "etcd is not installed: `apt-get install etcd-server`"


@pytest.mark.root
def test_isolating_the_leader_keeps_etcd_linearizable(tmp_path: Path) -> None:
    require_etcd()
    assert os.geteuid() == 0, "the netns backend needs root"
    target = EtcdTarget(3, tmp_path, net="netns", client_timeout=1.0)
    pids: list[int] = []
    found: dict[str, str] = {}

    async def nemesis(rec: Recorder) -> None:
        await asyncio.sleep(1.0)
        leader = await eventually_leader(target, None, 10)
        others = [n for n in target.nodes() if n != leader]
        links = {(leader, o) for o in others} | {(o, leader) for o in others}
        rec.add("nemesis", "info", "net-cut", sorted(list(link) for link in links))
        target.network.cut(links)
        found["old"] = leader
        found["new"] = await eventually_leader(target, leader, 10, others)  # the majority elects
        await asyncio.sleep(2.5)
        target.network.heal()
        rec.add("nemesis", "info", "net-heal", None)

    async def scenario() -> Recorder:
        await target.setup()
        try:
            pids.extend(p for n in target.nodes() if (p := target.pid(n)) is not None)
            assert len(pids) == 3
            return await run_workload(target, 7.5, nemesis, seed=7)
        finally:
            await target.teardown()

    rec = asyncio.run(scenario())
    assert_all_gone(pids)
    assert not target.network.namespaces()  # type: ignore[attr-defined]
    assert found["new"] != found["old"]
    cut_at = next(op.index for op in rec.ops if op.f == "net-cut")
    heal_at = next(op.index for op in rec.ops if op.f == "net-heal")
    during = [op for op in rec.ops[cut_at:heal_at] if op.type != "invoke"]
    # The cut had an effect, and the majority kept serving through it.
    isolated = [op for op in during if op.type in ("info", "fail") and op.error != MISMATCH]
    assert isolated, "no request failed or timed out while the leader was cut off"
    served = {op.extra.get("node") for op in during if op.type == "ok"}
    assert set(target.nodes()) - {found["old"]} <= served
    assert_linearizable_and_control(rec.ops)


def test_killing_the_leader_keeps_etcd_linearizable(tmp_path: Path) -> None:
    require_etcd()
    target = EtcdTarget(3, tmp_path, net="none", client_timeout=1.0)
    pids: list[int] = []
    killed: dict[str, object] = {}

    async def nemesis(rec: Recorder) -> None:
        await asyncio.sleep(1.0)
        leader = await eventually_leader(target, None, 10)
        pid = target.pid(leader)
        rec.add("nemesis", "info", "kill", leader)
        await target.kill(leader)
        killed.update(node=leader, pid=pid, pid_after=target.pid(leader))
        await eventually_leader(target, leader, 10)
        await asyncio.sleep(1.0)
        await target.start(leader)
        rec.add("nemesis", "info", "start", leader)
        pids.extend(p for n in target.nodes() if (p := target.pid(n)) is not None)

    async def scenario() -> Recorder:
        await target.setup()
        try:
            with pytest.raises(UnsupportedFault):
                target.network.cut({("etcd0", "etcd1")})
            return await run_workload(target, 5.0, nemesis, seed=11)
        finally:
            await target.teardown()

    rec = asyncio.run(scenario())
    assert killed["pid_after"] is None
    assert isinstance(killed["pid"], int)
    assert_all_gone([*pids, killed["pid"]])
    kill_at = next(op.index for op in rec.ops if op.f == "kill")
    start_at = next(op.index for op in rec.ops if op.f == "start")
    # Clients of the dead member got certain failures: it refused connections.
    refused = [
        op
        for op in rec.ops[kill_at:start_at]
        if op.type == "fail" and "cannot connect" in str(op.error)
    ]
    assert refused
    assert_linearizable_and_control(rec.ops)


@pytest.mark.root
def test_an_etcd_campaign_gives_verdicts_in_its_report(tmp_path: Path) -> None:
    """`dynamo-ref campaign --target etcd`: a register workload with compare-and-sets under
    partitions (namespaces) and kills, checked, with the verdicts on the report page."""
    from click.testing import CliRunner

    from harness.cli import main

    out = tmp_path / "campaign"
    args = ["campaign", "--target", "etcd", "--nodes", "3", "--workload", "register"]
    args += ["--net", "netns", "--nemesis", "partition,kill", "--time", "5", "--clients", "4"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (page,) = (out / "latest").glob("*/report.html")  # each campaign in its own folder
    html = page.read_text()
    assert "linearizable" in html
    assert "valid" in html
    history = (page.parent / "history.jsonl").read_text()
    assert '"f":"cas"' in history
    assert '"process":"nemesis"' in history
