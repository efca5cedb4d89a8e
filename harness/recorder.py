"""The history recorder: every invocation gets exactly one completion, whatever happens.

`invoke` appends an `invoke` op and returns a handle; `complete` appends its `ok`, `fail` or
`info`. Positions in the list are the real-time order (one event loop appends, so the order is
the order things happened); `time` is `time.monotonic_ns()` and `index` the position.

Nothing is dropped: `op(...)` is a context manager that completes its op as `info` when the
body raises or is cancelled without completing it, and `close()` completes every op still open
as `info` (a task that died where no handler ran). A second completion of one handle is refused.
`live()` says how far a run is while it runs: operations completed by outcome, and the faults in
force. Nemesis events are `process: "nemesis"` `info` ops (`nemesis_start` / `nemesis_stop` name the
fault families `harness.checkers.causal.fault_windows` reads).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.history import Op, OpType, write_jsonl

__all__ = ["Handle", "LiveStatus", "Progress", "Recorder", "describe_fault"]


@dataclass
class Handle:
    """An open invocation; `done` once completed."""

    process: int | str
    f: str
    key: object
    value: object
    index: int
    done: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    node: str | None = None


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """A running run at a glance: seconds since the load started, client operations completed
    by outcome, completions per second over the last interval, and the faults in force (each
    `describe_fault` text)."""

    elapsed: float
    ok: int
    failed: int
    unknown: int
    rate: float
    faults: tuple[str, ...]

    @property
    def completed(self) -> int:
        return self.ok + self.failed + self.unknown

    def describe(self) -> str:
        fault = " + ".join(self.faults) if self.faults else "none"
        return (
            f"{self.elapsed:5.1f} s  {self.completed:,} ops ({self.failed:,} failed, "
            f"{self.unknown:,} unknown)  {self.rate:,.0f} ops/s  fault: {fault}"
        )


class Progress(Protocol):
    """How a run reports how far it is: its phase, a fraction 0..1, and while the load runs
    (about once a second) a `LiveStatus`."""

    def __call__(self, phase: str, fraction: float, status: LiveStatus | None = None, /) -> None:
        """Called at each phase, and about once a second while the load runs."""


def describe_fault(family: str, value: object) -> str:
    """`partition (halves)`, `kill n3`, `clock-skew n2 +60s`: a nemesis start event, short."""
    if not isinstance(value, dict):
        return family if value is None else f"{family} {value}"
    parts: list[str] = []
    if isinstance(value.get("pattern"), str):
        parts.append(f"({value['pattern']})")
    nodes = value.get("nodes")
    if isinstance(nodes, list):
        parts.append(",".join(map(str, nodes)))
    seconds = value.get("seconds")
    if isinstance(seconds, int | float):
        parts.append(f"{seconds:+g}s")
    return " ".join([family, *parts])


class Recorder:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._open: dict[int, Handle] = {}
        self._outcomes = {"ok": 0, "fail": 0, "info": 0}
        self._faults: dict[str, list[str]] = {}  # family -> what each of its starts did

    def _append(  # noqa: PLR0917  # one record's fields
        self,
        process: int | str,
        typ: OpType,
        f: str,
        value: object,
        key: object,
        extra: dict[str, object] | None,
        error: object = None,
        node: str | None = None,
    ) -> int:
        index = len(self.ops)
        if process == "nemesis":
            self._track_fault(f, value)
        elif typ != "invoke":
            self._outcomes[typ] += 1
        self.ops.append(
            Op(
                process=process,
                type=typ,
                f=f,
                value=value,
                time=time.monotonic_ns(),
                index=index,
                key=key,
                error=error,
                node=node,
                extra=dict(extra) if extra else {},
            )
        )
        return index

    def invoke(
        self,
        process: int | str,
        f: str,
        key: object,
        value: object = None,
        extra: dict[str, object] | None = None,
        *,
        node: str | None = None,
    ) -> Handle:
        """`node`: the node the client talks to, which serves the op (both events record it)."""
        for h in self._open.values():
            if h.process == process:
                raise ValueError(f"process {process!r} already has {h.f!r} open")
        index = self._append(process, "invoke", f, value, key, extra, node=node)
        handle = Handle(process, f, key, value, index, extra=dict(extra or {}), node=node)
        self._open[index] = handle
        return handle

    def complete(
        self,
        handle: Handle,
        typ: OpType,
        value: object = None,
        extra: dict[str, object] | None = None,
        error: object = None,
    ) -> None:
        if typ == "invoke":
            raise ValueError("a completion is ok, fail or info")
        if handle.done or self._open.pop(handle.index, None) is None:
            raise ValueError(f"op {handle.index} ({handle.f}) is already complete")
        handle.done = True
        self._append(handle.process, typ, handle.f, value, handle.key, extra, error, handle.node)

    @contextmanager
    def op(
        self,
        process: int | str,
        f: str,
        key: object,
        value: object = None,
        extra: dict[str, object] | None = None,
        *,
        node: str | None = None,
    ) -> Iterator[Handle]:
        """Invoke; the body completes the handle. If it leaves without doing so (an exception,
        a cancellation), the op is completed as `info` with the reason."""
        handle = self.invoke(process, f, key, value, extra, node=node)
        try:
            yield handle
        except BaseException as e:
            if not handle.done:
                reason = "cancelled" if isinstance(e, GeneratorExit) else type(e).__name__
                self.complete(handle, "info", None, {**handle.extra}, error=f"{reason}: {e}")
            raise
        finally:
            if not handle.done:
                self.complete(handle, "info", None, {**handle.extra}, error="not completed")

    def _track_fault(self, f: str, value: object) -> None:
        kind, _, family = f.partition("-")
        if kind == "start" and family:
            self._faults.setdefault(family, []).append(describe_fault(family, value))
        elif kind == "stop" and family:
            self._faults.pop(family, None)

    def live(self, elapsed: float, rate: float = 0.0) -> LiveStatus:
        """The run so far (`elapsed` and `rate` are the caller's clock)."""
        return LiveStatus(
            elapsed=elapsed,
            ok=self._outcomes["ok"],
            failed=self._outcomes["fail"],
            unknown=self._outcomes["info"],
            rate=rate,
            faults=tuple(d for descs in self._faults.values() for d in descs),
        )

    def open_handles(self) -> list[Handle]:
        return list(self._open.values())

    def close(self, reason: str = "the run ended with the op in flight") -> int:
        """Complete every open op as `info`; how many there were."""
        pending = self.open_handles()
        for h in pending:
            self.complete(h, "info", None, {**h.extra}, error=reason)
        return len(pending)

    # ---- nemesis --------------------------------------------------------------------------

    def nemesis(self, f: str, value: object = None) -> None:
        self._append("nemesis", "info", f, value, None, None)

    def nemesis_start(self, family: str, value: object = None) -> None:
        self.nemesis(f"start-{family}", value)

    def nemesis_stop(self, family: str, value: object = None) -> None:
        self.nemesis(f"stop-{family}", value)

    def write(self, path: str | Path) -> None:
        write_jsonl(path, self.ops)
