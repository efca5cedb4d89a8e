"""What clients of a Dynamo-style store record, read back as writes, reads and faults.

The shapes below are plain Jepsen ops (`harness.history.Op`) so the same history also feeds the
linearizability checker: `value` stays the plain value, and what only a Dynamo-style system
has (contexts and clocks) goes in `extra`. Any system can produce them; clocks are JSON maps
node -> counter (a list of `[node, counter, ...]` entries is accepted too).

    write   invoke {"f": "write", "key": K, "value": V, "extra": {"context": C}}   # C: sent
            ok     {"f": "write", "key": K, "value": V, "extra": {"clock": C2}}    # C2: got back
    delete  the same with "f": "delete" and "value": null (a tombstone)
    cas     {"f": "cas", "key": K, "value": [FROM, TO]} (register targets): ok wrote TO;
            fail found another value and wrote nothing
    read    invoke {"f": "read", "key": K, "value": null}
            ok     {"f": "read", "key": K, "value": [V1, V2],                     # siblings
                    "extra": {"clocks": [C1, C2], "context": C}}
    final read: "final": true in the invoke's or completion's `extra`: taken after the last
            heal and quiescence (the lost-writes checker's input).
    replica read (convergence): {"f": "replica-read", "key": K, "extra": {"node": N}},
            ok value: the versions the replica holds, `[{"value": V, "clock": C}, ...]`.

`clocks[i]` is the clock of sibling `value[i]`; a system that only exposes the merged context
records `context`, which for a single sibling is that sibling's clock. A read's value `null`
means no siblings. With `shape="register"` (a store that returns one value, no siblings), a
read's value is the value itself and null means absent.

`fail` means the op did not take effect, `info` that it may have. Values written should be
unique per key: a sibling is matched to its writes by value.

Causality is pluggable: `Dominates(a, b)` says clock `a` has seen everything `b` has (vector
clock descent by default). Where a clock is missing on either side, real time stands in: an
op supersedes another that completed before it was invoked.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import msgspec

from harness.checkers.models import ModelError, freeze
from harness.clocks import DOT, Clock, Dominates, descends, dotted_descends, split_dot
from harness.history import HistoryError, Op, Operation, is_nemesis

__all__ = [
    "DOT",
    "READ_FS",
    "REPLICA_READ_F",
    "Clock",
    "Dominates",
    "DynamoHistory",
    "Fault",
    "Read",
    "Shape",
    "Sibling",
    "Write",
    "covers",
    "descends",
    "dotted_descends",
    "fault_windows",
    "faults_during",
    "frozen_value",
    "is_final",
    "parse_clock",
    "parse_history",
    "replace_op",
    "split_dot",
    "supersedes",
]

Shape: TypeAlias = Literal["siblings", "register"]

READ_FS = frozenset({"read", "get"})
WRITE_FS = frozenset({"write", "put"})
DELETE_FS = frozenset({"delete", "del"})
CAS_FS = frozenset({"cas"})
REPLICA_READ_F = "replica-read"


def _bad(op: Op, field_name: str, message: str) -> HistoryError:
    return HistoryError(message, index=op.index, field=field_name, line=None)


def parse_clock(raw: object, op: Op, field_name: str) -> Clock | None:
    """A clock from a JSON map or `[node, counter, ...]` entries; None when absent."""
    if raw is None:
        return None
    if isinstance(raw, dict) and all(
        type(n) is str and type(c) is int and c >= 0 for n, c in raw.items()
    ):
        return tuple(sorted((n, c) for n, c in raw.items() if c))  # the common case
    entries: list[tuple[str, int]] = []
    if isinstance(raw, dict):
        items: Iterable[tuple[object, object]] = raw.items()
    elif isinstance(raw, list | tuple):
        pairs: list[tuple[object, object]] = []
        for e in raw:
            if not isinstance(e, list | tuple) or len(e) < 2:
                raise _bad(op, field_name, f"clock entry {e!r} is not [node, counter, ...]")
            pairs.append((e[0], e[1]))
        items = pairs
    else:
        raise _bad(op, field_name, f"a clock is a map node -> counter, got {raw!r}")
    for node, counter in items:
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise _bad(op, field_name, f"counter of {node!r} must be an integer >= 0")
        if counter:
            entries.append((str(node), counter))
    entries.sort()
    if any(entries[i][0] == entries[i + 1][0] for i in range(len(entries) - 1)):
        raise _bad(op, field_name, f"clock names a node twice: {raw!r}")
    return tuple(entries)


def frozen_value(value: object, op: Op, field_name: str) -> Hashable:
    """`freeze(value)`, or a `HistoryError` naming the op and field."""
    try:
        return freeze(value)
    except ModelError as exc:
        raise _bad(op, field_name, str(exc)) from None


def _extra(op: Operation, name: str) -> object:
    """`extra[name]` of the completion, else of the invocation."""
    if op.completion is not None and name in op.completion.extra:
        return op.completion.extra[name]
    return op.invoke.extra.get(name)


@dataclass(frozen=True, slots=True)
class Write:
    """A write or delete; `value` is frozen (hashable), None for a delete."""

    op: Operation
    key: Hashable
    value: Hashable
    deleted: bool
    context: Clock | None
    clock: Clock | None

    @property
    def call(self) -> int:
        return self.op.call

    @property
    def ret(self) -> int | None:
        return self.op.ret


@dataclass(frozen=True, slots=True)
class Sibling:
    value: Hashable
    clock: Clock | None


@dataclass(frozen=True, slots=True)
class Read:
    op: Operation
    key: Hashable
    siblings: tuple[Sibling, ...]
    context: Clock | None
    final: bool


@dataclass(slots=True)
class DynamoHistory:
    """A history's client ops by key, in call order. `reads` holds completed (`ok`) reads;
    `final_attempts` counts final reads of each key, whatever their outcome."""

    operations: list[Operation]
    writes: dict[Hashable, list[Write]] = field(default_factory=dict)
    reads: dict[Hashable, list[Read]] = field(default_factory=dict)
    final_attempts: dict[Hashable, int] = field(default_factory=dict)
    # writers[key][value]: the writes of that value (deletes under None), in call order.
    writers: dict[Hashable, dict[Hashable, list[Write]]] = field(default_factory=dict)
    # deletes[key]: the deletes that may have happened (not `fail`), in call order.
    deletes: dict[Hashable, list[Write]] = field(default_factory=dict)
    other: list[Operation] = field(default_factory=list)  # ops of no kind parsed here

    def final_reads(self, key: Hashable) -> list[Read]:
        return [r for r in self.reads.get(key, ()) if r.final]


def is_final(op: Operation) -> bool:
    return _extra(op, "final") is True


def parse_history(
    operations: Sequence[Operation], *, shape: Shape = "siblings", final_only: bool = False
) -> DynamoHistory:
    """Sort paired ops into writes and reads by key (`final_only`: only the final reads).
    Raises `HistoryError` (op index, field)."""
    h = DynamoHistory(list(operations))
    for op in operations:
        inv = op.invoke
        key = frozen_value(op.key, inv, "key")
        if op.f in WRITE_FS or op.f in DELETE_FS:
            deleted = op.f in DELETE_FS
            value = None if deleted else frozen_value(op.input, inv, "value")
            clock = None
            if op.completion is not None and op.status == "ok":
                clock = parse_clock(op.completion.extra.get("clock"), op.completion, "clock")
            w = Write(
                op=op,
                key=key,
                value=value,
                deleted=deleted,
                context=parse_clock(inv.extra.get("context"), inv, "context"),
                clock=clock,
            )
            h.writes.setdefault(key, []).append(w)
            h.writers.setdefault(key, {}).setdefault(value, []).append(w)
            if deleted and op.status != "fail":
                h.deletes.setdefault(key, []).append(w)
        elif op.f in CAS_FS:
            # A cas that took effect wrote its `to`; one that failed (found another value)
            # did not take effect.
            pair = op.input
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise _bad(inv, "value", f"a cas's value is [from, to], got {pair!r}")
            if op.status == "fail":
                h.other.append(op)
                continue
            w = Write(
                op=op,
                key=key,
                value=frozen_value(pair[1], inv, "value"),
                deleted=False,
                context=None,
                clock=None,
            )
            h.writes.setdefault(key, []).append(w)
            h.writers.setdefault(key, {}).setdefault(w.value, []).append(w)
        elif op.f in READ_FS:
            final = is_final(op)
            if final:
                h.final_attempts[key] = h.final_attempts.get(key, 0) + 1
            if op.status != "ok" or (final_only and not final):
                continue
            comp = op.completion
            assert comp is not None
            h.reads.setdefault(key, []).append(_parse_read(op, comp, key, final, shape))
        else:
            h.other.append(op)
    return h


def _parse_read(op: Operation, comp: Op, key: Hashable, final: bool, shape: Shape) -> Read:
    raw = op.output
    if shape == "register":
        values = [] if raw is None else [raw]
    elif raw is None:
        values = []
    elif isinstance(raw, list):
        values = raw
    else:
        raise _bad(comp, "value", f"a read's value is the list of siblings, got {raw!r}")
    context = parse_clock(comp.extra.get("context"), comp, "context")
    raw_clocks = comp.extra.get("clocks")
    clocks: list[Clock | None]
    if raw_clocks is None:
        clocks = [context if len(values) == 1 else None] * len(values)
    elif isinstance(raw_clocks, list) and len(raw_clocks) == len(values):
        clocks = [parse_clock(c, comp, "clocks") for c in raw_clocks]
    else:
        raise _bad(comp, "clocks", f"expected one clock per sibling ({len(values)})")
    siblings = tuple(
        Sibling(frozen_value(v, comp, "value"), c) for v, c in zip(values, clocks, strict=True)
    )
    return Read(op=op, key=key, siblings=siblings, context=context, final=final)


# ---------------------------------------------------------------------------------------------
# Causality


def before(a: Operation, b: Operation) -> bool:
    """`a` completed before `b` was invoked (real-time order)."""
    return a.ret is not None and a.ret < b.call


def supersedes(later: Write, earlier: Write, dominates: Dominates = descends) -> bool:
    """`later` has seen `earlier`: by their clocks when both have one, else by real time."""
    if later.clock is not None and earlier.clock is not None:
        return dominates(later.clock, earlier.clock)
    return before(earlier.op, later.op)


def covers(
    read: Read,
    w: Write,
    writers: dict[Hashable, list[Write]],
    deletes: Sequence[Write],
    dominates: Dominates = descends,
) -> bool:
    """Does `read` show `w` or a version that has seen it?

    `w` is present (its value is a sibling, or for a delete the read is empty), or a sibling's
    clock dominates `w`'s, or, where a clock is missing, a sibling was written by an op that
    did not complete before `w` was invoked (later or concurrent in real time). Tombstones are
    not returned by reads: a delete is also covered by a read context that has seen it, and a
    delete in `deletes` (pass only those that may have happened)
    that has seen `w`, or is later or concurrent in real time, covers it too.
    """
    if w.deleted and not read.siblings:
        return True
    # A tombstone concurrent with live siblings stays hidden; the context shows it.
    if (
        w.deleted
        and read.context is not None
        and w.clock is not None
        and dominates(read.context, w.clock)
    ):
        return True
    for s in read.siblings:
        if not w.deleted and s.value == w.value:
            return True
        if s.clock is not None and w.clock is not None:
            if dominates(s.clock, w.clock):
                return True
            continue
        if any(not before(x.op, w.op) for x in writers.get(s.value, ())):
            return True
    for d in deletes:
        if d is w or (read.op.ret is not None and d.call > read.op.ret):
            continue
        if d.clock is not None and w.clock is not None:
            if dominates(d.clock, w.clock):
                return True
        elif not before(d.op, w.op):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Faults

# Nemesis `f`s that start a fault, by family, and those that end one ("*": every open fault).
_OPENERS = {
    "start": "fault",
    "partition": "partition",
    "isolate": "partition",
    "kill": "kill",
    "crash": "kill",
    "pause": "pause",
    "skew": "clock-skew",
    "clock-skew": "clock-skew",
    "bump-clock": "clock-skew",
}
_CLOSERS = {
    "stop": "*",
    "heal": "partition",
    "restart": "kill",
    "resume": "pause",
    "reset-clock": "clock-skew",
    "recover": "*",
    "heal-all": "*",
}


def _family(f: str) -> tuple[str, str] | None:
    """("open" | "close", family) of a nemesis `f`, or None for an event that is neither."""
    for prefix, kind in (("start-", "open"), ("stop-", "close"), ("end-", "close")):
        if f.startswith(prefix) and len(f) > len(prefix):
            return kind, f[len(prefix) :]
    if f in _OPENERS:
        return "open", _OPENERS[f]
    if f in _CLOSERS:
        return "close", _CLOSERS[f]
    return None


@dataclass(slots=True)
class Fault:
    """A fault window in history positions: from its first start event to its last stop event
    (`end` None: never healed). `value` is the last non-null value its start events gave."""

    name: str
    start: int
    end: int | None
    start_time: int
    end_time: int | None
    value: object

    def active(self, first: int, last: int | None) -> bool:
        """Overlaps positions [first, last] (`last` None: open-ended)."""
        return (self.end is None or self.end >= first) and (last is None or self.start <= last)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "value": self.value,
        }


def fault_windows(history: Sequence[Op]) -> list[Fault]:
    """Fault windows from the nemesis events (`process: "nemesis"`), in start order.

    Jepsen logs a nemesis action as an invoke and an info: a stop's completion right after its
    invoke extends the window to the completion.
    """
    open_faults: dict[str, Fault] = {}
    done: list[Fault] = []
    just_closed: tuple[str, list[Fault]] | None = None
    for pos, op in enumerate(history):
        if not is_nemesis(op):
            continue
        fam = _family(op.f)
        if just_closed is not None and just_closed[0] == op.f and op.type != "invoke":
            for fault in just_closed[1]:
                fault.end, fault.end_time = pos, op.time
            just_closed = None
            continue
        just_closed = None
        if fam is None:
            continue
        kind, name = fam
        if kind == "open":
            existing = open_faults.get(name)
            if existing is None:
                fresh = Fault(name, pos, None, op.time, None, op.value)
                open_faults[name] = fresh
                done.append(fresh)
            elif op.value is not None:
                existing.value = op.value
            continue
        names = list(open_faults) if name == "*" or name not in open_faults else [name]
        closed = [open_faults.pop(n) for n in names]
        for fault in closed:
            fault.end, fault.end_time = pos, op.time
        if op.type == "invoke":
            just_closed = (op.f, closed)
    return done


def faults_during(faults: Sequence[Fault], first: int, last: int | None) -> list[Fault]:
    return [f for f in faults if f.active(first, last)]


def ops_between(ops: Sequence[Operation], first: int, last: int) -> list[Operation]:
    """Operations (sorted by call) that overlap positions [first, last]."""
    calls = [op.call for op in ops]
    hi = bisect.bisect_right(calls, last)
    return [op for op in ops[:hi] if op.ret is None or op.ret >= first]


def replace_op(op: Op, **changes: object) -> Op:
    """`op` with some fields changed."""
    return msgspec.structs.replace(op, **changes)
