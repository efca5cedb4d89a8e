"""Trace validation of real runs: node processes on loopback log their own steps, the merge
orders them, and TLC checks the run against spec/Dynamo.tla (spec/DynamoProcessTrace.tla).

The negative controls: node processes with a protocol bug planted in them
(``tests/planted_node.py``, started through the target's ``node_command``), and a run whose
log was edited, must be rejected, at the step that shows it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dynamo_ref.tla.models import default_spec_dir
from dynamo_ref.tla.process_trace import validate_run
from harness.run import RunConfig, RunResult, run_once
from harness.targets.base import OpFailed, OpUnknown
from harness.targets.dynamo import DynamoTarget, Timing

pytestmark = [
    pytest.mark.net,
    pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed"),
]

SPEC = default_spec_dir()
FAST = Timing(request_timeout=0.5, fallback_delay=0.2, client_timeout=1.5)


def traced(
    tmp_path: Path,
    body: Callable[[DynamoTarget], Awaitable[None]],
    nodes: int = 3,
    **options: object,
) -> Path:
    settings: dict[str, object] = {"mode": "vclock", **options}
    target = DynamoTarget(nodes, tmp_path, timing=FAST, trace=True, **settings)  # type: ignore[arg-type]

    async def main() -> None:
        await target.setup()
        try:
            await body(target)
        finally:
            await target.teardown()

    asyncio.run(main())
    return tmp_path


async def retried(op: Callable[[], Awaitable[object]], tries: int = 100) -> object:
    for _ in range(tries - 1):
        try:
            return await op()
        except (OpFailed, OpUnknown):
            await asyncio.sleep(0.1)
    return await op()


async def workload(t: DynamoTarget) -> None:
    """Puts with and without contexts, reads through two nodes, a kill and a restart."""
    c1, c2 = await t.client("n1"), await t.client("n2")
    await c1.put("a", 1, None)
    await c2.put("b", 2, None)
    values, ctx = await c2.get("a")
    assert values == [1]
    await c2.put("a", 3, ctx)
    await t.kill("n3")
    await retried(lambda: c1.put("b", 4, None))
    await t.start("n3")
    c3 = await t.client("n3")
    await retried(lambda: c3.get("a"))
    await c1.get("b")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return traced(tmp_path_factory.mktemp("run"), workload)


def test_a_real_run_with_a_kill_is_a_behaviour_of_the_spec(run_dir: Path) -> None:
    verdict = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert {"ClientPut", "ReplicaStore", "StoreAck", "ClientGet", "ReadResponse"} <= set(
        verdict.actions
    )
    assert verdict.actions["Crash"] == verdict.actions["Recover"] == 1


def _edited(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(run_dir, copy)
    return copy


def test_control_a_store_the_replica_never_made_is_rejected(run_dir: Path, tmp_path: Path) -> None:
    copy = _edited(run_dir, tmp_path)
    # A replica's log says it stored a value no put ever wrote.
    path = next(p for p in sorted(copy.glob("n*/trace.jsonl")) if "ReplicaStore" in p.read_text())
    lines = path.read_text().splitlines()
    k = next(i for i, x in enumerate(lines) if '"ReplicaStore"' in x)
    step = json.loads(lines[k])
    for versions in step["state"]["store"].values():
        for v in versions:
            v["val"] = "999"
    lines[k] = json.dumps(step)
    path.write_text("\n".join(lines) + "\n")
    verdict = validate_run([copy], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted
    assert verdict.failed is not None
    assert verdict.failed_action is not None
    assert verdict.failed_action.startswith("ReplicaStore")
    assert verdict.failed_at == f"{path}:{k + 1}"


REAPING = Timing(request_timeout=0.5, fallback_delay=0.2, client_timeout=1.5, reap_delay=1.5)


async def delete_workload(t: DynamoTarget, key: str = "a") -> None:
    """A delete acked by every replica, its tombstone read back and reaped everywhere, then
    ``key`` written (blind): the deleted key again, or another."""
    c = await t.client("n1")
    await c.put("a", 1, None)
    _, ctx = await c.get("a")
    client = await c._connected()
    await client.delete(b"a", context=ctx.raw)  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    values, _ = await c.get("a")
    assert values == []

    async def reaped() -> bool:
        return not any([await t.replica_get(n, "a") for n in t.nodes()])

    await until(reaped, "the tombstone is reaped on every replica")
    await c.put(key, 2, None)
    values, _ = await c.get(key)
    assert values == [2]


def _delete_run(out: Path, key: str) -> Path:
    target = DynamoTarget(3, out, timing=REAPING, trace=True, mode="dvv")

    async def main() -> None:
        await target.setup()
        try:
            await delete_workload(target, key)
        finally:
            await target.teardown()

    asyncio.run(main())
    return out


@pytest.fixture(scope="module")
def delete_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _delete_run(tmp_path_factory.mktemp("deletes"), "a")


def test_a_real_run_with_deletes_and_reaps_is_a_behaviour_of_the_spec(tmp_path: Path) -> None:
    verdict = validate_run([_delete_run(tmp_path, "b")], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert "DeletesNotUndone" in verdict.promised
    assert verdict.actions["ReapTombstone"] >= 1
    assert verdict.actions["ReplicaReap"] >= 1


def test_a_real_run_that_rewrites_a_reaped_key_is_rejected_where_a_dot_is_reused(
    delete_run: Path,
) -> None:
    """Every step up to the reap and after it is a behaviour of the spec; the write after the
    reap is where the node's known defect shows (spec model dvv_reap_reuses_dots): the key's
    dots were forgotten with it, so the new write takes dot n1:1 again, an event the reaped
    tombstone claims to have seen. A replica that missed the reap would let its tombstone
    delete the new write. The run is rejected there, DeletesNotUndone broken."""
    verdict = validate_run([delete_run], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted
    assert verdict.broken == "DeletesNotUndone", verdict.describe()
    assert verdict.actions["ReapTombstone"] >= 1
    assert verdict.actions["ReplicaReap"] >= 1
    assert verdict.failed_at is not None
    path, _, lineno = verdict.failed_at.rpartition(":")
    lines = Path(path).read_text().splitlines()
    step = json.loads(lines[int(lineno) - 1])
    assert ["ClientPut", "n1", "a", "2", ""] in step["actions"], verdict.describe()
    (again,) = step["state"]["store"]["a"]
    steps = [json.loads(x) for x in lines if '"ClientPut"' in x]
    first = next(
        st["state"]["store"]["a"][0]
        for st in steps
        if ["ClientPut", "n1", "a", "1", ""] in st["actions"]
    )
    assert (again["wr"], again["dot"]) == (first["wr"], first["dot"]) == ("n1", 1)
    reaps = [k for k, x in enumerate(lines) if '"ReapTombstone"' in x]
    assert reaps, "n1 reaped the key before the write"
    assert reaps[0] < int(lineno) - 1


async def dvv_workload(t: DynamoTarget) -> None:
    """Dotted version vectors: two blind puts through one coordinator stay siblings, a put
    with their context replaces both, and a kill and restart in between."""
    c1, c2 = await t.client("n1"), await t.client("n1")
    await c1.put("a", 1, None)
    await c2.put("a", 2, None)
    values, ctx = await c1.get("a")
    assert sorted(values) == [1, 2]  # type: ignore[type-var]
    await t.kill("n2")
    await retried(lambda: c2.put("a", 3, ctx))
    await t.start("n2")
    c3 = await t.client("n2")
    await retried(lambda: c3.get("a"))


def test_a_real_dvv_run_is_a_behaviour_of_the_spec_and_keeps_causal_writes(
    tmp_path: Path,
) -> None:
    run_dir = traced(tmp_path, dvv_workload, mode="dvv")
    verdict = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert "CausalWritesSurvive" in verdict.promised
    # The versions carry their dots: the spec's DVV rule made the same versions.
    dotted = [
        v
        for p in run_dir.glob("n*/trace.jsonl")
        for line in p.read_text().splitlines()[1:]
        for vs in json.loads(line).get("state", {}).get("store", {}).values()
        for v in vs
        if v.get("dot")
    ]
    assert dotted
    assert all(v["wr"] == "n1" for v in dotted)


def test_control_a_dvv_version_with_another_dot_is_rejected(tmp_path: Path) -> None:
    run_dir = traced(tmp_path, dvv_workload, mode="dvv")
    # The coordinator's log says its second blind put took the dot its first one had: the
    # spec's next_counter takes one past every dot the node holds for the key.
    path = run_dir / "n1" / "trace.jsonl"
    lines = path.read_text().splitlines()
    puts = [i for i, x in enumerate(lines) if '"ClientPut"' in x]
    k = puts[1]
    step = json.loads(lines[k])
    for v in step["state"]["store"]["a"]:
        if v["dot"] == 2:
            v["dot"] = 1
    for op in step["state"]["putOps"]:
        op["ver"]["dot"] = 1
    lines[k] = json.dumps(step)
    path.write_text("\n".join(lines) + "\n")
    verdict = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted
    assert verdict.failed_at == f"{path}:{k + 1}", verdict.describe()


def test_the_cli_validates_a_run(run_dir: Path) -> None:
    from click.testing import CliRunner

    from dynamo_ref.cli import main

    result = CliRunner().invoke(main, ["spec", "validate-run", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "accepted: all" in result.output
    bad = CliRunner().invoke(main, ["spec", "validate-run", str(run_dir / "nowhere")])
    assert bad.exit_code == 2


# ---- bugs planted in the node processes -----------------------------------------------------

PLANTED = Path(__file__).with_name("planted_node.py")


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout:g}s: {what}")
        await asyncio.sleep(0.1)


async def handoff_workload(t: DynamoTarget) -> None:
    """Four nodes, N=3: a replica of the key is killed, a put leaves a hint on the fallback,
    the replica comes back and the fallback hands the hint to it."""
    key = next(
        k for k in (f"h{i}" for i in range(200)) if {"n1", "n3"} <= set(t.preference_list(k)[:3])
    )
    (fallback,) = set(t.nodes()) - set(t.preference_list(key)[:3])
    c1 = await t.client("n1")
    await c1.put(key, 1, None)
    await t.kill("n3")

    async def hinted() -> bool:
        await retried(lambda: c1.put(key, 2, None))
        hints = (await t.status(fallback))["hints"]
        assert isinstance(hints, dict)
        # (a fallback with a bug may keep it as its own instead)
        return bool(hints.get("n3")) or bool(await t.replica_get(fallback, key))

    await until(hinted, f"{fallback} holds a hint for n3")
    await t.start("n3")

    async def handed_off() -> bool:
        hints = (await t.status(fallback))["hints"]
        assert isinstance(hints, dict)
        return not hints.get("n3") and len(await t.replica_get("n3", key)) > 0

    await until(handed_off, "the hint is handed to n3")
    await asyncio.sleep(0.5)  # the owner's ack reaches the fallback


def _planted_run(tmp_path: Path, plant: str | None) -> Path:
    # The node's default mode, dotted version vectors.
    command = None if plant is None else [sys.executable, str(PLANTED), plant]
    return traced(tmp_path, handoff_workload, nodes=4, node_command=command, mode="dvv")


def test_control_a_correct_handoff_run_is_accepted(tmp_path: Path) -> None:
    verdict = validate_run([_planted_run(tmp_path, None)], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert verdict.actions["HandoffHint"] >= 1
    assert verdict.actions["SloppyFallback"] >= 1


@pytest.mark.parametrize(
    ("plant", "action", "variable"),
    [
        # the fallback's hints are gone after its HandoffHint step, before any ack
        ("hint_dropped_on_send", "HandoffHint", "hints"),
        # the coordinator's put is gone (answered) after its own ack, with W=2; in make
        # test-slow: the campaign on this bugged node below is rejected at the same ClientPut
        pytest.param("put_answered_short", "ClientPut", "putsDone", marks=pytest.mark.slow),
        # the fallback's store holds the hinted version after its ReplicaStore step
        ("fallback_keeps_hint_as_own", "ReplicaStore", "store"),
    ],
)
def test_a_bug_planted_in_the_node_is_rejected_where_it_shows(
    tmp_path: Path, plant: str, action: str, variable: str
) -> None:
    verdict = validate_run([_planted_run(tmp_path, plant)], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted, f"{plant} was accepted"
    assert verdict.failed_at is not None, verdict.describe()
    # The node's step at that trace line is the one that shows the bug (a ClientPut step may
    # end in a SloppyFallback, whose line then carries the step's state).
    assert action in _actions_at(verdict.failed_at), verdict.describe()
    # ... and the diagnosis names the node's variable the spec's step leaves otherwise.
    assert variable in verdict.differing, verdict.describe()


def _actions_at(where: str) -> list[str]:
    path, _, lineno = where.rpartition(":")
    step = json.loads(Path(path).read_text().splitlines()[int(lineno) - 1])
    return [a[0] for a in step["actions"]]


# ---- campaigns: --validate-trace ------------------------------------------------------------


def _campaign_config(tmp_path: Path, mode: str, **changes: Any) -> RunConfig:
    cfg = RunConfig(
        nodes=4,
        duration=2.0,
        nemesis=("kill", "partition", "pause"),
        mode=mode,
        clients=4,
        keys=3,
        rate=10.0,
        seed=3,
        out=tmp_path / "run",
        quiesce=5.0,
        validate_trace=True,
    )
    return dataclasses.replace(cfg, **changes)


def _campaign(tmp_path: Path, plant: str | None, mode: str = "vclock") -> RunResult:
    cfg = _campaign_config(tmp_path, mode)
    target = None
    if plant is not None:
        target = DynamoTarget(
            cfg.nodes,
            (cfg.out / "cluster").resolve(),
            mode=mode,
            seed=cfg.seed,
            trace=True,
            node_command=[sys.executable, str(PLANTED), plant],
        )
    return asyncio.run(run_once(cfg, target=target))


# vclock's and lww's campaigns in make test-slow: a vclock run with a kill is accepted above,
# and the campaign path is the dvv one's; LWW traces are checked on simulator runs in make test.
@pytest.mark.parametrize(
    "mode",
    [
        "dvv",
        pytest.param("vclock", marks=pytest.mark.slow),
        pytest.param("lww", marks=pytest.mark.slow),
    ],
)
def test_a_campaign_checks_its_run_against_the_spec(tmp_path: Path, mode: str) -> None:
    result = _campaign(tmp_path, None, mode)
    spec = result.checks["spec"]
    assert spec.verdict == "valid", spec.explanation
    assert "accepted: all" in spec.explanation
    assert "validate" in result.timings


def test_control_a_campaign_on_a_bugged_node_has_the_spec_checker_reject_it(
    tmp_path: Path,
) -> None:
    result = _campaign(tmp_path, "put_answered_short", "dvv")
    spec = result.checks["spec"]
    assert spec.verdict == "invalid", spec.explanation
    (finding,) = spec.findings
    assert "trace.jsonl:" in str(finding.details["trace_line"])
    assert "ClientPut" in _actions_at(str(finding.details["trace_line"])), spec.explanation
    assert result.verdict == "invalid"


def test_a_strict_campaign_keeps_strict_quorum_reads_with_its_cuts_as_lines(
    tmp_path: Path,
) -> None:
    cfg = _campaign_config(
        tmp_path, "dvv", duration=4.0, nemesis=("partition", "kill"), quorum="strict"
    )
    result = asyncio.run(run_once(cfg))
    spec = result.checks["spec"]
    assert spec.verdict == "valid", spec.explanation
    assert "StrictQuorumRead" in spec.explanation
    by_action = spec.details["by_action"]
    assert isinstance(by_action, dict)
    assert by_action["CutBegins"] > 0  # the nemesis cut links: each cut moved the epoch


def test_control_a_read_that_misses_an_acknowledged_write_breaks_strict_quorum_read(
    tmp_path: Path,
) -> None:
    async def stale_read(t: DynamoTarget) -> None:
        # W = R = 1: the put is acked by its coordinator alone, whose store messages the
        # links hold back, and a read through another replica answers from its own copy.
        t.network.delay(("n1", "n2"), 1.0)
        t.network.delay(("n1", "n3"), 1.0)
        c1, c2 = await t.client("n1"), await t.client("n2")
        await c1.put("a", 1, None)
        values, _ = await c2.get("a")
        assert values == []
        await asyncio.sleep(2.0)

    run_dir = traced(tmp_path, stale_read, mode="dvv", quorum="strict", r=1, w=1)
    # R + W <= N promises no such read: by default the run is accepted...
    kept = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert kept.accepted, kept.describe()
    assert "StrictQuorumRead" not in kept.promised
    # ...and asked for it, the promise breaks at the step that answered the stale read.
    broken = validate_run([run_dir], spec_dir=SPEC, timeout=300, also=["StrictQuorumRead"])
    assert not broken.accepted
    assert broken.broken == "StrictQuorumRead", broken.describe()
    assert broken.failed_action is not None
    assert broken.failed_action.startswith("ClientGet of n2"), broken.describe()


def test_the_campaign_refuses_to_validate_what_the_spec_lacks() -> None:
    assert not any("validate" in p for p in RunConfig(validate_trace=True).problems())
    etcd = RunConfig(validate_trace=True, target="etcd", workload="register", net="netns")
    assert any("needs the dynamo target" in p for p in etcd.problems())
    assert not any("validate" in p for p in RunConfig(validate_trace=True, mode="lww").problems())


# ---- promises after every step ----------------------------------------------------------------


async def blind_puts(t: DynamoTarget) -> None:
    """Two clients write one key through one coordinator, neither having read the other."""
    c1, c2 = await t.client("n1"), await t.client("n1")
    await c1.put("a", 1, None)
    await c2.put("a", 2, None)
    await c1.get("a")


def test_a_real_vclock_run_breaks_causal_writes_survive_where_the_write_vanishes(
    tmp_path: Path,
) -> None:
    run_dir = traced(tmp_path, blind_puts)
    # By default (vclock keeps AckedWritesSurvive, not CausalWritesSurvive) it is accepted...
    kept = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert kept.accepted, kept.describe()
    assert kept.promised == ("SiblingsAntichain", "AckedWritesSurvive")
    # ...and asked for the promise clients rely on, it breaks where the second put replaces
    # the first's last copy: at a replica's ReplicaStore (the coordinator's own went at its
    # ClientPut).
    broken = validate_run([run_dir], spec_dir=SPEC, timeout=300, also=["CausalWritesSurvive"])
    assert not broken.accepted
    assert broken.broken == "CausalWritesSurvive", broken.describe()
    assert broken.failed_action is not None
    assert broken.failed_action.startswith("ReplicaStore of n"), broken.describe()
    assert broken.failed_at is not None


def test_control_the_same_puts_with_a_context_keep_every_promise(tmp_path: Path) -> None:
    async def read_then_write(t: DynamoTarget) -> None:
        c1, c2 = await t.client("n1"), await t.client("n1")
        await c1.put("a", 1, None)
        _, ctx = await c2.get("a")
        await c2.put("a", 2, ctx)

    run_dir = traced(tmp_path, read_then_write)
    verdict = validate_run([run_dir], spec_dir=SPEC, timeout=300, also=["CausalWritesSurvive"])
    assert verdict.accepted, verdict.describe()
