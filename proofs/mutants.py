"""The contract mutants: bugs planted in the core, one patch each, that ``make proofs`` must
refute. A check is worth the bugs it kills: each patch breaks a property some contract states,
and CrossHair, run on the patched copy with the target's own bounds (``run.TARGETS``), must find
an input that breaks it.

A patch is a unified diff against the repository (``proofs/mutants/NAME.patch``) whose first
lines say what it breaks and which target must kill it::

    # breaks: merge is the least upper bound (it takes the smaller counter)
    # target: dynamo_ref.core.vclock.VClock.merge

Each mutant runs on a scratch copy of ``dynamo_ref`` and ``proofs``, so the checkout is never
touched. A patch that no longer applies fails the run, naming the mutant.

Usage (from the repository root)::

    .venv/bin/python proofs/mutants.py            # every mutant; exit 1 if one survives
    .venv/bin/python proofs/mutants.py --only vclock-merge-min
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = Path(__file__).resolve().parent / "mutants"
JOBS = min(2, os.cpu_count() or 1)


class MutantError(Exception):
    """A mutant that cannot be run: its patch is malformed or no longer applies."""


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str
    target: str
    patch: Path


@dataclasses.dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    killed: bool
    seconds: float
    detail: str


def load(directory: Path = MUTANTS) -> list[Mutant]:
    """The catalogue, by name.

    :raises MutantError: a patch without its ``# breaks:`` and ``# target:`` lines.
    """
    out = []
    for path in sorted(directory.glob("*.patch")):
        head = path.read_text().split("\n---", 1)[0]
        fields = dict(re.findall(r"^# (breaks|target): (.+)$", head, re.M))
        if set(fields) != {"breaks", "target"}:
            raise MutantError(
                f"mutant {path.stem}: its patch must start with '# breaks:' and '# target:' lines"
            )
        out.append(Mutant(path.stem, fields["breaks"].strip(), fields["target"].strip(), path))
    return out


def prepare(mutant: Mutant, scratch: Path, root: Path = ROOT) -> None:
    """A copy of the package and the proof runner in ``scratch``, with the patch applied.

    :raises MutantError: the patch does not apply (the code it changes has moved on).
    """
    for part in ("dynamo_ref", "proofs"):
        shutil.copytree(
            root / part, scratch / part, ignore=shutil.ignore_patterns("__pycache__", "mutants")
        )
    done = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--silent", "-i", str(mutant.patch)],
        cwd=scratch,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MutantError(
            f"mutant {mutant.name}: its patch no longer applies: "
            + (done.stdout + done.stderr).strip()
        )


# The searches a mutant gets: its target's own bounds first; if that finds nothing, another
# hash order at twice the budget. Which paths a CPU budget reaches varies with the machine
# (Z3's own timeouts are wall-clock), and a run on a slower CI machine once let a mutant
# through that the same budget killed here. A counterexample is real whichever search finds
# it, so a second search never kills a mutant that is right; it only costs time when the first
# misses.
SEARCHES: tuple[tuple[int, float], ...] = ((0, 1.0), (1, 2.0))


def _search(mutant: Mutant, scratch: Path, seed: int, scale: float) -> tuple[bool, str]:
    argv = [sys.executable, "proofs/run.py", "--only", mutant.target, "--jobs", "1"]
    argv += ["--hash-seed", str(seed)]
    if scale != 1.0:
        argv += ["--budget", f"{_budget(mutant.target) * scale:g}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Run from the copy: its directory comes first on the path, before the checkout's.
    done = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    killed = done.returncode != 0 and any(
        line.startswith(mutant.target) and "counterexample found" in line for line in lines
    )
    found = [line.split("error: ", 1)[-1] for line in lines if "when calling" in line]
    detail = found[0] if found else (lines[-1] if lines else done.stderr.strip()[-200:])
    return killed, detail


def _budget(target: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as proof_run

    return next(t.condition_s for t in proof_run.TARGETS if t.name == target)


def run(mutant: Mutant) -> Outcome:
    """Run the mutant's target on a patched copy; killed when CrossHair finds a counterexample
    in one of the SEARCHES."""
    started = time.monotonic()
    killed, detail = False, ""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        scratch = Path(tmp)
        prepare(mutant, scratch)
        for k, (seed, scale) in enumerate(SEARCHES):
            killed, detail = _search(mutant, scratch, seed, scale)
            if killed:
                if k:
                    detail = f"(search {k + 1}: hash seed {seed}, {scale:g}x budget) {detail}"
                break
    return Outcome(mutant, killed, time.monotonic() - started, detail[:160])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="a mutant by name (repeatable)")
    parser.add_argument("--jobs", type=int, default=JOBS)
    args = parser.parse_args(argv)
    try:
        mutants = load()
    except MutantError as e:
        print(e, file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {m.name for m in mutants}
        if unknown:
            print(f"no mutant named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.name in args.only]
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(run, mutants))
    except MutantError as e:
        print(e, file=sys.stderr)
        return 2
    width = max(len(m.name) for m in mutants)
    print(f"{'mutant':<{width}}  {'verdict':<8}  {'seconds':>7}  target / what it breaks")
    for o in outcomes:
        verdict = "killed" if o.killed else "SURVIVED"
        print(f"{o.mutant.name:<{width}}  {verdict:<8}  {o.seconds:7.1f}  {o.mutant.target}")
        print(f"{'':<{width}}  {'':<8}  {'':>7}  breaks: {o.mutant.breaks}")
        if o.killed:
            print(f"{'':<{width}}  {'':<8}  {'':>7}  refuted: {o.detail}")
    survivors = [o.mutant.name for o in outcomes if not o.killed]
    print(f"{len(outcomes) - len(survivors)}/{len(outcomes)} mutants killed")
    if survivors:
        print(f"survived: {', '.join(survivors)}", file=sys.stderr)
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
