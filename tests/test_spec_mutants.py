"""`dynamo-ref spec mutants`: planting the bugs of spec/mutants/ and judging the kills."""

import difflib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynamo_ref.cli import main
from dynamo_ref.tla import cli as spec_cli
from dynamo_ref.tla.models import Model, default_spec_dir, load_models
from dynamo_ref.tla.mutants import (
    MutantError,
    Outcome,
    apply_file,
    load_mutants,
    parse_patch,
    plant,
    read_mutants,
    run_mutant,
    select_mutants,
    short_name,
)
from dynamo_ref.tla.tlc import TlcResult, Verdict, parse_output, run_tlc

SPEC = default_spec_dir()

ORIGINAL = "".join(f"line {n}\n" for n in range(1, 21))


def _patch(before: str, after: str, header: str = "# line 5 says five") -> str:
    diff = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        "a/Dynamo.tla",
        "b/Dynamo.tla",
        n=2,
    )
    return header + "\n" + "".join(diff)


def _result(verdict: Verdict, violated: str | None = None) -> TlcResult:
    return TlcResult(verdict, violated, 1, 1, 1, 0.5, "", "TLC stopped" if violated else "", "")


def test_every_mutant_applies_to_the_spec_and_says_what_it_breaks() -> None:
    mutants = load_mutants(SPEC)
    assert len(mutants) >= 15
    models = {m.name for m in load_models(SPEC) if m.suite == "ci"}
    for mutant in mutants:
        assert mutant.breaks, mutant.name
        assert set(mutant.first) <= models, mutant.name
        assert [f.path for f in mutant.files] == ["Dynamo.tla"]
    names = [short_name(m) for m in mutants]
    assert len(set(names)) == len(names)
    assert {"handoff_drops_hint_on_send", "put_answered_with_w_minus_1_acks"} <= set(names)


def test_a_planted_mutant_differs_from_the_spec_where_its_patch_says(tmp_path: Path) -> None:
    mutant = select_mutants(load_mutants(SPEC), ["put_answered_with_w_minus_1_acks"])[0]
    plant(mutant, SPEC, tmp_path)
    planted = (tmp_path / "Dynamo.tla").read_text()
    original = (SPEC / "Dynamo.tla").read_text()
    assert "Cardinality(op.acks) >= W - 1" in planted
    assert "Cardinality(op.acks) >= W - 1" not in original
    removed = set(original.splitlines()) - set(planted.splitlines())
    assert removed == {"    /\\ Cardinality(op.acks) >= W"}
    assert (tmp_path / "MCDynamo.tla").read_text() == (SPEC / "MCDynamo.tla").read_text()


def test_hunks_apply_exactly_with_the_offsets_of_earlier_hunks() -> None:
    after = ORIGINAL.replace("line 3\n", "line 3\nextra a\nextra b\n").replace(
        "line 15\n", "line fifteen\n"
    )
    mutant = parse_patch("two_hunks", _patch(ORIGINAL, after))
    assert len(mutant.files[0].hunks) == 2
    assert apply_file("two_hunks", mutant.files[0], ORIGINAL) == after


def test_a_patch_that_no_longer_applies_names_its_mutant_hunk_and_line() -> None:
    after = ORIGINAL.replace("line 5\n", "line five\n")
    mutant = parse_patch("07_planted", _patch(ORIGINAL, after))
    moved = ORIGINAL.replace("line 4\n", "line 4 edited since\n")
    with pytest.raises(MutantError) as error:
        apply_file(mutant.name, mutant.files[0], moved)
    message = str(error.value)
    assert message.startswith("mutant 07_planted no longer applies: Dynamo.tla hunk 1 at line 4")
    assert "expected 'line 4', found 'line 4 edited since'" in message


def test_malformed_patches_are_refused_by_name() -> None:
    good = _patch(ORIGINAL, ORIGINAL.replace("line 5\n", "line five\n"))
    with pytest.raises(MutantError, match=r"^mutant m1: the first line must be"):
        parse_patch("m1", good.split("\n", 1)[1])
    with pytest.raises(MutantError, match=r"^mutant m2: no diff"):
        parse_patch("m2", "# breaks nothing\n")
    with pytest.raises(MutantError, match=r"^mutant m3: hunk at line \d+ is cut short"):
        parse_patch("m3", good.rsplit("\n", 3)[0])
    with pytest.raises(MutantError, match=r"^mutant m4: line 3: bad file name '\.\./x\.tla'"):
        parse_patch("m4", good.replace("+++ b/Dynamo.tla", "+++ ../x.tla"))


def _spec_copy(tmp_path: Path) -> Path:
    spec = tmp_path / "spec"
    shutil.copytree(SPEC, spec, ignore=shutil.ignore_patterns("counterexamples"))
    return spec


def test_the_command_fails_loudly_on_a_patch_that_no_longer_applies(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path)
    good = (spec / "mutants" / "02_put_answered_with_w_minus_1_acks.patch").read_text()
    broken = good.replace(" PutQuorum(c, op) ==", " PutQuorum(c, opz) ==")
    assert broken != good
    (spec / "mutants" / "99_stale.patch").write_text(broken)
    result = CliRunner().invoke(main, ["spec", "mutants", "--spec-dir", str(spec)])
    assert result.exit_code == 1
    assert "mutant 99_stale no longer applies: Dynamo.tla hunk 1" in result.output
    # Naming other mutants does not hide a stale one.
    args = ["spec", "mutants", "crash_loses_store", "--spec-dir", str(spec)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "mutant 99_stale no longer applies" in result.output
    (spec / "mutants" / "99_stale.patch").unlink()
    result = CliRunner().invoke(main, ["spec", "mutants", "nope", "--spec-dir", str(spec)])
    assert result.exit_code == 1
    assert "unknown mutant 'nope'" in result.output


def _fake_tlc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verdicts: dict[str, TlcResult]
) -> list[str]:
    """run_tlc answering per model from `verdicts` (a pass otherwise); returns the models run."""
    ran: list[str] = []

    def run(module: Path, cfg: Path, **_: object) -> TlcResult:
        assert module.parent != SPEC, "TLC must run on the planted copy"
        ran.append(cfg.stem)
        return verdicts.get(cfg.stem, _result(Verdict.PASS))

    monkeypatch.setattr(spec_cli, "find_java", lambda: "java")
    monkeypatch.setattr(spec_cli, "find_jar", lambda: tmp_path / "tla2tools.jar")
    monkeypatch.setattr(spec_cli, "run_tlc", run)
    return ran


def test_a_mutant_that_survives_every_model_fails_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = _fake_tlc(monkeypatch, tmp_path, {})
    args = [
        "spec",
        "mutants",
        "read_repair_skipped",
        "--model",
        "strict_crash",
        "--model",
        "sloppy",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "survived every model: 03_read_repair_skipped" in result.output
    assert ran == ["strict_crash", "sloppy"]


def test_models_stop_at_the_first_kill_unless_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    killed = {"strict_crash": _result(Verdict.INVARIANT, "StrictQuorumRead")}
    ran = _fake_tlc(monkeypatch, tmp_path, killed)
    args = ["spec", "mutants", "get_answered_with_r_minus_1_responses", "--jobs", "1"]
    args += ["--model", "strict_crash", "--model", "sloppy"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert ran == ["strict_crash"]
    assert "StrictQuorumRead" in result.output
    assert "all 1 mutants killed" in result.output
    ran.clear()
    result = CliRunner().invoke(main, [*args, "--full"])
    assert result.exit_code == 0, result.output
    assert ran == ["strict_crash", "sloppy"]
    assert "survived" in result.output


def test_a_mutant_tlc_cannot_run_is_an_error_not_a_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = TlcResult(Verdict.ERROR, None, None, None, None, 1.0, "", "Parse error", "")
    _fake_tlc(monkeypatch, tmp_path, {"strict_crash": broken})
    result = CliRunner().invoke(
        main, ["spec", "mutants", "crash_loses_store", "--model", "strict_crash"]
    )
    assert result.exit_code == 1
    assert "TLC could not run: 08_crash_loses_store" in result.output
    assert "Parse error" in result.output


def test_a_negative_model_that_no_longer_fails_kills() -> None:
    witness = Model("witness_read_repair", "ci", "NoReadRepair")
    outcome = Outcome(witness, _result(Verdict.PASS))
    assert outcome.killed
    assert outcome.cell() == "passes (no NoReadRepair)"
    assert not Outcome(witness, _result(Verdict.INVARIANT, "NoReadRepair")).killed
    liveness = Outcome(Model("liveness", "ci", None), _result(Verdict.PROPERTY), ("A", "B"))
    assert liveness.killed
    assert liveness.cell() == "A or B"


def test_a_real_mutant_is_killed_by_tlc() -> None:
    models = [m for m in load_models(SPEC) if m.name == "strict_crash"]
    mutant = select_mutants(load_mutants(SPEC), ["merge_keeps_dominated"])[0]
    report = run_mutant(mutant, models, SPEC, lambda mod, cfg: run_tlc(mod, cfg, workers=1))
    assert [o.cell() for o in report.outcomes] == ["SiblingsAntichain"]
    assert not report.survived


def test_rebase_moves_hunks_to_where_their_lines_now_stand(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path)
    path = spec / "mutants" / "02_put_answered_with_w_minus_1_acks.patch"
    before = path.read_text()
    # An edit above the hunk: ten lines more at the top of the spec.
    tla = spec / "Dynamo.tla"
    lines = tla.read_text().splitlines(keepends=True)
    tla.write_text(lines[0] + "\\* padding\n" * 10 + "".join(lines[1:]))
    result = CliRunner().invoke(main, ["spec", "mutants", "--spec-dir", str(spec)])
    assert result.exit_code == 1
    assert "no longer applies" in result.output
    args = ["spec", "mutants", "--rebase", "put_answered_with_w_minus_1_acks"]
    result = CliRunner().invoke(main, [*args, "--spec-dir", str(spec)])
    assert result.exit_code == 0, result.output
    assert "rebased 02_put_answered_with_w_minus_1_acks" in result.output
    after = path.read_text()
    old_start = int(before.split("@@ -")[1].split(",")[0])
    assert f"@@ -{old_start + 10}," in after
    assert after.replace(str(old_start + 10), str(old_start)) == before
    mutant = select_mutants(read_mutants(spec), ["put_answered_with_w_minus_1_acks"])[0]
    planted = plant(mutant, spec, _fresh(tmp_path / "planted"))
    assert "Cardinality(op.acks) >= W - 1" in (planted / "Dynamo.tla").read_text()


def test_rebase_refuses_a_hunk_whose_lines_are_gone(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path)
    tla = spec / "Dynamo.tla"
    tla.write_text(tla.read_text().replace("PutQuorum(c, op) ==", "PutQuorum(c, o) =="))
    args = ["spec", "mutants", "--rebase", "put_answered_with_w_minus_1_acks"]
    result = CliRunner().invoke(main, [*args, "--spec-dir", str(spec)])
    assert result.exit_code == 1
    assert "mutant 02_put_answered_with_w_minus_1_acks cannot be rebased" in result.output
    assert "its lines are not found" in result.output


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


def test_a_simulation_that_ran_its_time_passes_and_one_that_found_a_violation_fails() -> None:
    ran = "Running Random Simulation with seed 1\nProgress: 6375 states checked.\nFinished in 09s\n"
    result = parse_output(ran)
    assert result.verdict is Verdict.PASS
    assert result.generated == 6375
    found = (
        "Running Random Simulation with seed 1\n"
        "Error: Invariant CausalWritesSurvive is violated.\n"
        "State 1: <Initial predicate>\n/\\ clock = 0\n\n"
        "Progress: 10 states checked.\nFinished in 01s\n"
    )
    result = parse_output(found)
    assert result.verdict is Verdict.INVARIANT
    assert result.violated == "CausalWritesSurvive"
    # Cut off before TLC finished, or stopped by an error it did not name: not a pass.
    assert parse_output("Progress: 10 states checked.\n").verdict is Verdict.ERROR
    broken = "Error: TLC threw an unexpected exception.\n" + ran
    assert parse_output(broken).verdict is Verdict.ERROR


def test_the_simulation_models_are_read_from_the_manifest() -> None:
    models = {m.name: m for m in load_models(SPEC)}
    ci = models["simulate"]
    assert ci.suite == "ci"
    assert ci.simulate is not None
    assert ci.simulate.seconds <= 120
    assert ci.simulate.depth >= 100
    nightly = models["simulate_long"]
    assert nightly.suite == "nightly"
    assert nightly.simulate is not None
    assert nightly.simulate.seconds > ci.simulate.seconds
    assert nightly.cfg(SPEC) == ci.cfg(SPEC)
