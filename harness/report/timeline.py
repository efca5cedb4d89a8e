"""Interactive HTML timelines of checked histories, in the spirit of Porcupine's visualization.

One self-contained page (inline CSS, script and data; it requests nothing): a row per client
process, a bar per operation from its call to its return, coloured by outcome and labelled with
the node that served it. The x axis is event order, each key's own events side by side, so a
key's timeline is as wide as its own operations, whatever the size of the history.

- Per-key views: the failing key first; a selector switches keys.
- It opens on the failure: the operation no linearization gets past (or the ones a finding
  names) framed in red, in view, at a zoom where its label fits. `+`/`-`/`0` or the buttons
  zoom (Ctrl + wheel too); the chart scrolls both ways.
- Hovering an operation shows everything about it: process, node, key, value, result, error,
  history indices and times, and for linearizability its place in the linearization found and
  the state after it (the model's `describe_state`). A click pins it below the chart.
- Fault windows are drawn in a row per fault family above the processes, and shaded.

`write_timeline(result, path)` draws a linearizability `CheckResult`; `write_findings(path,
results, operations, faults)` the findings of the other checkers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Hashable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkers.causal import Fault
from harness.checkers.models import ModelError, freeze, show
from harness.checkers.verdict import Result
from harness.history import NO_TIME, Operation

if TYPE_CHECKING:
    from harness.checkers.linearizable import CheckResult, PartitionResult

__all__ = [
    "MAX_OPS",
    "findings_data",
    "linearizability_data",
    "render",
    "render_findings",
    "render_timeline",
    "write_findings",
    "write_timeline",
]

MAX_OPS = 20_000
"""Operations a page embeds at most (the failing key's always): past it, other keys are left
out and the page says how many."""

_FAULT_COLORS = {
    "partition": "#d32f2f",
    "kill": "#6a1b9a",
    "pause": "#1565c0",
    "clock-skew": "#00838f",
}


def _text(value: object) -> str:
    """Plain text for a value: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else show(value)


def _extra(op: Operation) -> dict[str, str]:
    out: dict[str, str] = {}
    for source in (op.invoke, op.completion):
        if source is None:
            continue
        for name, value in source.extra.items():
            if name not in ("final", "node"):
                text = show(value)
                out[name] = text if len(text) <= 300 else text[:297] + "..."
    return out


class _Clock:
    """Seconds since the history's first recorded time."""

    def __init__(self, operations: Iterable[Operation], faults: Sequence[Fault]) -> None:
        times = [op.invoke.time for op in operations if op.invoke.time != NO_TIME]
        times += [f.start_time for f in faults if f.start_time != NO_TIME]
        self.origin = min(times, default=0)

    def seconds(self, t: int | None) -> float | None:
        if t is None or t == NO_TIME:
            return None
        return round((t - self.origin) / 1e9, 6)


def _op(
    op: Operation,
    clock: _Clock,
    label: str,
    *,
    mark: str | None = None,
    order: int | None = None,
    state: str | None = None,
    dim: bool = False,
) -> dict[str, object]:
    """An operation as the page's script reads it (short names: a page may hold thousands)."""
    comp = op.completion
    entry: dict[str, object] = {
        "p": str(op.process),
        "n": None if op.node is None else str(op.node),
        "c": op.call,
        "r": op.ret,
        "s": op.status,
        "l": label,
        "f": op.f,
        "k": None if op.key is None else _text(op.key),
        "v": None if op.input is None else show(op.input),
        "i": op.invoke.index,
        "j": None if comp is None else comp.index,
        "t0": clock.seconds(op.invoke.time),
        "t1": None if comp is None else clock.seconds(comp.time),
    }
    if op.status == "ok" and op.output is not None and op.output != op.input:
        entry["out"] = show(op.output)
    if comp is not None and comp.error is not None:
        entry["err"] = _text(comp.error)
    extra = _extra(op)
    if extra:
        entry["x"] = extra
    if mark is not None:
        entry["m"] = mark
    if order is not None:
        entry["o"] = order
    if state is not None:
        entry["st"] = state
    if dim:
        entry["dim"] = True
    return entry


def _faults(faults: Sequence[Fault], ops: Sequence[Operation]) -> list[dict[str, object]]:
    """The fault windows that overlap these operations, as history positions."""
    if not ops:
        return []
    first = min(op.call for op in ops)
    last = max(op.ret if op.ret is not None else op.call for op in ops)
    out: list[dict[str, object]] = []
    for f in faults:
        if f.start > last or (f.end is not None and f.end < first):
            continue
        value = "" if f.value is None else " " + show(f.value)
        out.append(
            {
                "name": f.name,
                "a": f.start,
                "b": f.end,
                "text": f"{f.name}{value}"[:300],
                "color": _FAULT_COLORS.get(f.name, "#795548"),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Linearizability


def _describe(result: CheckResult, op: Operation) -> str:
    model = result.model
    try:
        enc = model.encode(op)
    except (ModelError, ValueError):
        enc = None
    if enc is None:
        text = f"{op.f} {show(op.input)}"
        return text + (f" -> {show(op.output)}" if op.status == "ok" else "")
    return model.describe_operation(*enc)


def _states(result: CheckResult, part: PartitionResult) -> dict[int, str]:
    """The model's state after each operation of the linearization found (for an invalid
    partition, the longest linearizable prefix)."""
    model = result.model
    states: dict[int, str] = {}
    state = model.init()
    for op in part.linearization:
        try:
            enc = model.encode(op)
        except (ModelError, ValueError):
            break
        if enc is None:
            continue
        legal, state = model.step(state, *enc)
        if not legal:
            break
        states[id(op)] = model.describe_state(state)
    return states


def _key_of(ops: Sequence[Operation]) -> Hashable:
    try:
        keys = {freeze(op.key) for op in ops}
    except ModelError:
        return None
    return next(iter(keys)) if len(keys) == 1 else None


def _key_text(key: object) -> str:
    return "the whole history" if key is None else f"key {_text(key)}"


def _lin_view(
    result: CheckResult,
    ops: Sequence[Operation],
    part: PartitionResult | None,
    clock: _Clock,
    faults: Sequence[Fault],
) -> dict[str, object]:
    order: dict[int, int] = {}
    states: dict[int, str] = {}
    failed = pending = None
    if part is not None:
        order = {id(op): i for i, op in enumerate(part.linearization)}
        states = _states(result, part)
        if part.failed_op is not None:
            failed = id(part.failed_op)
            pending = {id(op) for op in part.pending}
    limit = None if part is None or part.failed_op is None else part.failed_op.ret
    entries: list[dict[str, object]] = []
    focus = None
    for op in ops:
        mark = "failed" if id(op) == failed else None
        if mark is None and pending is not None and id(op) in pending:
            mark = "pending"
        if mark == "failed":
            focus = len(entries)
        dim = limit is not None and id(op) not in order and op.call > limit
        entries.append(
            _op(
                op,
                clock,
                _describe(result, op),
                mark=mark,
                order=order.get(id(op)),
                state=states.get(id(op)),
                dim=dim,
            )
        )
    region = None
    if part is not None and part.failed_op is not None and part.failed_op.ret is not None:
        start = min((op.call for op in part.pending), default=part.failed_op.call)
        region = [start, part.failed_op.ret]
    verdict = "not checked" if part is None else part.verdict
    note = ""
    if part is not None and part.failed_op is not None:
        note = (
            "No linearization gets past the return of "
            f"{_describe(result, part.failed_op)} (process {part.failed_op.process}"
            f"{part.failed_op.at_node()}); state after the longest linearizable prefix: "
            f"{part.state}"
        )
    elif part is not None and part.reason:
        note = part.reason
    elif part is None:
        note = "not checked: the check stopped at the first failing key"
    return {
        "key": _key_text(part.key if part is not None else _key_of(ops)),
        "verdict": verdict,
        "note": note,
        "ops": entries,
        "focus": focus,
        "region": region,
        "faults": _faults(faults, ops),
    }


def linearizability_data(
    result: CheckResult,
    faults: Sequence[Fault] = (),
    *,
    only: PartitionResult | None = None,
    max_ops: int = MAX_OPS,
) -> dict[str, object]:
    """The page's data for a linearizability result: a view per key (partition), the failing
    key first, then those checked, then those the check did not reach (`only`: that key)."""
    clock = _Clock(result.operations, faults)
    checked = {id(p.operations[0]): p for p in result.partitions if p.operations}
    groups = result.model.partition(list(result.operations))
    rank = {"invalid": 0, "unknown": 1, "valid": 2}

    def priority(group: list[Operation]) -> tuple[int, int]:
        part = checked.get(id(group[0])) if group else None
        if part is result.failure and part is not None:
            return (-1, 0)
        return (rank.get(part.verdict, 3) if part is not None else 3, len(group))

    views: list[dict[str, object]] = []
    total = left_out = 0
    for group in sorted((g for g in groups if g), key=priority):
        ops = sorted(group, key=lambda op: op.call)
        part = checked.get(id(group[0]))
        if only is not None and part is not only:
            continue
        if views and total + len(ops) > max_ops:
            left_out += 1
            continue
        total += len(ops)
        views.append(_lin_view(result, ops, part, clock, faults))
    return {
        "title": f"{result.verdict}: linearizability, model {result.model.name}",
        "verdict": result.verdict,
        "summary": result.describe(),
        "views": views,
        "left_out": left_out,
        "around": _around(result),
    }


def _around(result: CheckResult) -> list[list[str]]:
    part = result.failure
    if part is None or part.failed_op is None:
        return []
    rows = [("prefix", op) for op in part.linearization[-10:]]
    rows += [("failed" if op is part.failed_op else "pending", op) for op in part.pending]
    out = []
    for tag, op in rows:
        idx = f"{op.invoke.index}" + (
            f"..{op.completion.index}" if op.completion is not None else ""
        )
        node = "" if op.node is None else str(op.node)
        out.append([tag, str(op.process), node, _describe(result, op), op.status, idx])
    return out


# ---------------------------------------------------------------------------------------------
# Findings of the other checkers


def _same_key(op: Operation, key: object) -> bool:
    try:
        return freeze(op.key) == key
    except ModelError:
        return False


def _label(op: Operation) -> str:
    text = op.f if op.input is None else f"{op.f} {show(op.input)}"
    if op.status == "ok" and op.f in ("read", "get", "replica-read"):
        text += f" -> {show(op.output)}"
    return text


def findings_data(
    results: Sequence[Result],
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    *,
    max_ops: int = MAX_OPS,
) -> dict[str, object]:
    """The page's data for the findings of `results`: a view per failing key (the operations
    a finding names framed in red), or every operation when nothing failed."""
    clock = _Clock(operations, faults)
    by_key: dict[str, tuple[Hashable, list[str], set[int]]] = {}
    for r in results:
        if r.verdict != "invalid":
            continue
        for f in r.findings:
            _, messages, marked = by_key.setdefault(repr(f.key), (f.key, [], set()))
            messages.append(f"{r.checker}: {f.message}")
            marked.update(f.ops)
    views: list[dict[str, object]] = []
    total = left_out = 0
    groups: list[tuple[str, str, list[Operation], set[int]]] = []
    for key, messages, marked in by_key.values():
        ops = [op for op in operations if _same_key(op, key)]
        groups.append((_key_text(key), "\n".join(messages[:5]), ops, marked))
    if not groups:
        groups.append(("the whole history", "", list(operations)[:max_ops], set()))
    for name, note, ops, marked in groups:
        if views and total + len(ops) > max_ops:
            left_out += 1
            continue
        total += len(ops)
        entries: list[dict[str, object]] = []
        focus = None
        for op in ops:
            hit = op.invoke.index in marked or (
                op.completion is not None and op.completion.index in marked
            )
            if hit and focus is None:
                focus = len(entries)
            entries.append(_op(op, clock, _label(op), mark="failed" if hit else None))
        views.append(
            {
                "key": name,
                "verdict": "invalid" if marked else "",
                "note": note,
                "ops": entries,
                "focus": focus,
                "region": None,
                "faults": _faults(faults, ops),
            }
        )
    verdicts = ", ".join(f"{r.checker}: {r.verdict}" for r in results)
    worst = next(
        (v for v in ("invalid", "unknown", "valid") if any(r.verdict == v for r in results)),
        "unknown",
    )
    return {
        "title": f"{worst}: {verdicts}" if results else "history",
        "verdict": worst,
        "summary": "\n\n".join(
            f"{r.checker}: {r.verdict.upper()}\n{r.explanation}" for r in results
        ),
        "views": views,
        "left_out": left_out,
        "around": [],
    }


# ---------------------------------------------------------------------------------------------
# The page


def _first_note(views: object) -> str:
    if isinstance(views, list) and views and isinstance(views[0], dict):
        return f"{views[0].get('key', '')}: {views[0].get('note', '')}"
    return ""


def _asset(name: str) -> str:
    return resources.files("harness.report").joinpath(name).read_text(encoding="utf-8")


def _json_script(data: object) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>: nothing may close the element or open a comment.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: dict[str, Any]) -> str:
    """The page for `linearizability_data` or `findings_data`."""
    esc = html.escape
    verdict = str(data.get("verdict", "unknown"))
    views = data.get("views") or []
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(str(data['title']))}</title><style>{_asset('timeline.css')}</style>",
        "</head><body>",
        f"<h1 class='verdict-{esc(verdict)}'>{esc(str(data['title']))}</h1>",
        "<div class='bar'><label>view <select id='view'></select></label>",
        "<button id='zoom-out' title='zoom out (-)'>-</button>",
        "<button id='zoom-in' title='zoom in (+)'>+</button>",
        "<button id='zoom-fit' title='the whole view (0)'>fit</button>",
        "<button id='to-failure' title='back to the failure'>failure</button>",
        f"<span>{len(views)} key(s) shown",
    ]
    if data.get("left_out"):
        out.append(f", {int(data['left_out'])} left out (over {MAX_OPS} operations)")
    out += [
        "</span></div>",
        f"<div class='note' id='note'>{esc(_first_note(views))}</div>",
        "<div id='chart'><div id='inner'></div></div>",
        "<div class='legend'>",
        "<span><i style='background:#5aa469'></i>ok</span>",
        "<span><i style='background:#a0a0a0'></i>fail</span>",
        "<span><i class='op info' style='position:static;height:10px'></i>info: may take effect"
        " any time after its call</span>",
        "<span><i class='op failed' style='position:static;height:10px'></i>cannot be "
        "linearized / named by a finding</span>",
        "<span><i class='op pending' style='position:static;height:10px'></i>pending at that "
        "point</span>",
        "<span><i class='region' style='position:static'></i>where no linearization exists</span>",
        "<span>#n: order in the linearization found; hover an operation for its details and "
        "the state after it; click to pin; +, -, 0 or Ctrl+wheel zoom</span></div>",
        "<div id='pinned'></div>",
    ]
    around = data.get("around") or []
    if around:
        out.append(
            "<h2 style='font-size:15px'>Around the failure</h2><table class='around'><tr>"
            "<th></th><th>process</th><th>node</th><th>operation</th><th>status</th>"
            "<th>index</th></tr>"
        )
        for row in around:
            out.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
        out.append("</table>")
    out += [
        f"<pre class='summary'>{esc(str(data.get('summary', '')))}</pre>",
        "<div id='tip'></div>",
        f"<script type='application/json' id='data'>{_json_script(data)}</script>",
        f"<script>{_asset('timeline.js')}</script>",
        "</body></html>\n",
    ]
    return "".join(out)


def _write(path: str | Path, page: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def render_timeline(
    result: CheckResult, partition: PartitionResult | None = None, faults: Sequence[Fault] = ()
) -> str:
    """The page for a linearizability result (`partition`: only that key's view)."""
    return render(linearizability_data(result, faults, only=partition))


def write_timeline(
    result: CheckResult,
    path: str | Path,
    partition: PartitionResult | None = None,
    faults: Sequence[Fault] = (),
) -> Path:
    """Write `render_timeline` to `path`; returns the path."""
    return _write(path, render_timeline(result, partition, faults))


def render_findings(
    results: Sequence[Result], operations: Sequence[Operation], faults: Sequence[Fault]
) -> str:
    return render(findings_data(results, operations, faults))


def write_findings(
    path: str | Path,
    results: Sequence[Result],
    operations: Sequence[Operation],
    faults: Sequence[Fault],
) -> Path:
    """Write `render_findings` to `path`; returns the path."""
    return _write(path, render_findings(results, operations, faults))
