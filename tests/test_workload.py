"""The recorder never drops a record, and workloads record the shapes the checkers read.

Workload shapes are checked against in-memory fake clients (a versioned store that keeps
concurrent writes as siblings, and a plain register); the "every invoke has a completion"
property also against real dynamo-ref processes killed and clients cancelled mid-op.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.checkers import datatypes as D
from harness.checkers.lost_writes import check_lost_writes
from harness.history import Op, pair
from harness.recorder import Recorder
from harness.targets.base import OpUnknown
from harness.targets.dynamo import DynamoTarget
from harness.workload import Workload, WorkloadConfig

# ---- the recorder -----------------------------------------------------------------------------


def test_recorder_pairs_invocations_and_refuses_double_completion() -> None:
    rec = Recorder()
    h = rec.invoke(0, "write", "k", 1)
    with pytest.raises(ValueError, match="already has"):
        rec.invoke(0, "read", "k")
    rec.complete(h, "ok", 1)
    with pytest.raises(ValueError, match="already complete"):
        rec.complete(h, "ok", 1)
    assert [op.index for op in rec.ops] == [0, 1]
    assert rec.ops[0].time <= rec.ops[1].time
    (op,) = pair(rec.ops)
    assert op.status == "ok"


def test_an_op_left_by_an_exception_or_a_cancellation_completes_as_info() -> None:
    rec = Recorder()

    async def hangs() -> None:
        with rec.op(1, "write", "k", 5):
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(hangs())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(RuntimeError), rec.op(2, "read", "k"):
            raise RuntimeError("boom")

    asyncio.run(main())
    ops = pair(rec.ops)
    assert [o.status for o in ops] == ["info", "info"]
    assert "CancelledError" in str(ops[0].completion.error if ops[0].completion else "")
    # close() is the backstop for invocations no block guards.
    rec.invoke(3, "write", "k", 6)
    assert rec.close() == 1
    assert all(o.completion is not None for o in pair(rec.ops))


# ---- fake clients -------------------------------------------------------------------------------


@dataclass
class Store:
    """Per key: siblings as (value, version id, ids it has seen)."""

    data: dict[str, list[tuple[object, int, frozenset[int]]]] = field(default_factory=dict)
    next_id: int = 0


class FakeVersioned:
    def __init__(self, node: str, store: Store) -> None:
        self._node = node
        self.store = store
        self.last_put_clock: dict[str, int] | None = None

    @property
    def node(self) -> str:
        return self._node

    async def get(self, key: str) -> tuple[list[object], object]:
        await asyncio.sleep(0)
        sibs = self.store.data.get(key, [])
        seen = frozenset(i for _, i, s in sibs for i in (i, *s))
        return [v for v, _, _ in sibs], seen

    async def put(self, key: str, value: object, context: object | None) -> None:
        await asyncio.sleep(0)
        seen = context if isinstance(context, frozenset) else frozenset()
        self.store.next_id += 1
        kept = [s for s in self.store.data.get(key, []) if s[1] not in seen]
        self.store.data[key] = [*kept, (value, self.store.next_id, seen)]

    async def close(self) -> None:
        pass


class FakeRegister:
    def __init__(self, node: str, data: dict[str, object]) -> None:
        self._node = node
        self.data = data

    @property
    def node(self) -> str:
        return self._node

    async def read(self, key: str) -> object:
        await asyncio.sleep(0)
        return self.data.get(key)

    async def write(self, key: str, value: object) -> None:
        await asyncio.sleep(0)
        self.data[key] = value

    async def cas(self, key: str, expected: object, new: object) -> bool:
        raise OpUnknown("not used")

    async def close(self) -> None:
        pass


class FakeTarget:
    def __init__(self, register: bool = False) -> None:
        self.store = Store()
        self.plain: dict[str, object] = {}
        self.register = register

    def nodes(self) -> list[str]:
        return ["n1", "n2", "n3"]

    async def client(self, node: str) -> FakeVersioned | FakeRegister:
        if self.register:
            return FakeRegister(node, self.plain)
        return FakeVersioned(node, self.store)


def run_fake(kind: str, *, register: bool = False) -> list[Op]:
    rec = Recorder()
    cfg = WorkloadConfig(kind=kind, clients=4, keys=("a", "b"), seed=1)  # type: ignore[arg-type]
    wl = Workload(FakeTarget(register), rec, cfg)

    async def main() -> None:
        await wl.run(time.monotonic() + 0.2)
        await wl.final_reads()

    asyncio.run(main())
    return rec.ops


def test_set_add_records_reads_and_adds_and_a_final_set() -> None:
    ops = run_fake("set-add")
    adds = [o for o in ops if o.f == "add" and o.type == "ok"]
    assert adds
    assert all(isinstance(o.extra["written"], list) for o in adds)
    assert all(o.value in o.extra["written"] for o in adds)  # type: ignore[operator]
    elements = [o.value for o in adds]
    assert len(elements) == len(set(elements))  # unique
    finals = [o for o in ops if o.f == "read" and o.type == "ok" and o.extra.get("final")]
    assert {o.key for o in finals} == {"a", "b"}
    # The fake store keeps every concurrent add as a sibling: nothing is lost.
    assert check_lost_writes(ops, D.set_add()).verdict == "valid"


def test_counter_elements_match_the_merged_map() -> None:
    ops = run_fake("counter")
    adds = [o for o in ops if o.f == "add" and o.type == "ok"]
    assert adds
    for o in adds:
        client, count = str(o.value).split(":")
        assert o.extra["written"][client] == int(count)  # type: ignore[index]
    assert check_lost_writes(ops, D.set_add()).verdict == "valid"


def test_the_lost_write_check_sees_a_store_that_drops_siblings() -> None:
    """Negative control for the shapes: a store that keeps only the last write loses adds."""
    ops = run_fake("set-add")
    finals = {o.key: o for o in ops if o.f == "read" and o.type == "ok" and o.extra.get("final")}
    _key, final = next(iter(finals.items()))
    assert isinstance(final.value, list)
    assert final.value
    doctored = [
        Op(**{**{f: getattr(o, f) for f in o.__struct_fields__}, "value": final.value[1:]})
        if o is final
        else o
        for o in ops
    ]
    assert check_lost_writes(doctored, D.set_add()).verdict == "invalid"


def test_register_workload_drives_a_register_client() -> None:
    ops = run_fake("register", register=True)
    reads = [o for o in ops if o.f == "read" and o.type == "ok"]
    writes = [o for o in ops if o.f == "write" and o.type == "ok"]
    assert reads
    assert writes
    assert all(not isinstance(o.value, list) for o in reads)  # plain values, not siblings
    values = [o.value for o in writes]
    assert len(values) == len(set(values))


def test_register_workload_records_siblings_of_a_versioned_client() -> None:
    ops = run_fake("register")
    reads = [o for o in ops if o.f == "read" and o.type == "ok"]
    assert reads
    assert all(isinstance(o.value, list) for o in reads)


# ---- real processes -----------------------------------------------------------------------------


def test_every_invoke_completes_when_nodes_die_and_clients_are_cancelled(tmp_path: Path) -> None:
    target = DynamoTarget(3, tmp_path, mode="dvv")
    rec = Recorder()
    wl = Workload(target, rec, WorkloadConfig(kind="set-add", clients=6, keys=("a", "b", "c")))
    pids: list[int] = []

    async def main() -> None:
        await target.setup()
        try:
            pids.extend(p for p in map(target.pid, target.nodes()) if p is not None)
            run = asyncio.create_task(wl.run(time.monotonic() + 30))
            await asyncio.sleep(0.7)
            await target.kill("n2")
            await target.pause("n3")
            await asyncio.sleep(0.5)
            run.cancel()  # mid-op: n3 is paused, so some requests are in flight
            with pytest.raises(asyncio.CancelledError):
                await run
        finally:
            await wl.close()
            await target.teardown()

    asyncio.run(main())
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    ops = pair(rec.ops)
    assert len(ops) > 20
    assert all(o.completion is not None for o in ops)
    invokes = sum(1 for o in rec.ops if o.type == "invoke")
    assert invokes == len(ops) == sum(1 for o in rec.ops if o.type != "invoke")
    assert any(o.status == "info" for o in ops)  # the cancelled ones
    assert any(o.status == "ok" for o in ops)


@pytest.mark.parametrize(("kind", "register"), [("set-add", False), ("register", True)])
def test_every_op_names_the_node_that_served_it(kind: str, register: bool) -> None:
    ops = run_fake(kind, register=register)
    operations = pair(ops)
    assert operations
    for op in operations:
        assert op.invoke.node in ("n1", "n2", "n3"), op
        assert op.completion is not None
        assert op.completion.node == op.invoke.node
    # Clients are spread round-robin over the nodes (4 clients, 3 nodes).
    by_process = {op.process: op.node for op in operations if isinstance(op.process, int)}
    assert by_process == {0: "n1", 1: "n2", 2: "n3", 3: "n1"}
    finals = [op for op in operations if op.invoke.extra.get("final")]
    assert finals
    assert all(op.node is not None for op in finals)
