"""The pytest plugin (entry point `pytest11`): a user's own tests run clusters under the
harness, with faults on demand, and assert the harness's verdicts.

Fixtures:

- `external_cluster(command, nodes=3, workload="set-add")`: the node program `command` (an
  argv list or a shell-style string) started under the harness (`MaelstromTarget`), which
  routes its messages; `dynamo_cluster(nodes=3, **settings)`: local dynamo-ref processes. Each
  returns a `Cluster`: `client(node)` and `call(awaitable)` to talk to it, `partition(...)`,
  `heal()`, `kill`/`start`/`pause`/`resume(node)` for faults; every process is stopped by PID
  when the test ends, passed or failed.
- `harness_run(program=None, workload="set-add", nemesis=("partition",), ...)`: a whole run
  (workload, nemesis, heal, final and replica reads, checks), against `program` or, without
  one, local dynamo-ref nodes; returns the `RunResult`, its files in the test's `tmp_path`.

Assertions (a `RunResult`, a history of `Op`s or the path of a history file):
`assert_linearizable(history, model)`, `assert_no_lost_writes(history)`,
`assert_dynamo_semantics(history)`. A failure's message is the checker's explanation and the
path of the HTML timeline drawn for it.
"""

from __future__ import annotations

import asyncio
import shlex
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.checkers import datatypes
from harness.checkers.causal import REPLICA_READ_F
from harness.checkers.verdict import Result
from harness.history import Op

__all__ = [
    "Cluster",
    "assert_dynamo_semantics",
    "assert_linearizable",
    "assert_no_lost_writes",
]

T = TypeVar("T")
History = Sequence[Op] | str | Path | Any  # a RunResult too (anything with .history, .out)


class Cluster:
    """A started target and the event loop it runs on, for synchronous tests."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self.target = target
        self._runner = runner

    def call(self, awaitable: Awaitable[T]) -> T:
        """Run `awaitable` (a client's `get`, `put`, ...) on the cluster's loop."""

        async def wrap() -> T:
            return await awaitable

        return self._runner.run(wrap())

    def nodes(self) -> list[str]:
        return list(self.target.nodes())

    def client(self, node: str) -> Any:
        return self.call(self.target.client(node))

    def partition(self, *groups: Sequence[str]) -> None:
        """Cut every link between nodes of different groups (both ways)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        cut = {
            (a, b)
            for a in self.nodes()
            for b in self.nodes()
            if a != b and side.get(a, -1) != side.get(b, -2)
        }
        self.target.network.cut(cut)

    def heal(self) -> None:
        self.target.network.heal()

    def kill(self, node: str) -> None:
        self.call(self.target.kill(node))

    def start(self, node: str) -> None:
        self.call(self.target.start(node))

    def pause(self, node: str) -> None:
        self.call(self.target.pause(node))

    def resume(self, node: str) -> None:
        self.call(self.target.resume(node))


def _open(target: Any, opened: list[tuple[Any, asyncio.Runner]]) -> Cluster:
    runner = asyncio.Runner()
    try:
        runner.run(target.setup())
    except BaseException:
        runner.close()
        raise
    opened.append((target, runner))
    return Cluster(target, runner)


def _close(opened: list[tuple[Any, asyncio.Runner]]) -> None:
    for target, runner in opened:
        try:
            runner.run(target.teardown())
        finally:
            runner.close()


def _argv(command: str | Sequence[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


@pytest.fixture
def external_cluster() -> Iterator[Callable[..., Cluster]]:
    """`external_cluster(command, nodes=3, workload="set-add")`: a node program under the
    harness (its `init_ok` must declare the workload's protocol)."""
    from harness.targets.maelstrom import MaelstromTarget

    opened: list[tuple[Any, asyncio.Runner]] = []

    def start(
        command: str | Sequence[str], nodes: int = 3, workload: str = "set-add", **kw: Any
    ) -> Cluster:
        return _open(MaelstromTarget(_argv(command), nodes, workload=workload, **kw), opened)

    try:
        yield start
    finally:
        _close(opened)


@pytest.fixture
def dynamo_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`dynamo_cluster(nodes=3, **settings)`: dynamo-ref node processes on loopback
    (settings: mode, quorum, n, r, w, seed, as `DynamoTarget` takes them)."""
    from harness.targets.dynamo import DynamoTarget

    opened: list[tuple[Any, asyncio.Runner]] = []

    def start(nodes: int = 3, **settings: Any) -> Cluster:
        where = tmp_path / f"dynamo-cluster-{len(opened)}"
        return _open(DynamoTarget(nodes, where, **settings), opened)

    try:
        yield start
    finally:
        _close(opened)


@pytest.fixture
def harness_run(tmp_path: Path) -> Callable[..., Any]:
    """`harness_run(program=None, **settings)`: one whole run (see `harness.run.RunConfig`
    for the settings: workload, nodes, duration, nemesis, clients, keys, seed, ...)."""
    from harness.run import RunConfig, run_once

    count = 0

    def run(program: str | Sequence[str] | None = None, **settings: Any) -> Any:
        nonlocal count
        count += 1
        fields: dict[str, Any] = {
            "nodes": 3,
            "duration": 3.0,
            "workload": "set-add",
            "nemesis": ("partition",),
            "settle": 1.5,
            "quiesce": 10.0,
            "out": tmp_path / f"run-{count}",
        }
        if program is not None:
            fields.update(target="external", program=tuple(_argv(program)))
        fields.update(settings)
        if isinstance(fields["nemesis"], str):
            fields["nemesis"] = tuple(f for f in fields["nemesis"].split(",") if f)
        return asyncio.run(run_once(RunConfig(**fields)))

    return run


# ---- assertions --------------------------------------------------------------------------


def _history(history: History) -> tuple[list[Op], Path | None]:
    """The events of `history`, and where its run keeps its files (None: nowhere known)."""
    if isinstance(history, str | Path):
        from harness.checking import read_history

        return read_history(history), Path(history).parent
    ops = getattr(history, "history", None)
    if ops is not None:
        out = getattr(history, "out", None)
        return list(ops), Path(out) if out is not None else None
    return list(history), None


def _fail(result: Result, what: str, ops: Sequence[Op], where: Path | None) -> None:
    from harness.checking import visualize

    folder = where if where is not None else Path(tempfile.mkdtemp(prefix="dynamo-ref-"))
    page = visualize(result, folder / f"{what}-timeline.html", history=ops)
    pytest.fail(
        f"{what} is {result.verdict}: {result.explanation}\ntimeline: {page}", pytrace=False
    )


def _client(ops: Sequence[Op]) -> list[Op]:
    return [op for op in ops if op.f != REPLICA_READ_F]


def _datatype(ops: Sequence[Op], datatype: datatypes.Datatype | None) -> datatypes.Datatype:
    """The set type when the history adds to sets (`f: "add"`), else Dynamo siblings."""
    if datatype is not None:
        return datatype
    return datatypes.set_add() if any(op.f == "add" for op in ops) else datatypes.siblings()


def assert_linearizable(history: History, model: Any, *, time_limit: float | None = 60.0) -> Result:
    """Fails unless `history` is linearizable with respect to `model` (a `models.Model`, e.g.
    `harness.checking.models.register()`); an unknown verdict (the search ran out of time)
    fails too. Returns the result."""
    from harness.checkers.linearizable import as_result
    from harness.checking import check_operations

    ops, where = _history(history)
    result = as_result(check_operations(model, _client(ops), time_limit=time_limit))
    if result.verdict != "valid":
        _fail(result, "linearizable", ops, where)
    return result


def assert_no_lost_writes(history: History, datatype: datatypes.Datatype | None = None) -> Result:
    """Fails unless every acknowledged write is in the final reads (or superseded); a history
    without final reads, or with nothing acknowledged, is unknown and fails."""
    from harness.checkers.lost_writes import check_lost_writes

    ops, where = _history(history)
    client = _client(ops)
    result = check_lost_writes(client, _datatype(client, datatype))
    if result.verdict != "valid":
        _fail(result, "lost-writes", ops, where)
    return result


def assert_dynamo_semantics(
    history: History,
    *,
    strict_quorum: bool = False,
    datatype: datatypes.Datatype | None = None,
) -> Result:
    """Fails unless every sibling was written, no sibling is dominated by another of its read,
    deletes are not undone (and, with `strict_quorum`, quorum reads see acknowledged writes)."""
    from harness.checkers.dynamo_semantics import check_dynamo

    ops, where = _history(history)
    client = _client(ops)
    result = check_dynamo(client, strict_quorum=strict_quorum, datatype=_datatype(client, datatype))
    if result.verdict != "valid":
        _fail(result, "dynamo-semantics", ops, where)
    return result
