"""Campaigns with a fake runner: the matrix expands to the product, each run gets its own
directory and page, the summary and index agree with the runs, a crashed run is unknown (not
a pass), and the exit code is 0 valid, 1 invalid, 2 unknown."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest
from campaign_support import fake_config, fake_run_once
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

from harness.campaign import (
    EXIT,
    CampaignObserver,
    RunSummary,
    config_json,
    exit_code,
    expand_matrix,
    list_campaigns,
    new_campaign_dir,
    run_campaign,
    run_name,
    write_campaigns_index,
)
from harness.campaign_cli import _Display, make_campaign_command, parse_axes
from harness.history import read_jsonl
from harness.recorder import Recorder
from harness.run import RunConfig


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
    campaign = (tmp_path / "out" / "latest").resolve()
    summary = json.loads((campaign / "summary.json").read_text(encoding="utf-8"))
    assert [(r["config"]["mode"], r["config"]["seed"], r["verdict"]) for r in summary["runs"]] == [
        ("vclock", 1, "valid"),
        ("vclock", 2, "valid"),
        ("lww", 1, "invalid"),
        ("lww", 2, "invalid"),
    ]
    assert "report: " + str(campaign / "index.html") in res.output


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
    campaign = (out / "latest").resolve()
    summary = json.loads((campaign / "summary.json").read_text(encoding="utf-8"))
    assert res.exit_code == summary["exit_code"] == EXIT[summary["verdict"]]
    (run,) = summary["runs"]
    assert run["error"] is None
    assert set(run["checks"]) >= {"lost_writes", "convergence"}
    page = campaign / run["report"]
    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2
    history = read_jsonl(campaign / run["history"])
    assert any(op.process == "nemesis" for op in history)
    assert "No faults were injected." not in html
    for href in re.findall(r"href='([^']+)'", html):
        assert (page.parent / href.split("#")[0]).is_file(), href
    assert f"report: {page}" in res.output


# ---------------------------------------------------------------------------------------------
# Every option is checked before anything starts


def _refusing_cli(tmp_path: Path, *args: str) -> Any:
    async def never(cfg: Any, progress: Any = None) -> Any:
        raise AssertionError("a run started despite bad options")

    command = make_campaign_command(lambda: (fake_config, never))
    return CliRunner().invoke(command, ["--out", str(tmp_path / "out"), *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "-5"], "--time must be a positive number of seconds, got -5"),
        (["--time-limit", "0"], "--time must be a positive number of seconds"),
        (["--nemesis", "explode"], "--nemesis: unknown fault 'explode'"),
        (["--nemesis", "partition,explode"], "unknown fault 'explode'"),
        (["--target", "external"], "needs the node program's command"),
        (
            ["--target", "etcd", "--nodes", "3", "--workload", "set-add"],
            "the etcd target stores registers: use --workload register",
        ),
        (["--target", "etcd", "--nodes", "4", "--net", "netns"], "3 or 5 members"),
        (["--target", "etcd", "--nemesis", "skew", "--nodes", "3"], "cannot skew clocks"),
        (["--clients", "0"], "--clients must be at least 1"),
        (["--keys", "0"], "--keys must be at least 1"),
        (["--rate", "-1"], "--rate must be a positive number"),
        (["--program", "prog", "--target", "dynamo"], "--program (--bin) is for --target external"),
        (["--matrix", "--time", "5,-1"], "--time must be a positive number of seconds, got -1"),
        (["--bin", "node", "--mode", "lww"], "--mode does not apply to the external target"),
        (["--bin", "node", "--quorum", "strict"], "--quorum does not apply to the external"),
        (["--bin", "node", "--net", "netns"], "--net does not apply to the external target"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    res = _refusing_cli(tmp_path, *args)
    assert res.exit_code == 2, res.output
    assert "the campaign cannot run" in res.output
    assert message in res.output
    assert not (tmp_path / "out").exists()


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    res = _refusing_cli(tmp_path, "--time", "-5", "--nemesis", "explode", "--clients", "0")
    assert res.exit_code == 2
    for message in ("--time must", "unknown fault 'explode'", "--clients must"):
        assert message in res.output


def test_every_option_has_help() -> None:
    command = make_campaign_command()
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert len(options) >= 16
    assert all(p.help for p in options), [p.name for p in options if not p.help]


# ---------------------------------------------------------------------------------------------
# Jepsen's and Maelstrom's names


def _capturing_cli(tmp_path: Path, *args: str) -> tuple[Any, list[RunConfig]]:
    seen: list[RunConfig] = []

    async def capture(cfg: RunConfig, progress: Any = None) -> Any:
        seen.append(cfg)
        return await fake_run_once(dataclasses.replace(cfg, mode="vclock"), progress)

    command = make_campaign_command(lambda: (fake_config, capture))
    res = CliRunner().invoke(command, ["--out", str(tmp_path / "out"), *args])
    return res, seen


def test_maelstrom_and_jepsen_option_names(tmp_path: Path) -> None:
    res, seen = _capturing_cli(
        tmp_path,
        *("-w", "lin-kv", "--bin", "python node.py --fast", "--node-count", "3"),
        *("--time-limit", "2.5", "--concurrency", "2n", "--rate", "60", "--test-count", "2"),
    )
    assert res.exit_code == 0, res.output
    assert [c.seed for c in seen] == [0, 1]
    for cfg in seen:
        assert cfg.target == "external"
        assert cfg.workload == "register"
        assert cfg.program == ("python", "node.py", "--fast")
        assert (cfg.nodes, cfg.duration, cfg.clients) == (3, 2.5, 6)
        assert cfg.rate == pytest.approx(10.0)  # 60 a second over 6 clients


def test_external_and_etcd_targets_default_to_registers(tmp_path: Path) -> None:
    _, seen = _capturing_cli(tmp_path, "--target", "external", "--program", "node")
    assert [c.workload for c in seen] == ["register"]
    _, seen = _capturing_cli(tmp_path, "--nodes", "3")
    assert [c.workload for c in seen] == ["set-add"]


def test_test_count_needs_one_seed(tmp_path: Path) -> None:
    res = _refusing_cli(tmp_path, "--matrix", "--seed", "1,2", "--test-count", "3")
    assert res.exit_code == 2
    assert "give one" in res.output


# ---------------------------------------------------------------------------------------------
# A reused --out keeps every campaign


def test_a_reused_out_keeps_earlier_campaigns(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        res = _cli(tmp_path, "--seed", "3")
        assert res.exit_code == 0, res.output
    folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(folders) == 2
    for folder in folders:
        (run,) = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["runs"]
        assert (folder / run["report"]).is_file()
        assert read_jsonl(folder / run["history"])
    assert (out / "latest").is_symlink()
    assert (out / "latest").resolve() == folders[-1]
    index = (out / "index.html").read_text(encoding="utf-8")
    links = re.findall(r"href='([^']+)/index\.html'", index)
    assert links == [folders[1].name, folders[0].name]  # newest first
    assert "all campaigns: " + str(out / "index.html") in res.output


def test_campaign_folders_never_collide(tmp_path: Path) -> None:
    first = new_campaign_dir(tmp_path, now=1_700_000_000.0)
    second = new_campaign_dir(tmp_path, now=1_700_000_000.0)
    assert first.name == "20231114T221320Z"
    assert second.name == "20231114T221320Z-2"
    assert (tmp_path / "latest").resolve() == second


def test_a_campaign_written_straight_into_out_stays_listed(tmp_path: Path) -> None:
    # An earlier version wrote a campaign's files straight into --out.
    asyncio.run(run_campaign([fake_config(seed=1)], tmp_path, fake_run_once))
    old_index = (tmp_path / "index.html").read_text(encoding="utf-8")
    asyncio.run(run_campaign([fake_config(seed=2)], new_campaign_dir(tmp_path), fake_run_once))
    write_campaigns_index(tmp_path)
    entries = list_campaigns(tmp_path)
    assert len(entries) == 2
    assert (tmp_path / "runs.html").read_text(encoding="utf-8") == old_index
    assert {e.path for e in entries} == {"runs.html", f"{entries[0].path.split('/')[0]}/index.html"}
    write_campaigns_index(tmp_path)  # again: the campaigns index is not mistaken for runs
    assert (tmp_path / "runs.html").read_text(encoding="utf-8") == old_index


# ---------------------------------------------------------------------------------------------
# External runs carry only the settings that apply to them


def test_external_runs_are_named_and_shown_without_dynamo_settings() -> None:
    external = fake_config(target="external", workload="register", program=("node",))
    assert run_name(external) == "external_partition_register_n5_s0"
    settings = config_json(external)
    for absent in ("mode", "quorum", "n", "r", "w", "net"):
        assert absent not in settings
    assert settings["program"] == ["node"]
    dynamo = config_json(fake_config())
    assert {"mode", "quorum", "n", "r", "w", "net"} <= set(dynamo)
    assert "program" not in dynamo
    assert "skew" not in dynamo  # no skew drawn
    assert "skew" in config_json(fake_config(nemesis=("skew",)))


# ---------------------------------------------------------------------------------------------
# The console: the failing checker's explanation, and live progress


def test_the_failing_checkers_explanation_is_printed(tmp_path: Path) -> None:
    res = _cli(tmp_path, "--mode", "lww")
    assert res.exit_code == 1
    assert "lost_writes is invalid:" in res.output
    assert "was acknowledged but is not in the final read" in res.output
    assert "smallest failing key" in res.output


def test_progress_shows_elapsed_rate_and_the_fault_in_force() -> None:
    rec = Recorder()
    h = rec.invoke(0, "read", "k")
    rec.nemesis_start("partition", {"pattern": "halves", "links": []})
    rec.complete(h, "ok", 1)
    h = rec.invoke(1, "write", "k", 2)
    rec.nemesis_start("kill", {"nodes": ["n3"]})
    rec.complete(h, "info")
    status = rec.live(12.5, rate=40.0)
    assert (status.ok, status.unknown, status.completed) == (1, 1, 2)
    assert status.faults == ("partition (halves)", "kill n3")
    rec.nemesis_stop("partition")
    assert rec.live(13.0).faults == ("kill n3",)

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    display = _Display(Progress(console=console), total=1)
    display.started(0, 1, "run-a")
    display.step("running", 0.4, status)
    line = buffer.getvalue()
    assert "[1/1] run-a: running" in line
    assert "12.5 s" in line
    assert "40 ops/s" in line
    assert "fault: partition (halves) + kill n3" in line


def test_on_a_terminal_the_status_is_the_bars_second_line() -> None:
    rec = Recorder()
    rec.nemesis_start("pause", {"nodes": ["n1"]})
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    progress = Progress(console=console)
    display = _Display(progress, total=2)
    display.started(1, 2, "run-b")
    display.step("running", 0.3, rec.live(3.0, rate=12.0))
    (line, status) = progress.tasks[1].description.split("\n")
    assert line == "[2/2] run-b: running"
    assert "12 ops/s" in status
    assert "fault: pause n1" in status


def test_cli_junit_has_a_case_per_run_and_per_checker(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    junit = tmp_path / "ci" / "campaign.xml"
    res = _cli(
        tmp_path, "--matrix", "--mode", "vclock,lww", "--seed", "1,13", "--junit", str(junit)
    )
    assert res.exit_code == 1, res.output
    suite = ET.parse(junit).getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    runs = {name: c for (cls, name), c in cases.items() if cls == "campaign"}
    assert len(runs) == 4
    # Each completed run has one case per checker, under the run's name.
    by_run = {cls for cls, _ in cases if cls != "campaign"}
    assert len(by_run) == 2  # the two runs with seed 13 crashed: no checker ran
    for cls in by_run:
        assert {name for c, name in cases if c == cls} == {"lost_writes", "convergence"}
    lww = next(c for c in by_run if "lww" in str(c))
    failure = cases[(lww, "lost_writes")].find("failure")
    assert failure is not None
    assert "report: " in (failure.text or "")
    assert (
        cases[(next(c for c in by_run if "vclock" in str(c)), "lost_writes")].find("failure")
        is None
    )
    crashed = [c for name, c in runs.items() if str(name).endswith("s13")]
    assert len(crashed) == 2
    for c in crashed:
        error = c.find("error")
        assert error is not None
        assert "cluster failed to start" in (error.text or "")
    assert suite.get("tests") == str(len(cases))
    assert suite.get("failures") == "2"  # the lww run, and its lost_writes checker
    assert suite.get("errors") == "2"


def test_short_runs_at_a_rate_validate_their_traces_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")  # Java is there
    short = ("--nodes", "3", "--time", "10", "--rate", "100")  # 1,000 operations
    _, seen = _capturing_cli(tmp_path, *short)
    assert [c.validate_trace for c in seen] == [True]
    # More operations than AUTO_VALIDATE_OPS, a closed loop, another target, or asked not to.
    _, seen = _capturing_cli(tmp_path, "--nodes", "3", "--time", "30", "--rate", "100")
    assert [c.validate_trace for c in seen] == [False]
    _, seen = _capturing_cli(tmp_path, "--nodes", "3", "--time", "10")
    assert [c.validate_trace for c in seen] == [False]
    _, seen = _capturing_cli(tmp_path, *short, "--target", "external", "--program", "x")
    assert [c.validate_trace for c in seen] == [False]
    _, seen = _capturing_cli(tmp_path, *short, "--no-validate-trace")
    assert [c.validate_trace for c in seen] == [False]
    _, seen = _capturing_cli(tmp_path, "--nodes", "3", "--time", "30", "--validate-trace")
    assert [c.validate_trace for c in seen] == [True]
    # Without Java there is no TLC to run: not by default.
    monkeypatch.setattr("shutil.which", lambda name: None)
    _, seen = _capturing_cli(tmp_path, *short)
    assert [c.validate_trace for c in seen] == [False]
