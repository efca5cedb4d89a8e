"""Lost writes: after the final heal and quiescence, is every acknowledged write still there?

Input: one history whose final reads are tagged in it (`"final": true` in the read's `extra`,
see `harness.checkers.causal`), taken after the last heal once anti-entropy and handoff have
had time. Tagging keeps one file per run, which `dynamo-ref check` reads as is.

- `kind="siblings"` (Dynamo reads: a list of siblings) or `"register"` (one value per read):
  every `ok` write or delete must be covered by every final read of its key: present, or
  superseded by a version present there (`causal.covers`: clock dominance, pluggable, or real
  time where a clock is missing).
- `kind="set"` (the set-add workload): `f: "add"` ops of one element, final reads of the whole
  set; every `ok` element must be in every final read of its key, and a final read must not
  hold an element no add attempted.

Writes with an unknown outcome (`info`) are not required; the ones missing are counted as
"maybe lost". A key with acknowledged writes and no successful final read makes the verdict
unknown, as does a history with nothing acknowledged. Each lost write is reported with its
time and the faults active while it ran.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import Literal, TypeAlias

from harness.checkers.causal import (
    Dominates,
    DynamoHistory,
    Fault,
    Read,
    Write,
    covers,
    descends,
    fault_windows,
    faults_during,
    is_final,
    parse_history,
)
from harness.checkers.models import ModelError, freeze
from harness.checkers.verdict import Case, Finding, Result, Verdict, case_summary, json_able
from harness.history import HistoryError, Op, Operation, pair

__all__ = ["Kind", "check_lost_writes"]

Kind: TypeAlias = Literal["siblings", "register", "set"]

ADD_FS = frozenset({"add"})


def check_lost_writes(
    history: Sequence[Op], *, kind: Kind = "siblings", dominates: Dominates = descends
) -> Result:
    started = time.monotonic()
    operations = pair(history)
    faults = fault_windows(history)
    if kind == "set":
        result = _check_set(operations, faults)
    else:
        h = parse_history(operations, shape=kind, final_only=True)
        result = _check_writes(h, faults, dominates)
    return Result(
        checker=f"lost-writes ({kind})",
        verdict=result.verdict,
        explanation=result.explanation,
        details=result.details,
        findings=result.findings,
        cases=result.cases,
        elapsed=time.monotonic() - started,
    )


def _op_json(op: Operation) -> dict[str, object]:
    return {
        "process": op.process,
        "f": op.f,
        "status": op.status,
        "value": json_able(op.input),
        "output": json_able(op.output),
        "invoke_index": op.invoke.index,
        "completion_index": None if op.completion is None else op.completion.index,
        "call_time": op.call_time,
        "return_time": op.return_time,
    }


def _fault_text(faults: Sequence[Fault]) -> str:
    if not faults:
        return "no fault active"
    return "faults active: " + ", ".join(
        f"{f.name}{'' if f.value is None else ' ' + repr(f.value)}" for f in faults
    )


class _Tally:
    """What both kinds report, and how the verdict follows from it."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.acked = self.present = self.superseded = self.maybe_lost = self.unacked_present = 0
        self.findings: list[Finding] = []
        self.cases: list[Case] = []
        self.unknown_keys: list[str] = []
        self.key_sizes: dict[str, int] = {}
        self.lost_per_key: dict[str, int] = {}

    def finish(self, ops: Sequence[Operation], extra: dict[str, object]) -> Result:
        lost = [f for f in self.findings if f.kind == "lost"]
        bad = [f for f in self.findings if f.kind != "lost"]
        details: dict[str, object] = {
            "acknowledged": self.acked,
            "present": self.present,
            "superseded": self.superseded,
            "lost": len(lost),
            "maybe_lost": self.maybe_lost,
            "unacknowledged_present": self.unacked_present,
            "keys_unknown": self.unknown_keys,
            "lost_per_key": self.lost_per_key,
            **extra,
        }
        counts = (
            f"{self.acked} acknowledged {self.noun}s: {self.present} present, "
            f"{self.superseded} superseded, {len(lost)} lost; {self.maybe_lost} of unknown "
            f"outcome missing (maybe lost)"
        )
        verdict: Verdict
        if self.findings:
            verdict = "invalid"
            smallest = min(
                {repr(f.key) for f in self.findings}, key=lambda k: (self.key_sizes[k], k)
            )
            first = next(f for f in self.findings if repr(f.key) == smallest)
            lines = [f"invalid: {counts}" + (f"; {len(bad)} unexpected" if bad else "")]
            lines.append(
                f"smallest failing key {smallest} ({self.key_sizes[smallest]} operations): "
                f"{first.message}"
            )
            around = first.details.get("around")
            if isinstance(around, list) and around:
                lines.append("  operations on that key around it:")
                lines.extend(f"    {line}" for line in around)
            explanation = "\n".join(lines)
        elif self.unknown_keys:
            verdict = "unknown"
            explanation = (
                f"unknown: no successful final read of {len(self.unknown_keys)} key(s) with "
                f"acknowledged {self.noun}s ({', '.join(self.unknown_keys[:5])}); {counts}"
            )
        elif self.acked == 0:
            verdict = "unknown"
            explanation = f"unknown: nothing to check, no acknowledged {self.noun}s"
        else:
            verdict = "valid"
            explanation = f"valid: {counts} ({case_summary(self.cases)} keys)"
        return Result(
            checker="lost-writes",
            verdict=verdict,
            explanation=explanation,
            details=details,
            findings=tuple(self.findings),
            cases=tuple(self.cases),
        )


def _around(ops: Sequence[Operation], target: Operation, final: Read | None) -> list[str]:
    """A few ops on the key before and after `target`, then the final read."""
    i = next(n for n, op in enumerate(ops) if op is target)
    window = list(ops[max(0, i - 3) : i + 4])
    if final is not None and final.op not in window:
        window.append(final.op)
    out = []
    for op in window:
        mark = "->" if op is target else "  "
        ret = "" if op.completion is None else f"..{op.completion.index}"
        tail = "" if op.status != "ok" or op.f not in ("read", "get") else f" -> {op.output!r}"
        out.append(
            f"{mark} process {op.process!r} {op.status:4} {op.f} {op.input!r}{tail}"
            f"  (index {op.invoke.index}{ret})"
        )
    return out


def _check_writes(h: DynamoHistory, faults: list[Fault], dominates: Dominates) -> Result:
    tally = _Tally("write")
    for key, writes in h.writes.items():
        name = repr(key)
        key_ops = sorted(
            [w.op for w in writes] + [r.op for r in h.reads.get(key, ())], key=lambda op: op.call
        )
        tally.key_sizes[name] = len(key_ops)
        acked = [w for w in writes if w.op.status == "ok"]
        unsure = [w for w in writes if w.op.status == "info"]
        tally.acked += len(acked)
        finals = h.final_reads(key)
        if not finals:
            if acked:
                tally.unknown_keys.append(name)
                attempts = h.final_attempts.get(key, 0)
                why = "final read failed" if attempts else "no final read"
                tally.cases.append(Case(f"key {name}", "unknown", why))
            continue
        writers = h.writers.get(key, {})
        deletes = [w for w in writes if w.deleted and w.op.status != "fail"]
        lost_here = 0
        for w in acked:
            missing = next(
                (r for r in finals if not covers(r, w, writers, deletes, dominates)), None
            )
            if missing is None:
                if all(_present(r, w) for r in finals):
                    tally.present += 1
                else:
                    tally.superseded += 1
                continue
            lost_here += 1
            active = faults_during(faults, w.call, w.ret)
            what = "delete" if w.deleted else f"write {w.op.input!r}"
            msg = (
                f"{what} by process {w.op.process!r} (index {w.op.invoke.index}.."
                f"{_ret_index(w.op)}, time {w.op.call_time}..{w.op.return_time}) was "
                f"acknowledged but the final read (index {_ret_index(missing.op)}) returned "
                f"{_siblings_text(missing)}; {_fault_text(active)}"
            )
            tally.findings.append(
                Finding(
                    kind="lost",
                    key=key,
                    message=msg,
                    ops=(w.op.invoke.index, _ret_index(w.op), _ret_index(missing.op)),
                    details={
                        "write": _op_json(w.op),
                        "clock": w.clock,
                        "final_read": _op_json(missing.op),
                        "faults": [f.to_json() for f in active],
                        "around": _around(key_ops, w.op, missing),
                    },
                )
            )
        for w in unsure:
            if all(covers(r, w, writers, deletes, dominates) for r in finals):
                if all(_present(r, w) for r in finals):
                    tally.unacked_present += 1
            else:
                tally.maybe_lost += 1
        if lost_here:
            tally.lost_per_key[name] = lost_here
        tally.cases.append(
            Case(
                f"key {name}",
                "invalid" if lost_here else "valid",
                f"{lost_here} of {len(acked)} acknowledged writes lost" if lost_here else "",
            )
        )
    return tally.finish(h.operations, {"keys": len(h.writes), "faults": len(faults)})


def _present(r: Read, w: Write) -> bool:
    if w.deleted:
        return not r.siblings
    return any(s.value == w.value for s in r.siblings)


def _ret_index(op: Operation) -> int:
    return op.invoke.index if op.completion is None else op.completion.index


def _siblings_text(r: Read) -> str:
    if not r.siblings:
        return "nothing"
    return "[" + ", ".join(repr(s.value) for s in r.siblings) + "]"


def _frozen(value: object, op: Op, name: str) -> Hashable:
    try:
        return freeze(value)
    except ModelError as exc:
        raise HistoryError(str(exc), index=op.index, field=name) from None


def _check_set(operations: Sequence[Operation], faults: list[Fault]) -> Result:
    tally = _Tally("add")
    adds: dict[Hashable, list[Operation]] = {}
    finals: dict[Hashable, list[tuple[Operation, frozenset[Hashable]]]] = {}
    attempts: dict[Hashable, int] = {}
    for op in operations:
        key = _frozen(op.key, op.invoke, "key")
        if op.f in ADD_FS:
            adds.setdefault(key, []).append(op)
        elif op.f in ("read", "get") and is_final(op):
            attempts[key] = attempts.get(key, 0) + 1
            if op.status != "ok":
                continue
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
            elements = frozenset(_frozen(v, op.completion, "value") for v in raw)
            finals.setdefault(key, []).append((op, elements))
    for key in sorted(adds.keys() | finals.keys(), key=repr):
        name = repr(key)
        key_adds = adds.get(key, [])
        key_finals = finals.get(key, [])
        tally.key_sizes[name] = len(key_adds) + len(key_finals)
        acked = [op for op in key_adds if op.status == "ok"]
        tally.acked += len(acked)
        if not key_finals:
            if acked:
                tally.unknown_keys.append(name)
                why = "final read failed" if attempts.get(key) else "no final read"
                tally.cases.append(Case(f"key {name}", "unknown", why))
            continue
        attempted = {_frozen(op.input, op.invoke, "value") for op in key_adds}
        problems = 0
        key_ops = sorted(key_adds + [op for op, _ in key_finals], key=lambda op: op.call)
        for op in key_adds:
            element = _frozen(op.input, op.invoke, "value")
            missing = next(((r, s) for r, s in key_finals if element not in s), None)
            if op.status == "info":
                if missing is None:
                    tally.unacked_present += 1
                else:
                    tally.maybe_lost += 1
                continue
            if op.status != "ok":
                continue
            if missing is None:
                tally.present += 1
                continue
            problems += 1
            read_op = missing[0]
            active = faults_during(faults, op.call, op.ret)
            tally.findings.append(
                Finding(
                    kind="lost",
                    key=key,
                    message=(
                        f"add {op.input!r} by process {op.process!r} (index "
                        f"{op.invoke.index}..{_ret_index(op)}, time {op.call_time}.."
                        f"{op.return_time}) was acknowledged but is not in the final read "
                        f"(index {_ret_index(read_op)}, {len(missing[1])} elements); "
                        f"{_fault_text(active)}"
                    ),
                    ops=(op.invoke.index, _ret_index(op), _ret_index(read_op)),
                    details={
                        "add": _op_json(op),
                        "final_read_index": _ret_index(read_op),
                        "faults": [f.to_json() for f in active],
                        "around": _around(key_ops, op, None),
                    },
                )
            )
        for read_op, elements in key_finals:
            unexpected = sorted(elements - attempted, key=repr)
            if unexpected:
                problems += 1
                tally.findings.append(
                    Finding(
                        kind="unexpected",
                        key=key,
                        message=(
                            f"the final read (index {_ret_index(read_op)}) holds "
                            f"{len(unexpected)} element(s) no add attempted: "
                            f"{unexpected[:10]!r}"
                        ),
                        ops=(_ret_index(read_op),),
                        details={"unexpected": list(unexpected)},
                    )
                )
        if problems:
            tally.lost_per_key[name] = problems
        tally.cases.append(
            Case(
                f"key {name}",
                "invalid" if problems else "valid",
                f"{problems} problem(s)" if problems else "",
            )
        )
    return tally.finish(operations, {"keys": len(adds), "faults": len(faults)})
