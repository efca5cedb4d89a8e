"""Storage engines: where a node keeps its sibling sets and hints.

An engine is the node's working copy, not its durability: the node states what must survive a
crash as ``Persist``/``PersistHint``/``DropHint`` effects, and a driver makes those durable.
Every engine keeps one Merkle tree per partition current with its content, so anti-entropy can
compare partitions without a scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from dynamo_ref.core.merkle import MerkleTree
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings


class Engine(Protocol):
    """What the node needs of a store of sibling sets and hints."""

    def get(self, key: bytes) -> Siblings:
        """The key's sibling set; empty when absent."""
        ...

    def put(self, key: bytes, siblings: Siblings) -> None:
        """Replace the key's sibling set (canonical order); empty removes the key."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...

    def keys(self, partition: int) -> list[bytes]:
        """The keys of ``partition``, sorted."""
        ...

    def partitions(self) -> list[int]:
        """Partitions holding at least one key, sorted."""
        ...

    def tree(self, partition: int) -> MerkleTree:
        """The partition's Merkle tree (an empty one for a partition without keys)."""
        ...

    def leaf_digests(self, partition: int, index: int) -> list[tuple[bytes, bytes]]:
        """(key, 16-byte digest) of each key in leaf ``index``: what a peer compares."""
        ...

    def get_hint(self, owner: NodeId, key: bytes) -> Siblings: ...

    def put_hint(self, owner: NodeId, key: bytes, siblings: Siblings) -> None:
        """Keep ``siblings`` for ``owner``; empty drops the hint."""
        ...

    def hints(self) -> Iterable[tuple[NodeId, bytes]]:
        """(owner, key) of every hint, sorted."""
        ...


from dynamo_ref.storage.durable import DurableStore, MemoryStore  # noqa: E402
from dynamo_ref.storage.memory import MemoryEngine  # noqa: E402
from dynamo_ref.storage.sqlite import SqliteStore  # noqa: E402

if TYPE_CHECKING:  # mypy checks that the engine keeps to the protocol
    _memory_is_an_engine: Engine = MemoryEngine(lambda key: 0)
    _sqlite_is_a_store: DurableStore = SqliteStore(":memory:")

__all__ = ["DurableStore", "Engine", "MemoryEngine", "MemoryStore", "SqliteStore"]
