"""Checking histories from Python: the harness's counterpart of Porcupine's `CheckOperations`
and `Visualize` (see docs/checking.md).

    from harness.checking import check_operations, models, read_history, visualize

    history = read_history("history.jsonl")          # ours, Jepsen EDN or a Porcupine log
    result = check_operations(models.cas_register(0), history)
    print(result.verdict)                            # "valid", "invalid" or "unknown"
    visualize(result, "timeline.html")               # the interactive timeline

A model is a record of functions (`models.Model`); the Dynamo-style checkers (lost writes,
Dynamo semantics, convergence) take a data type the same way (`datatypes.Datatype`).
`check_file` runs what `dynamo-ref check` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.checkers import datatypes, models
from harness.checkers.causal import fault_windows
from harness.checkers.convergence import check_convergence_history
from harness.checkers.datatypes import Datatype
from harness.checkers.dynamo_semantics import check_dynamo
from harness.checkers.linearizable import CheckResult, check
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.models import Model
from harness.checkers.verdict import Result
from harness.history import Op, Operation, pair

__all__ = [
    "CheckResult",
    "Datatype",
    "Model",
    "Op",
    "Operation",
    "Result",
    "check_convergence_history",
    "check_dynamo",
    "check_file",
    "check_lost_writes",
    "check_operations",
    "datatypes",
    "models",
    "read_history",
    "visualize",
]


def _operations(history: Sequence[Op] | Sequence[Operation]) -> list[Operation]:
    if all(isinstance(op, Operation) for op in history):
        return [op for op in history if isinstance(op, Operation)]
    return pair([op for op in history if isinstance(op, Op)])


def read_history(path: str | Path, fmt: str = "auto") -> list[Op]:
    """A history file: our JSON lines, Jepsen/Knossos EDN or Porcupine's logs (`fmt`: auto,
    jsonl, edn, porcupine-kv, porcupine-etcd). Raises `HistoryError` on a malformed or empty
    one."""
    from harness.check_cli import load_history

    return load_history(Path(path), fmt)


def check_operations(
    model: Model[Any, Any, Any],
    history: Sequence[Op] | Sequence[Operation],
    *,
    time_limit: float | None = None,
) -> CheckResult:
    """Is `history` linearizable with respect to `model`? Porcupine's `CheckOperations`.

    `history`: events (`Op`, invocations and completions in real-time order, as recorded) or
    operations already paired (`Operation`). `time_limit` (seconds): past it the verdict is
    "unknown". The result says "valid", "invalid" or "unknown"; `describe()` explains it.
    """
    return check(model, _operations(history), time_limit=time_limit)


def visualize(
    result: CheckResult | Result,
    path: str | Path,
    *,
    history: Sequence[Op] = (),
) -> Path:
    """Write the interactive timeline of `result` to `path` (Porcupine's `Visualize`): a
    linearizability `CheckResult`, or another checker's `Result` (then `history` gives its
    operations and fault windows)."""
    from harness.report.timeline import write_findings, write_timeline

    faults = fault_windows(history)
    if isinstance(result, CheckResult):
        return write_timeline(result, path, faults=faults)
    if isinstance(result.source, CheckResult):
        return write_timeline(result.source, path, faults=faults)
    return write_findings(path, [result], pair(history), faults)


def check_file(
    path: str | Path,
    model: str | None = None,
    *,
    strict_quorum: bool = False,
    timeline: str | Path | None = None,
) -> list[Result]:
    """What `dynamo-ref check PATH [--model MODEL]` checks, as results (the model detected
    from the history when not given)."""
    from harness.check_cli import detect_model, read_history_file, run_checks

    ops, fmt = read_history_file(Path(path))
    return run_checks(
        ops,
        model or detect_model(ops, fmt),
        strict_quorum=strict_quorum,
        timeline=None if timeline is None else Path(timeline),
    )
