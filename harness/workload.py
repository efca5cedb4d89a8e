"""Workloads: concurrent clients (asyncio tasks, closed loop or a bounded rate per client) that
record every operation through a `Recorder`, in the shapes of `harness.checkers.causal`.

- `register`: reads and writes of unique values per key. Against a `VersionedClient` a read
  records its siblings (`value`: the list, `extra`: `context` and `clocks`) and a write goes
  with the context of the client's last read of that key; against a `RegisterClient` (etcd,
  Maelstrom) a read records the plain value, so the same workload drives both.
- `set-add` (the Riak-style test): a client reads (recorded as a `read`), unions the siblings'
  sets, adds one new element and writes the sorted list back with the read's context,
  recorded as `add` of that element (`extra.written`: the list written).
- `counter`: a G-counter as a map client -> count. Siblings merge by the per-client max; an
  increment writes its own entry + 1, recorded as `add` of the element `"<client>:<count>"`,
  so the set checker sees exactly which increments a final read holds.

Every op records the node its client talks to, which serves it (`node`: a stale read names the
node that served it). Clients are spread over the nodes round-robin; keys come from
`target.pick_keys` when the target can place keys on its ring (one per partition first), else
`k0`, `k1`, ... Values are unique across the run. `final_reads` (after heal and quiescence;
`extra.final`) reads every key once, retrying on other nodes; for set-add and counter the value
is the final set of elements and the siblings go in `extra.siblings`. `replica_reads` reads
each replica of each key directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.recorder import Handle, Recorder
from harness.targets.base import OpFailed, OpUnknown, RegisterClient, VersionedClient

__all__ = ["WORKLOADS", "Workload", "WorkloadConfig", "default_keys"]

WorkloadKind = Literal["register", "set-add", "counter"]
WORKLOADS: tuple[str, ...] = ("register", "set-add", "counter")


@dataclass(frozen=True)
class WorkloadConfig:
    kind: WorkloadKind = "set-add"
    clients: int = 10
    keys: tuple[str, ...] = ()
    rate: float | None = None  # ops per second per client; None: closed loop
    read_fraction: float = 0.5  # register
    cas_fraction: float = 0.4  # register targets: of the other ops, compare-and-sets
    op_timeout: float = 10.0  # a bound on top of the client's own timeouts
    key_per_client: bool = False  # client i works on keys[i % len(keys)] only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in WORKLOADS:
            raise ValueError(f"unknown workload {self.kind!r}; known: {', '.join(WORKLOADS)}")
        if self.clients < 1:
            raise ValueError("a workload needs at least one client")


def default_keys(target: object, count: int) -> list[str]:
    pick = getattr(target, "pick_keys", None)
    if pick is not None:
        keys: list[str] = pick(count)
        return keys
    return [f"k{i}" for i in range(count)]


def _node(client: object) -> str | None:
    """The node a client talks to: it serves (coordinates or forwards) the client's ops."""
    node = getattr(client, "node", None)
    return node if isinstance(node, str) else None


def _ctx_extra(ctx: object) -> dict[str, object]:
    out: dict[str, object] = {}
    clock = getattr(ctx, "clock", None)
    if clock is not None:
        out["context"] = clock
    return out


def _read_extra(values: list[object], ctx: object) -> dict[str, object]:
    out = _ctx_extra(ctx)
    clocks = getattr(ctx, "clocks", None)
    if isinstance(clocks, list) and len(clocks) == len(values) and clocks:
        out["clocks"] = clocks
    return out


def _union(values: Sequence[object]) -> list[object]:
    elements: set[Any] = set()
    for v in values:
        if isinstance(v, list):
            elements.update(x for x in v if isinstance(x, int | str))
    return sorted(elements, key=lambda x: (isinstance(x, str), x))


def _merge_counts(values: Sequence[object]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for v in values:
        if isinstance(v, dict):
            for k, n in v.items():
                if isinstance(k, str) and isinstance(n, int):
                    merged[k] = max(merged.get(k, 0), n)
    return merged


def _count_elements(counts: dict[str, int]) -> list[object]:
    elements: list[object] = [f"{k}:{i}" for k, n in counts.items() for i in range(1, n + 1)]
    return sorted(elements, key=str)


class Workload:
    """One run's clients against `target` (a `Target` of versioned or register clients)."""

    def __init__(self, target: Any, recorder: Recorder, config: WorkloadConfig) -> None:
        self.target = target
        self.recorder = recorder
        self.config = config
        self.keys = list(config.keys) or default_keys(target, 50)
        self.rng = random.Random(config.seed)
        self._values = itertools.count(1)
        self._clients: list[Any] = []
        self._contexts: dict[tuple[int, str], object] = {}
        self._counts: dict[tuple[int, str], int] = {}
        self._seen: dict[tuple[int, str], object] = {}  # a register's value a client knows

    # ---- clients ----------------------------------------------------------------------------

    async def open(self) -> None:
        nodes = self.target.nodes()
        for i in range(self.config.clients):
            self._clients.append(await self.target.client(nodes[i % len(nodes)]))

    async def close(self) -> None:
        for c in self._clients:
            with contextlib.suppress(Exception):  # a client of a dead node may fail to close
                await c.close()
        self._clients.clear()

    async def _call(self, coro: Any) -> Any:
        return await asyncio.wait_for(coro, self.config.op_timeout)

    def _finish_error(self, h: Handle, e: BaseException, *, write: bool) -> None:
        if isinstance(e, OpFailed):
            self.recorder.complete(h, "fail", None, error=str(e))
        elif isinstance(e, OpUnknown) or write:
            self.recorder.complete(h, "info", None, error=f"{type(e).__name__}: {e}")
        else:
            self.recorder.complete(h, "fail", None, error=f"{type(e).__name__}: {e}")

    # ---- the run ----------------------------------------------------------------------------

    async def run(self, deadline: float) -> None:
        """Every client loops until `time.monotonic()` reaches `deadline`."""
        if not self._clients:
            await self.open()
        tasks = [
            asyncio.create_task(self._client_loop(p, c, deadline))
            for p, c in enumerate(self._clients)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # A task that died outside an op's block leaves nothing open; this is the backstop.
            self.recorder.close("the client task ended with the op in flight")

    async def _client_loop(self, process: int, client: Any, deadline: float) -> None:
        rng = random.Random(f"{self.config.seed}-{process}")
        period = None if not self.config.rate else 1.0 / self.config.rate
        failures = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            if self.config.key_per_client:
                key = self.keys[process % len(self.keys)]
            else:
                key = rng.choice(self.keys)
            try:
                await self.step(process, client, key, rng)  # recorded; the loop goes on
                failures = 0
            except (OpFailed, OpUnknown, TimeoutError, OSError):
                # A client of a dead or cut-off node backs off rather than flood the history
                # with instant failures.
                failures += 1
                backoff = min(0.02 * 2**failures, 0.5)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                continue
            if period is not None:
                rest = period - (time.monotonic() - started)
                if rest > 0:
                    await asyncio.sleep(min(rest, max(0.0, deadline - time.monotonic())))
            else:
                await asyncio.sleep(0)

    async def step(self, process: int, client: Any, key: str, rng: random.Random) -> None:
        kind = self.config.kind
        if kind == "register":
            seen = self._seen.get((process, key))
            if rng.random() < self.config.read_fraction:
                values, _ = await self.read(process, client, key)
                if not isinstance(client, VersionedClient) and values:
                    self._seen[(process, key)] = values[0]
            elif (
                not isinstance(client, VersionedClient)
                and seen is not None
                and rng.random() < self.config.cas_fraction
            ):
                await self.cas(process, client, key, seen, next(self._values))
            else:
                await self.write(process, client, key, next(self._values))
        elif kind == "set-add":
            values, ctx = await self.read(process, client, key)
            await self.add_element(process, client, key, values, ctx)
        else:
            values, ctx = await self.read(process, client, key)
            await self.increment(process, client, key, values, ctx)

    async def read(
        self, process: int | str, client: Any, key: str, *, final: bool = False
    ) -> tuple[list[object], object]:
        extra: dict[str, object] = {"final": True} if final else {}
        with self.recorder.op(process, "read", key, None, extra, node=_node(client)) as h:
            try:
                if isinstance(client, VersionedClient):
                    values, ctx = await self._call(client.get(key))
                    if isinstance(process, int):
                        self._contexts[(process, key)] = ctx
                    value, done = self._final_value(values) if final else (values, {})
                    self.recorder.complete(
                        h, "ok", value, {**extra, **_read_extra(values, ctx), **done}
                    )
                    return values, ctx
                plain = await self._call(client.read(key))
                self.recorder.complete(h, "ok", plain, extra)
                return [plain], None
            except (OpFailed, OpUnknown, TimeoutError, OSError) as e:
                self._finish_error(h, e, write=False)
                raise

    def _final_value(self, values: list[object]) -> tuple[object, dict[str, object]]:
        kind = self.config.kind
        if kind == "set-add":
            return _union(values), {"siblings": values}
        if kind == "counter":
            return _count_elements(_merge_counts(values)), {"siblings": values}
        return values, {}

    async def write(self, process: int, client: Any, key: str, value: object) -> None:
        ctx = self._contexts.get((process, key))
        with self.recorder.op(
            process, "write", key, value, _ctx_extra(ctx), node=_node(client)
        ) as h:
            try:
                if isinstance(client, VersionedClient):
                    await self._call(client.put(key, value, ctx))
                    after = getattr(client, "last_put_context", None)
                    if after is not None:  # the next write supersedes this one
                        self._contexts[(process, key)] = after
                    self.recorder.complete(h, "ok", value, self._put_extra(client))
                else:
                    assert isinstance(client, RegisterClient)
                    await self._call(client.write(key, value))
                    self._seen[(process, key)] = value
                    self.recorder.complete(h, "ok", value)
            except (OpFailed, OpUnknown, TimeoutError, OSError) as e:
                self._finish_error(h, e, write=True)
                raise

    async def cas(self, process: int, client: Any, key: str, expected: object, new: object) -> None:
        """Compare-and-set on a register target; a cas that found another value is `fail`
        (it did not take effect), as Knossos records it."""
        with self.recorder.op(process, "cas", key, [expected, new], node=_node(client)) as h:
            try:
                swapped = await self._call(client.cas(key, expected, new))
                if swapped:
                    self._seen[(process, key)] = new
                    self.recorder.complete(h, "ok", [expected, new])
                else:
                    self._seen.pop((process, key), None)
                    self.recorder.complete(h, "fail", [expected, new], error="value differed")
            except (OpFailed, OpUnknown, TimeoutError, OSError) as e:
                self._finish_error(h, e, write=True)
                raise

    @staticmethod
    def _put_extra(client: Any) -> dict[str, object]:
        clock = getattr(client, "last_put_clock", None)
        return {} if clock is None else {"clock": clock}

    async def _write_add(
        self, process: int, client: Any, key: str, element: object, *, written: object, ctx: object
    ) -> None:
        extra = {**_ctx_extra(ctx), "written": written}
        with self.recorder.op(process, "add", key, element, extra, node=_node(client)) as h:
            try:
                await self._call(client.put(key, written, ctx))
                self.recorder.complete(h, "ok", element, {**extra, **self._put_extra(client)})
            except (OpFailed, OpUnknown, TimeoutError, OSError) as e:
                self._finish_error(h, e, write=True)
                raise

    async def add_element(
        self, process: int, client: Any, key: str, values: list[object], ctx: object
    ) -> None:
        element = next(self._values)
        written = sorted({*_union(values), element}, key=lambda x: (isinstance(x, str), x))
        await self._write_add(process, client, key, element, written=written, ctx=ctx)

    async def increment(
        self, process: int, client: Any, key: str, values: list[object], ctx: object
    ) -> None:
        merged = _merge_counts(values)
        me = str(process)
        mine = max(merged.get(me, 0), self._counts.get((process, key), 0)) + 1
        self._counts[(process, key)] = mine
        written = {**merged, me: mine}
        await self._write_add(process, client, key, f"{me}:{mine}", written=written, ctx=ctx)

    # ---- after the run ------------------------------------------------------------------------

    async def final_reads(self, attempts: int = 3, parallel: int = 8) -> None:
        """One final read of every key (retried on other nodes when it fails)."""
        nodes = self.target.nodes()
        queue = list(enumerate(self.keys))
        clients: dict[str, Any] = {}
        opening = asyncio.Lock()  # workers share one client a node, opened once

        async def worker(w: int) -> None:
            while queue:
                i, key = queue.pop()
                for a in range(attempts):
                    node = nodes[(i + a) % len(nodes)]
                    async with opening:
                        if node not in clients:
                            clients[node] = await self.target.client(node)
                    try:
                        await self.read(f"final-{w}", clients[node], key, final=True)
                        break
                    except (OpFailed, OpUnknown, TimeoutError, OSError):
                        await asyncio.sleep(0.2)

        try:
            await asyncio.gather(*(worker(w) for w in range(parallel)))
        finally:
            for c in clients.values():
                await c.close()

    async def replica_reads(self, parallel: int = 8) -> dict[str, list[str]]:
        """Every replica of every key, read directly; returns key -> the replicas read."""
        reader = getattr(self.target, "replica_get", None)
        if reader is None:
            return {}
        prefs = getattr(self.target, "preference_list", None)
        replicas = {k: (prefs(k) if prefs else self.target.nodes()) for k in self.keys}
        jobs = [(k, n) for k in self.keys for n in replicas[k]]

        async def worker(w: int) -> None:
            while jobs:
                key, node = jobs.pop()
                with self.recorder.op(
                    f"replica-{w}", "replica-read", key, None, {"node": node}, node=node
                ) as h:
                    try:
                        versions = await self._call(reader(node, key))
                        self.recorder.complete(h, "ok", versions, {"node": node})
                    except (OpFailed, OpUnknown, TimeoutError, OSError) as e:
                        self.recorder.complete(h, "fail", None, {"node": node}, error=str(e))

        await asyncio.gather(*(worker(w) for w in range(parallel)))
        return replicas
