"""The SQLite store: the memory store's state, clear refusals, and batches that survive kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core.effects import (
    Action,
    DropHint,
    Effect,
    Persist,
    PersistHint,
    PersistMeta,
    SetTimer,
)
from dynamo_ref.core.messages import encode_siblings
from dynamo_ref.core.node.config import DurableState
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Version, reconcile
from dynamo_ref.storage import MemoryStore, SqliteStore
from dynamo_ref.storage.sqlite import (
    SCHEMA_VERSION,
    CorruptRowError,
    SchemaVersionError,
    StorageError,
)

sys.path.insert(0, str(Path(__file__).parent))
import crash_writer
from test_messages import NODES, versions

KEYS = st.sampled_from([b"", b"k1", b"k2", b"\x00\xff", "ключ".encode()])
# Empty sets too: they are deletes.
siblings = st.lists(versions, max_size=3).map(reconcile)
effects: st.SearchStrategy[Effect] = st.one_of(
    st.builds(Persist, KEYS, siblings),
    # As a node writes them: with the engine's bytes.
    st.builds(lambda k, s: Persist(k, s, encode_siblings(s) if s else None), KEYS, siblings),
    st.builds(PersistHint, st.sampled_from(NODES), KEYS, siblings),
    st.builds(DropHint, st.sampled_from(NODES), KEYS),
    st.builds(PersistMeta, st.sampled_from(["ring", "members", ""]), st.binary(max_size=8)),
    st.builds(SetTimer, st.tuples(st.just("t"), st.integers(0, 3)), st.floats(0, 10)),
    st.builds(Action, st.just("Crash"), st.tuples(st.sampled_from(NODES))),
)
batches = st.lists(st.lists(effects, max_size=8), max_size=6)


def _same(a: DurableState, b: DurableState) -> None:
    assert a.store == b.store
    assert a.hints == b.hints
    assert a.meta == b.meta


@given(batches, st.sampled_from(["full", "normal", "off"]))
def test_matches_the_memory_store_and_survives_reopening(
    batch_list: list[list[Effect]], sync: str
) -> None:
    memory = MemoryStore()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "node.db"
        with SqliteStore(path, sync) as store:  # type: ignore[arg-type]
            for batch in batch_list:
                memory.apply(batch)
                store.apply(batch)
                _same(store.load(), memory.load())
        with SqliteStore(path) as reopened:
            _same(reopened.load(), memory.load())


def test_a_failed_batch_writes_nothing_and_the_store_keeps_working(tmp_path: Path) -> None:
    v = (Version(b"x", VClock.from_counters({"a": 1}), 1.0, "a"),)
    with SqliteStore(tmp_path / "db") as store:
        store.apply([Persist(b"before", v)])
        bad = PersistMeta("m", object())  # type: ignore[arg-type]  # sqlite cannot bind it
        with pytest.raises(StorageError, match="batch not written"):
            store.apply([Persist(b"k", v), PersistHint("b", b"k", v), bad])
        state = store.load()
        assert state.store == {b"before": v}
        assert state.hints == {}
        assert state.meta == {}
        store.apply([Persist(b"after", v)])
        assert set(store.load().store) == {b"before", b"after"}


def test_a_persist_whose_bytes_are_not_its_siblings_is_refused(tmp_path: Path) -> None:
    # The store writes a Persist's bytes as given: they must be its sibling set's encoding.
    v = (Version(b"x", VClock.from_counters({"a": 1}), 1.0, "a"),)
    other = (Version(b"y", VClock.from_counters({"a": 2}), 2.0, "a"),)
    with SqliteStore(tmp_path / "db") as store:
        store.apply([Persist(b"k", v, encode_siblings(v))])
        with pytest.raises(icontract.ViolationError, match="its sibling set's encoding"):
            store.apply([Persist(b"k", other, encode_siblings(v))])
        assert store.load().store == {b"k": v}


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteStore(path)


def test_another_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    with pytest.raises(SchemaVersionError, match=r"not a dynamo-ref store.*accounts"):
        SqliteStore(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(StorageError, match="cannot open"):
        SqliteStore(path)


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StorageError, match="closed"):
        store.load()


def test_bad_sync_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "db", "sometimes")  # type: ignore[arg-type]


def _write_raw(path: Path, sql: str, params: Sequence[object]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


@given(batches, st.lists(KEYS, max_size=4), st.lists(st.tuples(st.sampled_from(NODES), KEYS)))
def test_reading_keys_back_matches_the_memory_store(
    batch_list: list[list[Effect]], keys: list[bytes], hints: list[tuple[str, bytes]]
) -> None:
    # What the runtime reads back after a failed batch: the same from either store.
    memory = MemoryStore()
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "node.db") as store:
        for batch in batch_list:
            memory.apply(batch)
            store.apply(batch)
        got = store.read(keys, hints)
        assert got == memory.read(keys, hints)
        assert set(got[0]) == set(keys)
        assert set(got[1]) == set(hints)


def test_reading_a_corrupt_row_back_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with SqliteStore(path):
        pass
    _write_raw(path, "INSERT INTO versions VALUES (?, ?)", (b"bad-key", b"\xc1garbage"))
    with SqliteStore(path) as store:
        assert store.read([b"other"], []) == ({b"other": ()}, {})  # the control
        with pytest.raises(CorruptRowError, match="bad-key"):
            store.read([b"bad-key"], [])


@pytest.mark.parametrize(
    ("sql", "params", "named"),
    [
        ("INSERT INTO versions VALUES (?, ?)", (b"bad-key", b"\xc1garbage"), "b'bad-key'"),
        ("INSERT INTO versions VALUES (?, ?)", (b"empty-key", encode_siblings(())), "empty-key"),
        ("INSERT INTO versions VALUES (?, ?)", (b"text-key", "not a blob"), "text-key"),
        ("INSERT INTO hints VALUES (?, ?, ?)", ("n1", b"hint-key", b"\x00"), "hint-key"),
        ("INSERT INTO meta VALUES (?, ?)", ("ring", 12), "ring"),
    ],
)
def test_a_corrupt_row_is_reported_by_key(
    tmp_path: Path, sql: str, params: Sequence[object], named: str
) -> None:
    path = tmp_path / "db"
    v = (Version(b"x", VClock.from_counters({"a": 1}), 1.0, "a"),)
    with SqliteStore(path) as store:
        store.apply([Persist(b"good", v)])
        assert store.load().store == {b"good": v}  # control: readable before the damage
    _write_raw(path, sql, params)
    with SqliteStore(path) as store, pytest.raises(CorruptRowError, match=named):
        store.load()


# ---- crash test -------------------------------------------------------------------------------


def missing_batches(acked: Sequence[int], state: DurableState) -> list[int]:
    """The acknowledged batches not wholly in ``state``, or any sign of a torn batch."""
    raw = state.meta.get("last")
    last = -1 if raw is None else int(raw)
    missing = []
    for i in acked:
        expect_keys = last - 2 < i <= last
        keys_ok = all(
            (state.store.get(f"{i}/{j}".encode()) == crash_writer.value(i, j)) == expect_keys
            for j in range(crash_writer.WIDTH)
        )
        hint_ok = state.hints.get(("owner", str(i).encode())) == crash_writer.value(i, 1)
        if not (i <= last and keys_ok and hint_ok):
            missing.append(i)
    # The newest batch is whole and nothing after it was written.
    if last >= 0:
        assert state.store.get(b"last") == crash_writer.value(last, 0)
        assert state.hints.get(("owner", str(last).encode())) == crash_writer.value(last, 1)
    assert ("owner", str(last + 1).encode()) not in state.hints
    return missing


def _run_and_kill(path: Path, first: int, sync: str, acks: int, buffered: bool) -> list[int]:
    """Start the writer, read ``acks`` acknowledged ids, SIGKILL it; every id it printed."""
    cmd = [sys.executable, crash_writer.__file__, str(path), str(first), "--sync", sync]
    if buffered:
        cmd.append("--buffered")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        acked: list[int] = []
        while len(acked) < acks:
            line = proc.stdout.readline()
            if not line:
                assert proc.stderr is not None
                pytest.fail(f"writer exited early ({proc.wait()}): {proc.stderr.read()}")
            acked.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Whatever it printed before dying was acknowledged too; a torn last line was not.
        acked.extend(
            int(line)
            for line in proc.stdout.read().splitlines(keepends=True)
            if line.endswith("\n")
        )
        assert proc.returncode == -signal.SIGKILL
        return acked
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_every_acknowledged_batch_survives_kill_9(tmp_path: Path, sync: str) -> None:
    path = tmp_path / "node.db"
    first = 0
    all_acked: list[int] = []
    for acks in (5, 40, 1, 25):
        acked = _run_and_kill(path, first, sync, acks, buffered=False)
        assert acked == list(range(first, first + len(acked)))
        all_acked.extend(acked)
        with SqliteStore(path) as store:
            state = store.load()
        assert missing_batches(all_acked, state) == []
        first = int(state.meta["last"]) + 1  # written but unacknowledged batches are fine


def test_the_crash_check_catches_a_store_that_only_buffers(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    acked = _run_and_kill(path, 0, "full", 10, buffered=True)
    with SqliteStore(path) as store:
        state = store.load()
    assert missing_batches(acked, state) == acked
    assert len(acked) >= 10
