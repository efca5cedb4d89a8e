"""Run CrossHair over the contract-carrying core modules, each target within a stated bound.

Every target is checked by ``crosshair check --analysis_kind=icontract`` in its own process, with
a CPU budget per condition, a CPU budget per execution path and a wall-clock cap on the whole
target. The verdict of a target is one of:

- ``confirmed over all paths``: CrossHair exhausted every path of every condition;
- ``no counterexample within budget``: some condition ran out of budget first (a bounded search,
  not a proof);
- ``counterexample found``: an input that breaks a contract (printed below the table);
- ``error``: the target could not be checked (import error, nothing to check, a precondition no
  input ever met, a malformed condition);
- ``timed out``: the wall-clock cap was hit.

The run exits 0 only when every target is confirmed or has no counterexample within budget.

Usage (from the repository root)::

    .venv/bin/python proofs/run.py                       # every target in TARGETS
    .venv/bin/python proofs/run.py --list                # the targets and their bounds
    .venv/bin/python proofs/run.py --only vclock         # one target (or a prefix of several)
    .venv/bin/python proofs/run.py --budget 30           # deeper search: 30 s per condition
    .venv/bin/python proofs/run.py --target proofs/fixtures/wrong_contract.py --budget 5
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bounds for --target runs, which have no entry in TARGETS.
DEFAULT_CONDITION_S = 5.0
DEFAULT_WALL_S = 120.0


@dataclasses.dataclass(frozen=True)
class Target:
    """One CrossHair run: what it covers and the bound it runs under."""

    name: str  # a module, class or function, dotted; or a file path
    condition_s: float  # --per_condition_timeout: CPU seconds per condition
    path_s: float | None  # --per_path_timeout: CPU seconds per path (None: sqrt of condition_s)
    wall_s: float  # wall-clock cap on the whole run
    checks: str  # the properties its contracts state

    def scaled(self, condition_s: float) -> Target:
        """The same target under another per-condition budget (and a proportionate cap)."""
        ratio = max(1.0, condition_s / self.condition_s)
        path_s = None if self.path_s is None else min(self.path_s, condition_s)
        return dataclasses.replace(
            self, condition_s=condition_s, path_s=path_s, wall_s=self.wall_s * ratio
        )


# The one list of targets. A missing module is an error of its target, never a skip.
TARGETS: tuple[Target, ...] = (
    Target(
        "dynamo_ref.core.ring",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="preference lists: N distinct nodes, the first owns the key; tokens sorted",
    ),
    Target(
        "dynamo_ref.core.vclock",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="counters >= 1; merge is an upper bound; compare agrees with the spec order",
    ),
    Target(
        "dynamo_ref.core.versions",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="siblings pairwise concurrent; reconcile keeps every undominated version",
    ),
    Target(
        "dynamo_ref.core.quorum",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="valid N/R/W; a quorum is reached only with R (W) distinct replies",
    ),
    Target(
        "dynamo_ref.core.merkle",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="tree shape; diff of equal trees is empty",
    ),
    Target(
        "dynamo_ref.core.membership",
        condition_s=3.0,
        path_s=1.0,
        wall_s=120.0,
        checks="gossip merge keeps the newest entry per node; merge is idempotent",
    ),
)


class Verdict(enum.Enum):
    CONFIRMED = "confirmed over all paths"
    NO_COUNTEREXAMPLE = "no counterexample within budget"
    COUNTEREXAMPLE = "counterexample found"
    ERROR = "error"
    TIMED_OUT = "timed out"

    @property
    def ok(self) -> bool:
        return self in {Verdict.CONFIRMED, Verdict.NO_COUNTEREXAMPLE}


# CrossHair's machine-readable lines: "<file>:<line>: error|info: <message>".
_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<level>error|info): (?P<text>.*)$")


@dataclasses.dataclass(frozen=True)
class Message:
    """One line of CrossHair output: the result for the condition at file:line."""

    file: str
    line: int
    level: str
    text: str

    @property
    def confirmed(self) -> bool:
        return self.level == "info" and self.text.startswith("Confirmed over all paths")

    @property
    def vacuous(self) -> bool:
        # No attempted input got past the preconditions: the condition was not checked at all.
        return self.level == "info" and self.text.startswith("Unable to meet precondition")

    @property
    def counterexample(self) -> bool:
        # Every refutation names the call that breaks it; syntax and import errors do not.
        return self.level == "error" and " when calling " in self.text

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.text}"


def parse_messages(stdout: str) -> tuple[Message, ...]:
    found = (_LINE.match(line) for line in stdout.splitlines())
    return tuple(
        Message(m["file"], int(m["line"]), m["level"], m["text"]) for m in found if m is not None
    )


def classify(
    returncode: int | None, stdout: str, stderr: str
) -> tuple[Verdict, tuple[Message, ...], str]:
    """The verdict on one CrossHair run, its messages and a one-line reason for errors.

    ``returncode`` is None when the run hit its wall-clock cap.
    """
    messages = parse_messages(stdout)
    if any(m.counterexample for m in messages):
        return Verdict.COUNTEREXAMPLE, messages, ""
    if returncode is None:
        return Verdict.TIMED_OUT, messages, "wall-clock cap hit: raise wall_s or split the target"
    broken = [m for m in messages if m.level == "error"]
    if broken:
        return Verdict.ERROR, messages, str(broken[0])
    if returncode != 0:
        return Verdict.ERROR, messages, _last_line(stderr) or f"crosshair exited {returncode}"
    if "no checkable functions" in stderr:
        # Also what contracts built with enabled=False look like: plain functions.
        return Verdict.ERROR, messages, "no contracts found (are contracts switched off?)"
    vacuous = [m for m in messages if m.vacuous]
    if vacuous:
        return Verdict.ERROR, messages, f"nothing checked: {vacuous[0]}"
    if not messages:
        return Verdict.ERROR, messages, "crosshair reported no condition"
    if all(m.confirmed for m in messages):
        return Verdict.CONFIRMED, messages, ""
    return Verdict.NO_COUNTEREXAMPLE, messages, ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclasses.dataclass(frozen=True)
class Outcome:
    target: Target
    verdict: Verdict
    seconds: float
    messages: tuple[Message, ...]
    reason: str

    def summary(self) -> str:
        confirmed = sum(m.confirmed for m in self.messages)
        return f"{len(self.messages)} conditions, {confirmed} confirmed over all paths"


def command(target: Target) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--analysis_kind=icontract",
        "--report_all",
        f"--per_condition_timeout={target.condition_s:g}",
    ]
    if target.path_s is not None:
        argv.append(f"--per_path_timeout={target.path_s:g}")
    argv.append(target.name)
    return argv


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Contracts decided at import time; switched off they are invisible to CrossHair.
    env["DYNAMO_REF_CONTRACTS"] = "1"
    env.pop("PYTHONOPTIMIZE", None)
    # Same hash order every run, so a budget explores the same paths.
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def check(target: Target) -> Outcome:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            command(target),
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=target.wall_s,
            check=False,
        )
        returncode: int | None = proc.returncode
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr)
    seconds = time.monotonic() - start
    verdict, messages, reason = classify(returncode, stdout, stderr)
    return Outcome(target, verdict, seconds, messages, reason)


def bound(target: Target) -> str:
    path = "sqrt" if target.path_s is None else f"{target.path_s:g}s"
    return f"{target.condition_s:g}s/cond {path}/path {target.wall_s:g}s cap"


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("target", "result", "seconds", "bound", "conditions")]
    rows += [
        (
            o.target.name,
            o.verdict.value,
            f"{o.seconds:.1f}",
            bound(o.target),
            o.summary() if o.verdict.ok else o.reason or "see below",
        )
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in [*widths[:-1], len(rows[0][-1])]))
    return "\n".join(line.rstrip() for line in lines)


def select(only: Sequence[str]) -> list[Target]:
    if not only:
        return list(TARGETS)

    def matches(name: str, pattern: str) -> bool:
        return name == pattern or name.startswith(pattern + ".") or name.endswith("." + pattern)

    return [t for t in TARGETS if any(matches(t.name, p) for p in only)]


def run(targets: Sequence[Target], jobs: int, verbose: bool) -> int:
    def one(target: Target) -> Outcome:
        outcome = check(target)
        print(f"{outcome.verdict.value:>31}  {outcome.seconds:6.1f}s  {target.name}", flush=True)
        return outcome

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes = list(pool.map(one, targets))
    print()
    print(table(outcomes))
    for o in outcomes:
        shown = [m for m in o.messages if verbose or m.counterexample or m.level == "error"]
        if shown:
            print(f"\n{o.target.name}:")
            print("\n".join(f"  {m}" for m in shown))
    failed = [o for o in outcomes if not o.verdict.ok]
    total = time.monotonic() - start
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} targets passed in {total:.1f}s")
    print(
        "(no counterexample within budget: a bounded symbolic search found none; it is not a proof)"
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="proofs/run.py",
        description="Run CrossHair (icontract) over the core modules within stated budgets.",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TARGET",
        help="run only this target (full name, dotted prefix or last part, e.g. vclock)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="SPEC",
        help="check this module, class, function or file instead of the listed targets",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help=f"CPU seconds per condition for every target (--target: {DEFAULT_CONDITION_S:g})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"wall-clock cap per target (--target: {DEFAULT_WALL_S:g})",
    )
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once (default 1)")
    parser.add_argument("--list", action="store_true", help="print the targets and bounds")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the result of every condition"
    )
    args = parser.parse_args(argv)
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        parser.error("--budget must be a positive number of seconds")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error("--timeout must be a positive number of seconds")

    if args.target:
        if args.only:
            parser.error(
                "--only selects from the listed targets; it does not combine with --target"
            )
        condition_s = args.budget if args.budget is not None else DEFAULT_CONDITION_S
        targets = [
            Target(
                spec, condition_s, None, args.timeout or DEFAULT_WALL_S, "given on the command line"
            )
            for spec in args.target
        ]
    else:
        targets = select(args.only)
        if not targets:
            names = ", ".join(t.name for t in TARGETS)
            parser.error(f"no target matches {args.only}; targets: {names}")
        if args.budget is not None:
            targets = [t.scaled(args.budget) for t in targets]
        if args.timeout is not None:
            targets = [dataclasses.replace(t, wall_s=args.timeout) for t in targets]

    if args.list:
        for t in targets:
            print(f"{t.name}\n    bound:  {bound(t)}\n    checks: {t.checks}")
        return 0
    return run(targets, args.jobs, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
