"""Lost writes: after the final heal and quiescence, is every acknowledged write still there?

Input: one history whose final reads are tagged in it (`"final": true` in the read's `extra`,
see `harness.checkers.causal`), taken after the last heal once anti-entropy and handoff have
had time. Tagging keeps one file per run, which `dynamo-ref check` reads as is.

The checker takes a `Datatype` (`harness.checkers.datatypes`), which says what the history's
writes and reads are and what a final read shows of each write: present, superseded (by a
version that has seen it) or lost. Every `ok` write must be present or superseded in every final
read of its key; what a final read holds that no write attempted is reported too (sets).

- `datatypes.siblings()` (Dynamo reads: a list of siblings) and `register()` (one value per
  read): a write or delete is covered when it is present, or superseded by a version present
  there (`causal.covers`: clock dominance, pluggable, or real time where a clock is missing);
- `datatypes.set_add()`: `f: "add"` ops of one element, final reads of the whole set.

Writes with an unknown outcome (`info`) are not required; the ones missing are counted as
"maybe lost". A key with acknowledged writes and no successful final read makes the verdict
unknown, as does a history with nothing acknowledged. Each lost write is reported with its
time and the faults active while it ran.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from harness.checkers.causal import (
    DynamoHistory,
    Fault,
    Read,
    Write,
    fault_windows,
    faults_during,
)
from harness.checkers.datatypes import Datatype, Fate, siblings
from harness.checkers.verdict import (
    Case,
    Finding,
    Result,
    Verdict,
    brief,
    case_summary,
    json_able,
)
from harness.history import Op, Operation, pair

__all__ = ["check_lost_writes"]


def check_lost_writes(history: Sequence[Op], datatype: Datatype | None = None) -> Result:
    """Lost writes of `history` read as `datatype` (default: `datatypes.siblings()`)."""
    started = time.monotonic()
    dt = datatype if datatype is not None else siblings()
    operations = pair(history)
    faults = fault_windows(history)
    result = _check(dt, dt.parse(operations, True), faults)
    return Result(
        checker=f"lost-writes ({dt.name})",
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
        "node": json_able(op.node),
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
    """The counts, findings and per-key cases, and how the verdict follows from them."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self.acked = self.present = self.superseded = self.maybe_lost = self.unacked_present = 0
        self.findings: list[Finding] = []
        self.cases: list[Case] = []
        self.unknown_keys: list[str] = []
        self.key_sizes: dict[str, int] = {}
        self.lost_per_key: dict[str, int] = {}

    def finish(self, extra: dict[str, object]) -> Result:
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
        tail = "" if op.status != "ok" or op.f not in ("read", "get") else f" -> {brief(op.output)}"
        out.append(
            f"{mark} process {op.process!r} {op.status:4} {op.f} {brief(op.input)}{tail}"
            f"  (index {op.invoke.index}{ret}{op.at_node()})"
        )
    return out


def _overwriter(w: Write, writes: Sequence[Write]) -> Write | None:
    """For an add lost from a set: the first write of the key, begun after it, that wrote the
    whole set (`extra.written`) without its element, and so took its place. None when the
    history does not record what the writes wrote."""
    for other in sorted(writes, key=lambda x: x.op.call):
        written = other.op.invoke.extra.get("written")
        if other is w or other.op.call < w.op.call or not isinstance(written, list):
            continue
        if w.value not in written:
            return other
    return None


def _describe_overwrite(w: Write, over: Write) -> str:
    when = (
        "concurrent with it"
        if over.op.call < (w.op.ret if w.op.ret is not None else over.op.call + 1)
        else "begun after it was acknowledged, from a read that missed it"
    )
    return (
        f"dominated by {over.op.f} {over.op.input!r} by process {over.op.process!r} (index "
        f"{over.op.invoke.index}..{_ret_index(over.op)}{over.op.at_node()}), {when}, which "
        f"wrote a set without {w.value!r}"
    )


def _ret_index(op: Operation) -> int:
    return op.invoke.index if op.completion is None else op.completion.index


def _check(dt: Datatype, h: DynamoHistory, faults: list[Fault]) -> Result:
    tally = _Tally(dt.noun)
    for key in sorted(h.writes.keys() | h.reads.keys(), key=repr):
        name = repr(key)
        writes = h.writes.get(key, [])
        finals = h.final_reads(key)
        key_ops = sorted([w.op for w in writes] + [r.op for r in finals], key=lambda op: op.call)
        tally.key_sizes[name] = len(key_ops)
        acked = [w for w in writes if w.op.status == "ok"]
        unsure = [w for w in writes if w.op.status == "info"]
        tally.acked += len(acked)
        if not finals:
            if acked:
                tally.unknown_keys.append(name)
                why = "final read failed" if h.final_attempts.get(key, 0) else "no final read"
                tally.cases.append(Case(f"key {name}", "unknown", why))
            continue
        judged = [dt.judge(h, r, acked + unsure) for r in finals]
        fates: list[list[Fate]] = [list(col) for col in zip(*judged, strict=True)] or [
            [] for _ in acked + unsure
        ]
        lost_here = unexplained = 0
        for w, seen in zip(acked, fates[: len(acked)], strict=True):
            missing = next((r for r, f in zip(finals, seen, strict=True) if f == "lost"), None)
            if missing is None:
                if all(f == "present" for f in seen):
                    tally.present += 1
                else:
                    tally.superseded += 1
                continue
            lost_here += 1
            active = faults_during(faults, w.call, w.ret)
            msg = (
                f"{dt.describe_write(w)} by process {w.op.process!r} (index {w.op.invoke.index}.."
                f"{_ret_index(w.op)}{w.op.at_node()}, time {w.op.call_time}..{w.op.return_time}) "
                f"was acknowledged but {dt.describe_missing(missing)}; {_fault_text(active)}"
            )
            over = _overwriter(w, writes)
            if over is not None:
                msg += f"; {_describe_overwrite(w, over)}"
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
                        "overwritten_by": None if over is None else _op_json(over.op),
                    },
                )
            )
        for seen in fates[len(acked) :]:
            if all(f == "present" for f in seen):
                tally.unacked_present += 1
            elif "lost" in seen:
                tally.maybe_lost += 1
        for r in finals:
            unexpected = dt.unexplained(h, r)
            if not unexpected:
                continue
            unexplained += 1
            tally.findings.append(
                Finding(
                    kind="unexpected",
                    key=key,
                    message=(
                        f"the final read (index {_ret_index(r.op)}{r.op.at_node()}) holds "
                        f"{len(unexpected)} "
                        f"value(s) no {dt.noun} attempted: {unexpected[:10]!r}"
                    ),
                    ops=(_ret_index(r.op),),
                    details={"unexpected": list(unexpected)},
                )
            )
        problems = (
            [f"{lost_here} of {len(acked)} acknowledged {dt.noun}s lost"] if lost_here else []
        )
        if unexplained:
            problems.append(f"{unexplained} final read(s) hold values no {dt.noun} attempted")
        if problems:
            tally.lost_per_key[name] = lost_here + unexplained
        tally.cases.append(
            Case(f"key {name}", "invalid" if problems else "valid", "; ".join(problems))
        )
    return tally.finish({"keys": len(h.writes), "faults": len(faults)})
