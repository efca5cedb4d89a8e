"""The CrossHair runner (proofs/run.py) must be able to fail, and must say why."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "proofs" / "run.py"
WRONG = "proofs.fixtures.wrong_contract"
RIGHT = "proofs.fixtures.right_contract"
UNREACHED = "proofs.fixtures.unreached_contract"
CORE = ("ring", "vclock", "versions", "quorum", "merkle", "membership")


def _load_runner() -> ModuleType:
    # proofs/ is a script folder, not an installed package: load it by path.
    spec = importlib.util.spec_from_file_location("proofs_run", RUNNER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


run = _load_runner()


def _runner(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wrong_contract_is_refuted() -> None:
    proc = _runner("--target", WRONG, "--budget", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "counterexample found" in proc.stdout
    # The counterexample names the function, its arguments and the broken condition's line.
    source = (ROOT / "proofs" / "fixtures" / "wrong_contract.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "result < hi" in text)
    assert f"wrong_contract.py:{line}: error: false when calling clamp(" in proc.stdout
    assert "0/1 targets passed" in proc.stdout


def test_right_contract_passes() -> None:
    proc = _runner("--target", RIGHT, "--budget", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "counterexample" not in proc.stdout.split("\n\n")[1]
    assert "confirmed over all paths" in proc.stdout
    assert "3 functions, 4 conditions, 4 confirmed over all paths" in proc.stdout
    assert "not checked" not in proc.stdout
    assert "1/1 targets passed" in proc.stdout


def test_one_bad_target_fails_the_run() -> None:
    proc = _runner("--target", RIGHT, "--target", WRONG, "--budget", "5")
    assert proc.returncode == 1
    assert "1/2 targets passed" in proc.stdout


def test_unmet_preconditions_are_reported_and_fail_only_when_strict() -> None:
    proc = _runner("--target", UNREACHED, "--budget", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "preconditions never met" in proc.stdout
    assert "1 not checked: unreached_contract.py:" in proc.stdout
    assert "Unable to meet precondition" in proc.stdout
    strict = _runner("--target", UNREACHED, "--budget", "1", "--strict")
    assert strict.returncode == 1
    assert "0/1 targets passed" in strict.stdout


def test_contracts_switched_off_in_the_caller_are_switched_on_for_crosshair() -> None:
    # With DYNAMO_REF_CONTRACTS=0 the decorators vanish and CrossHair would see nothing to check.
    env = {**os.environ, "DYNAMO_REF_CONTRACTS": "0"}
    proc = _runner("--target", WRONG, "--budget", "5", env=env)
    assert proc.returncode == 1
    assert "counterexample found" in proc.stdout


def test_missing_module_is_an_error_not_a_skip() -> None:
    proc = _runner("--target", "dynamo_ref.core.no_such_module", "--budget", "1")
    assert proc.returncode == 1
    row = next(r for r in proc.stdout.splitlines() if r.startswith("dynamo_ref.core.no_such_"))
    assert row.split()[1] == "error"
    assert "no module, class or function named 'dynamo_ref.core.no_such_module'" in row


def test_wall_clock_cap_is_a_failure() -> None:
    proc = _runner("--target", RIGHT, "--timeout", "0.01")
    assert proc.returncode == 1
    assert "timed out" in proc.stdout


def test_unknown_only_is_a_usage_error() -> None:
    proc = _runner("--only", "no_such_target", "--list")
    assert proc.returncode == 2
    assert "no target matches" in proc.stderr


def test_targets_cover_every_contract_carrying_core_module() -> None:
    names = [t.name for t in run.TARGETS]
    assert len(names) == len(set(names))
    # The six the design names, and any other core module that has grown contracts.
    contracted = {
        path.stem
        for path in (ROOT / "dynamo_ref" / "core").glob("*.py")
        if re.search(r"@icontract\.(require|ensure|invariant)", path.read_text())
    }
    for module in sorted(contracted | set(CORE)):
        assert any(
            name == f"dynamo_ref.core.{module}" or name.startswith(f"dynamo_ref.core.{module}.")
            for name in names
        ), module
    for target in run.TARGETS:
        assert 0 < target.condition_s <= target.wall_s
        assert target.path_s is None or 0 < target.path_s <= target.condition_s
        assert target.checks


def test_list_prints_every_target_with_its_bound() -> None:
    proc = _runner("--list")
    assert proc.returncode == 0
    for target in run.TARGETS:
        assert target.name in proc.stdout
    assert "s/cond" in proc.stdout


def test_a_target_covers_contracted_functions_and_methods_not_dunders_or_getters() -> None:
    assert _runner("--checkables", RIGHT).stdout.split() == [
        f"{RIGHT}.clamp",
        f"{RIGHT}.Interval.clamp",
        f"{RIGHT}.Interval.width",  # no contract of its own, but the class invariant
    ]  # and not Interval.size, a bare property getter
    assert _runner("--checkables", f"{RIGHT}.Interval").stdout.split() == [
        f"{RIGHT}.Interval.clamp",
        f"{RIGHT}.Interval.width",
    ]
    assert _runner("--checkables", f"{WRONG}.clamp").stdout.split() == [f"{WRONG}.clamp"]


def test_list_verbose_prints_each_condition() -> None:
    proc = _runner("--list", "-v", "--target", RIGHT)
    assert proc.returncode == 0
    assert "- clamp: require lo <= hi" in proc.stdout
    assert "- clamp: ensure lo <= result <= hi" in proc.stdout
    assert "- Interval.clamp: ensure self.lo <= result <= self.hi" in proc.stdout
    assert "- Interval: invariant self.lo <= self.hi" in proc.stdout


def test_command_checks_icontract_within_the_bound() -> None:
    target = run.Target("m", condition_s=2.0, path_s=1.0, wall_s=60.0, checks="x")
    argv = run.command(target, ["m.f", "m.C.g"])
    assert argv[:4] == [sys.executable, "-m", "crosshair", "check"]
    assert "--analysis_kind=icontract" in argv
    assert "--per_condition_timeout=2" in argv
    assert "--per_path_timeout=1" in argv
    assert f"--extra_plugin={ROOT / 'proofs' / 'crosshair_plugin.py'}" in argv
    assert argv[-2:] == ["m.f", "m.C.g"]


def test_only_selects_by_last_name_or_prefix() -> None:
    assert [t.name for t in run.select(["vclock"])] == ["dynamo_ref.core.vclock"]
    assert {t.name for t in run.select(["dynamo_ref.core"])} == {t.name for t in run.TARGETS}


def test_budget_override_scales_the_cap() -> None:
    target = run.Target("m", condition_s=2.0, path_s=1.0, wall_s=60.0, checks="x")
    deeper = target.scaled(10.0)
    assert (deeper.condition_s, deeper.path_s, deeper.wall_s) == (10.0, 1.0, 300.0)
    shallower = target.scaled(0.5)
    assert (shallower.condition_s, shallower.path_s, shallower.wall_s) == (0.5, 0.5, 60.0)


CONFIRMED = "/m.py:3: info: Confirmed over all paths."
UNCONFIRMED = "/m.py:4: info: Not confirmed."
REFUTED = "/m.py:5: error: false when calling f(0) (which returns 0)"


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "verdict"),
    [
        (0, CONFIRMED, "", "CONFIRMED"),
        (0, f"{CONFIRMED}\n{UNCONFIRMED}", "", "NO_COUNTEREXAMPLE"),
        (1, f"{CONFIRMED}\n{REFUTED}", "", "COUNTEREXAMPLE"),
        # The body raised, or a callee's precondition was broken: also a counterexample.
        (
            1,
            "/m.py:5: error: IndexError: tuple index out of range when calling f(())",
            "",
            "COUNTEREXAMPLE",
        ),
        # A precondition quoted over several lines: the call comes on the last one.
        (
            1,
            f'{CONFIRMED}\n/m.py:5: error: PreconditionFailed: Precondition "1 <= r\n'
            '    and r <= n" was not satisfied before calling "C" when calling f(0)',
            "",
            "COUNTEREXAMPLE",
        ),
        (None, "", "", "TIMED_OUT"),
        (2, "", "Could not import your code:\nModuleNotFoundError: No module named 'm'", "ERROR"),
        # An unknown function name: a traceback and exit 1, but no counterexample line.
        (1, "", 'crosshair.fnutil.NotFound: Name "g" not found', "ERROR"),
        # A condition CrossHair cannot parse is reported as an error line without a call.
        (1, "/m.py:6: error: NameError: name 'y' is not defined", "", "ERROR"),
        # Contracts switched off (or none written): nothing to check.
        (0, "", "WARNING: Targets found, but contain no checkable functions.", "ERROR"),
        # No input ever met the preconditions: the postcondition was never evaluated.
        (0, f"{CONFIRMED}\n/m.py:7: info: Unable to meet precondition.", "", "UNREACHED"),
        (0, "", "", "ERROR"),
    ],
)
def test_classify(returncode: int | None, stdout: str, stderr: str, verdict: str) -> None:
    got, _, reason = run.classify(returncode, stdout, stderr)
    assert got is run.Verdict[verdict]
    assert bool(reason) == (got not in {run.Verdict.CONFIRMED, run.Verdict.NO_COUNTEREXAMPLE})
    assert got.passed(strict=False) == (verdict in {"CONFIRMED", "NO_COUNTEREXAMPLE", "UNREACHED"})
    assert got.passed(strict=True) == (verdict in {"CONFIRMED", "NO_COUNTEREXAMPLE"})


# ---- the contract mutants (proofs/mutants.py; `make proofs` runs them all) -------------------


def _load_mutants() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proofs_mutants", ROOT / "proofs" / "mutants.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mutants = _load_mutants()


def test_every_mutant_patch_applies_and_names_a_listed_target(tmp_path: Path) -> None:
    catalogue = mutants.load()
    assert len(catalogue) >= 6
    names = {t.name for t in run.TARGETS}
    for m in catalogue:
        assert m.target in names, m.name
        assert m.breaks
        scratch = tmp_path / m.name
        scratch.mkdir()
        mutants.prepare(m, scratch)
        changed = (scratch / "dynamo_ref").rglob("*.py")
        assert any(
            p.read_bytes() != (ROOT / p.relative_to(scratch)).read_bytes() for p in changed
        ), f"{m.name} changes nothing"


def test_a_real_mutant_is_killed_by_crosshair(capsys: pytest.CaptureFixture[str]) -> None:
    # The whole catalogue runs in make test-slow (proofs-mutants); this one takes 2 s.
    assert mutants.main(["--only", "quorum-one-short"]) == 0
    out = capsys.readouterr().out
    assert "1/1 mutants killed" in out
    assert "refuted: false when calling record_ok" in out


def test_control_a_patch_that_no_longer_applies_fails_naming_the_mutant(tmp_path: Path) -> None:
    stale = tmp_path / "stale-merge.patch"
    stale.write_text(
        "# breaks: nothing any more\n# target: dynamo_ref.core.vclock\n"
        "--- a/dynamo_ref/core/vclock.py\n+++ b/dynamo_ref/core/vclock.py\n"
        "@@ -1,3 +1,3 @@\n-this line is not in the file\n+nor this one\n context\n"
    )
    (m,) = mutants.load(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(
        mutants.MutantError, match="mutant stale-merge: its patch no longer applies"
    ):
        mutants.prepare(m, scratch)
    (tmp_path / "bare.patch").write_text("--- a/x\n+++ b/x\n")
    with pytest.raises(mutants.MutantError, match="mutant bare: its patch must start"):
        mutants.load(tmp_path)
