"""Campaigns: one run, or the matrix nemesis x workload x config x seed, each run in its own
directory, with a summary (JSON and an HTML index) of the verdicts.

`dynamo-ref campaign --out ROOT` never reuses a directory: each campaign gets a timestamped
folder of its own (`new_campaign_dir`), `ROOT/latest` links to the newest, and `ROOT/index.html`
lists every campaign in ROOT, newest first (`dynamo-ref serve ROOT` serves the same):

    ROOT/index.html                   every campaign, newest first
    ROOT/latest -> 20250101T120000Z   the newest campaign
    ROOT/<stamp>/summary.json         every run: config, verdict, each check's verdict and why
    ROOT/<stamp>/index.html           the runs in a table, linking each run's page
    ROOT/<stamp>/<run>/report.html    a run's page (`harness.report`), beside its history.jsonl

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
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from harness.checkers.verdict import Result, Verdict, combine, json_able
from harness.history import HistoryError, Op, read_jsonl
from harness.recorder import LiveStatus, Progress
from harness.report import (
    CAMPAIGNS_MARK,
    HISTORY_FILE,
    CampaignEntry,
    IndexRow,
    RunPage,
    write_campaigns,
    write_index,
    write_run_report,
)

__all__ = [
    "EXIT",
    "LATEST",
    "NAME_FIELDS",
    "CampaignConfig",
    "CampaignObserver",
    "CampaignResult",
    "RunOnce",
    "RunResultLike",
    "RunSummary",
    "config_json",
    "exit_code",
    "expand_matrix",
    "list_campaigns",
    "new_campaign_dir",
    "run_campaign",
    "run_name",
    "write_campaigns_index",
]


class CampaignConfig(Protocol):
    """What a campaign needs of a run's config (`harness.run.RunConfig`): a dataclass with an
    `out` directory, that says what keeps it from running and which of its fields apply."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    out: Path

    def problems(self) -> list[str]:
        """What keeps this config from running; empty when it can."""

    def settings(self) -> dict[str, object]:
        """The fields that apply to this run, by name, in the order to show them."""


C = TypeVar("C", bound=CampaignConfig)

EXIT: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}
SUMMARY_FILE = "summary.json"
INDEX_FILE = "index.html"
LATEST = "latest"
# Config fields that name a run, in this order (those a config lacks are skipped).
NAME_FIELDS = ("target", "nemesis", "workload", "mode", "quorum", "net", "nodes", "seed")


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

    def run_progress(
        self, phase: str, fraction: float, status: LiveStatus | None = None, /
    ) -> None:
        """The current run's phase and how far it is (0..1); while its load runs, about once a
        second, what it has done so far."""

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


def config_json(cfg: CampaignConfig) -> dict[str, object]:
    """The settings that apply to a run, as JSON-able data (paths as strings, tuples as
    lists)."""
    return {name: _plain(value) for name, value in cfg.settings().items()}


def _name_part(value: object) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value) or "none"
    return str(value)


def run_name(cfg: CampaignConfig) -> str:
    """A directory name from the settings that tell runs apart and apply to the run:
    `partition+kill_set-add_dvv_sloppy_proxy_n5_s0` (nodes prefixed with n, the seed with s)."""
    settings = cfg.settings()
    parts: list[str] = []
    for name in NAME_FIELDS:
        if name not in settings:
            continue
        value = settings[name]
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


def _unique_names(configs: Sequence[CampaignConfig]) -> list[str]:
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
    started = time.time()
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
        # The page is drawn: the campaign keeps the verdicts, not the checkers' searches.
        kept = {n: dataclasses.replace(r, source=None) for n, r in checks.items()}
        summary = RunSummary(name, run_dir, config, verdict, kept, timings, report, error)
        summaries.append(summary)
        _write_summary(out, summaries, summary_path, index_path, title, started)
        obs.run_finished(i, summary)
    if not summaries:
        _write_summary(out, summaries, summary_path, index_path, title, started)
    return CampaignResult(out, tuple(summaries), summary_path, index_path)


def _iso(t: float) -> str:
    """UTC, to the millisecond (campaigns a second apart still sort)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _write_summary(  # noqa: PLR0917  # one campaign's facts
    out: Path,
    runs: Sequence[RunSummary],
    summary_path: Path,
    index_path: Path,
    title: str,
    started: float,
) -> None:
    verdict = combine(r.verdict for r in runs)
    payload = {
        "title": title,
        "started": _iso(started),
        "updated": _iso(time.time()),
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


# ---------------------------------------------------------------------------------------------
# A root of campaigns: one timestamped folder each, `latest`, and an index of them all


def new_campaign_dir(root: Path, now: float | None = None) -> Path:
    """A fresh folder for one campaign under `root`, named by the UTC time
    (`20250101T120000Z`, then `-2`, `-3` within one second), with `root/latest` pointing at it.
    Nothing already in `root` is touched, so earlier campaigns stay where they are."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    for n in itertools.count(1):
        path = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        break
    link, tmp = root / LATEST, root / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(path.name, tmp)
    try:
        os.replace(tmp, link)  # atomic: a reader sees the old link or the new one
    except OSError:  # `latest` is a real directory (made by hand): leave it alone
        tmp.unlink(missing_ok=True)
    return path


def _entry(root: Path, folder: Path, index: str) -> CampaignEntry | None:
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    runs = summary.get("runs") if isinstance(summary, dict) else None
    if not isinstance(runs, list):
        return None
    verdict = summary.get("verdict")
    counts = summary.get("counts")
    started = summary.get("started")
    if not isinstance(started, str):
        started = _iso((folder / SUMMARY_FILE).stat().st_mtime)
    rel = "" if folder == root else folder.name + "/"
    failing = [
        str(run.get("name"))
        for run in runs
        if isinstance(run, dict) and run.get("verdict") in ("invalid", "unknown")
    ]
    single = runs[0] if len(runs) == 1 and isinstance(runs[0], dict) else None
    report = single.get("report") if single is not None else None
    return CampaignEntry(
        path=rel + index,
        title=str(summary.get("title", folder.name)),
        started=started,
        verdict=verdict if verdict in EXIT else "unknown",
        counts={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
        runs=len(runs),
        run_page=rel + report if isinstance(report, str) else None,
        failing=tuple(failing),
    )


def list_campaigns(root: Path) -> list[CampaignEntry]:
    """Every campaign under `root` (its folders with a `summary.json`, and `root` itself if an
    earlier version wrote one there), newest first."""
    entries: list[CampaignEntry] = []
    if (root / SUMMARY_FILE).is_file():
        legacy = _entry(root, root, LEGACY_INDEX_FILE)
        if legacy is not None:
            entries.append(legacy)
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_symlink() or not folder.is_dir():
                continue
            entry = _entry(root, folder, INDEX_FILE)
            if entry is not None:
                entries.append(entry)
    return sorted(entries, key=lambda e: (e.started, e.path), reverse=True)


LEGACY_INDEX_FILE = "runs.html"


def write_campaigns_index(root: Path) -> Path:
    """`root/index.html`: every campaign under `root`, newest first. A campaign an earlier
    version wrote straight into `root` keeps its run index, renamed `runs.html`."""
    index = root / INDEX_FILE
    legacy = root / LEGACY_INDEX_FILE
    if (
        (root / SUMMARY_FILE).is_file()
        and index.is_file()
        and not legacy.exists()
        and CAMPAIGNS_MARK not in index.read_text(encoding="utf-8", errors="replace")
    ):
        index.rename(legacy)
    return write_campaigns(index, list_campaigns(root), title=f"Campaigns in {root.name}")
