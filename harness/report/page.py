"""The HTML report: a page per run and an index page for a campaign.

A run's page is one self-contained file (`report.html`; plots are embedded as PNG data URIs)
beside the files it links: the raw history (`history.jsonl`) and the failing keys' timelines
(`timelines/*.html`, drawn by `harness.report.timeline`). Every piece of text that
comes from a run (config, values, checker explanations) is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.checkers.causal import Fault, fault_windows
from harness.checkers.verdict import Finding, Result, Verdict, json_able
from harness.history import NO_TIME, HistoryError, Op, Operation, is_nemesis, pair, write_jsonl
from harness.report.timebase import Timebase
from harness.report.timeline import render, render_findings

__all__ = [
    "CAMPAIGNS_MARK",
    "HISTORY_FILE",
    "REPORT_FILE",
    "CampaignEntry",
    "IndexRow",
    "RunPage",
    "latency_by_f",
    "render_campaigns",
    "render_index",
    "write_campaigns",
    "write_index",
    "write_run_report",
]

REPORT_FILE = "report.html"
HISTORY_FILE = "history.jsonl"
TIMELINE_DIR = "timelines"
_SHOWN = 3  # findings listed per failing key; the timeline and summary.json have the rest

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 20px 28px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 6px 0; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
pre { white-space: pre-wrap; margin: 0; font-size: 12px; }
code, .mono { font-family: ui-monospace, monospace; font-size: 12px; }
.valid { color: #2e7d32; font-weight: 600; } .invalid { color: #b3261e; font-weight: 600; }
.unknown { color: #9a6700; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; }
details summary { cursor: pointer; color: #555; }
"""


@dataclass(frozen=True, slots=True)
class RunPage:
    """What a run's page shows. `error`: the run could not complete (why), its verdict unknown."""

    name: str
    config: Mapping[str, object]
    history: Sequence[Op]
    checks: Mapping[str, Result]
    verdict: Verdict
    timings: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignEntry:
    """One campaign on the page of every campaign in a folder; paths relative to that page."""

    path: str  # the campaign's index page
    title: str
    started: str  # ISO 8601, UTC
    verdict: Verdict
    counts: Mapping[str, int]
    runs: int
    run_page: str | None = None  # a single run's page
    failing: tuple[str, ...] = ()  # names of the runs not valid


CAMPAIGNS_MARK = "<meta name='generator' content='dynamo-ref campaigns'>"


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One run on the index page; `report` is relative to the index."""

    name: str
    config: Mapping[str, object]
    verdict: Verdict
    checks: Mapping[str, Verdict]
    report: str | None
    note: str = ""


def _e(value: object) -> str:
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def _verdict(v: str) -> str:
    return f"<span class='{_e(v)}'>{_e(v)}</span>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _value(v: object) -> str:
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v) or "none"
    return str(v)


def _head(title: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<p><img alt='{_e(alt)}' src='data:image/png;base64,{data}'></p>"


def _seconds(t: int | None, base: Timebase) -> str:
    if t is None:
        return "never healed"
    if t == NO_TIME:
        return "?"
    return f"{base.seconds(t):.3f}"


def _faults_table(faults: Sequence[Fault], base: Timebase) -> str:
    if not faults:
        return "<p>No faults were injected.</p>"
    rows = [
        "<table><tr><th>#</th><th>fault</th><th>target</th><th>start (s)</th><th>end (s)</th>"
        "<th>duration (s)</th><th>history positions</th></tr>"
    ]
    for i, f in enumerate(faults, 1):
        duration = ""
        if f.end_time is not None and NO_TIME not in (f.start_time, f.end_time):
            duration = f"{(f.end_time - f.start_time) / 1e9:.3f}"
        span = f"{f.start}..{'' if f.end is None else f.end}"
        rows.append(
            f"<tr><td>{i}</td><td>{_e(f.name)}</td>"
            f"<td class='mono'>{_e(json.dumps(json_able(f.value)))}</td>"
            f"<td>{_seconds(f.start_time, base)}</td><td>{_seconds(f.end_time, base)}</td>"
            f"<td>{duration}</td><td>{_e(span)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _failing_keys(result: Result) -> list[tuple[str, list[Finding]]]:
    """Findings grouped by key, keys in order of their first finding."""
    groups: dict[str, list[Finding]] = {}
    for f in result.findings:
        groups.setdefault(repr(f.key), []).append(f)
    return list(groups.items())


def _write_timelines(
    out_dir: Path,
    checks: Mapping[str, Result],
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    limit: int,
) -> dict[tuple[str, str], str]:
    """(check name, repr(key)) -> timeline link relative to `out_dir`: one page per invalid
    check, a view per failing key (up to `limit`), the link opening that key's view. A
    linearizability check's page has every key, with the state after each operation."""
    from harness.checkers.linearizable import CheckResult
    from harness.report.timeline import linearizability_data

    links: dict[tuple[str, str], str] = {}
    for name, result in checks.items():
        if result.verdict != "invalid":
            continue
        rel = f"{TIMELINE_DIR}/{_slug(name)}.html"
        groups = _failing_keys(result)[:limit]
        if isinstance(result.source, CheckResult):
            page = render(linearizability_data(result.source, faults))
        else:
            kept = tuple(f for _, findings in groups for f in findings)
            page = render_findings([replace(result, findings=kept)], operations, faults)
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
        for i, (key, _) in enumerate(groups):
            links[name, key] = rel if isinstance(result.source, CheckResult) else f"{rel}#{i}"
    return links


def _checks_table(checks: Mapping[str, Result]) -> str:
    if not checks:
        return "<p class='unknown'>No checker ran.</p>"
    out = ["<table><tr><th>check</th><th>verdict</th><th>explanation</th><th>time (s)</th></tr>"]
    for name, r in checks.items():
        details = json.dumps(json_able(r.details), indent=1, sort_keys=True)
        out.append(
            f"<tr><td>{_e(name)}<br><small>{_e(r.checker)}</small></td>"
            f"<td>{_verdict(r.verdict)}</td><td><pre>{_e(r.explanation)}</pre>"
            f"<details><summary>details</summary><pre>{_e(details)}</pre></details></td>"
            f"<td>{r.elapsed:.2f}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _failing_section(checks: Mapping[str, Result], links: Mapping[tuple[str, str], str]) -> str:
    out: list[str] = []
    for name, r in checks.items():
        if r.verdict != "invalid" or not r.findings:
            continue
        groups = _failing_keys(r)
        out.append(f"<h3>{_e(name)}: {len(groups)} failing key(s)</h3><table>")
        out.append("<tr><th>key</th><th>findings</th><th>timeline</th></tr>")
        for key, findings in groups:
            rel = links.get((name, key))
            link = f"<a href='{_e(rel)}'>timeline</a>" if rel else "(not drawn)"
            shown = "\n".join(f.message for f in findings[:_SHOWN])
            if len(findings) > _SHOWN:
                shown += f"\n(and {len(findings) - _SHOWN} more)"
            out.append(
                f"<tr><td class='mono'>{_e(key)}</td><td><pre>{_e(shown)}</pre></td>"
                f"<td>{link}</td></tr>"
            )
        out.append("</table>")
    return "".join(out) or "<p>No checker found a failing key.</p>"


def _ops_table(operations: Sequence[Operation]) -> str:
    counts: dict[str, dict[str, int]] = {}
    for op in operations:
        row = counts.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0})
        row[op.status] += 1
    if not counts:
        return "<p>No client operations.</p>"
    out = ["<table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th></tr>"]
    for f, row in sorted(counts.items()):
        out.append(
            f"<tr><td>{_e(f)}</td><td>{row['ok']}</td><td>{row['fail']}</td>"
            f"<td>{row['info']}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of a sorted, non-empty sequence."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_by_f(operations: Sequence[Operation]) -> dict[str, dict[str, float]]:
    """Per operation type (`f`), the latency (ms) of its `ok` operations: count, p50, p95, p99
    and max (nearest rank), and how many failed or had an unknown outcome."""
    latencies: dict[str, list[float]] = {}
    others: dict[str, dict[str, float]] = {}
    for op in operations:
        row = others.setdefault(op.f, {"fail": 0, "info": 0})
        if op.status != "ok":
            row[op.status] += 1
            continue
        ret = op.return_time
        if op.invoke.time == NO_TIME or ret is None or ret == NO_TIME:
            continue
        latencies.setdefault(op.f, []).append((ret - op.invoke.time) / 1e6)
    out: dict[str, dict[str, float]] = {}
    for f in sorted(others):
        values = sorted(latencies.get(f, []))
        stats: dict[str, float] = {"ok": len(values), **others[f]}
        if values:
            stats |= {
                "p50": _quantile(values, 0.50),
                "p95": _quantile(values, 0.95),
                "p99": _quantile(values, 0.99),
                "max": values[-1],
            }
        out[f] = stats
    return out


def _latency_table(operations: Sequence[Operation]) -> str:
    stats = latency_by_f(operations)
    if not stats:
        return "<p>No client operations.</p>"
    out = [
        "<table class='latency'><tr><th>operation</th><th>ok</th><th>p50 (ms)</th>"
        "<th>p95 (ms)</th><th>p99 (ms)</th><th>max (ms)</th><th>fail</th><th>info</th></tr>"
    ]
    for f, row in stats.items():
        cells = "".join(
            f"<td>{row[q]:.1f}</td>" if q in row else "<td></td>"
            for q in ("p50", "p95", "p99", "max")
        )
        out.append(
            f"<tr><td>{_e(f)}</td><td>{int(row['ok'])}</td>{cells}"
            f"<td>{int(row['fail'])}</td><td>{int(row['info'])}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _kv_table(items: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td class='mono'>{_e(_value(v))}</td></tr>" for k, v in items.items()
    )
    return f"<table>{rows}</table>"


def write_run_report(run: RunPage, out_dir: Path, *, max_timelines: int = 5) -> Path:
    """Write `out_dir/report.html` (and the history and timelines it links, unless the history
    file is already there); returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / HISTORY_FILE
    if not history_path.exists():
        write_jsonl(history_path, run.history)
    faults = fault_windows(run.history)
    pairing_error: str | None = None
    try:
        operations = pair(run.history)
    except HistoryError as exc:
        operations, pairing_error = [], str(exc)
    base = Timebase.of(operations, faults)
    links = _write_timelines(out_dir, run.checks, operations, faults, max_timelines)
    clients = sum(1 for op in run.history if not is_nemesis(op))
    parts = [
        _head(f"{run.name}: {run.verdict}"),
        f"<h1>Run {_e(run.name)}: {_verdict(run.verdict)}</h1>",
    ]
    if run.error:
        parts.append(f"<p class='unknown'>The run did not complete:</p><pre>{_e(run.error)}</pre>")
    # The verdicts first: what a reader opens the page for. The configuration is below.
    parts += [
        "<h2 id='verdicts'>Verdicts</h2>",
        _checks_table(run.checks),
        "<h2>Failing keys</h2>",
        _failing_section(run.checks, links),
        "<h2>Faults</h2>",
        _faults_table(faults, base),
        "<h2>Latency and throughput</h2>",
        _latency_table(operations),
    ]
    if pairing_error is not None:
        parts.append(f"<p class='invalid'>History malformed: {_e(pairing_error)}</p>")
    marked = {
        i for r in run.checks.values() if r.verdict == "invalid" for f in r.findings for i in f.ops
    }
    from harness.report.plots import latency_png, throughput_png  # matplotlib: only here

    parts.append(_img(latency_png(operations, faults, base, marked), "latency over time"))
    parts.append(_img(throughput_png(operations, faults, base), "throughput over time"))
    parts += [
        "<h2>Operations</h2>",
        _ops_table(operations),
        "<h2 id='configuration'>Configuration</h2>",
        _kv_table(run.config),
        "<h2>Timings</h2>",
        _kv_table({k: f"{v:.2f} s" for k, v in run.timings.items()})
        if run.timings
        else "<p>none recorded</p>",
        "<h2>Raw history</h2>",
        f"<p><a href='{HISTORY_FILE}'>{HISTORY_FILE}</a>: {len(run.history)} events "
        f"({clients} client, {len(run.history) - clients} nemesis), JSON lines in Jepsen's "
        "field names; <code>dynamo-ref check</code> reads it.</p>",
        "</body></html>\n",
    ]
    page = out_dir / REPORT_FILE
    page.write_text("".join(parts), encoding="utf-8")
    return page


def render_index(title: str, rows: Sequence[IndexRow]) -> str:
    """A table of runs: what varies between them, each check's verdict, a link to each page."""
    axes = sorted({k for r in rows for k in r.config})
    varying = [a for a in axes if len({_value(r.config.get(a)) for r in rows}) > 1] or axes
    checks = list(dict.fromkeys(c for r in rows for c in r.checks))
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in ("valid", "invalid", "unknown")}
    out = [
        _head(title),
        f"<h1>{_e(title)}</h1><p>{len(rows)} run(s): "
        + ", ".join(f"{n} {_verdict(v)}" for v, n in counts.items() if n)
        + "</p><table><tr><th>run</th>",
    ]
    out.append("<th>verdict</th>")
    out += [f"<th>{_e(c)}</th>" for c in checks]
    out += [f"<th>{_e(a)}</th>" for a in varying]
    out.append("<th>note</th></tr>")
    for r in rows:
        name = f"<a href='{_e(r.report)}'>{_e(r.name)}</a>" if r.report else _e(r.name)
        out.append(f"<tr><td>{name}</td><td>{_verdict(r.verdict)}</td>")
        out += [f"<td>{_verdict(r.checks[c]) if c in r.checks else ''}</td>" for c in checks]
        out += [f"<td class='mono'>{_e(_value(r.config.get(a, '')))}</td>" for a in varying]
        out.append(f"<td>{_e(r.note)}</td></tr>")
    shared = [a for a in axes if a not in varying]
    out.append("</table>")
    if shared and rows:
        out.append("<h2>Shared configuration</h2>")
        out.append(_kv_table({a: rows[0].config.get(a, "") for a in shared}))
    out.append("</body></html>\n")
    return "".join(out)


def write_index(path: Path, rows: Sequence[IndexRow], *, title: str = "Campaign") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_index(title, rows), encoding="utf-8")
    return path


def render_campaigns(title: str, entries: Sequence[CampaignEntry]) -> str:
    """Every campaign in a folder, in the order given (newest first): when, the verdict, how
    many runs and which failed, a link to each campaign (and to a single run's page)."""
    out = [
        _head(title).replace("<title>", CAMPAIGNS_MARK + "<title>", 1),
        f"<h1>{_e(title)}</h1>",
    ]
    if not entries:
        out.append("<p>No campaigns yet.</p></body></html>\n")
        return "".join(out)
    out.append(
        "<table><tr><th>started (UTC)</th><th>verdict</th><th>campaign</th><th>runs</th>"
        "<th>not valid</th></tr>"
    )
    for c in entries:
        counts = ", ".join(f"{n} {_verdict(v)}" for v, n in c.counts.items() if n)
        link = f"<a href='{_e(c.path)}'>{_e(c.title)}</a>"
        if c.run_page is not None:
            link += f" (<a href='{_e(c.run_page)}'>the run</a>)"
        failing = ", ".join(c.failing[:5]) + (" ..." if len(c.failing) > 5 else "")
        out.append(
            f"<tr><td class='mono'>{_e(c.started.replace('T', ' ')[:19])}</td>"
            f"<td>{_verdict(c.verdict)}</td><td>{link}</td><td>{c.runs}: {counts}</td>"
            f"<td class='mono'>{_e(failing)}</td></tr>"
        )
    out.append("</table></body></html>\n")
    return "".join(out)


def write_campaigns(path: Path, entries: Sequence[CampaignEntry], *, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_campaigns(title, entries), encoding="utf-8")
    return path
