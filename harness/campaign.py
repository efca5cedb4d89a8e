"""Campaigns: one run, or the matrix nemesis x workload x config x seed, each run in its own
directory, with a summary (JSON and an HTML index) of the verdicts.

Layout of a campaign's `out` directory:

    out/summary.json          every run: config, verdict, each check's verdict and explanation
    out/index.html            the runs in a table, linking each run's page
    out/<run>/report.html     a run's page (`harness.report`), beside its history.jsonl

Exit code (`CampaignResult.exit_code`), the same as `dynamo-ref check`'s: 0 when every run is
valid, 1 when any is invalid, else 2 when any is unknown. Unknown is never a pass: a run whose
history could not be checked (a final read failed, a search hit its time limit, the run itself
crashed) says nothing about the system, so a campaign that cannot vouch for it fails, and says
why on the run's page.

The runner is passed in (`harness.run.run_once` in the CLI), so a campaign knows nothing of how a
run starts a cluster or which checks it makes.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from harness.checkers.verdict import Result, Verdict, combine, json_able
from harness.history import HistoryError, Op, read_jsonl
from harness.report import HISTORY_FILE, IndexRow, RunPage, write_index, write_run_report

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "EXIT",
    "NAME_FIELDS",
    "CampaignObserver",
    "CampaignResult",
    "RunOnce",
    "RunResultLike",
    "RunSummary",
    "config_json",
    "exit_code",
    "expand_matrix",
    "run_campaign",
    "run_name",
]

C = TypeVar("C", bound="DataclassInstance")

EXIT: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}
SUMMARY_FILE = "summary.json"
INDEX_FILE = "index.html"
# Config fields that name a run, in this order (those a config lacks are skipped).
NAME_FIELDS = ("target", "nemesis", "workload", "mode", "quorum", "net", "nodes", "seed")

Progress = Callable[[str, float], None]
"""`harness.run`'s progress callback: the run's phase and how far it is (0..1)."""


class RunResultLike(Protocol):
    """What a campaign reads of a run's result (`harness.run.RunResult`)."""

    @property
    def history(self) -> Sequence[Op]: ...
    @property
    def checks(self) -> Mapping[str, Result]: ...
    @property
    def verdict(self) -> object: ...
    @property
    def timings(self) -> Mapping[str, float]: ...


RunOnce = Callable[[C, Progress | None], Awaitable[RunResultLike]]


class CampaignObserver:
    """Hooks for progress display; the base class ignores them all."""

    def run_started(self, index: int, total: int, name: str, config: Mapping[str, object]) -> None:
        """Run `index` (0-based) of `total` begins."""

    def run_progress(self, phase: str, fraction: float) -> None:
        """The current run's phase and how far it is (0..1)."""

    def run_finished(self, index: int, summary: RunSummary) -> None:
        """Run `index` ended; its page is written."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    name: str
    out: Path
    config: dict[str, object]
    verdict: Verdict
    checks: dict[str, Result] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    error: str | None = None

    def to_json(self, root: Path) -> dict[str, object]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else _relative(p, root)

        return {
            "name": self.name,
            "out": rel(self.out),
            "config": self.config,
            "verdict": self.verdict,
            "checks": {
                name: {
                    "checker": r.checker,
                    "verdict": r.verdict,
                    "explanation": r.explanation,
                    "findings": len(r.findings),
                    "elapsed": round(r.elapsed, 3),
                }
                for name, r in self.checks.items()
            },
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "report": rel(self.report),
            "history": rel(self.out / HISTORY_FILE),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class CampaignResult:
    out: Path
    runs: tuple[RunSummary, ...]
    summary: Path
    index: Path

    @property
    def verdict(self) -> Verdict:
        return combine(r.verdict for r in self.runs)

    @property
    def exit_code(self) -> int:
        return exit_code(r.verdict for r in self.runs)

    def report(self) -> Path:
        """The page to open: the run's own page for a single run, else the index."""
        if len(self.runs) == 1 and self.runs[0].report is not None:
            return self.runs[0].report
        return self.index


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """0 all valid, 1 any invalid, else 2 (any unknown, or no runs at all)."""
    return EXIT[combine(verdicts)]


def _relative(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return json_able(value)


def config_json(cfg: DataclassInstance) -> dict[str, object]:
    """A run config as JSON-able data (paths as strings, tuples as lists)."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _name_part(value: object) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value) or "none"
    return str(value)


def run_name(cfg: DataclassInstance) -> str:
    """A directory name from the config fields that tell runs apart: `partition+kill_set-add_
    dvv_sloppy_proxy_5_s0` (the seed prefixed with s)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    parts: list[str] = []
    for name in NAME_FIELDS:
        if name not in names:
            continue
        value = getattr(cfg, name)
        if name == "target" and value == "dynamo":
            continue
        text = _name_part(value)
        parts.append(f"s{text}" if name == "seed" else f"n{text}" if name == "nodes" else text)
    safe = "".join(c if c.isalnum() or c in "+-_." else "-" for c in "_".join(parts))
    return safe or "run"


def expand_matrix(base: C, axes: Mapping[str, Sequence[object]]) -> list[C]:
    """The product of `axes` (config field -> values), applied to `base` in that order: the
    last axis varies fastest. An axis with no values is an error, not an empty campaign."""
    known = {f.name for f in dataclasses.fields(base)}
    for name, values in axes.items():
        if name not in known:
            raise ValueError(f"{type(base).__name__} has no field {name!r}")
        if not values:
            raise ValueError(f"no values for {name!r}")
    names = list(axes)
    return [
        dataclasses.replace(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*(axes[n] for n in names))
    ]


def _normalize_verdict(raw: object, checks: Mapping[str, Result]) -> Verdict:
    """A run's verdict as a string: given as one, or as something with a `.verdict`; where it
    is missing, the combination of its checks (none: unknown)."""
    for candidate in (raw, getattr(raw, "verdict", None)):
        if candidate in EXIT:
            return candidate
    return combine(r.verdict for r in checks.values())


def _partial_history(out: Path) -> list[Op]:
    """What a crashed run left in its history file, if anything readable."""
    try:
        return read_jsonl(out / HISTORY_FILE)
    except (OSError, HistoryError):
        return []


def _unique_names(configs: Sequence[DataclassInstance]) -> list[str]:
    names = [run_name(c) for c in configs]
    if len(configs) > 1:
        width = len(str(len(configs)))
        names = [f"{i + 1:0{width}d}-{n}" for i, n in enumerate(names)]
    return names


async def run_campaign(
    configs: Sequence[C],
    out: Path,
    run_once: RunOnce[C],
    *,
    observer: CampaignObserver | None = None,
    title: str = "Campaign",
) -> CampaignResult:
    """Run each config in turn in `out/<run name>` (its `out` field is set to that), write each
    run's page as soon as it ends, and keep `summary.json` and `index.html` current after every
    run, so an interrupted campaign still leaves a readable summary. A run that raises is
    recorded as unknown with its traceback; the campaign goes on."""
    obs = observer or CampaignObserver()
    out.mkdir(parents=True, exist_ok=True)
    names = _unique_names(configs)
    summaries: list[RunSummary] = []
    summary_path, index_path = out / SUMMARY_FILE, out / INDEX_FILE
    for i, (base, name) in enumerate(zip(configs, names, strict=True)):
        run_dir = out / name
        cfg = dataclasses.replace(base, out=run_dir)
        config = config_json(cfg)
        obs.run_started(i, len(configs), name, config)
        run_dir.mkdir(parents=True, exist_ok=True)
        error: str | None = None
        try:
            result = await run_once(cfg, obs.run_progress)
        except Exception:  # a crashed run is a finding of its own: record it and go on
            error = traceback.format_exc()
            history: Sequence[Op] = _partial_history(run_dir)
            checks: dict[str, Result] = {}
            timings: dict[str, float] = {}
            verdict: Verdict = "unknown"
        else:
            history, checks = result.history, dict(result.checks)
            timings = dict(result.timings)
            verdict = _normalize_verdict(result.verdict, checks)
        page = RunPage(name, config, history, checks, verdict, timings, error)
        report = write_run_report(page, run_dir)
        summary = RunSummary(name, run_dir, config, verdict, checks, timings, report, error)
        summaries.append(summary)
        _write_summary(out, summaries, summary_path, index_path, title)
        obs.run_finished(i, summary)
    if not summaries:
        _write_summary(out, summaries, summary_path, index_path, title)
    return CampaignResult(out, tuple(summaries), summary_path, index_path)


def _write_summary(
    out: Path, runs: Sequence[RunSummary], summary_path: Path, index_path: Path, title: str
) -> None:
    verdict = combine(r.verdict for r in runs)
    payload = {
        "verdict": verdict,
        "exit_code": EXIT[verdict],
        "counts": {v: sum(1 for r in runs if r.verdict == v) for v in EXIT},
        "runs": [r.to_json(out) for r in runs],
    }
    summary_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    rows = [
        IndexRow(
            name=r.name,
            config={k: v for k, v in r.config.items() if k != "out"},
            verdict=r.verdict,
            checks={n: c.verdict for n, c in r.checks.items()},
            report=None if r.report is None else _relative(r.report, out),
            note="run crashed: " + r.error.strip().splitlines()[-1] if r.error else "",
        )
        for r in runs
    ]
    write_index(index_path, rows, title=title)
