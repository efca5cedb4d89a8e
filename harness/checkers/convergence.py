"""Convergence: after heal and quiescence, do all replicas of every key hold equal version sets?

Input: per key, per replica, the versions read directly from that replica (not through a
coordinator), or None when the replica could not be read. A version is `{"value": V, "clock":
C}` (timestamps and other fields are ignored; clocks compare causally, so zero entries do not
matter) or a bare value when the system exposes no clocks. `replica_reads` builds the input
from a history's `replica-read` ops (see `harness.checkers.causal`).

Valid iff every key's readable replicas agree and every replica was read; invalid iff some
key's replicas differ; unknown when a replica could not be read (or, given `replicas`, was
never read) and nothing differs, or when there is nothing to compare.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence

from harness.checkers.causal import REPLICA_READ_F, Clock, parse_clock
from harness.checkers.models import ModelError, freeze
from harness.checkers.verdict import Case, Finding, Result, Verdict, case_summary, json_able
from harness.history import HistoryError, Op, pair

__all__ = [
    "Version",
    "VersionSet",
    "check_convergence",
    "check_convergence_history",
    "replica_reads",
]

Version = tuple[Hashable, Clock | None]
VersionSet = frozenset[Version]


def _version(raw: object, op: Op) -> Version:
    try:
        if isinstance(raw, dict) and "value" in raw:
            return freeze(raw["value"]), parse_clock(raw.get("clock"), op, "clock")
        return freeze(raw), None
    except ModelError as exc:
        raise HistoryError(str(exc), index=op.index, field="value") from None


def version_set(raw: object, op: Op) -> VersionSet:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise HistoryError(
            f"a replica read's value is a list of versions, got {raw!r}",
            index=op.index,
            field="value",
        )
    return frozenset(_version(v, op) for v in raw)


def replica_reads(history: Sequence[Op]) -> dict[Hashable, dict[str, VersionSet | None]]:
    """Per key and replica (`extra.node`), the last successful replica read, or None if every
    read of that replica failed."""
    out: dict[Hashable, dict[str, VersionSet | None]] = {}
    for op in pair(history):
        if op.f != REPLICA_READ_F:
            continue
        node = op.invoke.extra.get("node")
        if node is None and op.completion is not None:
            node = op.completion.extra.get("node")
        if not isinstance(node, str | int) or isinstance(node, bool):
            raise HistoryError(
                "a replica read names its replica in extra.node",
                index=op.invoke.index,
                field="node",
            )
        try:
            key = freeze(op.key)
        except ModelError as exc:
            raise HistoryError(str(exc), index=op.invoke.index, field="key") from None
        replicas = out.setdefault(key, {})
        if op.status == "ok":
            assert op.completion is not None
            replicas[str(node)] = version_set(op.output, op.completion)
        else:
            replicas.setdefault(str(node), None)
    return out


def _describe_set(versions: VersionSet) -> str:
    if not versions:
        return "{}"
    parts = []
    for value, clock in sorted(versions, key=repr):
        clock_text = "" if clock is None else " @" + ",".join(f"{n}:{c}" for n, c in clock)
        parts.append(f"{value!r}{clock_text}")
    return "{" + ", ".join(parts) + "}"


def check_convergence(
    reads: Mapping[Hashable, Mapping[str, VersionSet | None]],
    *,
    replicas: Mapping[Hashable, Sequence[str]] | None = None,
) -> Result:
    """`replicas`: the replicas each key must have been read from (its preference list); a
    key missing from it is checked on the replicas that were read."""
    started = time.monotonic()
    findings: list[Finding] = []
    cases: list[Case] = []
    unknown: dict[str, list[str]] = {}
    keys = set(reads) | set(replicas or {})
    for key in sorted(keys, key=repr):
        name = repr(key)
        got = dict(reads.get(key, {}))
        for r in (replicas or {}).get(key, ()):
            got.setdefault(r, None)
        unreadable = sorted(r for r, v in got.items() if v is None)
        groups: dict[VersionSet, list[str]] = {}
        for r, v in sorted(got.items()):
            if v is not None:
                groups.setdefault(v, []).append(r)
        if len(groups) > 1:
            ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1]))
            text = "; ".join(f"{', '.join(rs)} hold {_describe_set(vs)}" for vs, rs in ordered)
            findings.append(
                Finding(
                    kind="diverged",
                    key=key,
                    message=f"replicas of key {name} differ: {text}",
                    details={
                        "groups": [
                            {
                                "replicas": rs,
                                "versions": [
                                    [json_able(v), json_able(c)] for v, c in sorted(vs, key=repr)
                                ],
                            }
                            for vs, rs in ordered
                        ],
                        "unreadable": unreadable,
                    },
                )
            )
            cases.append(Case(f"key {name}", "invalid", text))
        elif unreadable or not groups:
            unknown[name] = unreadable
            cases.append(Case(f"key {name}", "unknown", f"could not read {', '.join(unreadable)}"))
        else:
            cases.append(Case(f"key {name}", "valid"))
    verdict: Verdict
    if findings:
        verdict = "invalid"
        first = min(findings, key=lambda f: repr(f.key))
        explanation = (
            f"invalid: {len(findings)} of {len(keys)} keys diverged; first: {first.message}"
        )
    elif unknown:
        verdict = "unknown"
        some = ", ".join(
            f"{k} ({', '.join(v) or 'no replica'})" for k, v in list(unknown.items())[:5]
        )
        explanation = f"unknown: replicas that could not be read, for {len(unknown)} key(s): {some}"
    elif not keys:
        verdict = "unknown"
        explanation = "unknown: nothing to compare, no replica reads"
    else:
        verdict = "valid"
        explanation = f"valid: all replicas agree on {len(keys)} keys ({case_summary(cases)})"
    return Result(
        checker="convergence",
        verdict=verdict,
        explanation=explanation,
        details={
            "keys": len(keys),
            "diverged": [repr(f.key) for f in findings],
            "unreadable": unknown,
        },
        findings=tuple(findings),
        cases=tuple(cases),
        elapsed=time.monotonic() - started,
    )


def check_convergence_history(
    history: Sequence[Op], *, replicas: Mapping[Hashable, Sequence[str]] | None = None
) -> Result:
    return check_convergence(replica_reads(history), replicas=replicas)
