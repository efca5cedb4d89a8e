"""Seconds since a run's start, for the report's tables and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.causal import Fault
from harness.history import NO_TIME, Operation

__all__ = ["Timebase"]

_NS = 1e9


@dataclass(frozen=True, slots=True)
class Timebase:
    """Seconds since the first recorded time; `end` is the last recorded time, in seconds."""

    origin: int
    end: float

    @staticmethod
    def of(operations: Sequence[Operation], faults: Sequence[Fault]) -> Timebase:
        times = [op.invoke.time for op in operations if op.invoke.time != NO_TIME]
        times += [t for op in operations if (t := op.return_time) is not None and t != NO_TIME]
        times += [f.start_time for f in faults if f.start_time != NO_TIME]
        times += [t for f in faults if (t := f.end_time) is not None and t != NO_TIME]
        if not times:
            return Timebase(0, 0.0)
        origin = min(times)
        return Timebase(origin, (max(times) - origin) / _NS)

    def seconds(self, t: int) -> float:
        return (t - self.origin) / _NS
