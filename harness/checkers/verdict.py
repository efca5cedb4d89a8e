"""The verdict every checker returns: valid, invalid or unknown (with why), never a silent pass.

A `Result` carries a human explanation and machine-readable `details` (JSON-able), the
`findings` behind an "invalid" (each naming its key and the ops involved), and `cases`: one
named sub-verdict per key or per property, which `check_cli` turns into JUnit test cases.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = ["Case", "Finding", "Result", "Verdict", "brief", "combine", "json_able"]

Verdict: TypeAlias = Literal["valid", "invalid", "unknown"]


def json_able(value: object) -> object:
    """`value` with tuples as lists, sets as sorted lists and keys as strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [json_able(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_able(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else repr(k)): json_able(v) for k, v in value.items()}
    return repr(value)


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation (or, for "unknown", one thing that could not be checked)."""

    kind: str
    key: Hashable
    message: str
    ops: tuple[int, ...] = ()  # `Op.index` of the events involved
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "key": json_able(self.key),
            "message": self.message,
            "ops": list(self.ops),
            "details": json_able(self.details),
        }


@dataclass(frozen=True, slots=True)
class Case:
    """A named sub-verdict (a key, a partition or a property)."""

    name: str
    verdict: Verdict
    message: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    checker: str
    verdict: Verdict
    explanation: str
    details: dict[str, object] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    cases: tuple[Case, ...] = ()
    elapsed: float = 0.0
    # The checker's own result, for drawing it (a linearizability `CheckResult`); not JSON.
    source: object = field(default=None, compare=False, repr=False)

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def to_json(self) -> dict[str, object]:
        return {
            "checker": self.checker,
            "verdict": self.verdict,
            "explanation": self.explanation,
            "details": json_able(self.details),
            "findings": [f.to_json() for f in self.findings],
            "cases": [
                {"name": c.name, "verdict": c.verdict, "message": c.message} for c in self.cases
            ],
            "elapsed": self.elapsed,
        }

    def describe(self) -> str:
        return f"{self.checker}: {self.explanation}"


def brief(value: object, limit: int = 120) -> str:
    """`repr(value)`, cut to about `limit` characters (a final read may hold thousands of
    elements; the explanation needs the start and the count)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    count = f", {len(value)} in all" if isinstance(value, list | tuple | set | frozenset) else ""
    return f"{text[:limit]}...{count}"


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Invalid if any is; else unknown if any is, or if there are none; else valid."""
    seen = set(verdicts)
    if "invalid" in seen:
        return "invalid"
    if "unknown" in seen or not seen:
        return "unknown"
    return "valid"


def case_summary(cases: Sequence[Case]) -> str:
    counts = {v: sum(1 for c in cases if c.verdict == v) for v in ("valid", "invalid", "unknown")}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)
