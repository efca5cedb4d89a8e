"""The in-memory engine: compact bytes per key, in one dict and in the Merkle trees.

Each key's sibling set is held as its canonical MessagePack bytes (``encode_siblings``) and
decoded on access. Those bytes serve as the key's item in its partition's Merkle tree: no
separate digests. Equal sibling sets encode to equal bytes on every replica, so equal
partitions have equal roots. When a peer asks for a leaf's items, the engine sends 16-byte
BLAKE2b digests of the bytes instead of the bytes.

A flat dict from key to the same bytes objects serves reads: finding a key through its tree
hashes it twice (its partition, then its leaf), and every replica reads each get's key. The
dict costs a slot per key, not a copy of the bytes.

Measured object by object (``benchmarks/sim_bench.py``'s memory figure): 100,000 keys of 10
bytes with 100-byte values over 64 partitions take 29 MB, 2.6 times the raw 11 MB (keys,
encoded siblings, the read dict and the trees together); the read dict is 5 MB of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.merkle import MerkleTree, item_digest
from dynamo_ref.core.messages import decode_siblings, encode_siblings
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings, is_canonical

# 8^2 leaves per partition: about 25 keys a leaf at 10^5 keys over 64 partitions. More leaves
# cost a dict each (2.8x the raw size with 16^2); fewer make every write rehash a long leaf.
DEFAULT_FANOUT = 8
DEFAULT_DEPTH = 2


class MemoryEngine:
    """Sibling sets and hints in memory, with one Merkle tree per partition."""

    __slots__ = (
        "_depth",
        "_empty",
        "_fanout",
        "_hints",
        "_last",
        "_partition_of",
        "_raw",
        "_trees",
    )

    def __init__(
        self,
        partition_of: Callable[[bytes], int],
        *,
        fanout: int = DEFAULT_FANOUT,
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        self._partition_of = partition_of
        self._fanout = fanout
        self._depth = depth
        self._trees: dict[int, MerkleTree] = {}
        self._hints: dict[tuple[NodeId, bytes], bytes] = {}
        # Every key's bytes: the objects its tree holds, not copies.
        self._raw: dict[bytes, bytes] = {}
        self._empty = MerkleTree(fanout=fanout, depth=depth)
        # The last key stored and its partition: a put's postcondition asks for it again.
        self._last: tuple[bytes | None, int] = (None, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """(fanout, depth) of every tree: peers must agree on it to compare."""
        return (self._fanout, self._depth)

    # ---- the store ---------------------------------------------------------------------

    def get(self, key: bytes) -> Siblings:
        raw = self.get_raw(key)
        return () if raw is None else decode_siblings(raw)

    def get_raw(self, key: bytes) -> bytes | None:
        return self._raw.get(key)

    def _partition(self, key: bytes) -> int:
        last, p = self._last
        if key != last:
            p = self._partition_of(key)
            self._last = (key, p)
        return p

    @icontract.require(lambda siblings: is_canonical(siblings), enabled=ENABLED)  # noqa: PLW0108
    @icontract.ensure(lambda self, key, siblings: self.get(key) == siblings, enabled=ENABLED)
    @icontract.ensure(
        lambda self, key: self.tree(self._partition(key)).get(key) == self._raw.get(key),
        "the key's tree holds the bytes reads see (its digests are of what is read)",
        enabled=ENABLED,
    )
    def put(self, key: bytes, siblings: Siblings) -> None:
        p = self._partition(key)
        tree = self._trees.get(p)
        if not siblings:
            if tree is not None and tree.remove(key):
                del self._raw[key]
                if not len(tree):
                    del self._trees[p]
            return
        if tree is None:
            tree = self._trees[p] = MerkleTree(fanout=self._fanout, depth=self._depth)
        raw = encode_siblings(siblings)
        if self._raw.get(key) != raw:
            self._raw[key] = raw
            tree.set(key, raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get_raw(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        for p in sorted(self._trees):
            yield from self.keys(p)

    def keys(self, partition: int) -> list[bytes]:
        tree = self._trees.get(partition)
        return [] if tree is None else sorted(key for key, _ in tree.items())

    def partitions(self) -> list[int]:
        return sorted(self._trees)

    def tree(self, partition: int) -> MerkleTree:
        """The partition's tree. Read it, never change it: the engine keeps it current."""
        return self._trees.get(partition, self._empty)

    def leaf_digests(self, partition: int, index: int) -> list[tuple[bytes, bytes]]:
        tree = self._trees.get(partition)
        if tree is None:
            return []
        return [(key, item_digest(raw)) for key, raw in tree.leaf_items(index)]

    def stored_bytes(self) -> int:
        """Keys plus encoded sibling sets: the payload the engine holds."""
        return sum(len(k) + len(v) for tree in self._trees.values() for k, v in tree.items())

    # ---- hints -------------------------------------------------------------------------

    def get_hint(self, owner: NodeId, key: bytes) -> Siblings:
        raw = self._hints.get((owner, key))
        return () if raw is None else decode_siblings(raw)

    def put_hint(self, owner: NodeId, key: bytes, siblings: Siblings) -> None:
        if siblings:
            self._hints[(owner, key)] = encode_siblings(siblings)
        else:
            self._hints.pop((owner, key), None)

    def hints(self) -> list[tuple[NodeId, bytes]]:
        return sorted(self._hints)

    def hint_count(self) -> int:
        return len(self._hints)
