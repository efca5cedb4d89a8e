"""Run CrossHair over the contract-carrying core modules, each target within a stated bound.

A target is a module, class or function. The runner lists the contract-carrying functions and
methods under it (in a child process, with contracts switched on), then checks them all with one
``crosshair check --analysis_kind=icontract`` process, under a CPU budget per condition, a CPU
budget per execution path and a wall-clock cap on the whole target. The verdict of a target:

- ``confirmed over all paths``: CrossHair exhausted every path of every condition;
- ``no counterexample within budget``: some condition ran out of budget first (a bounded search,
  not a proof);
- ``preconditions never met``: as above, but some condition never got an input past its
  preconditions, so it was not checked at all (listed; a failure with ``--strict``);
- ``counterexample found``: an input that breaks a contract (printed below the table);
- ``error``: the target could not be checked (import error, no contracts, a CrossHair crash, a
  malformed condition);
- ``timed out``: the wall-clock cap was hit.

The run exits 1 if any target has a counterexample, an error or a timeout, else 0.

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

import icontract._represent

ROOT = Path(__file__).resolve().parent.parent
# Keeps icontract's invariant bookkeeping out of CrossHair's symbolic values (see the file).
PLUGIN = Path(__file__).resolve().parent / "crosshair_plugin.py"

# Bounds for --target runs, which have no entry in TARGETS.
DEFAULT_CONDITION_S = 5.0
DEFAULT_WALL_S = 120.0
# CI has two cores and nothing else runs during the proofs step.
DEFAULT_JOBS = min(2, os.cpu_count() or 1)
# PYTHONHASHSEED of the CrossHair children (--hash-seed sets it for them): the order in which
# sets and dicts of strings are walked, and so which paths a budget reaches first.
HASH_SEED_VAR = "DYNAMO_REF_PROOF_HASH_SEED"


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
        wall_s=180.0,
        checks="hash in range; balanced claims of q partitions; preference lists of N distinct "
        "nodes; join/leave move partitions only to/from that node",
    ),
    Target(
        "dynamo_ref.core.vclock",
        condition_s=1.0,
        path_s=0.5,
        wall_s=180.0,
        checks="compare/descends/dominates agree with the pointwise definition; increment "
        "dominates; merge is the least upper bound; prune only removes entries",
    ),
    # Searched alone and deeper: at their modules' 1 s these let planted bugs through (a merge
    # taking the smaller counter, a reconcile keeping a dominated version, a quorum decided
    # one answer short, a gossip merge keeping an older entry, a reused write counter); each is
    # a mutant in proofs/mutants/ that these targets refute. Each budget is about twice what
    # the search needed here to kill its mutant: a CI run under load once missed one with less.
    # (proofs/README.md, "Contract mutants", has the figures.)
    Target(
        "dynamo_ref.core.vclock.VClock.merge",
        condition_s=16.0,
        path_s=None,
        wall_s=180.0,
        checks="merge is the least upper bound of the two clocks",
    ),
    Target(
        "dynamo_ref.core.versions.reconcile",
        condition_s=12.0,
        path_s=None,
        wall_s=240.0,
        checks="reconcile keeps an antichain, covers every input, keeps only inputs",
    ),
    Target(
        "dynamo_ref.core.quorum._Tally.record_ok",
        condition_s=4.0,
        path_s=None,
        wall_s=60.0,
        checks="an answer decides success only with the quorum and the primaries it needs",
    ),
    Target(
        "dynamo_ref.core.quorum.WriteCollector.ack",
        condition_s=8.0,
        path_s=None,
        wall_s=300.0,
        checks="a write succeeds only with W acks (PW from primaries), each counted once",
    ),
    Target(
        "dynamo_ref.core.membership.Membership.merge",
        condition_s=8.0,
        path_s=None,
        wall_s=180.0,
        checks="gossip merge is an upper bound of both views",
    ),
    Target(
        "dynamo_ref.core.node_versions.write_version",
        condition_s=12.0,
        path_s=None,
        wall_s=180.0,
        checks="a write is a new event, and its clock dominates its context",
    ),
    Target(
        "dynamo_ref.core.versions",
        condition_s=1.0,
        path_s=0.5,
        wall_s=180.0,
        checks="reconcile gives a canonical antichain covering its input; new versions dominate "
        "their context; put drops what the write covers; LWW keeps one version",
    ),
    Target(
        "dynamo_ref.core.quorum",
        condition_s=1.0,
        path_s=0.5,
        wall_s=300.0,
        checks="valid N/R/W/PR/PW; success only with W (R) answers, PW (PR) from primaries; "
        "an answer counts once; a decided status never changes",
    ),
    Target(
        "dynamo_ref.core.merkle",
        condition_s=1.0,
        path_s=0.5,
        wall_s=180.0,
        checks="tree shape and index ranges; set/remove update the leaf; diff is empty iff the "
        "roots are equal; a tree walk ends with the leaves",
    ),
    Target(
        "dynamo_ref.core.membership",
        condition_s=1.0,
        path_s=0.5,
        wall_s=180.0,
        checks="merge is an upper bound over both views; update installs the newer state; a "
        "gossip delta merges like the whole view; phi >= 0",
    ),
    Target(
        "dynamo_ref.core.node_versions",
        condition_s=1.0,
        path_s=0.5,
        wall_s=120.0,
        checks="a write's clock dominates its context (VCLOCK, LWW) or its dot is new (DVV); "
        "DVV reconcile drops only what a kept version has seen",
    ),
)


class Verdict(enum.Enum):
    CONFIRMED = "confirmed over all paths"
    NO_COUNTEREXAMPLE = "no counterexample within budget"
    # Some condition never got an input past its preconditions, so it was not checked at all.
    # Whether CrossHair gets there in 1 s varies from run to run, hence a failure only in --strict.
    UNREACHED = "preconditions never met"
    COUNTEREXAMPLE = "counterexample found"
    ERROR = "error"
    TIMED_OUT = "timed out"

    def passed(self, strict: bool = False) -> bool:
        if self is Verdict.UNREACHED:
            return not strict
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
    source: str = ""  # the condition's source line, when the file is unchanged since the run

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

    def with_source(self, since: float) -> Message:
        try:
            unchanged = os.path.getmtime(self.file) < since
        except OSError:
            return self
        if not unchanged:
            return self
        return dataclasses.replace(self, source=linecache.getline(self.file, self.line).strip())

    def __str__(self) -> str:
        text = self.text.replace("\n", "\n    ")
        return f"{self.file}:{self.line}: {self.level}: {text}"


def parse_messages(stdout: str) -> tuple[Message, ...]:
    messages: list[Message] = []
    for line in stdout.splitlines():
        m = _LINE.match(line)
        if m is not None:
            messages.append(Message(m["file"], int(m["line"]), m["level"], m["text"]))
        elif messages and line.strip():
            # A message quoting a multi-line condition goes on over several lines.
            last = messages[-1]
            messages[-1] = dataclasses.replace(last, text=f"{last.text}\n{line}")
    return tuple(messages)


def classify(
    returncode: int | None, stdout: str, stderr: str
) -> tuple[Verdict, tuple[Message, ...], str]:
    """The verdict on one CrossHair run, its messages, and a one-line reason unless it passed.

    ``returncode`` is None when the run hit its wall-clock cap.
    """
    messages = parse_messages(stdout)
    refuted = [m for m in messages if m.counterexample]
    if refuted:
        return Verdict.COUNTEREXAMPLE, messages, f"{len(refuted)} refuted, below"
    if returncode is None:
        return Verdict.TIMED_OUT, messages, "wall-clock cap hit: raise wall_s or split the target"
    broken = [m for m in messages if m.level == "error"]
    if broken:
        return Verdict.ERROR, messages, str(broken[0]).splitlines()[0]
    if returncode != 0:
        return Verdict.ERROR, messages, _last_line(stderr) or f"crosshair exited {returncode}"
    if "no checkable functions" in stderr:
        # Also what contracts built with enabled=False look like: plain functions.
        return Verdict.ERROR, messages, "no contracts found (are contracts switched off?)"
    if not messages:
        return Verdict.ERROR, messages, "crosshair reported no condition"
    vacuous = [m for m in messages if m.vacuous]
    if vacuous:
        where = ", ".join(f"{Path(m.file).name}:{m.line}" for m in vacuous)
        return Verdict.UNREACHED, messages, f"{len(vacuous)} not checked: {where}"
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
    # With invariants every method is checked, but not the dunders (dataclass-made __eq__, __lt__
    # and friends) nor bare property getters: each costs a full budget per invariant, and
    # neither changes the object.
    invariants = bool(getattr(cls, "__invariants__", None))
    for attr, member in vars(cls).items():
        if isinstance(member, property):
            own = any(_own_contracts(f) for f in (member.fget, member.fset, member.fdel))
            may_change = member.fset is not None or member.fdel is not None
        else:
            fn = getattr(member, "__func__", member)
            own = _own_contracts(fn)
            dunder = attr.startswith("__") and attr.endswith("__")
            may_change = inspect.isfunction(fn) and not dunder
        if own or (invariants and may_change):
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


def _condition_text(contract: object) -> str:
    description = getattr(contract, "description", None)
    if description:
        return str(description)
    condition = getattr(contract, "condition", None)
    if not callable(condition):
        return repr(condition)
    lambda_source = icontract._represent.inspect_lambda_condition(condition=condition)
    if lambda_source is not None:
        return " ".join(lambda_source.text.split())
    return getattr(condition, "__qualname__", repr(condition))


def conditions(name: str) -> list[str]:
    """What CrossHair checks under ``name``: each function's contracts, each class's invariants."""
    out: list[str] = []
    classes: dict[str, object] = {}
    for qualname in checkables(name):
        member = _resolve(qualname)
        fns = [member.fget] if isinstance(member, property) else [member]
        short = qualname.removeprefix(name).lstrip(".") or qualname
        for fn in (getattr(f, "__func__", f) for f in fns):
            for group in getattr(fn, "__preconditions__", None) or []:
                out += [f"{short}: require {_condition_text(c)}" for c in group]
            out += [
                f"{short}: ensure {_condition_text(c)}"
                for c in getattr(fn, "__postconditions__", None) or []
            ]
        owner = qualname.rsplit(".", 1)[0]
        if owner != name or not inspect.ismodule(_resolve(name)):
            classes.setdefault(owner, _resolve(owner))
    for owner, cls in classes.items():
        short = owner.removeprefix(name).lstrip(".") or owner
        out += [
            f"{short}: invariant {_condition_text(c)}"
            for c in getattr(cls, "__invariants__", None) or []
        ]
    return out


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
        counts = (
            f"{_count(len(self.functions), 'function')}, "
            f"{_count(len(self.messages), 'condition')}, {confirmed} confirmed over all paths"
        )
        return f"{counts}; {self.reason}" if self.reason else counts


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
    # Same hash order every run, so a budget explores the same paths (--hash-seed: another).
    env["PYTHONHASHSEED"] = env.pop(HASH_SEED_VAR, "0")
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
    started = time.time()

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
    messages = tuple(m.with_source(since=started) for m in messages)
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
            o.summary() if o.messages else o.reason or "see below",
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
        if verbose or m.level == "error" or m.vacuous:
            out.append(f"  {m}")
            if m.source:
                out.append(f"      {m.source}")
    if not outcome.verdict.passed(strict=True):
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


def run(targets: Sequence[Target], jobs: int, verbose: bool, strict: bool = False) -> int:
    def one(target: Target) -> Outcome:
        outcome = check(target)
        print(f"{outcome.verdict.value:>31}  {outcome.seconds:6.1f}s  {target.name}", flush=True)
        return outcome

    start = time.monotonic()
    # Longest cap first, so the big targets do not start last; the table keeps the list order.
    longest_first = sorted(targets, key=lambda t: -t.wall_s)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = dict(zip(longest_first, pool.map(one, longest_first), strict=True))
    outcomes = [done[t] for t in targets]
    print()
    print(table(outcomes))
    for o in outcomes:
        lines = details(o, verbose)
        if lines:
            print(f"\n{o.target.name}:")
            print("\n".join(lines))
    failed = [o for o in outcomes if not o.verdict.passed(strict)]
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
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail when a condition never got an input past its preconditions",
    )
    parser.add_argument(
        "--hash-seed",
        type=int,
        default=0,
        help="PYTHONHASHSEED of the CrossHair runs: another order of search (default 0)",
    )
    parser.add_argument("--list", action="store_true", help="print the targets and their bounds")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print every condition and function checked"
    )
    # Internal: the child that lists a target's functions with contracts switched on.
    parser.add_argument("--checkables", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--conditions", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ[HASH_SEED_VAR] = str(args.hash_seed)

    if args.checkables or args.conditions:
        sys.path.insert(0, str(ROOT))  # as CrossHair does: names resolve from the repository root
        if args.checkables:
            print("\n".join(checkables(args.checkables)))
        else:
            print("\n".join(conditions(args.conditions)))
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
            if args.verbose and not _is_path(t.name):
                listing = [sys.executable, str(Path(__file__).resolve()), "--conditions", t.name]
                code, stdout, stderr = _child(listing, t.wall_s)
                shown = stdout.splitlines() if code == 0 else [f"error: {_last_line(stderr)}"]
                print("\n".join(f"    - {line}" for line in shown))
        return 0
    return run(targets, args.jobs, args.verbose, args.strict)


if __name__ == "__main__":
    sys.exit(main())
