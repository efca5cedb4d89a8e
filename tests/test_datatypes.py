"""The Dynamo-style checkers take a data type the way the linearizability checker takes a model:
a new type defined here, outside the checkers, is checked by them unchanged (with negative
controls), and the harness's set type reads its adds as Dynamo writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

from dynamo_histories import H

from harness.checkers import datatypes as D
from harness.checkers.causal import (
    DynamoHistory,
    Read,
    Sibling,
    Write,
    frozen_value,
    is_final,
)
from harness.checkers.convergence import check_convergence_history
from harness.checkers.dynamo_semantics import check_dynamo
from harness.checkers.lost_writes import check_lost_writes
from harness.history import Op, Operation

# ---------------------------------------------------------------------------------------------
# A type the harness does not ship: an append-only log, read back as the list of its entries


def _parse_log(operations: Sequence[Operation], final_only: bool) -> DynamoHistory:
    h = DynamoHistory(list(operations))
    for op in operations:
        key = frozen_value(op.key, op.invoke, "key")
        if op.f == "append":
            entry = frozen_value(op.input, op.invoke, "value")
            w = Write(op=op, key=key, value=entry, deleted=False, context=None, clock=None)
            h.writes.setdefault(key, []).append(w)
            h.writers.setdefault(key, {}).setdefault(entry, []).append(w)
        elif op.f == "read" and op.status == "ok" and (is_final(op) or not final_only):
            assert op.completion is not None
            entries = tuple(
                Sibling(frozen_value(e, op.completion, "value"), None) for e in op.output or []
            )
            h.reads.setdefault(key, []).append(Read(op, key, entries, None, is_final(op)))
    return h


def _judge_log(_h: DynamoHistory, r: Read, writes: Sequence[Write]) -> list[D.Fate]:
    entries = {s.value for s in r.siblings}
    return ["present" if w.value in entries else "lost" for w in writes]


def _unexplained_log(h: DynamoHistory, r: Read) -> list[Hashable]:
    return [s.value for s in r.siblings if s.value not in h.writers.get(r.key, {})]


LOG = dataclasses.replace(
    D.set_add(),
    name="log",
    noun="append",
    parse=_parse_log,
    judge=_judge_log,
    unexplained=_unexplained_log,
    describe_write=lambda w: f"append {w.op.input!r}",
    describe_missing=lambda r: f"is missing from the log read at index {r.op.invoke.index}",
)


def _log_history(final: list[object]) -> list[Op]:
    h = H()
    for i, entry in enumerate(("a", "b", "c")):
        h.invoke(i, "append", entry, key="log").ok(i, "append", entry, key="log")
    h.read(9, final, key="log", final=True)
    return h.ops


def test_a_new_type_is_checked_by_the_unchanged_checker() -> None:
    good = check_lost_writes(_log_history(["a", "b", "c"]), LOG)
    assert good.checker == "lost-writes (log)"
    assert good.verdict == "valid", good.explanation
    assert "3 acknowledged appends: 3 present" in good.explanation


def test_the_new_type_catches_a_lost_and_a_ghost_entry() -> None:
    lost = check_lost_writes(_log_history(["a", "c"]), LOG)
    assert lost.verdict == "invalid"
    (finding,) = lost.findings
    assert finding.kind == "lost"
    assert "append 'b' by process 1" in finding.message
    assert "is missing from the log read at index 6" in finding.message
    ghost = check_lost_writes(_log_history(["a", "b", "c", "z"]), LOG)
    assert ghost.verdict == "invalid"
    assert [f.kind for f in ghost.findings] == ["unexpected"]
    assert "no append attempted: ['z']" in ghost.findings[0].message


# ---------------------------------------------------------------------------------------------
# The harness's set type, seen by the Dynamo checker as the lists each add wrote


def _set_add_history(sibling_lists: list[list[int]]) -> H:
    h = H()
    h.invoke(0, "add", 1, key="s", written=[1]).ok(0, "add", 1, key="s", written=[1])
    h.invoke(1, "add", 2, key="s", written=[1, 2]).ok(1, "add", 2, key="s", written=[1, 2])
    union = sorted({e for s in sibling_lists for e in s})
    h.invoke(9, "read", None, key="s", final=True)
    h.ok(9, "read", union, key="s", siblings=sibling_lists)
    return h


def test_set_adds_are_checked_as_the_writes_of_their_lists() -> None:
    ok = check_dynamo(_set_add_history([[1, 2]]).ops, datatype=D.set_add())
    assert ok.verdict == "valid", ok.explanation
    # [1, 3] is a list no add wrote: the read's sibling came from nowhere.
    ghost = check_dynamo(_set_add_history([[1, 2], [1, 3]]).ops, datatype=D.set_add())
    assert ghost.verdict == "invalid"
    assert [f.kind for f in ghost.findings] == ["siblings-written"]
    # The same history read as plain siblings sees the union as one unwritten value.
    assert check_dynamo(_set_add_history([[1, 2]]).ops).verdict == "invalid"


# ---------------------------------------------------------------------------------------------
# Convergence compares the type's replica states


def _union_of_versions(raw: object, op: Op) -> Hashable:
    versions = D.version_set(raw, op)
    return frozenset(e for value, _ in versions if isinstance(value, tuple) for e in value)


def test_convergence_compares_what_the_type_says_a_replica_holds() -> None:
    h = H()
    holds = {"n1": [{"value": [1, 2], "clock": {"n1": 2}}], "n2": [{"value": [2, 1]}]}
    for node, versions in holds.items():
        h.invoke("c", "replica-read", None, "s", node=node).ok("c", "replica-read", versions, "s")
    # As versions the replicas differ (other values, other clocks) ...
    assert check_convergence_history(h.ops).verdict == "invalid"
    # ... as a set that merges its versions they hold the same elements.
    as_set = dataclasses.replace(
        D.set_add(), replica=_union_of_versions, describe_replica=lambda s: repr(sorted(s))
    )
    assert check_convergence_history(h.ops, datatype=as_set).verdict == "valid"
