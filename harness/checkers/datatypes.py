"""Data types for the lost-writes, Dynamo-semantics and convergence checkers.

As in Porcupine (and as `models.Model` is for linearizability), a data type is a record of
functions and the checkers know nothing else about it: a new data type (a counter, a map, a
list) is a new `Datatype`, not a new branch in each checker.

- `parse(operations, final_only)`: the client operations as writes and reads by key (a
  `causal.DynamoHistory`): which `f`s write, what a read's value holds. `final_only`: only the
  final reads (`extra.final`), which is all the lost-writes checker reads.
- `judge(h, read, writes)`: for each write of the read's key, what the (final) read shows of it:
  "present", "superseded" (a version that has seen it is there instead) or "lost".
- `unexplained(h, read)`: values the read holds that no write attempted (the checker reports
  them; a type that cannot tell returns none).
- `dynamo(operations)`: the history as versioned writes and reads (siblings with clocks), the
  Dynamo-semantics checker's input.
- `replica(raw, op)`: what one replica holds of a key (a replica read's value) as a hashable
  state; equal states are converged. `describe_replica(state)`: its text.
- `describe_write(w)`, `describe_missing(r)`: text for a lost-write finding: "<write> by process
  P ... was acknowledged but <missing>".
- `dominates`: the clock order the type's clocks follow (vector clock descent by default;
  dotted version vectors are compared as such).

Three types come with the harness: `siblings` (a Dynamo read returns every sibling, with
clocks), `register` (one value per read, no siblings: etcd, Maelstrom's lin-kv) and `set_add`
(the set-add and counter workloads: adds of unique elements, final reads of the whole set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from harness.checkers.causal import (
    READ_FS,
    DynamoHistory,
    Read,
    Shape,
    Sibling,
    Write,
    covers,
    frozen_value,
    is_final,
    parse_clock,
    parse_history,
    replace_op,
)
from harness.clocks import Clock, Dominates, descends
from harness.history import HistoryError, Op, Operation

__all__ = [
    "ADD_FS",
    "Datatype",
    "Fate",
    "Version",
    "VersionSet",
    "describe_versions",
    "register",
    "set_add",
    "siblings",
    "version_set",
]

Fate: TypeAlias = Literal["present", "superseded", "lost"]

Version: TypeAlias = tuple[Hashable, Clock | None]
VersionSet: TypeAlias = frozenset[Version]

ADD_FS = frozenset({"add"})


@dataclass(frozen=True, slots=True)
class Datatype:
    """A data type as the Dynamo-style checkers see it (see the module docstring)."""

    name: str
    noun: str
    parse: Callable[[Sequence[Operation], bool], DynamoHistory]
    judge: Callable[[DynamoHistory, Read, Sequence[Write]], list[Fate]]
    unexplained: Callable[[DynamoHistory, Read], list[Hashable]]
    dynamo: Callable[[Sequence[Operation]], DynamoHistory]
    replica: Callable[[object, Op], Hashable]
    describe_replica: Callable[[Hashable], str]
    describe_write: Callable[[Write], str]
    describe_missing: Callable[[Read], str]
    dominates: Dominates = descends


def _ret_index(op: Operation) -> int:
    return op.invoke.index if op.completion is None else op.completion.index


def _nothing(_h: DynamoHistory, _r: Read) -> list[Hashable]:
    return []


# ---------------------------------------------------------------------------------------------
# Replicas: the versions a replica holds (the same for every type the harness writes)


def _version(raw: object, op: Op) -> Version:
    if isinstance(raw, dict) and "value" in raw:
        return frozen_value(raw["value"], op, "value"), parse_clock(raw.get("clock"), op, "clock")
    return frozen_value(raw, op, "value"), None


def version_set(raw: object, op: Op) -> VersionSet:
    """A replica read's value: a list of versions `{"value": V, "clock": C}` (timestamps and
    other fields ignored) or of bare values; null is none."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise HistoryError(
            f"a replica read's value is a list of versions, got {raw!r}",
            index=op.index,
            field="value",
        )
    return frozenset(_version(v, op) for v in raw)


def describe_versions(state: Hashable) -> str:
    if not isinstance(state, frozenset) or not state:
        return "{}" if not state else repr(state)
    parts = []
    for value, clock in sorted(state, key=repr):
        clock_text = "" if clock is None else " @" + ",".join(f"{n}:{c}" for n, c in clock)
        parts.append(f"{value!r}{clock_text}")
    return "{" + ", ".join(parts) + "}"


# ---------------------------------------------------------------------------------------------
# Versioned values: siblings and registers


def _versions(shape: Shape, dominates: Dominates) -> Datatype:
    def parse(operations: Sequence[Operation], final_only: bool) -> DynamoHistory:
        return parse_history(operations, shape=shape, final_only=final_only)

    def judge(h: DynamoHistory, r: Read, writes: Sequence[Write]) -> list[Fate]:
        writers = h.writers.get(r.key, {})
        deletes = h.deletes.get(r.key, [])
        values = {s.value for s in r.siblings}
        fates: list[Fate] = []
        for w in writes:
            if not covers(r, w, writers, deletes, dominates):
                fates.append("lost")
            elif (not r.siblings) if w.deleted else (w.value in values):
                fates.append("present")
            else:
                fates.append("superseded")
        return fates

    def describe_missing(r: Read) -> str:
        shown = "[" + ", ".join(repr(s.value) for s in r.siblings) + "]" if r.siblings else None
        where = f"index {_ret_index(r.op)}{r.op.at_node()}"
        return f"the final read ({where}) returned {shown or 'nothing'}"

    return Datatype(
        name=shape,
        noun="write",
        parse=parse,
        judge=judge,
        unexplained=_nothing,
        dynamo=lambda ops: parse_history(ops, shape=shape),
        replica=version_set,
        describe_replica=describe_versions,
        describe_write=lambda w: "delete" if w.deleted else f"write {w.op.input!r}",
        describe_missing=describe_missing,
        dominates=dominates,
    )


def siblings(dominates: Dominates = descends) -> Datatype:
    """A Dynamo-style value: a read returns every sibling (`value`: the list) with their
    clocks (`extra.clocks`, `extra.context`); writes, deletes (tombstones) and cas. A final read
    shows a write when it holds it, or a version whose clock dominates it (real time where a
    clock is missing)."""
    return _versions("siblings", dominates)


def register(dominates: Dominates = descends) -> Datatype:
    """A register: a read returns one value (null: absent), no siblings; otherwise as
    `siblings`."""
    return _versions("register", dominates)


# ---------------------------------------------------------------------------------------------
# Sets of unique elements: the set-add and counter workloads


def _set_read(op: Operation, key: Hashable, final: bool) -> Read:
    assert op.completion is not None
    raw = op.output
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise HistoryError(
            f"a set read's value is a list of elements, got {raw!r}",
            index=op.completion.index,
            field="value",
        )
    elements = {frozen_value(v, op.completion, "value") for v in raw}
    ordered = tuple(Sibling(e, None) for e in sorted(elements, key=repr))
    return Read(op=op, key=key, siblings=ordered, context=None, final=final)


def _parse_set(operations: Sequence[Operation], final_only: bool) -> DynamoHistory:
    """Adds of one element each (`f: "add"`) as writes of that element; reads of the whole set
    as reads whose siblings are its elements."""
    h = DynamoHistory(list(operations))
    for op in operations:
        key = frozen_value(op.key, op.invoke, "key")
        if op.f in ADD_FS:
            element = frozen_value(op.input, op.invoke, "value")
            w = Write(op=op, key=key, value=element, deleted=False, context=None, clock=None)
            h.writes.setdefault(key, []).append(w)
            h.writers.setdefault(key, {}).setdefault(element, []).append(w)
        elif op.f in READ_FS:
            final = is_final(op)
            if final:
                h.final_attempts[key] = h.final_attempts.get(key, 0) + 1
            if op.status == "ok" and (final or not final_only):
                h.reads.setdefault(key, []).append(_set_read(op, key, final))
        else:
            h.other.append(op)
    return h


def _judge_set(_h: DynamoHistory, r: Read, writes: Sequence[Write]) -> list[Fate]:
    elements = {s.value for s in r.siblings}
    return ["present" if w.value in elements else "lost" for w in writes]


def _unexplained_set(h: DynamoHistory, r: Read) -> list[Hashable]:
    attempted = h.writers.get(r.key, {})
    return sorted((s.value for s in r.siblings if s.value not in attempted), key=repr)


def _as_version(op: Operation) -> Operation:
    """An add as the write of the whole set it wrote (`extra.written`); a read as the siblings it
    got (`extra.siblings`, when the workload recorded the union as its value)."""
    if op.f in ADD_FS:
        inv = replace_op(op.invoke, f="write", value=op.invoke.extra.get("written"))
        comp = op.completion
        if comp is not None:
            comp = replace_op(
                comp, f="write", value=comp.extra.get("written") if comp.type == "ok" else None
            )
        return dataclasses.replace(
            op,
            f="write",
            input=inv.value,
            output=None if comp is None or op.status == "info" else comp.value,
            invoke=inv,
            completion=comp,
        )
    comp = op.completion
    if op.f == "read" and comp is not None and comp.type == "ok" and "siblings" in comp.extra:
        comp = replace_op(comp, value=comp.extra["siblings"])
        return dataclasses.replace(op, output=comp.value, completion=comp)
    return op


def set_add(dominates: Dominates = descends) -> Datatype:
    """A grow-only set: `add` ops of one unique element each; final reads of the whole set.
    An acknowledged add is present when its element is in the final set, else lost (nothing
    supersedes an element); an element no add attempted is unexplained. For the Dynamo checker
    each add is the write of the whole list it wrote (`extra.written`, with its context), and a
    final read's siblings are in `extra.siblings`."""
    return Datatype(
        name="set",
        noun="add",
        parse=_parse_set,
        judge=_judge_set,
        unexplained=_unexplained_set,
        dynamo=lambda ops: parse_history([_as_version(op) for op in ops]),
        replica=version_set,
        describe_replica=describe_versions,
        describe_write=lambda w: f"add {w.op.input!r}",
        describe_missing=lambda r: (
            f"is not in the final read (index {_ret_index(r.op)}{r.op.at_node()}, "
            f"{len(r.siblings)} elements)"
        ),
        dominates=dominates,
    )
