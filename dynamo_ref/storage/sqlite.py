"""A durable store in one SQLite file: the node's write-ahead copy that survives ``kill -9``.

Three tables hold exactly what ``DurableState`` holds: ``versions`` (key -> encoded sibling
set), ``hints`` ((owner, key) -> encoded sibling set) and ``meta`` (name -> bytes). Sibling sets
are stored as ``encode_siblings`` bytes, the same canonical bytes the engine and the wire use.
``PRAGMA user_version`` is the schema version; a file with another one is refused, not guessed at.

Each ``apply`` is one transaction, so a batch is all there after a crash or not at all. The
``synchronous`` setting is the paper's durability/speed trade-off ("buffered writes"):

- ``"full"`` (default): every commit is fsynced before ``apply`` returns; an applied batch
  survives a process crash and, as far as SQLite and the disk promise, power loss or an OS crash.
- ``"normal"``: in WAL mode the commit is written to the log but fsynced only at checkpoints.
  An applied batch still survives a process crash (``kill -9``: the OS has the data), but the
  last batches may be lost on power loss or an OS crash. The database is never corrupted.
- ``"off"``: no fsync at all. Survives a process crash; power loss may lose or corrupt data.
  For tests and benchmarks only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, TypeAlias

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.effects import DropHint, Effect, Persist, PersistHint, PersistMeta
from dynamo_ref.core.messages import decode_siblings, encode_siblings
from dynamo_ref.core.node.config import DurableState
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings

Synchronous: TypeAlias = Literal["full", "normal", "off"]
SYNC_CHOICES: Final = ("full", "normal", "off")
# An acknowledged write survives kill -9 and power loss.
DEFAULT_SYNC: Final[Synchronous] = "full"

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    "CREATE TABLE versions (key BLOB PRIMARY KEY, siblings BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE hints (owner TEXT NOT NULL, key BLOB NOT NULL, siblings BLOB NOT NULL,"
    " PRIMARY KEY (owner, key)) WITHOUT ROWID",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID",
)

_PUT: Final = "INSERT OR REPLACE INTO versions (key, siblings) VALUES (?, ?)"
_DELETE: Final = "DELETE FROM versions WHERE key = ?"
_PUT_HINT: Final = "INSERT OR REPLACE INTO hints (owner, key, siblings) VALUES (?, ?, ?)"
_DROP_HINT: Final = "DELETE FROM hints WHERE owner = ? AND key = ?"
_PUT_META: Final = "INSERT OR REPLACE INTO meta (name, data) VALUES (?, ?)"
_GET: Final = "SELECT siblings FROM versions WHERE key = ?"
_GET_HINT: Final = "SELECT siblings FROM hints WHERE owner = ? AND key = ?"


class StorageError(Exception):
    """The store cannot be opened, read or written."""


class SchemaVersionError(StorageError):
    """The file was written by another schema version (or is not a dynamo-ref store)."""


class CorruptRowError(StorageError):
    """A row cannot be decoded. Raised rather than dropping it: a dropped row is lost data."""


class SqliteStore:
    """A ``DurableStore`` in one SQLite file (WAL journal).

    One connection, usable from any one thread at a time (the TCP runtime applies batches from
    a worker thread); a lock keeps two batches from interleaving anyway.

    :raises SchemaVersionError: the file has an unknown schema version, or is another database.
    :raises StorageError: the file cannot be opened as a SQLite database.
    """

    def __init__(self, path: str | Path, synchronous: Synchronous = DEFAULT_SYNC) -> None:
        if synchronous not in SYNC_CHOICES:
            raise ValueError(f"synchronous must be 'full', 'normal' or 'off', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._lock = threading.Lock()
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT in apply.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._open(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StorageError(f"{self.path}: cannot open as a SQLite store: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _open(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{self.path}: SQLite refused the WAL journal (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if version == 0 and not tables:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version == 0:
                raise SchemaVersionError(
                    f"{self.path}: not a dynamo-ref store (schema version 0 but it has tables:"
                    f" {', '.join(sorted(tables))})"
                )
            elif version != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path}: schema version {version} is not one this build knows"
                    f" (it reads version {SCHEMA_VERSION}); refusing to open it"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"{self.path}: the store is closed")
        return self._conn

    # ---- DurableStore --------------------------------------------------------------------

    @icontract.require(
        lambda effects: all(
            e.raw is None or e.raw == encode_siblings(e.siblings)
            for e in effects
            if isinstance(e, Persist)
        ),
        "a Persist's bytes are its sibling set's encoding",
        enabled=ENABLED,
    )
    def apply(self, effects: Sequence[Effect]) -> None:
        """Write the durable effects in ``effects``, in order, as one transaction; the others
        are ignored. A batch without durable effects touches nothing.

        :raises StorageError: the write failed; nothing of the batch was written.
        """
        rows: list[tuple[str, tuple[object, ...]]] = []
        for e in effects:
            if isinstance(e, Persist):
                if e.siblings:
                    raw = encode_siblings(e.siblings) if e.raw is None else e.raw
                    rows.append((_PUT, (e.key, raw)))
                else:
                    rows.append((_DELETE, (e.key,)))
            elif isinstance(e, PersistHint):
                if e.siblings:
                    rows.append((_PUT_HINT, (e.owner, e.key, encode_siblings(e.siblings))))
                else:
                    rows.append((_DROP_HINT, (e.owner, e.key)))
            elif isinstance(e, DropHint):
                rows.append((_DROP_HINT, (e.owner, e.key)))
            elif isinstance(e, PersistMeta):
                rows.append((_PUT_META, (e.name, e.data)))
        if not rows:
            return
        # Runs of one statement go to SQLite in one call: each call gives up the GIL and must
        # win it back from a busy event loop, so calls per batch, not rows, set its time.
        runs: list[tuple[str, list[tuple[object, ...]]]] = []
        for sql, params in rows:
            if runs and runs[-1][0] == sql:
                runs[-1][1].append(params)
            else:
                runs.append((sql, [params]))
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, run in runs:
                    conn.executemany(sql, run)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StorageError(f"{self.path}: batch not written: {e}") from e

    def load(self) -> DurableState:
        """Everything applied so far.

        :raises CorruptRowError: a row does not decode; the message names its table and key.
        """
        with self._lock:
            conn = self._connection()
            state = DurableState()
            for key, raw in conn.execute("SELECT key, siblings FROM versions ORDER BY key"):
                state.store[_blob(key, "versions", key)] = _siblings(raw, "versions", key)
            for owner, key, raw in conn.execute(
                "SELECT owner, key, siblings FROM hints ORDER BY owner, key"
            ):
                where = (owner, key)
                if not isinstance(owner, str):
                    raise CorruptRowError(f"hints row {where!r}: owner is not text")
                state.hints[(owner, _blob(key, "hints", where))] = _siblings(raw, "hints", where)
            for name, data in conn.execute("SELECT name, data FROM meta ORDER BY name"):
                if not isinstance(name, str):
                    raise CorruptRowError(f"meta row {name!r}: name is not text")
                state.meta[name] = _blob(data, "meta", name)
            return state

    def read(
        self, keys: Sequence[bytes], hints: Sequence[tuple[NodeId, bytes]]
    ) -> tuple[dict[bytes, Siblings], dict[tuple[NodeId, bytes], Siblings]]:
        """What is stored for each key and (owner, key) hint; empty for none.

        :raises CorruptRowError: a row does not decode.
        :raises StorageError: the store cannot be read.
        """
        with self._lock:
            conn = self._connection()
            try:
                store: dict[bytes, Siblings] = {}
                for key in keys:
                    row = conn.execute(_GET, (key,)).fetchone()
                    store[key] = () if row is None else _siblings(row[0], "versions", key)
                held: dict[tuple[NodeId, bytes], Siblings] = {}
                for owner, key in hints:
                    row = conn.execute(_GET_HINT, (owner, key)).fetchone()
                    where = (owner, key)
                    held[where] = () if row is None else _siblings(row[0], "hints", where)
            except sqlite3.Error as e:
                raise StorageError(f"{self.path}: cannot read: {e}") from e
            return store, held

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _blob(value: object, table: str, where: object) -> bytes:
    if not isinstance(value, bytes):
        raise CorruptRowError(
            f"{table} row {where!r}: expected a blob, found {type(value).__name__}"
        )
    return value


def _siblings(raw: object, table: str, where: object) -> Siblings:
    data = _blob(raw, table, where)
    try:
        siblings = decode_siblings(data)
    except ValueError as e:
        raise CorruptRowError(f"{table} row {where!r}: {e}") from e
    if not siblings:
        # apply deletes instead of storing an empty set, so an empty one was not written by us.
        raise CorruptRowError(f"{table} row {where!r}: empty sibling set")
    return siblings
