"""The history recorder: every invocation gets exactly one completion, whatever happens.

`invoke` appends an `invoke` op and returns a handle; `complete` appends its `ok`, `fail` or
`info`. Positions in the list are the real-time order (one event loop appends, so the order is
the order things happened); `time` is `time.monotonic_ns()` and `index` the position.

Nothing is dropped: `op(...)` is a context manager that completes its op as `info` when the
body raises or is cancelled without completing it, and `close()` completes every op still open
as `info` (a task that died where no handler ran). A second completion of one handle is refused.
Nemesis events are `process: "nemesis"` `info` ops (`nemesis_start` / `nemesis_stop` name the
fault families `harness.checkers.causal.fault_windows` reads).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.history import Op, OpType, write_jsonl

__all__ = ["Handle", "Recorder"]


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


class Recorder:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._open: dict[int, Handle] = {}

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
