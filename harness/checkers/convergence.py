"""Convergence: after heal and quiescence, do all replicas of every key hold equal version sets?

Input: per key, per replica, what was read directly from that replica (not through a
coordinator), as the data type's replica state, or None when the replica could not be read.
The `Datatype` (`harness.checkers.datatypes`) says what a replica read holds: for the harness's
types a list of versions `{"value": V, "clock": C}` (timestamps and other fields are ignored;
zero clock entries do not matter) or bare values when the system exposes no clocks.
`replica_reads` builds the input from a history's `replica-read` ops (see
`harness.checkers.causal`); the replica is the op's `node` (else `extra.node`).

Valid iff every key's readable replicas agree and every replica was read; invalid iff some
key's replicas differ; unknown when a replica could not be read (or, given `replicas`, was
never read) and nothing differs, or when there is nothing to compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence

from harness.checkers.causal import REPLICA_READ_F, frozen_value
from harness.checkers.datatypes import (
    Datatype,
    Version,
    VersionSet,
    describe_versions,
    siblings,
    version_set,
)
from harness.checkers.verdict import Case, Finding, Result, Verdict, case_summary, json_able
from harness.history import HistoryError, Op, pair

__all__ = [
    "Version",
    "VersionSet",
    "check_convergence",
    "check_convergence_history",
    "replica_reads",
    "version_set",
]


def replica_reads(
    history: Sequence[Op], datatype: Datatype | None = None
) -> dict[Hashable, dict[str, Hashable | None]]:
    """Per key and replica, the state the last successful replica read returned, or None if
    every read of that replica failed."""
    decode = (datatype or siblings()).replica
    out: dict[Hashable, dict[str, Hashable | None]] = {}
    for op in pair(history):
        if op.f != REPLICA_READ_F:
            continue
        node = op.node
        if not isinstance(node, str | int) or isinstance(node, bool):
            raise HistoryError(
                "a replica read names its replica in extra.node",
                index=op.invoke.index,
                field="node",
            )
        key = frozen_value(op.key, op.invoke, "key")
        replicas = out.setdefault(key, {})
        if op.status == "ok":
            assert op.completion is not None
            replicas[str(node)] = decode(op.output, op.completion)
        else:
            replicas.setdefault(str(node), None)
    return out


def check_convergence(
    reads: Mapping[Hashable, Mapping[str, Hashable | None]],
    *,
    replicas: Mapping[Hashable, Sequence[str]] | None = None,
    describe: Callable[[Hashable], str] = describe_versions,
) -> Result:
    """`reads`: per key and replica, its state (None: unreadable). `replicas`: the replicas each
    key must have been read from (its preference list); a key missing from it is checked on the
    replicas that were read. `describe`: a state's text (`Datatype.describe_replica`)."""
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
        groups: dict[Hashable, list[str]] = {}
        for r, v in sorted(got.items()):
            if v is not None:
                groups.setdefault(v, []).append(r)
        if len(groups) > 1:
            ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1]))
            text = "; ".join(f"{', '.join(rs)} hold {describe(vs)}" for vs, rs in ordered)
            findings.append(
                Finding(
                    kind="diverged",
                    key=key,
                    message=f"replicas of key {name} differ: {text}",
                    details={
                        "groups": [
                            {
                                "replicas": rs,
                                "versions": json_able(vs),
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
    history: Sequence[Op],
    *,
    datatype: Datatype | None = None,
    replicas: Mapping[Hashable, Sequence[str]] | None = None,
) -> Result:
    """Convergence of the replica reads of `history`, read as `datatype` (default:
    `datatypes.siblings()`)."""
    dt = datatype or siblings()
    return check_convergence(
        replica_reads(history, dt), replicas=replicas, describe=dt.describe_replica
    )
