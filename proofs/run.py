"""Run CrossHair over the contract-carrying core modules, each target within a stated bound.

A target is a module, class or function. The runner lists the contract-carrying functions and
methods under it (in a child process, with contracts switched on), then checks them all with one
``crosshair check --analysis_kind=icontract`` process, under a CPU budget per condition, a CPU
budget per execution path and a wall-clock cap on the whole target. The verdict of a target:

- ``confirmed over all paths``: CrossHair exhausted every path of every condition;
- ``no counterexample within budget``: some condition ran out of budget first (a bounded search,
  not a proof);
- ``counterexample found``: an input that breaks a contract (printed below the table);
- ``error``: the target could not be checked (import error, no contracts, a CrossHair crash, a
  precondition no input ever met, a malformed condition);
- ``timed out``: the wall-clock cap was hit.

The run exits 0 only when every target is confirmed or has no counterexample within budget.

Usage (from the repository root)::

    .venv/bin/python proofs/run.py                       # every target in TARGETS
    .venv/bin/python proofs/run.py --list                # the targets and their bounds
    .venv/bin/python proofs/run.py --only vclock         # one target (or a prefix of several)
    .venv/bin/python proofs/run.py --budget 30           # deeper search: 30 s per condition
    .venv/bin/python proofs/run.py --target proofs.fixtures.wrong_contract --budget 5
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import inspect
import linecache
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Keeps icontract's invariant bookkeeping out of CrossHair's symbolic values (see the file).
PLUGIN = Path(__file__).resolve().parent / "crosshair_plugin.py"

# Bounds for --target runs, which have no entry in TARGETS.
DEFAULT_CONDITION_S = 5.0
DEFAULT_WALL_S = 120.0
# CI has two cores and nothing else runs during the proofs step.
DEFAULT_JOBS = min(2, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Target:
    """One CrossHair run: what it covers and the bound it runs under."""

    name: str  # a dotted module, class or function; or a file path (checked as CrossHair sees it)
    condition_s: float  # --per_condition_timeout: CPU seconds for each condition of each function
    path_s: float | None  # --per_path_timeout: CPU seconds per path (None: sqrt of condition_s)
    wall_s: float  # wall-clock cap on the whole target
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
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
        checks="preference lists: N distinct nodes, the first owns the key; tokens sorted",
    ),
    Target(
        "dynamo_ref.core.vclock",
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
        checks="counters >= 1; merge is an upper bound; compare agrees with the spec order",
    ),
    Target(
        "dynamo_ref.core.versions",
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
        checks="siblings pairwise concurrent; reconcile keeps every undominated version",
    ),
    Target(
        "dynamo_ref.core.quorum",
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
        checks="valid N/R/W; a quorum is reached only with R (W) distinct replies",
    ),
    Target(
        "dynamo_ref.core.merkle",
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
        checks="tree shape; diff of equal trees is empty",
    ),
    Target(
        "dynamo_ref.core.membership",
        condition_s=1.0,
        path_s=0.5,
        wall_s=150.0,
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

    def source(self) -> str:
        return linecache.getline(self.file, self.line).strip()

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


def _project_frames(stderr: str) -> list[str]:
    """The traceback frames of a CrossHair crash that point into this repository's code."""
    lines = stderr.splitlines()
    frames = [
        f"{line.strip()}: {lines[i + 1].strip() if i + 1 < len(lines) else ''}"
        for i, line in enumerate(lines)
        if line.lstrip().startswith("File ") and str(ROOT) in line and "/.venv/" not in line
    ]
    return frames[-3:]


# -- what a target covers ------------------------------------------------------------------


def _own_contracts(fn: object) -> bool:
    pre = getattr(fn, "__preconditions__", None) or []
    post = getattr(fn, "__postconditions__", None) or []
    return any(pre) or bool(post)


def _methods(cls: type, qualname: str) -> Iterator[str]:
    # With invariants every method is checked, but not the dunders: dataclass-made __eq__, __lt__
    # and friends cost a full budget each and say nothing about the invariant.
    invariants = bool(getattr(cls, "__invariants__", None))
    for attr, member in vars(cls).items():
        if isinstance(member, property):
            fns = [member.fget, member.fset, member.fdel]
        else:
            fns = [getattr(member, "__func__", member)]
        dunder = attr.startswith("__") and attr.endswith("__")
        if any(_own_contracts(f) for f in fns) or (
            invariants and not dunder and any(inspect.isfunction(f) for f in fns)
        ):
            yield f"{qualname}.{attr}"


def _resolve(name: str) -> object:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts[:i]).startswith(exc.name):
                raise  # the module exists but one of its own imports is missing
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            break
        return obj
    raise LookupError(f"no module, class or function named {name!r}")


def checkables(name: str) -> list[str]:
    """The dotted names of the contract-carrying functions and methods under ``name``."""
    obj = _resolve(name)
    if inspect.ismodule(obj):
        found: list[str] = []
        for attr, member in vars(obj).items():
            if getattr(member, "__module__", None) != obj.__name__:
                continue
            if inspect.isclass(member):
                found += _methods(member, f"{name}.{attr}")
            elif callable(member) and _own_contracts(member):
                found.append(f"{name}.{attr}")
        return found
    if inspect.isclass(obj):
        return list(_methods(obj, name))
    return [name]


def _is_path(name: str) -> bool:
    return name.endswith(".py") or os.sep in name


# -- running -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    target: Target
    verdict: Verdict
    seconds: float
    functions: tuple[str, ...]
    messages: tuple[Message, ...]
    reason: str
    frames: tuple[str, ...] = ()

    def summary(self) -> str:
        confirmed = sum(m.confirmed for m in self.messages)
        return (
            f"{len(self.functions)} functions, {len(self.messages)} conditions, "
            f"{confirmed} confirmed over all paths"
        )


def command(target: Target, functions: Sequence[str]) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--analysis_kind=icontract",
        "--report_all",
        f"--extra_plugin={PLUGIN}",
        f"--per_condition_timeout={target.condition_s:g}",
    ]
    if target.path_s is not None:
        argv.append(f"--per_path_timeout={target.path_s:g}")
    return argv + list(functions)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Contracts are decided at import time; switched off they are invisible to CrossHair.
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


def _child(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    """Run a child to completion or to its timeout: (returncode or None, stdout, stderr)."""
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=max(timeout, 0.001),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return None, _text(exc.stdout), _text(exc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def check(target: Target) -> Outcome:
    start = time.monotonic()

    def outcome(
        verdict: Verdict,
        functions: Sequence[str] = (),
        messages: tuple[Message, ...] = (),
        reason: str = "",
        stderr: str = "",
    ) -> Outcome:
        return Outcome(
            target,
            verdict,
            time.monotonic() - start,
            tuple(functions),
            messages,
            reason,
            tuple(_project_frames(stderr)),
        )

    if _is_path(target.name):
        functions = [target.name]
    else:
        listing = [sys.executable, str(Path(__file__).resolve()), "--checkables", target.name]
        code, stdout, stderr = _child(listing, target.wall_s)
        if code is None:
            return outcome(Verdict.TIMED_OUT, reason="timed out listing the functions to check")
        if code != 0:
            return outcome(Verdict.ERROR, reason=_last_line(stderr), stderr=stderr)
        functions = stdout.split()
        if not functions:
            return outcome(Verdict.ERROR, reason="no contracts found (are contracts switched off?)")

    remaining = target.wall_s - (time.monotonic() - start)
    code, stdout, stderr = _child(command(target, functions), remaining)
    verdict, messages, reason = classify(code, stdout, stderr)
    return outcome(verdict, functions, messages, reason, stderr)


def bound(target: Target) -> str:
    path = "sqrt" if target.path_s is None else f"{target.path_s:g}s"
    return f"{target.condition_s:g}s/cond {path}/path {target.wall_s:g}s cap"


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("target", "result", "seconds", "bound", "covered")]
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


def details(outcome: Outcome, verbose: bool) -> list[str]:
    out: list[str] = []
    for m in outcome.messages:
        if verbose or m.level == "error":
            out.append(f"  {m}")
            if verbose and m.source():
                out.append(f"      {m.source()}")
    if not outcome.verdict.ok:
        out += [f"  {frame}" for frame in outcome.frames]
    if verbose:
        out += [f"  checked: {name}" for name in outcome.functions]
    return out


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
        lines = details(o, verbose)
        if lines:
            print(f"\n{o.target.name}:")
            print("\n".join(lines))
    failed = [o for o in outcomes if not o.verdict.ok]
    total = time.monotonic() - start
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} targets passed in {total:.1f}s")
    print("(no counterexample within budget: a bounded symbolic search found none, not a proof)")
    return 1 if failed else 0


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


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
        help="run only this listed target (full name, dotted prefix or last part, e.g. vclock)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="check this module, class, function or file instead of the listed targets",
    )
    parser.add_argument(
        "--budget",
        type=_positive,
        metavar="SECONDS",
        help=f"CPU seconds per condition for every target (--target: {DEFAULT_CONDITION_S:g})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help=f"wall-clock cap per target (--target: {DEFAULT_WALL_S:g})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"targets checked at once (default {DEFAULT_JOBS}; budgets are CPU time, not wall)",
    )
    parser.add_argument("--list", action="store_true", help="print the targets and their bounds")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print every condition and function checked"
    )
    # Internal: the child that lists a target's functions with contracts switched on.
    parser.add_argument("--checkables", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.checkables:
        sys.path.insert(0, str(ROOT))  # as CrossHair does: names resolve from the repository root
        print("\n".join(checkables(args.checkables)))
        return 0

    if args.target:
        if args.only:
            parser.error("--only picks from the listed targets; it does not combine with --target")
        condition_s = args.budget if args.budget is not None else DEFAULT_CONDITION_S
        wall_s = args.timeout if args.timeout is not None else DEFAULT_WALL_S
        targets = [
            Target(name, condition_s, None, wall_s, "(command line)") for name in args.target
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
