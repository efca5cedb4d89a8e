"""`dynamo-ref check HISTORY [--model M]`: check a history from anywhere.

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
Without `--model` the model is detected from the history (`detect_model`). `--initial null`
is nil, as in Knossos' `(cas-register nil)`.

Exit status: 0 valid, 1 invalid, 2 unknown, empty (no operations) or unreadable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:  # the checkers load when a history is checked, not when the CLI starts
    from harness.checkers.linearizable import CheckResult
    from harness.checkers.models import Model
    from harness.checkers.verdict import Result, Verdict
    from harness.history import Op, Operation

    AnyModel = Model[Any, Any, Any]

__all__ = [
    "EXIT",
    "NOT_GIVEN",
    "check_command",
    "detect_format",
    "detect_model",
    "load_history",
    "run_checks",
    "write_junit",
]

MODELS = ("register", "kv", "set", "dynamo", "cas-register", "etcd", "mutex", "multi-register")
FORMATS = ("auto", "jsonl", "edn", "porcupine-kv", "porcupine-etcd")
LINEARIZABLE = {"register", "kv", "cas-register", "etcd", "mutex", "multi-register"}
EXIT: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = _NotGiven()
"""`--initial` not given (JSON `null` is a value: Knossos' `(cas-register nil)`)."""


def detect_format(path: Path, text: str) -> str:
    """By extension, else by the first non-blank line."""
    from harness.history import HistoryError

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
    """The history in `path` (`fmt`: one of `FORMATS`). Raises `EmptyHistoryError` when it holds
    no operations (an empty history vouches for nothing) and `HistoryError` when it cannot be
    read or parsed."""
    return read_history_file(path, fmt)[0]


def read_history_file(path: Path, fmt: str = "auto") -> tuple[list[Op], str]:
    """(the history, the format it was read as); raises as `load_history`."""
    from harness.history import (
        EmptyHistoryError,
        HistoryError,
        loads_jsonl,
        read_edn_history,
        read_porcupine_etcd_log,
        read_porcupine_kv,
    )

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError(f"not UTF-8 text: {exc}", source=str(path)) from None
    except OSError as exc:
        raise HistoryError(f"cannot read it: {exc.strerror or exc}", source=str(path)) from None
    if not text.strip():
        raise EmptyHistoryError("the file is empty: no operations to check", source=str(path))
    if fmt == "auto":
        fmt = detect_format(path, text)
    if fmt == "jsonl":
        ops = loads_jsonl(text, source=str(path))
    elif fmt == "edn":
        ops = read_edn_history(text, source=str(path))
    elif fmt == "porcupine-kv":
        ops = read_porcupine_kv(text, source=str(path))
    else:
        ops = read_porcupine_etcd_log(text, source=str(path))
    if not ops:
        raise EmptyHistoryError("the history holds no operations", source=str(path))
    return ops, fmt


_VERSIONED_EXTRA = frozenset({"clock", "clocks", "context", "siblings", "written"})


def detect_model(history: Sequence[Op], fmt: str) -> str:
    """The model a history's operations call for, when they say: our JSON lines (set-add and
    counter runs: `set`; Dynamo reads of siblings or replica reads: `dynamo`; plain reads,
    writes and cas: `register`), Porcupine's logs (`etcd`, `kv`) and Knossos' EDN (`txn`:
    `multi-register`; `acquire`/`release`: `mutex`; read/write/cas: `cas-register`).

    :raises HistoryError: no client operations, or operations no model here explains.
    """
    from harness.history import EmptyHistoryError, HistoryError, is_nemesis

    client = [op for op in history if not is_nemesis(op)]
    fs = {op.f for op in client}
    if fmt == "porcupine-etcd":
        return "etcd"
    if not fs:
        raise EmptyHistoryError("the history holds no client operations, only nemesis events")
    if fs <= {"get", "put", "append"}:
        return "kv"
    if fs <= {"txn"}:
        return "multi-register"
    if fs <= {"acquire", "release"}:
        return "mutex"
    if fmt in ("jsonl", "auto"):
        if "add" in fs:
            return "set"
        versioned = "replica-read" in fs or any(
            (op.f == "read" and op.type == "ok" and isinstance(op.value, list))
            or not _VERSIONED_EXTRA.isdisjoint(op.extra)
            for op in client
        )
        if versioned and fs <= {"read", "write", "delete", "cas", "replica-read"}:
            return "dynamo"
        if fs <= {"read", "write", "cas"}:
            return "register"
    elif fs <= {"read", "write", "cas"}:
        return "cas-register"
    raise HistoryError(
        f"cannot tell the model from its operations ({', '.join(sorted(fs))}): pass --model"
    )


def _linear_model(name: str, initial: object, ops: Sequence[Operation]) -> AnyModel:
    from harness.checkers import models as M

    given = initial is not NOT_GIVEN
    if name == "register":
        return M.register(initial if given else None)
    if name == "kv":
        return M.kv()
    if name == "cas-register":
        return M.cas_register(initial if given else 0)
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
    initial: object = NOT_GIVEN,
    time_limit: float | None = None,
    timeline: Path | None = None,
) -> list[Result]:
    """The checks `model` calls for. Raises `HistoryError` / `ModelError` on malformed input.
    `initial`: the register's initial value (`None` is nil), or a multi-register's map."""
    from harness.checkers import datatypes as D
    from harness.checkers.causal import REPLICA_READ_F, fault_windows, is_final
    from harness.checkers.convergence import check_convergence_history
    from harness.checkers.dynamo_semantics import check_dynamo_operations
    from harness.checkers.linearizable import as_result, check
    from harness.checkers.lost_writes import check_lost_writes
    from harness.history import pair
    from harness.report.timeline import write_findings, write_timeline

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
            write_timeline(linear, timeline, faults=fault_windows(history))
        else:
            write_findings(timeline, results, pair(client), fault_windows(history))
    return results


def write_junit(path: Path, results: Sequence[Result], *, name: str, elapsed: float) -> None:
    """One testsuite; a testcase per key, partition or property of every result."""
    import xml.etree.ElementTree as ET

    from harness.checkers.verdict import Case

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
        return NOT_GIVEN
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


@click.command("check")
@click.argument("history", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--model",
    "model",
    type=click.Choice(MODELS),
    default=None,
    help="What to check the history against. Default: detected from the history "
    "(ours, Porcupine's logs, Knossos' EDN by its operations).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="The file's format; auto goes by extension, then by content.",
)
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
    help="Initial register value as JSON (null: nil, as Knossos' (cas-register nil)), or "
    "a map of multi-register keys. Default: 0 for cas-register (Knossos' tests), nil for "
    "register.",
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
    model: str | None,
    fmt: str,
    timeline: Path | None,
    junit: Path | None,
    json_out: Path | None,
    strict_quorum: bool,
    initial: object,
    time_limit: float | None,
) -> None:
    """Check a history (ours, Jepsen EDN or Porcupine) and exit 0 valid, 1 invalid, 2 unknown,
    empty or unreadable."""
    from harness.checkers.models import ModelError
    from harness.checkers.verdict import combine
    from harness.history import EmptyHistoryError, HistoryError

    started = time.monotonic()
    try:
        ops, used = read_history_file(history, fmt)
        if model is None:
            model = detect_model(ops, used)
            click.echo(f"model: {model} (detected from the history; --model to choose)")
        results = run_checks(
            ops,
            model,
            strict_quorum=strict_quorum,
            initial=initial,
            time_limit=time_limit,
            timeline=timeline,
        )
    except EmptyHistoryError as exc:
        _fail(f"nothing to check: {exc}")
        return
    except HistoryError as exc:
        why = "cannot read history" if exc.message.startswith("cannot read") else "malformed"
        _fail(f"{why} history: {exc}" if why == "malformed" else f"{why}: {exc}")
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
