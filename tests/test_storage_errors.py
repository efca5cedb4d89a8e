"""Honest storage errors: a durable batch that fails answers its clients with ``storage_error``
at once, the node's working copy returns to what is durable, reads go on, and once the disk
takes writes again memory and disk agree.

With a store that fails on demand (in process), and as root with a tiny tmpfs under SQLite.
Each run's check that memory and disk agree has a negative control: the driver's old way,
which dropped the failed batch and left the change in memory, must fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from adversary_support import NodeProcess, figures
from net_support import FAST

from dynamo_ref.client import AsyncClient, Client, ClientError
from dynamo_ref.core.effects import (
    ClientRequest,
    DropHint,
    Effect,
    Persist,
    PersistHint,
    PersistMeta,
    Reply,
    StorageFailed,
)
from dynamo_ref.core.messages import ErrorReply, Put, decode_siblings
from dynamo_ref.core.node import Node
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Version
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore
from dynamo_ref.storage.memory import MemoryEngine
from dynamo_ref.storage.sqlite import StorageError

SOLO = FAST.__class__(n=1, r=1, w=1)
_DURABLE = (Persist, PersistHint, DropHint, PersistMeta)


class FaultyStore(MemoryStore):
    """A store whose writes fail while ``full`` is set, as SQLite's do on a full disk."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.failures = 0

    def apply(self, effects: Sequence[Effect]) -> None:
        if self.full and any(isinstance(e, _DURABLE) for e in effects):
            self.failures += 1
            raise StorageError("batch not written: database or disk is full")
        super().apply(effects)


def disagreements(server: NodeServer, store: MemoryStore) -> list[bytes]:
    """Keys whose sibling sets differ between the node's memory and its durable store."""
    engine = server.node.engine
    keys = set(engine) | set(store.state.store)
    return sorted(k for k in keys if engine.get(k) != store.state.store.get(k, ()))


def _drop_failed_batches(self: NodeServer, batch: list[Effect], error: Exception) -> None:
    """The driver's way before: the failed batch's replies dropped, memory left as it was."""
    self._held = [e for e in self._held if not isinstance(e, Reply)]


async def storage_run(store: FaultyStore) -> dict[str, object]:
    server = NodeServer(ServerOptions(node_id="solo", config=SOLO, store=store))
    await server.start()
    client = await AsyncClient.connect([server.address], timeout=3.0)
    try:
        await client.put(b"kept", b"v1")
        store.full = True
        outcomes: list[tuple[str, float]] = []
        for key, value in ((b"kept", b"v2"), (b"new", b"x")):
            t0 = time.perf_counter()
            try:
                await client.put(key, value)
                outcome = "ok"
            except ClientError as e:
                outcome = e.code
            outcomes.append((outcome, time.perf_counter() - t0))
        reads = {
            "kept": (await client.get(b"kept")).siblings,
            "new": (await client.get(b"new")).siblings,
        }
        diverged_when_full = disagreements(server, store)
        store.full = False
        await client.put(b"new", b"y")
        await client.put(b"kept", b"v3", context=(await client.get(b"kept")).context)
        return {
            "outcomes": outcomes,
            "reads": reads,
            "diverged_when_full": diverged_when_full,
            "diverged_after": disagreements(server, store),
            "after": {
                "kept": (await client.get(b"kept")).siblings,
                "new": (await client.get(b"new")).siblings,
            },
        }
    finally:
        await client.close()
        await server.stop()


def test_a_failed_batch_is_answered_with_storage_error_and_memory_follows_disk() -> None:
    store = FaultyStore()
    got = asyncio.run(storage_run(store))
    figures("storage_fault_store", **{k: repr(v) for k, v in got.items()})
    outcomes = got["outcomes"]
    assert isinstance(outcomes, list)
    assert [o for o, _ in outcomes] == ["storage_error", "storage_error"]
    assert all(t < 0.5 for _, t in outcomes)  # answered, not timed out
    # Reads go on, and see only what is durable.
    assert got["reads"] == {"kept": [b"v1"], "new": []}
    assert got["diverged_when_full"] == []
    assert got["after"] == {"kept": [b"v3"], "new": [b"y"]}
    assert got["diverged_after"] == []
    assert store.failures >= 2


def test_negative_control_the_old_driver_lets_memory_and_disk_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NodeServer, "_storage_failed", _drop_failed_batches)
    store = FaultyStore()

    async def main() -> tuple[list[bytes], str]:
        server = NodeServer(ServerOptions(node_id="solo", config=SOLO, store=store))
        await server.start()
        client = await AsyncClient.connect([server.address], timeout=1.5)
        try:
            store.full = True
            try:
                await client.put(b"lost", b"x")
                outcome = "ok"
            except ClientError as e:
                outcome = e.code
            return disagreements(server, store), outcome
        finally:
            await client.close()
            await server.stop()

    diverged, outcome = asyncio.run(main())
    assert diverged == [b"lost"]  # in memory, not on disk: what the check must catch
    assert outcome == "timeout"


def test_the_node_returns_its_engine_to_what_is_durable() -> None:
    """The core's part: engine entries and hints back to the store's, puts of those keys
    failed with ``storage_error`` and no longer pending, metadata written again."""
    ring = Ring.create(["a"], 8, target_n=1)
    node = Node(
        "a", SOLO, ring, [], MemoryStore().load(), random.Random(1), 0.0, engine=MemoryEngine
    )
    node.start(0.0)
    old = (Version(b"old", VClock.from_counters({"a": 1}, 0.0), 0.0, "a"),)
    node.engine.put(b"k", old)
    node.engine.put_hint("b", b"h", old)
    effects = node.handle(ClientRequest(7, Put(b"k", b"new", rid=3)), 1.0)
    assert any(isinstance(e, Persist) and e.key == b"k" for e in effects)
    assert b"new" in [v.value for v in node.engine.get(b"k")]  # in memory, not yet durable
    node.engine.put_hint("b", b"h", ())
    event = StorageFailed(
        (b"k",), (("b", b"h"),), ("membership",), "disk full", {b"k": old}, {("b", b"h"): old}
    )
    effects = node.handle(event, 1.1)
    assert node.engine.get(b"k") == old
    assert node.engine.get_hint("b", b"h") == old
    assert node.in_progress() == 0
    replies = [e for e in effects if isinstance(e, Reply)]
    # The put was answered with W=1 before its batch failed: its PutOk is the driver's to
    # turn into storage_error (it still holds it); the node answers no second time.
    assert replies == []
    assert any(isinstance(e, PersistMeta) and e.name == "membership" for e in effects)


def test_a_put_waiting_for_replicas_fails_with_storage_error() -> None:
    ring = Ring.create(["a", "b", "c"], 8, target_n=3)
    config = FAST.__class__(n=3, r=2, w=2)
    node = Node(
        "a",
        config,
        ring,
        ["b", "c"],
        MemoryStore().load(),
        random.Random(1),
        0.0,
        engine=MemoryEngine,
    )
    node.start(0.0)
    node.handle(ClientRequest(7, Put(b"k", b"new", rid=3)), 1.0)
    assert node.in_progress() == 1  # waiting for a replica's ack
    effects = node.handle(StorageFailed((b"k",), (), (), "disk full", {b"k": ()}, {}), 1.1)
    assert node.in_progress() == 0
    assert node.engine.get(b"k") == ()
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert isinstance(reply.msg, ErrorReply)
    assert reply.msg.code == "storage_error"
    assert reply.msg.rid == 3


# ---- a real full disk ------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def stored_keys(db: Path) -> dict[bytes, list[bytes | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, siblings FROM versions").fetchall()
    finally:
        conn.close()
    return {k: [v.value for v in decode_siblings(s)] for k, s in rows}


def replica_view(
    client: Client, address: str, keys: list[bytes]
) -> dict[bytes, list[bytes | None]]:
    out: dict[bytes, list[bytes | None]] = {}
    for key in keys:
        versions = client._run(client._client.replica_get(key, address))
        if versions:
            out[key] = [v.value for v in versions]
    return out


@pytest.mark.root
@pytest.mark.net
def test_a_full_tmpfs_gives_storage_errors_then_writes_succeed_again(tmp_path: Path) -> None:
    value = b"v" * 4000
    with tmpfs(tmp_path / "disk", "1m") as disk:
        db = disk / "store.sqlite3"
        with NodeProcess(
            tmp_path / "run", config={"n": 1, "r": 1, "w": 1}, sqlite=db, sync="full"
        ) as node:
            with Client([node.address], timeout=5.0) as client:
                acked: list[bytes] = []
                first_error = ""
                tried: list[bytes] = []
                latencies: list[float] = []
                for i in range(2000):
                    key = b"k%04d" % i
                    tried.append(key)
                    t0 = time.perf_counter()
                    try:
                        client.put(key, value)
                    except ClientError as e:
                        latencies.append(time.perf_counter() - t0)
                        first_error = f"{e.code}: {e.message}"
                        break
                    acked.append(key)
                # More writes while full: each refused at once, none timed out.
                codes = []
                for i in range(20):
                    t0 = time.perf_counter()
                    try:
                        client.put(b"full-%d" % i, value)
                        codes.append("ok")
                    except ClientError as e:
                        codes.append(e.code)
                    latencies.append(time.perf_counter() - t0)
                    tried.append(b"full-%d" % i)
                reads_ok = all(client.get(k).siblings == [value] for k in acked)
                memory_full = replica_view(client, node.address, tried)
                disk_full = stored_keys(db)
                subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
                after = [b"after-%d" % i for i in range(20)]
                for key in after:
                    client.put(key, value)
                tried += after
                memory_after = replica_view(client, node.address, tried)
                disk_after = stored_keys(db)
            state = node.settled_state(pending=0, inflight=0)
    figures(
        "storage_tmpfs",
        acked_before_full=len(acked),
        first_error=first_error,
        while_full=codes.count("storage_error"),
        worst_error_ms=round(max(latencies) * 1000),
        memory_keys_full=len(memory_full),
        disk_keys_full=len(disk_full),
        memory_keys_after=len(memory_after),
        disk_keys_after=len(disk_after),
    )
    assert acked
    assert first_error.startswith("storage_error"), first_error
    assert codes == ["storage_error"] * 20
    assert max(latencies) < 1.0
    assert reads_ok
    assert memory_full == disk_full
    assert memory_after == disk_after
    assert all(memory_after[k] == [value] for k in after)
    assert state["pending"] == 0
