"""Campaigns with a fake runner: the matrix expands to the product, each run gets its own
directory and page, the summary and index agree with the runs, a crashed run is unknown (not
a pass), and the exit code is 0 valid, 1 invalid, 2 unknown."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from campaign_support import fake_config, fake_run_once
from click.testing import CliRunner

from harness.campaign import (
    EXIT,
    CampaignObserver,
    RunSummary,
    exit_code,
    expand_matrix,
    run_campaign,
    run_name,
)
from harness.campaign_cli import make_campaign_command, parse_axes
from harness.history import read_jsonl


def test_exit_codes() -> None:
    assert exit_code(["valid", "valid"]) == 0
    assert exit_code(["valid", "invalid"]) == 1
    assert exit_code(["valid", "unknown"]) == 2
    assert exit_code(["unknown", "invalid"]) == 1  # invalid wins
    assert exit_code([]) == 2  # no runs vouch for nothing


def test_matrix_is_the_product_last_axis_fastest() -> None:
    configs = expand_matrix(
        fake_config(), {"mode": ["vclock", "lww"], "nemesis": [("kill",), ()], "seed": [1, 2, 3]}
    )
    assert len(configs) == 12
    assert [(c.mode, c.nemesis, c.seed) for c in configs[:4]] == [
        ("vclock", ("kill",), 1),
        ("vclock", ("kill",), 2),
        ("vclock", ("kill",), 3),
        ("vclock", (), 1),
    ]
    assert len({(c.mode, c.nemesis, c.seed) for c in configs}) == 12
    assert all(c.workload == "set-add" for c in configs)  # untouched fields kept
    with pytest.raises(ValueError, match="no field"):
        expand_matrix(fake_config(), {"colour": ["red"]})
    with pytest.raises(ValueError, match="no values"):
        expand_matrix(fake_config(), {"seed": []})


def test_run_names_tell_runs_apart() -> None:
    assert run_name(fake_config(nemesis=("partition", "kill"), seed=7)) == (
        "partition+kill_set-add_vclock_sloppy_proxy_n5_s7"
    )
    assert run_name(fake_config(nemesis=())).startswith("none_")
    assert run_name(fake_config(target="etcd")).startswith("etcd_")


class _Recorder(CampaignObserver):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def run_started(self, index: int, total: int, name: str, config: Mapping[str, Any]) -> None:
        self.events.append(("start", index, total))

    def run_progress(self, phase: str, fraction: float) -> None:
        self.events.append(("progress", phase, fraction))

    def run_finished(self, index: int, summary: RunSummary) -> None:
        self.events.append(("end", index, summary.verdict))


def test_campaign_runs_each_config_in_its_own_directory(tmp_path: Path) -> None:
    configs = expand_matrix(fake_config(), {"mode": ["vclock", "lww"], "seed": [0, 13]})
    recorder = _Recorder()
    result = asyncio.run(run_campaign(configs, tmp_path, fake_run_once, observer=recorder))
    verdicts = [r.verdict for r in result.runs]
    # vclock: valid; lww loses a write: invalid; seed 13 crashes: unknown, whatever the mode.
    assert verdicts == ["valid", "unknown", "invalid", "unknown"]
    assert result.verdict == "invalid"
    assert result.exit_code == 1
    assert [e for e in recorder.events if e[0] != "progress"] == [
        ("start", 0, 4), ("end", 0, "valid"),
        ("start", 1, 4), ("end", 1, "unknown"),
        ("start", 2, 4), ("end", 2, "invalid"),
        ("start", 3, 4), ("end", 3, "unknown"),
    ]  # fmt: skip
    assert ("progress", "running", 0.5) in recorder.events
    assert ("progress", "checking", 0.97) in recorder.events
    dirs = [r.out for r in result.runs]
    assert len(set(dirs)) == 4
    for r in result.runs:
        assert r.out.parent == tmp_path
        assert r.config["out"] == str(r.out)  # the runner was told to write there
        assert r.report is not None
        assert r.report.is_file()
        assert read_jsonl(r.out / "history.jsonl")  # what the run recorded, even if it crashed
    crashed = result.runs[1]
    assert crashed.error is not None
    assert "cluster failed to start" in crashed.error
    assert "cluster failed to start" in crashed.report.read_text(encoding="utf-8")  # type: ignore[union-attr]
    lost = result.runs[2]
    assert lost.checks["lost_writes"].verdict == "invalid"
    assert "timelines/" in lost.report.read_text(encoding="utf-8")  # type: ignore[union-attr]

    summary = json.loads(result.summary.read_text(encoding="utf-8"))
    assert summary["verdict"] == "invalid"
    assert summary["exit_code"] == 1
    assert summary["counts"] == {"valid": 1, "invalid": 1, "unknown": 2}
    assert [r["verdict"] for r in summary["runs"]] == verdicts
    assert summary["runs"][2]["checks"]["lost_writes"]["verdict"] == "invalid"
    assert summary["runs"][2]["checks"]["lost_writes"]["findings"] == 1
    for run in summary["runs"]:
        assert (tmp_path / run["report"]).is_file()
        assert (tmp_path / run["history"]).is_file()

    index = result.index.read_text(encoding="utf-8")
    for r in result.runs:
        assert f"href='{r.name}/report.html'" in index
    assert "run crashed: RuntimeError: cluster failed to start" in index
    assert result.report() == result.index


def test_single_valid_run_points_at_its_page(tmp_path: Path) -> None:
    result = asyncio.run(run_campaign([fake_config(seed=3)], tmp_path, fake_run_once))
    assert result.exit_code == 0
    assert result.report() == result.runs[0].report
    assert result.runs[0].out == tmp_path / run_name(fake_config(seed=3))


def test_parse_axes() -> None:
    base = {"mode": "vclock,lww", "seed": "1..3", "nodes": "5", "keys": None}
    single, axes = parse_axes(base, ["partition,kill", "none"], matrix=True)
    assert single == {"nodes": 5}
    assert axes == {
        "nemesis": [("partition", "kill"), ()],
        "mode": ["vclock", "lww"],
        "seed": [1, 2, 3],
    }
    single, axes = parse_axes({"seed": "4"}, ["partition,kill,pause"], matrix=False)
    assert single == {"nemesis": ("partition", "kill", "pause"), "seed": 4}
    assert axes == {}


def _cli(tmp_path: Path, *args: str) -> Any:
    command = make_campaign_command(lambda: (fake_config, fake_run_once))
    return CliRunner().invoke(command, ["--out", str(tmp_path / "out"), *args])


def test_cli_single_run(tmp_path: Path) -> None:
    res = _cli(tmp_path, "--nemesis", "partition,kill,pause", "--mode", "dvv", "--seed", "2")
    assert res.exit_code == 0, res.output
    assert "campaign verdict: valid" in res.output
    report = Path(res.output.split("report: ", 1)[1].split("\n", 1)[0])
    assert report.is_file()
    assert report.parent.name == "partition+kill+pause_set-add_dvv_sloppy_proxy_n5_s2"


def test_cli_matrix_exit_code_follows_the_worst_verdict(tmp_path: Path) -> None:
    res = _cli(tmp_path, "--matrix", "--mode", "vclock,lww", "--seed", "1,2")
    assert res.exit_code == 1, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert [(r["config"]["mode"], r["config"]["seed"], r["verdict"]) for r in summary["runs"]] == [
        ("vclock", 1, "valid"),
        ("vclock", 2, "valid"),
        ("lww", 1, "invalid"),
        ("lww", 2, "invalid"),
    ]
    assert "report: " + str(tmp_path / "out" / "index.html") in res.output


def test_cli_unknown_fails(tmp_path: Path) -> None:
    res = _cli(tmp_path, "--seed", "13")
    assert res.exit_code == 2
    assert "unknown is not a pass" in res.output
    assert "cluster failed to start" in res.output


def test_cli_refuses_lists_without_matrix(tmp_path: Path) -> None:
    res = _cli(tmp_path, "--mode", "vclock,lww")
    assert res.exit_code == 2
    assert "pass --matrix" in res.output
    assert not (tmp_path / "out").exists()  # refused before anything ran
    res = _cli(tmp_path, "--nemesis", "kill", "--nemesis", "pause")
    assert "pass --matrix" in res.output
    res = _cli(tmp_path, "--mode", "eventual")
    assert res.exit_code == 2
    assert "not one of vclock, lww, dvv" in res.output
    res = _cli(tmp_path, "--matrix", "--seed", "5..1")
    assert "empty range" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.net
def test_real_campaign_end_to_end(tmp_path: Path) -> None:
    """`campaign` against a real 3-node cluster on loopback: a page with the faults the nemesis
    recorded, a summary whose verdict the exit code follows, links that resolve."""
    command = make_campaign_command()
    out = tmp_path / "out"
    args = ["--nodes", "3", "--time", "4", "--nemesis", "partition,kill", "--mode", "dvv"]
    res = CliRunner().invoke(command, [*args, "--clients", "4", "--out", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert res.exit_code == summary["exit_code"] == EXIT[summary["verdict"]]
    (run,) = summary["runs"]
    assert run["error"] is None
    assert set(run["checks"]) >= {"lost_writes", "convergence"}
    page = out / run["report"]
    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2
    history = read_jsonl(out / run["history"])
    assert any(op.process == "nemesis" for op in history)
    assert "No faults were injected." not in html
    for href in re.findall(r"href='([^']+)'", html):
        assert (page.parent / href).is_file(), href
    assert f"report: {page}" in res.output
