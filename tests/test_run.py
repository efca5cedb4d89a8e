"""Whole runs against real dynamo-ref processes: the acceptance properties of the fault harness.

Set-add runs use DVV mode: in plain vclock mode the coordinator's max+1 counter rule gives a
write a clock that dominates concurrent writes it coordinated from a stale context, so they are
dropped (the loss DVV, Riak 2.0's fix, removes); that is a finding, not what these tests check.
Short runs (3 nodes, seconds) run in `make test`; the repeated campaigns are `slow`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from harness.cli import main
from harness.history import pair, read_jsonl
from harness.recorder import LiveStatus
from harness.run import RunConfig, RunResult, make_target, run_once

pytestmark = pytest.mark.net


def short(tmp_path: Path, **changes: object) -> RunConfig:
    cfg = RunConfig(
        nodes=3,
        duration=3.0,
        clients=6,
        keys=12,
        seed=1,
        out=tmp_path / "run",
        fault_time=(0.8, 1.5),
        heal_time=(0.3, 0.6),
        settle=1.0,
        quiesce=10.0,
    )
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def go(cfg: RunConfig) -> RunResult:
    phases: list[str] = []
    statuses: list[LiveStatus] = []

    def progress(phase: str, _fraction: float, status: LiveStatus | None = None, /) -> None:
        phases.append(phase)
        if status is not None:
            statuses.append(status)

    result = asyncio.run(run_once(cfg, progress))
    assert phases[0] == "setup"
    assert phases[-1] == "done"
    # While the load ran, about once a second: what it had done, and the faults in force.
    assert len(statuses) >= int(cfg.duration) - 1
    assert all(s.completed > 0 and s.rate >= 0 for s in statuses)
    fault_families = {f.split()[0] for s in statuses for f in s.faults}
    assert fault_families <= {"partition", "kill", "pause", "clock-skew"}
    # The history on disk is the one checked, and nothing in it is left open.
    on_disk = read_jsonl(cfg.out / "history.jsonl")
    assert on_disk == result.history
    assert all(op.completion is not None for op in pair(on_disk))
    return result


def check_file(result: RunResult, model: str) -> Result:
    """`dynamo-ref check` on the history the run wrote."""
    return CliRunner().invoke(main, ["check", str(result.out / "history.jsonl"), "--model", model])


def acked(result: RunResult, f: str) -> int:
    return sum(1 for op in result.history if op.f == f and op.type == "ok")


def explain(result: RunResult) -> str:
    return json.dumps({n: r.explanation[:800] for n, r in result.checks.items()}, indent=1)


def test_dvv_sloppy_under_partitions_and_kills_loses_nothing_and_converges(
    tmp_path: Path,
) -> None:
    # Two seconds of anti-entropy after the heal, so a loaded machine still converges.
    cfg = short(tmp_path, mode="dvv", quorum="sloppy", nemesis=("partition", "kill"), seed=3)
    cfg.settle = 2.0
    result = go(cfg)
    assert result.faults, "the nemesis did nothing"
    assert acked(result, "add") > 50
    assert result.checks["lost_writes"].verdict == "valid", explain(result)
    assert result.checks["convergence"].verdict == "valid", explain(result)
    assert result.checks["dynamo"].verdict == "valid", explain(result)
    assert set(result.timings) >= {"run", "quiesce", "check"}
    checked = check_file(result, "dynamo")
    assert checked.exit_code == 0, checked.output
    assert "lost-writes" in checked.output
    assert "convergence" in checked.output


def test_lww_under_partitions_loses_acknowledged_writes(tmp_path: Path) -> None:
    """Negative control: last-writer-wins drops concurrent adds; a node whose clock runs
    behind loses every write it coordinates over a newer one."""
    result = go(
        short(
            tmp_path,
            mode="lww",
            quorum="sloppy",
            nemesis=("partition", "skew"),
            skew=-30.0,
            keys=4,
        )
    )
    lost = result.checks["lost_writes"]
    assert lost.verdict == "invalid", explain(result)
    assert any(f.kind == "lost" for f in lost.findings)
    # `dynamo-ref check` reads the harness's history and finds the same.
    assert check_file(result, "dynamo").exit_code == 1


def test_register_under_sloppy_partitions_is_not_linearizable(tmp_path: Path) -> None:
    result = go(
        short(
            tmp_path,
            workload="register",
            mode="vclock",
            quorum="sloppy",
            nemesis=("partition",),
            keys=3,
            duration=2.5,
        )
    )
    assert result.checks["linearizable"].verdict == "invalid", explain(result)
    assert result.checks["linearizable"].findings


def test_fault_free_strict_quorum_one_client_per_key_is_linearizable(tmp_path: Path) -> None:
    result = go(
        short(
            tmp_path,
            workload="register",
            mode="dvv",
            quorum="strict",
            nemesis=(),
            clients=3,
            keys=3,
            key_per_client=True,
            duration=2.0,
        )
    )
    assert acked(result, "write") > 20
    assert acked(result, "read") > 20
    assert result.checks["linearizable"].verdict == "valid", explain(result)
    dynamo = result.checks["dynamo"]
    assert dynamo.verdict == "valid", explain(result)
    assert any(c.name == "strict-quorum" and c.verdict == "valid" for c in dynamo.cases)


# ---- acceptance campaigns (make test-slow) -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_campaign_dvv_sloppy_partitions_kills_pauses(tmp_path: Path, seed: int) -> None:
    cfg = RunConfig(
        nodes=5,
        duration=20.0,
        nemesis=("partition", "kill", "pause"),
        workload="set-add",
        mode="dvv",
        quorum="sloppy",
        clients=10,
        keys=40,
        seed=seed,
        out=tmp_path / "run",
    )
    result = go(cfg)
    assert {f["fault"] for f in result.faults} >= {"partition"}
    assert result.checks["lost_writes"].verdict == "valid", explain(result)
    assert result.checks["convergence"].verdict == "valid", explain(result)


@pytest.mark.slow
def test_campaign_lww_partitions_loses_writes(tmp_path: Path) -> None:
    cfg = RunConfig(
        nodes=5,
        duration=15.0,
        nemesis=("partition",),
        workload="set-add",
        mode="lww",
        quorum="sloppy",
        seed=5,
        out=tmp_path / "run",
    )
    assert go(cfg).checks["lost_writes"].verdict == "invalid"


EXAMPLES = Path(__file__).parent.parent / "harness" / "examples"


@pytest.mark.parametrize(
    ("program", "verdict"),
    [("lin_kv_leader.py", "valid"), ("lin_kv_stale_reads.py", "invalid")],
)
def test_external_node_programs_are_passed_or_caught(
    tmp_path: Path, program: str, verdict: str
) -> None:
    """The same run drives a program speaking the Maelstrom protocol: the single-leader node
    is linearizable under partitions, the one serving stale reads is caught."""
    cfg = short(
        tmp_path,
        target="external",
        program=(sys.executable, str(EXAMPLES / program)),
        workload="register",
        nemesis=("partition",),
        # Isolating a node cuts a follower off the leader's replication either way (a one-way
        # cut of a follower's own sends would not), so every run has stale reads to serve.
        patterns=("isolate",),
        clients=4,
        keys=4,
    )
    result = go(cfg)
    assert result.faults
    assert acked(result, "read") > 20
    # Register targets get compare-and-sets too: some swap, some find another value.
    assert acked(result, "cas") > 0
    assert any(op.f == "cas" and op.type == "fail" for op in result.history)
    assert result.checks["linearizable"].verdict == verdict, explain(result)


def test_targets_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--net netns"):
        make_target(short(tmp_path, target="etcd", workload="register", net="proxy"))
    with pytest.raises(ValueError, match="--workload register"):
        make_target(short(tmp_path, target="etcd", workload="set-add"))
    with pytest.raises(ValueError, match="--program"):
        make_target(short(tmp_path, target="external", workload="register"))
    with pytest.raises(ValueError, match="unknown target"):
        make_target(short(tmp_path, target="voldemort"))


def test_a_second_run_in_the_same_directory_starts_from_empty_nodes(tmp_path: Path) -> None:
    """The nodes' data of an earlier run must not leak into the next: its elements would be
    values the second run never wrote."""
    for _ in range(2):
        result = go(short(tmp_path, nemesis=(), duration=1.5, clients=3, keys=4))
        assert acked(result, "add") > 10
        assert result.verdict == "valid", explain(result)


def test_a_relative_out_keeps_the_nodes_data_in_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node processes run in a directory of their own: a relative --out must still put their
    data under the run, not under that directory."""
    monkeypatch.chdir(tmp_path)
    cfg = short(tmp_path, nemesis=(), duration=1.0, clients=2, keys=2, out=Path("rel") / "run")
    result = go(cfg)
    assert result.verdict == "valid", explain(result)
    stores = sorted((tmp_path / "rel" / "run" / "cluster").glob("n*/data/store.sqlite3"))
    assert len(stores) == 3
    assert not (Path(__file__).resolve().parents[1] / "rel").exists()
