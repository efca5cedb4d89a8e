"""Storage: the engine that holds a node's working copy (``engine.Engine``, ``memory``) and the
durable stores its effects are written to (``durable``, ``sqlite``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.engine import Engine, EngineFactory
from dynamo_ref.storage.memory import MemoryEngine
from dynamo_ref.storage.sqlite import SqliteStore

if TYPE_CHECKING:  # mypy checks that the engine and the store keep to their protocols
    _memory_is_an_engine: Engine = MemoryEngine(lambda key: 0)
    _memory_makes_engines: EngineFactory = MemoryEngine
    _sqlite_is_a_store: DurableStore = SqliteStore(":memory:")

__all__ = ["DurableStore", "Engine", "EngineFactory", "MemoryEngine", "MemoryStore", "SqliteStore"]
