"""Dynamo semantics (`dynamo-ref check --model dynamo`): what a Dynamo-style store promises its
clients, checked on the history shape of `harness.checkers.causal`. The `Datatype`
(`harness.checkers.datatypes`) says how the history's ops read as versioned writes and reads
(`Datatype.dynamo`) and which clock order they follow.

Properties, each a `Case` of the result:

- `siblings-written`: every sibling a read returns was written by some write invoked before
  the read returned (whatever its outcome: a write that failed its quorum may still persist),
  or is nil (the initial value, a tombstone).
- `no-dominated-sibling`: no sibling of a read is dominated by another sibling of the same read.
  A sibling's clock is the one the read recorded, else the clock its write got back. Unknown
  if some read returned several siblings and none of them could be compared.
- `strict-quorum` (only with `strict_quorum=True`, i.e. R + W > N and no sloppy quorum): a read
  invoked after a write was acknowledged shows it or a version that has seen it, or a write
  later or concurrent in real time where clocks are missing (`causal.covers`).
- `delete-not-undone`: a read does not return a value an acknowledged delete had seen
  (`supersedes`), unless some write of that value escaped the delete (concurrent with it).
  The delete counts for a read invoked after it was acknowledged under strict quorum and for
  final reads; otherwise (a sloppy read may be stale) only when the read's context shows it
  has seen the delete.

Invalid if any property fails, unknown if none fails and one could not be checked (or the
history has no reads), else valid.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Hashable, Sequence

from harness.checkers.causal import DynamoHistory, Read, Sibling, Write, before, covers
from harness.checkers.datatypes import Datatype, siblings
from harness.checkers.verdict import Case, Finding, Result, Verdict, brief, combine
from harness.clocks import Clock, Dominates
from harness.history import Op, Operation, pair

__all__ = ["PROPERTIES", "check_dynamo", "check_dynamo_operations"]

PROPERTIES = ("siblings-written", "no-dominated-sibling", "strict-quorum", "delete-not-undone")


def check_dynamo(
    history: Sequence[Op], *, strict_quorum: bool = False, datatype: Datatype | None = None
) -> Result:
    """Dynamo semantics of `history` read as `datatype` (default: `datatypes.siblings()`)."""
    return check_dynamo_operations(pair(history), strict_quorum=strict_quorum, datatype=datatype)


def _ret_index(op: Operation) -> int:
    return op.invoke.index if op.completion is None else op.completion.index


def _span(op: Operation) -> str:
    return f"index {op.invoke.index}..{_ret_index(op)}{op.at_node()}"


def _text(values: Sequence[Sibling]) -> str:
    return "[" + ", ".join(repr(s.value) for s in values) + "]" if values else "nothing"


def _what(w: Write) -> str:
    return "delete" if w.deleted else f"write {w.op.input!r}"


class _Checker:
    def __init__(self, h: DynamoHistory, strict: bool, dominates: Dominates) -> None:
        self.h = h
        self.strict = strict
        self.dominates = dominates
        self.findings: dict[str, list[Finding]] = {p: [] for p in PROPERTIES}
        self.stats: dict[str, int] = {
            "reads": 0,
            "siblings": 0,
            "failed_write_values_read": 0,
            "multi_sibling_reads": 0,
            "multi_sibling_reads_checked": 0,
            "strict_checks": 0,
            "acked_deletes": 0,
            "delete_checks": 0,
        }

    def add(self, prop: str, key: Hashable, message: str, ops: Sequence[Operation]) -> None:
        self.findings[prop].append(
            Finding(
                kind=prop,
                key=key,
                message=message,
                ops=tuple(i for op in ops for i in (op.invoke.index, _ret_index(op))),
            )
        )

    def sibling_clock(self, s: Sibling, writers: dict[Hashable, list[Write]]) -> Clock | None:
        if s.clock is not None:
            return s.clock
        clocks = {w.clock for w in writers.get(s.value, ()) if w.clock is not None}
        return next(iter(clocks)) if len(clocks) == 1 else None

    def run(self) -> None:
        for key in self.h.reads.keys() | self.h.writes.keys():
            self.check_key(key)

    def check_key(self, key: Hashable) -> None:
        reads = self.h.reads.get(key, [])
        writes = self.h.writes.get(key, [])
        writers = self.h.writers.get(key, {})
        deletes = self.h.deletes.get(key, [])
        acked_deletes = sorted(
            (d for d in deletes if d.op.status == "ok" and d.ret is not None),
            key=lambda d: d.ret or 0,
        )
        delete_rets = [d.ret or 0 for d in acked_deletes]
        self.stats["acked_deletes"] += len(acked_deletes)
        acked = sorted(
            (w for w in writes if w.op.status == "ok" and w.ret is not None),
            key=lambda w: w.ret or 0,
        )
        frontier: list[Write] = []
        added = 0
        for r in reads:  # in call order
            self.stats["reads"] += 1
            self.stats["siblings"] += len(r.siblings)
            self.check_written(key, r, writers)
            self.check_dominated(key, r, writers)
            if self.strict:
                while added < len(acked) and (acked[added].ret or 0) < r.op.call:
                    self.push(frontier, acked[added])
                    added += 1
                for w in frontier:
                    self.stats["strict_checks"] += 1
                    if not covers(r, w, writers, deletes, self.dominates):
                        self.add(
                            "strict-quorum",
                            key,
                            f"key {key!r}: {_what(w)} by process {w.op.process!r} "
                            f"({_span(w.op)}) was acknowledged before the read by process "
                            f"{r.op.process!r} ({_span(r.op)}) was invoked, which returned "
                            f"{_text(r.siblings)}: neither it nor a version that has seen it",
                            [w.op, r.op],
                        )
            done = bisect.bisect_left(delete_rets, r.op.call)
            self.check_resurrected(key, r, writers, acked_deletes, done)

    def push(self, frontier: list[Write], w: Write) -> None:
        """Keep only writes no other one in the frontier has seen: covering those covers the
        rest. Only ops compared the same way (clocks or real time) supersede each other, so
        that covering stays transitive."""

        def sees(a: Write, b: Write) -> bool:
            if (a.clock is None) != (b.clock is None):
                return False
            if a.clock is not None and b.clock is not None:
                return self.dominates(a.clock, b.clock)
            return before(b.op, a.op)

        if any(sees(f, w) for f in frontier):
            return
        frontier[:] = [f for f in frontier if not sees(w, f)]
        frontier.append(w)

    def check_written(self, key: Hashable, r: Read, writers: dict[Hashable, list[Write]]) -> None:
        assert r.op.ret is not None
        for s in r.siblings:
            if s.value is None:
                continue
            ws = writers.get(s.value, [])
            prior = [w for w in ws if w.call < r.op.ret]
            if not prior:
                later = " (only by a write invoked after the read returned)" if ws else ""
                self.add(
                    "siblings-written",
                    key,
                    f"key {key!r}: the read by process {r.op.process!r} ({_span(r.op)}) returned "
                    f"{s.value!r}, which no write wrote{later}",
                    [r.op] + [w.op for w in ws[:1]],
                )
            elif all(w.op.status == "fail" for w in prior):
                self.stats["failed_write_values_read"] += 1

    def check_dominated(self, key: Hashable, r: Read, writers: dict[Hashable, list[Write]]) -> None:
        if len(r.siblings) < 2:
            return
        self.stats["multi_sibling_reads"] += 1
        clocks = [(s, self.sibling_clock(s, writers)) for s in r.siblings]
        known = [(s, c) for s, c in clocks if c is not None]
        if len(known) < 2:
            return
        self.stats["multi_sibling_reads_checked"] += 1
        for i, (a, ca) in enumerate(known):
            for j, (b, cb) in enumerate(known):
                if i != j and self.dominates(ca, cb) and (ca != cb or i < j):
                    self.add(
                        "no-dominated-sibling",
                        key,
                        f"key {key!r}: the read by process {r.op.process!r} ({_span(r.op)}) "
                        f"returned sibling {b.value!r} {dict(cb)} beside {a.value!r} "
                        f"{dict(ca)}, which has seen it",
                        [r.op],
                    )
                    return

    def check_resurrected(
        self,
        key: Hashable,
        r: Read,
        writers: dict[Hashable, list[Write]],
        acked_deletes: Sequence[Write],
        done: int,
    ) -> None:
        if not acked_deletes:
            return
        seen_all = self.strict or r.final
        view = r.context
        if view is None and r.siblings and all(s.clock is not None for s in r.siblings):
            merged: dict[str, int] = {}
            for s in r.siblings:
                for node, counter in s.clock or ():
                    merged[node] = max(merged.get(node, 0), counter)
            view = tuple(sorted(merged.items()))
        for s in r.siblings:
            if s.value is None:
                continue
            ws = [w for w in writers.get(s.value, []) if r.op.ret is not None and w.call < r.op.ret]
            if not ws:
                continue  # already a siblings-written finding
            candidates = acked_deletes[:done] if seen_all else acked_deletes
            for d in candidates:
                if not seen_all and not (
                    d.clock is not None and view is not None and self.dominates(view, d.clock)
                ):
                    continue
                self.stats["delete_checks"] += 1
                if s.clock is not None and d.clock is not None:
                    killed = self.dominates(d.clock, s.clock)
                else:
                    killed = all(
                        self.dominates(d.clock, w.clock)
                        if d.clock is not None and w.clock is not None
                        else before(w.op, d.op)
                        for w in ws
                    )
                if killed:
                    self.add(
                        "delete-not-undone",
                        key,
                        f"key {key!r}: the read by process {r.op.process!r} ({_span(r.op)}) "
                        f"returned {s.value!r}, deleted by process {d.op.process!r} "
                        f"({_span(d.op)}) after every write of it",
                        [d.op, r.op, *(w.op for w in ws[:2])],
                    )
                    break

    def cases(self) -> list[Case]:
        st = self.stats
        out = []
        for prop in PROPERTIES:
            found = self.findings[prop]
            verdict: Verdict = "invalid" if found else "valid"
            message = f"{len(found)} violation(s); first: {found[0].message}" if found else ""
            if prop == "strict-quorum" and not self.strict:
                continue
            if not found and prop == "no-dominated-sibling":
                multi, checked = st["multi_sibling_reads"], st["multi_sibling_reads_checked"]
                if multi and not checked:
                    verdict = "unknown"
                    message = f"{multi} reads returned several siblings, none with clocks"
                elif multi != checked:
                    message = f"{multi - checked} of {multi} multi-sibling reads had no clocks"
            if not found and st["reads"] == 0:
                verdict, message = "unknown", "no completed reads"
            out.append(Case(prop, verdict, message))
        return out


def check_dynamo_operations(
    operations: Sequence[Operation],
    *,
    strict_quorum: bool = False,
    datatype: Datatype | None = None,
) -> Result:
    started = time.monotonic()
    dt = datatype or siblings()
    h = dt.dynamo(operations)
    checker = _Checker(h, strict_quorum, dt.dominates)
    checker.run()
    cases = checker.cases()
    verdict = combine(c.verdict for c in cases)
    findings = [f for p in PROPERTIES for f in checker.findings[p]]
    sizes = {
        k: len(h.reads.get(k, ())) + len(h.writes.get(k, ()))
        for k in h.reads.keys() | h.writes.keys()
    }
    lines = [
        f"{verdict}: {checker.stats['reads']} reads on {len(sizes)} keys"
        + ("" if strict_quorum else " (strict-quorum not checked: pass --strict-quorum for R+W>N)")
    ]
    for c in cases:
        lines.append(f"  {c.name}: {c.verdict}" + (f" ({c.message})" if c.message else ""))
    if findings:
        smallest = min(findings, key=lambda f: (sizes.get(f.key, 0), repr(f.key)))
        lines.append(
            f"smallest failing key {smallest.key!r} ({sizes.get(smallest.key, 0)} operations): "
            f"{smallest.message}"
        )
        lines.extend(f"  {line}" for line in _around(h, smallest))
    return Result(
        checker="dynamo",
        verdict=verdict,
        explanation="\n".join(lines),
        details={
            **checker.stats,
            "strict_quorum": strict_quorum,
            "violations": {p: len(checker.findings[p]) for p in PROPERTIES},
        },
        findings=tuple(findings),
        cases=tuple(cases),
        elapsed=time.monotonic() - started,
    )


def _around(h: DynamoHistory, finding: Finding) -> list[str]:
    key = finding.key
    ops = sorted(
        [w.op for w in h.writes.get(key, ())] + [r.op for r in h.reads.get(key, ())],
        key=lambda op: op.call,
    )
    involved = set(finding.ops)
    idx = [i for i, op in enumerate(ops) if op.invoke.index in involved]
    if not idx:
        return []
    lo = max(0, min(idx) - 2)
    hi = min(len(ops), max(idx) + 3, lo + 12)
    out = ["operations on that key around it:"]
    for op in ops[lo:hi]:
        mark = "->" if op.invoke.index in involved else "  "
        tail = f" -> {brief(op.output)}" if op.status == "ok" and op.f in ("read", "get") else ""
        out.append(
            f"{mark} process {op.process!r} {op.status:4} {op.f} {brief(op.input)}{tail}"
            f"  ({_span(op)})"
        )
    return out
