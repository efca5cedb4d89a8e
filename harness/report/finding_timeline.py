"""An HTML timeline for the verdicts of checkers other than linearizability: the operations on
the failing key (or the whole history), the ops a finding names framed in red, and fault windows
shaded. Same look as `timeline.py`; the x axis is position in the history."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from harness.checkers.causal import Fault
from harness.checkers.models import ModelError, freeze
from harness.checkers.verdict import Result
from harness.history import NO_TIME, Operation
from harness.report.timeline import _COLORS, _CSS

__all__ = ["render_findings", "write_findings"]

_ROW, _BAR, _LABEL = 26, 18, 110


def _label(op: Operation) -> str:
    text = f"{op.f} {op.input!r}" if op.input is not None else op.f
    if op.status == "ok" and op.f in ("read", "get", "replica-read"):
        text += f" -> {op.output!r}"
    return text


def render_findings(
    results: Sequence[Result], operations: Sequence[Operation], faults: Sequence[Fault]
) -> str:
    """The first failing result's first finding's key; all operations if nothing failed."""
    esc = html.escape
    failing = next((r for r in results if r.findings and r.verdict == "invalid"), None)
    finding = failing.findings[0] if failing is not None else None
    ops = list(operations)
    if finding is not None:
        key_ops = [op for op in ops if _same_key(op, finding.key)]
        ops = key_ops or ops
    marked = set(finding.ops) if finding is not None else set()
    positions = [op.call for op in ops] + [op.ret for op in ops if op.ret is not None]
    first, last = min(positions, default=0), max(positions, default=0) + 2
    scale = max(4.0, min(24.0, 16000.0 / max(last - first, 1)))

    def x(pos: int) -> float:
        return _LABEL + (max(pos, first) - first) * scale

    processes = sorted({str(op.process) for op in ops})
    row = {p: i for i, p in enumerate(processes)}
    width, height = x(last) + 20, len(processes) * _ROW + 24
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>check</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for r in results:
        out.append(
            f"<h1 class='verdict-{r.verdict}'>{esc(r.checker)}: {esc(r.verdict.upper())}</h1>"
            f"<pre>{esc(r.explanation)}</pre>"
        )
    if finding is not None:
        out.append(f"<div><b>Key {esc(repr(finding.key))}:</b> {esc(finding.message)}</div>")
    out.append(
        f"<div class='scroll'><div class='chart' style='width:{width:.0f}px;height:{height}px'>"
    )
    for f in faults:
        if f.end is not None and f.end < first:
            continue
        left, right = x(f.start), x(f.end if f.end is not None else last)
        out.append(
            f"<div class='region' style='left:{left:.1f}px;width:{max(right - left, 2):.1f}px;"
            f"height:{height}px' title='{esc(f.name)} {esc(repr(f.value))}'></div>"
        )
    for p in processes:
        top = 18 + row[p] * _ROW
        out.append(
            f"<div class='lane' style='top:{top + _BAR // 2}px;width:{width:.0f}px'></div>"
            f"<div class='pname' style='top:{top}px'>{esc(p)}</div>"
        )
    for op in ops:
        top = 18 + row[str(op.process)] * _ROW
        left = x(op.call)
        bar = max(x(op.ret if op.ret is not None else last) - left, 4.0)
        classes = ["op"] + (["open"] if op.status == "info" else [])
        if op.invoke.index in marked:
            classes.append("failed")
        tip = [f"process {op.process}", f"{op.status}: {_label(op)}", f"index {op.invoke.index}"]
        if op.invoke.time != NO_TIME:
            tip.append(f"call time {op.invoke.time} ns")
        out.append(
            f"<div class='{' '.join(classes)}' style='left:{left:.1f}px;top:{top}px;"
            f"width:{bar:.1f}px;background-color:{_COLORS[op.status]}' "
            f"title='{esc(chr(10).join(tip), quote=True)}'>{esc(_label(op))}</div>"
        )
    out.append("</div></div><div>shaded: fault windows; red frame: ops of the finding</div>")
    out.append("</body></html>\n")
    return "".join(out)


def _same_key(op: Operation, key: object) -> bool:
    try:
        return freeze(op.key) == key
    except ModelError:
        return False


def write_findings(
    path: str | Path,
    results: Sequence[Result],
    operations: Sequence[Operation],
    faults: Sequence[Fault],
) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_findings(results, operations, faults), encoding="utf-8")
    return target
