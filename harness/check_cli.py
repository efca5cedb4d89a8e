"""`dynamo-ref check HISTORY --model M`: check a history from anywhere.

Formats: our JSON lines (`.jsonl`, `.json`), Jepsen/Knossos EDN (`.edn`), Porcupine's kv files
(`.txt`, EDN maps) and etcd logs (`.log`); `auto` goes by extension, then by content.

Models and the checks they run:

- `register`, `kv`, `cas-register`, `etcd`, `mutex`, `multi-register`: linearizability.
  `cas-register` starts at 0 and `multi-register` at 0 on every key it names (Knossos' tests);
  `--initial JSON` overrides. `register` also runs lost-writes if the history has final reads.
- `dynamo`: Dynamo semantics (`--strict-quorum` when R + W > N), lost writes if the history has
  final reads.
- `set`: lost writes of the set-add workload (needs final reads).

`register`, `dynamo` and `set` also check convergence when the history has replica reads.
Exit status: 0 valid, 1 invalid, 2 unknown or unreadable.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from harness.checkers import datatypes as D
from harness.checkers import models as M
from harness.checkers.causal import REPLICA_READ_F, fault_windows, is_final
from harness.checkers.convergence import check_convergence_history
from harness.checkers.dynamo_semantics import check_dynamo_operations
from harness.checkers.linearizable import CheckResult, as_result, check
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.models import Model, ModelError
from harness.checkers.verdict import Case, Result, Verdict, combine
from harness.history import (
    HistoryError,
    Op,
    Operation,
    loads_jsonl,
    pair,
    read_edn_history,
    read_porcupine_etcd_log,
    read_porcupine_kv,
)
from harness.report.finding_timeline import write_findings
from harness.report.timeline import write_timeline

__all__ = ["EXIT", "check_command", "detect_format", "load_history", "run_checks", "write_junit"]

MODELS = ("register", "kv", "set", "dynamo", "cas-register", "etcd", "mutex", "multi-register")
FORMATS = ("auto", "jsonl", "edn", "porcupine-kv", "porcupine-etcd")
LINEARIZABLE = {"register", "kv", "cas-register", "etcd", "mutex", "multi-register"}
EXIT: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}

AnyModel = Model[Any, Any, Any]


def detect_format(path: Path, text: str) -> str:
    """By extension, else by the first non-blank line."""
    by_ext = {
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".edn": "edn",
        ".txt": "edn",
        ".log": "porcupine-etcd",
    }
    if path.suffix.lower() in by_ext:
        return by_ext[path.suffix.lower()]
    head = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if head.startswith("INFO"):
        return "porcupine-etcd"
    if head.startswith('{"') or head == "{":
        return "jsonl"
    if head[:1] in "[({;":
        return "edn"
    raise HistoryError(
        "cannot tell the format (JSON lines, EDN or a Porcupine log): pass --format",
        source=str(path),
        line=1,
    )


def load_history(path: Path, fmt: str = "auto") -> list[Op]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError(f"not UTF-8 text: {exc}", source=str(path)) from None
    if fmt == "auto":
        fmt = detect_format(path, text)
    if fmt == "jsonl":
        return loads_jsonl(text, source=str(path))
    if fmt == "edn":
        return read_edn_history(text, source=str(path))
    if fmt == "porcupine-kv":
        return read_porcupine_kv(text, source=str(path))
    return read_porcupine_etcd_log(text, source=str(path))


def _linear_model(name: str, initial: object, ops: Sequence[Operation]) -> AnyModel:
    if name == "register":
        return M.register(initial)
    if name == "kv":
        return M.kv()
    if name == "cas-register":
        return M.cas_register(0 if initial is None else initial)
    if name == "etcd":
        return M.etcd_register()
    if name == "mutex":
        return M.mutex()
    if isinstance(initial, dict):
        return M.multi_register(initial)
    keys: dict[str, object] = {}
    for op in ops:
        for value in (op.input, op.output):
            for micro in value if isinstance(value, list) else []:
                if isinstance(micro, list) and len(micro) == 3:
                    keys[str(micro[1])] = 0
    return M.multi_register(keys)


def run_checks(
    history: Sequence[Op],
    model: str,
    *,
    strict_quorum: bool = False,
    initial: object = None,
    time_limit: float | None = None,
    timeline: Path | None = None,
) -> list[Result]:
    """The checks `model` calls for. Raises `HistoryError` / `ModelError` on malformed input."""
    results: list[Result] = []
    client = [op for op in history if op.f != REPLICA_READ_F]
    has_final = any(is_final(op) for op in pair(client))
    has_replicas = len(client) != len(history)
    linear: CheckResult | None = None
    datatype = D.siblings()
    if model in LINEARIZABLE:
        ops = pair(client)
        linear = check(_linear_model(model, initial, ops), ops, time_limit=time_limit)
        results.append(as_result(linear))
        datatype = D.register()
        if model == "register" and has_final:
            results.append(check_lost_writes(client, datatype))
    elif model in ("dynamo", "set") and any(
        op.f == "add" and "written" in op.extra for op in client
    ):
        # A Dynamo set-add (or counter) history: each add wrote the whole set it read plus
        # its element (`extra.written`), so the writes can be checked as Dynamo writes too.
        datatype = D.set_add()
        results.append(check_lost_writes(client, datatype))
        results.append(
            check_dynamo_operations(pair(client), strict_quorum=strict_quorum, datatype=datatype)
        )
    elif model == "dynamo":
        results.append(check_dynamo_operations(pair(client), strict_quorum=strict_quorum))
        if has_final:
            results.append(check_lost_writes(client, datatype))
    elif model == "set":
        datatype = D.set_add()
        results.append(check_lost_writes(client, datatype))
    if has_replicas and model in ("register", "dynamo", "set"):
        results.append(check_convergence_history(history, datatype=datatype))
    if timeline is not None:
        if linear is not None and (linear.failure is not None or len(results) == 1):
            write_timeline(linear, timeline)
        else:
            write_findings(timeline, results, pair(client), fault_windows(history))
    return results


def write_junit(path: Path, results: Sequence[Result], *, name: str, elapsed: float) -> None:
    """One testsuite; a testcase per key, partition or property of every result."""
    suite = ET.Element("testsuite", name=f"dynamo-ref check {name}")
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for r in results:
        cases = r.cases or (Case("history", r.verdict, r.explanation),)
        for c in cases:
            counts["tests"] += 1
            tc = ET.SubElement(suite, "testcase", classname=r.checker, name=c.name, time="0")
            if c.verdict == "invalid":
                counts["failures"] += 1
                el = ET.SubElement(tc, "failure", message=(c.message or r.explanation)[:300])
                el.text = c.message or r.explanation
            elif c.verdict == "unknown":
                counts["errors"] += 1
                el = ET.SubElement(tc, "error", message=f"unknown: {c.message}"[:300])
                el.text = c.message or r.explanation
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{elapsed:.3f}")
    props = ET.SubElement(suite, "properties")
    for r in results:
        ET.SubElement(props, "property", name=f"{r.checker} verdict", value=r.verdict)
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _parse_initial(_ctx: click.Context, _param: click.Parameter, value: str | None) -> object:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


@click.command("check")
@click.argument("history", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model", type=click.Choice(MODELS), required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write an HTML timeline (the failing key, or the whole history).",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a JUnit XML result.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the results as JSON.",
)
@click.option(
    "--strict-quorum",
    is_flag=True,
    help="R + W > N with no sloppy quorum: reads must see acknowledged writes.",
)
@click.option(
    "--initial",
    callback=_parse_initial,
    default=None,
    help="Initial register value, or map of multi-register keys, as JSON.",
)
@click.option(
    "--time-limit",
    type=float,
    default=None,
    help="Seconds for the linearizability search; past it the verdict is unknown.",
)
def check_command(
    *,
    history: Path,
    model: str,
    fmt: str,
    timeline: Path | None,
    junit: Path | None,
    json_out: Path | None,
    strict_quorum: bool,
    initial: object,
    time_limit: float | None,
) -> None:
    """Check a history (ours, Jepsen EDN or Porcupine) and exit 0 valid, 1 invalid, 2 unknown."""
    started = time.monotonic()
    try:
        ops = load_history(history, fmt)
        results = run_checks(
            ops,
            model,
            strict_quorum=strict_quorum,
            initial=initial,
            time_limit=time_limit,
            timeline=timeline,
        )
    except HistoryError as exc:
        _fail(f"malformed history: {exc}")
        return
    except ModelError as exc:
        _fail(f"{history}: {exc}")
        return
    verdict = combine(r.verdict for r in results)
    elapsed = time.monotonic() - started
    for r in results:
        click.echo(r.describe())
    if timeline is not None:
        click.echo(f"timeline: {timeline}")
    if junit is not None:
        write_junit(junit, results, name=history.name, elapsed=elapsed)
    if json_out is not None:
        payload = {"verdict": verdict, "results": [r.to_json() for r in results]}
        json_out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    click.echo(f"verdict: {verdict} ({len(ops)} events, {elapsed:.2f} s)")
    raise SystemExit(EXIT[verdict])
