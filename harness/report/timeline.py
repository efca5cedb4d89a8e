"""A self-contained HTML timeline of a checked history: one row per process, one bar per
operation from its call to its return, colored by outcome, with the region where no
linearization exists highlighted. The x axis is event order (position in the history), which is
the real-time order the checker used; recorded times are in the tooltips."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.history import NO_TIME, Operation

if TYPE_CHECKING:
    from harness.checkers.linearizable import CheckResult, PartitionResult

__all__ = ["render_timeline", "write_timeline"]

_ROW = 26
_BAR = 18
_LABEL = 110
_COLORS = {"ok": "#5aa469", "fail": "#a0a0a0", "info": "#e59a3a"}

_CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 6px; }
.verdict-invalid { color: #b3261e; } .verdict-valid { color: #2e7d32; }
.verdict-unknown { color: #9a6700; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px;
  vertical-align: middle; border-radius: 2px; }
.scroll { overflow-x: auto; border: 1px solid #ddd; margin: 10px 0; }
.chart { position: relative; }
.lane { position: absolute; left: 0; height: 1px; background: #eee; }
.pname { position: absolute; left: 4px; width: 100px; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; color: #555; }
.op { position: absolute; height: 18px; border-radius: 3px; box-sizing: border-box;
  font-size: 11px; line-height: 18px; padding: 0 3px; overflow: hidden; white-space: nowrap;
  color: #fff; border: 1px solid rgba(0,0,0,.25); }
.open { background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.35) 0 4px,
  transparent 4px 8px); }
.op.pending { outline: 2px dashed #b3261e; outline-offset: 1px; }
.op.failed { outline: 3px solid #b3261e; outline-offset: 1px; }
.op.dim { opacity: .45; }
.region { position: absolute; top: 0; background: rgba(179,38,30,.10);
  border-left: 1px solid rgba(179,38,30,.5); border-right: 2px solid #b3261e; }
.axis { position: absolute; top: 0; color: #999; font-size: 10px; }
table { border-collapse: collapse; margin-top: 6px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left;
  font-family: ui-monospace, monospace; font-size: 12px; }
"""


def _proc_key(p: int | str) -> tuple[int, str]:
    return (0, f"{p:012d}") if isinstance(p, int) else (1, str(p))


def _describe(result: CheckResult, op: Operation) -> str:
    model = result.model
    try:
        enc = model.encode(op)
    except ValueError:
        enc = None
    if enc is None:
        return f"{op.f} {op.input!r}" + (f" -> {op.output!r}" if op.status == "ok" else "")
    return model.describe_operation(*enc)


def _tooltip(result: CheckResult, op: Operation, order: int | None) -> str:
    parts = [
        f"process {op.process}",
        f"{op.status}: {_describe(result, op)}",
        f"invoke index {op.invoke.index}",
    ]
    if op.completion is not None:
        parts.append(f"completion index {op.completion.index} ({op.completion.type})")
    else:
        parts.append("never returned")
    if op.invoke.time != NO_TIME:
        parts.append(f"call time {op.invoke.time} ns")
    if op.completion is not None and op.completion.time != NO_TIME:
        parts.append(f"return time {op.completion.time} ns")
    if op.key is not None:
        parts.append(f"key {op.key!r}")
    if op.completion is not None and op.completion.error is not None:
        parts.append(f"error {op.completion.error!r}")
    if order is not None:
        parts.append(f"linearized #{order + 1} in the longest prefix")
    return "\n".join(parts)


def render_timeline(result: CheckResult, partition: PartitionResult | None = None) -> str:
    """HTML for one partition: the failing one by default, else the whole history."""
    part = partition if partition is not None else result.failure
    ops: Sequence[Operation] = part.operations if part is not None else result.operations
    esc = html.escape
    positions = [op.call for op in ops] + [op.ret for op in ops if op.ret is not None]
    first = min(positions, default=0)
    last = max(positions, default=0) + 2
    span = max(last - first, 1)
    scale = max(4.0, min(24.0, 16000.0 / span))

    def x(pos: int) -> float:
        return _LABEL + (pos - first) * scale

    processes = sorted({op.process for op in ops}, key=_proc_key)
    row = {p: i for i, p in enumerate(processes)}
    width = x(last) + 20
    height = len(processes) * _ROW + 24

    order_of: dict[int, int] = {}
    failed_id = pending_ids = None
    if part is not None:
        order_of = {id(op): i for i, op in enumerate(part.linearization)}
        if part.failed_op is not None:
            failed_id = id(part.failed_op)
            pending_ids = {id(op) for op in part.pending}

    out: list[str] = []
    title = f"{result.verdict}: {result.model.name}"
    out.append(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>")
    out.append(f"<style>{_CSS}</style></head><body>")
    out.append(f"<h1 class='verdict-{result.verdict}'>{esc(result.verdict.upper())}</h1>")
    summary = (
        f"model {result.model.name}; {len(result.operations)} operations in "
        f"{len(result.partitions)} checked partition(s); {result.elapsed:.3f} s"
    )
    out.append(f"<div>{esc(summary)}</div>")
    if part is not None:
        out.append(
            f"<div>partition key {esc(repr(part.key))}: {len(part.operations)} operations, "
            f"{part.explored} configurations explored</div>"
        )
        if part.failed_op is not None:
            out.append(
                "<div><b>No linearization gets past the return of:</b> "
                f"{esc(_tooltip(result, part.failed_op, None).replace(chr(10), '; '))}</div>"
            )
    out.append("<div class='legend'>")
    for status, color in _COLORS.items():
        out.append(f"<span><i style='background:{color}'></i>{status}</span>")
    out.append(
        "<span><i style='background:#999' class='open'></i>unknown outcome: may take effect "
        "any time after its call</span><span>red frame: cannot be linearized; dashed: "
        "pending at that point; #n: order in the longest linearizable prefix</span></div>"
    )

    out.append(f"<div class='scroll'><div class='chart' style='width:{width:.0f}px;")
    out.append(f"height:{height}px'>")
    if part is not None and part.failed_op is not None and part.failed_op.ret is not None:
        start = min((op.call for op in part.pending), default=part.failed_op.call)
        left, right = x(start), x(part.failed_op.ret) + scale / 2
        out.append(
            f"<div class='region' style='left:{left:.1f}px;width:{right - left:.1f}px;"
            f"height:{height}px' title='no linearization exists past this point'></div>"
        )
    tick = max(1, round(60 / scale / 5.0) * 5)
    for pos in range(first - first % tick, last, tick):
        if pos >= first:
            out.append(f"<div class='axis' style='left:{x(pos):.1f}px'>{pos}</div>")
    for p in processes:
        top = 18 + row[p] * _ROW
        out.append(
            f"<div class='lane' style='top:{top + _BAR // 2}px;width:{width:.0f}px'></div>"
            f"<div class='pname' style='top:{top}px'>{esc(str(p))}</div>"
        )
    for op in ops:
        top = 18 + row[op.process] * _ROW
        end = op.ret if op.ret is not None else last
        left = x(op.call)
        bar = max(x(end) - left, 4.0)
        classes = ["op"]
        if op.status == "info":
            classes.append("open")
        if id(op) == failed_id:
            classes.append("failed")
        elif pending_ids is not None and id(op) in pending_ids:
            classes.append("pending")
        order = order_of.get(id(op))
        label = _describe(result, op)
        if order is not None:
            label = f"#{order + 1} {label}"
        elif (
            part is not None and part.failed_op is not None and op.call > (part.failed_op.ret or 0)
        ):
            classes.append("dim")
        out.append(
            f"<div class='{' '.join(classes)}' style='left:{left:.1f}px;top:{top}px;"
            f"width:{bar:.1f}px;background-color:{_COLORS[op.status]}' "
            f"title='{esc(_tooltip(result, op, order), quote=True)}'>{esc(label)}</div>"
        )
    out.append("</div></div>")

    if part is not None and part.failed_op is not None:
        out.append("<h2 style='font-size:15px'>Around the failure</h2><table>")
        out.append(
            "<tr><th></th><th>process</th><th>operation</th><th>status</th><th>index</th></tr>"
        )
        prefix = part.linearization[-10:]
        rows = [("prefix", op) for op in prefix] + [
            ("failed" if id(op) == failed_id else "pending", op) for op in part.pending
        ]
        for tag, op in rows:
            idx = f"{op.invoke.index}" + (
                f"..{op.completion.index}" if op.completion is not None else ""
            )
            out.append(
                f"<tr><td>{tag}</td><td>{esc(str(op.process))}</td>"
                f"<td>{esc(_describe(result, op))}</td><td>{op.status}</td><td>{idx}</td></tr>"
            )
        out.append(f"</table><div>state after the prefix: {esc(part.state)}</div>")
    out.append("</body></html>\n")
    return "".join(out)


def write_timeline(
    result: CheckResult, path: str | Path, partition: PartitionResult | None = None
) -> Path:
    """Write `render_timeline` to `path`; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_timeline(result, partition), encoding="utf-8")
    return target
