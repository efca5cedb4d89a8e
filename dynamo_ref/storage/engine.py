"""The engine protocol: what a node needs of the store that holds its working copy.

An engine is the node's working copy, not its durability: the node states what must survive a
crash as ``Persist``/``PersistHint``/``DropHint`` effects, and a driver makes those durable.
Every engine keeps one Merkle tree per partition current with its content, so anti-entropy can
compare partitions without a scan. The core reaches storage through this module only; a driver
hands the node an ``EngineFactory`` (``storage.memory.MemoryEngine`` is one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from dynamo_ref.core.merkle import MerkleTree
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings


class Engine(Protocol):
    """What the node needs of a store of sibling sets and hints."""

    @property
    def shape(self) -> tuple[int, int]:
        """(fanout, depth) of every tree: peers must agree on it to compare."""
        ...

    def get(self, key: bytes) -> Siblings:
        """The key's sibling set; empty when absent."""
        ...

    def get_raw(self, key: bytes) -> bytes | None:
        """The key's sibling set as its canonical encoding (the wire form); None when absent."""
        ...

    def put(self, key: bytes, siblings: Siblings) -> None:
        """Replace the key's sibling set (canonical order); empty removes the key."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...

    def __iter__(self) -> Iterator[bytes]: ...

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


class EngineFactory(Protocol):
    """Builds a node's engine once its partition count is known (``MemoryEngine`` is one)."""

    def __call__(
        self, partition_of: Callable[[bytes], int], *, fanout: int, depth: int
    ) -> Engine: ...
