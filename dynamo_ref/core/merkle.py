"""Per-partition Merkle trees for anti-entropy, and their diff.

A tree summarises a partition's content as (key, version digest) items. Its shape is fixed by
fan-out and depth, not by the content: a key's leaf is chosen by a hash of the key, so two
replicas' trees of the same shape can be compared node by node without exchanging keys, and
only the subtrees whose hashes differ are walked. Node (level, index) has children
(level + 1, index * fanout + i); level 0 is the root, level ``depth`` the leaves.

Empty subtrees hash to the fixed ``EMPTY_HASH`` at every level, so only non-empty nodes are
stored and a mostly empty tree costs little.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise

import icontract

from dynamo_ref.core.contracts import ENABLED

DEFAULT_FANOUT = 16
DEFAULT_DEPTH = 3
MAX_LEAVES = 1 << 20
HASH_SIZE = 16
EMPTY_HASH = bytes(HASH_SIZE)

# Domain separation: a leaf's encoding can never be mistaken for a list of child hashes.
_LEAF_TAG = b"\x00"
_INNER_TAG = b"\x01"
_PLACE_TAG = b"\x02"

Item = tuple[bytes, bytes]


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


def leaf_hash(items: Mapping[bytes, bytes]) -> bytes:
    """Hash of a leaf holding ``items``; length prefixes keep the encoding unambiguous."""
    if not items:
        return EMPTY_HASH
    parts = [_LEAF_TAG]
    for key in sorted(items):
        digest = items[key]
        parts += (len(key).to_bytes(4, "big"), key, len(digest).to_bytes(4, "big"), digest)
    return _hash(b"".join(parts))


def inner_hash(children: Sequence[bytes]) -> bytes:
    """Hash of an inner node from its children's hashes; all-empty children give EMPTY_HASH."""
    if all(child == EMPTY_HASH for child in children):
        return EMPTY_HASH
    return _hash(_INNER_TAG + b"".join(children))


def place(key: bytes, leaf_count: int) -> int:
    """The leaf a key belongs to: a stable hash, the same on every node and every run."""
    digest = hashlib.blake2b(_PLACE_TAG + key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % leaf_count


def _widths(fanout: int, depth: int) -> tuple[int, ...]:
    """Node counts per level, fanout ** level for level 0..depth."""
    # Products rather than ** or pow(): CrossHair crashes on the one and realizes the operands
    # of the other, which leaves it a single tree shape to explore.
    widths = [1]
    for _ in range(depth):
        widths.append(widths[-1] * fanout)
    return tuple(widths)


def item_digest(encoded: bytes) -> bytes:
    """The digest of a key's stored bytes that peers compare at the leaves (16-byte BLAKE2b)."""
    return hashlib.blake2b(encoded, digest_size=16).digest()


class MerkleTree:
    """A fixed-shape hash tree over (key, version digest) items, updated in place."""

    __slots__ = (
        "_depth",
        "_dirty",
        "_fanout",
        "_last",
        "_leaf_count",
        "_leaves",
        "_levels",
        "_size",
        "_widths",
    )

    # One condition, so the bounds hold before the product is taken.
    @icontract.require(
        lambda fanout, depth: (
            2 <= fanout <= 256 and 0 <= depth <= 20 and _widths(fanout, depth)[-1] <= MAX_LEAVES
        ),
        enabled=ENABLED,
    )
    def __init__(
        self,
        items: Iterable[Item] = (),
        *,
        fanout: int = DEFAULT_FANOUT,
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        """Build the tree of ``items``; a later pair for the same key wins, as in ``dict``."""
        self._fanout = fanout
        self._depth = depth
        self._widths = _widths(fanout, depth)
        self._leaf_count = self._widths[depth]
        self._leaves: dict[int, dict[bytes, bytes]] = {}
        self._size = 0
        # Leaves changed since the hashes were last read: writes are many, reads (anti-entropy,
        # transfers) rare, so hashes are brought up to date only when asked for.
        self._dirty: set[int] = set()
        # The last key placed and its leaf: a write reads the key, then stores it.
        self._last: tuple[bytes | None, int] = (None, 0)
        for key, digest in items:
            leaf = self._leaves.setdefault(place(key, self._leaf_count), {})
            self._size += key not in leaf
            leaf[key] = digest
        # Only non-empty nodes are stored; a missing index means EMPTY_HASH.
        self._levels: list[dict[int, bytes]] = [{} for _ in range(depth + 1)]
        self._levels[depth] = {i: leaf_hash(leaf) for i, leaf in self._leaves.items()}
        for level in range(depth - 1, -1, -1):
            below = self._levels[level + 1]
            for parent in {i // fanout for i in below}:
                self._levels[level][parent] = inner_hash(self._child_hashes(level, parent))

    # Reading

    @property
    def fanout(self) -> int:
        return self._fanout

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def shape(self) -> tuple[int, int]:
        """(fanout, depth): trees are comparable only with the same shape."""
        return (self._fanout, self._depth)

    @property
    def leaf_count(self) -> int:
        return self._leaf_count

    def width(self, level: int) -> int:
        """How many nodes level ``level`` has: fanout ** level."""
        return self._widths[level]

    @property
    def root(self) -> bytes:
        if self._dirty:
            self._rehash()
        return self._levels[0].get(0, EMPTY_HASH)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and key in self._leaves.get(self.leaf_of(key), {})

    def get(self, key: bytes) -> bytes | None:
        return self._leaves.get(self.leaf_of(key), {}).get(key)

    def items(self) -> Iterator[Item]:
        """All items, leaf by leaf, keys sorted within a leaf."""
        for index in sorted(self._leaves):
            yield from self.leaf_items(index)

    def content(self) -> dict[bytes, bytes]:
        return {key: digest for leaf in self._leaves.values() for key, digest in leaf.items()}

    def leaf_of(self, key: bytes) -> int:
        last, index = self._last
        if key != last:
            index = place(key, self._leaf_count)
            self._last = (key, index)
        return index

    @icontract.require(
        lambda self, level, index: 0 <= level <= self.depth and 0 <= index < self.width(level),
        enabled=ENABLED,
    )
    def node_hash(self, level: int, index: int) -> bytes:
        if self._dirty:
            self._rehash()
        return self._levels[level].get(index, EMPTY_HASH)

    @icontract.require(
        lambda self, level, index: 0 <= level < self.depth and 0 <= index < self.width(level),
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: len(result) == self.fanout, enabled=ENABLED)
    def children_hashes(self, level: int, index: int) -> tuple[bytes, ...]:
        """Hashes of the children of node (level, index): what a peer sends when asked."""
        if self._dirty:
            self._rehash()
        return self._child_hashes(level, index)

    @icontract.require(lambda self, index: 0 <= index < self.leaf_count, enabled=ENABLED)
    @icontract.ensure(
        lambda result: all(a[0] < b[0] for a, b in pairwise(result)),
        "sorted by key, each key once",
        enabled=ENABLED,
    )
    def leaf_items(self, index: int) -> tuple[Item, ...]:
        """The items of leaf ``index``, sorted by key: what a peer sends for a differing leaf."""
        leaf = self._leaves.get(index, {})
        return tuple((key, leaf[key]) for key in sorted(leaf))

    # Updating

    @icontract.ensure(lambda self, key, digest: self.get(key) == digest, enabled=ENABLED)
    def set(self, key: bytes, digest: bytes) -> None:
        """Insert or replace ``key``'s version digest; its path is rehashed when next read."""
        index = self.leaf_of(key)
        leaf = self._leaves.setdefault(index, {})
        if leaf.get(key) == digest:
            return
        self._size += key not in leaf
        leaf[key] = digest
        self._dirty.add(index)

    @icontract.snapshot(lambda self, key: key in self, name="had", enabled=ENABLED)
    @icontract.ensure(lambda self, key: key not in self, enabled=ENABLED)
    @icontract.ensure(lambda OLD, result: result == OLD.had, enabled=ENABLED)
    def remove(self, key: bytes) -> bool:
        """Remove ``key`` if present; True if it was there."""
        index = self.leaf_of(key)
        leaf = self._leaves.get(index)
        if leaf is None or key not in leaf:
            return False
        del leaf[key]
        self._size -= 1
        if not leaf:
            del self._leaves[index]
        self._dirty.add(index)
        return True

    def _child_hashes(self, level: int, index: int) -> tuple[bytes, ...]:
        below = self._levels[level + 1]
        first = index * self._fanout
        return tuple(below.get(first + i, EMPTY_HASH) for i in range(self._fanout))

    def _store(self, level: int, index: int, value: bytes) -> None:
        if value == EMPTY_HASH:
            self._levels[level].pop(index, None)
        else:
            self._levels[level][index] = value

    def _rehash(self) -> None:
        """Rehash the dirty leaves and their paths to the root, each node once."""
        indexes = self._dirty
        self._dirty = set()
        depth = self._depth
        for index in indexes:
            self._store(depth, index, leaf_hash(self._leaves.get(index, {})))
        for level in range(depth - 1, -1, -1):
            indexes = {index // self._fanout for index in indexes}
            for index in indexes:
                self._store(level, index, inner_hash(self._child_hashes(level, index)))


def _leaf_diff(mine: Mapping[bytes, bytes], theirs: Mapping[bytes, bytes]) -> set[bytes]:
    """Keys present on one side only, or with different digests."""
    return {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}


@icontract.require(
    lambda a, b: a.shape == b.shape, "trees must have the same shape", enabled=ENABLED
)
@icontract.ensure(lambda a, b, result: (not result) == (a.root == b.root), enabled=ENABLED)
def diff(a: MerkleTree, b: MerkleTree) -> set[bytes]:
    """Exactly the keys whose items differ between ``a`` and ``b``, walking only into
    subtrees whose hashes differ.
    """
    out: set[bytes] = set()
    if a.root == b.root:
        return out
    fanout, depth = a.shape
    frontier = [0]
    for level in range(depth):
        frontier = [
            index * fanout + i
            for index in frontier
            for i, (x, y) in enumerate(
                zip(a.children_hashes(level, index), b.children_hashes(level, index), strict=True)
            )
            if x != y
        ]
    for index in frontier:
        out |= _leaf_diff(dict(a.leaf_items(index)), dict(b.leaf_items(index)))
    return out


class TreeWalk:
    """A diff against a peer's tree that is seen only through messages, one level per round.

    The walker asks for the children of the nodes in ``wanted`` (at ``level``), or for the items
    of those leaves once ``level == depth``; the peer answers with ``children_hashes`` and
    ``leaf_items`` of its own tree. Each answer is compared with the local tree as it is at
    that moment; if either side changes during the walk the result is approximate, and the
    next exchange catches the rest.
    """

    __slots__ = ("_keys", "_level", "_local", "_wanted")

    def __init__(self, local: MerkleTree, remote_root: bytes) -> None:
        self._local = local
        self._keys: set[bytes] = set()
        self._level = 0
        self._wanted: tuple[int, ...] = () if remote_root == local.root else (0,)

    @property
    def tree(self) -> MerkleTree:
        return self._local

    @property
    def level(self) -> int:
        return self._level

    @property
    def wanted(self) -> tuple[int, ...]:
        """Node indexes at ``level`` whose children (or leaf items) are needed next."""
        return self._wanted

    @property
    def wants_leaves(self) -> bool:
        return bool(self._wanted) and self._level == self._local.depth

    @property
    def done(self) -> bool:
        return not self._wanted

    @property
    def keys(self) -> frozenset[bytes]:
        """The differing keys found so far; the full answer once ``done``."""
        return frozenset(self._keys)

    @icontract.require(lambda self: not self.done and not self.wants_leaves, enabled=ENABLED)
    @icontract.require(lambda self, children: set(children) == set(self.wanted), enabled=ENABLED)
    @icontract.require(
        lambda self, children: all(len(h) == self.tree.fanout for h in children.values()),
        enabled=ENABLED,
    )
    def receive_children(self, children: Mapping[int, Sequence[bytes]]) -> None:
        """The peer's ``children_hashes(level, i)`` for every ``i`` in ``wanted``."""
        local, fanout = self._local, self._local.fanout
        self._wanted = tuple(
            index * fanout + i
            for index in self._wanted
            for i, (mine, theirs) in enumerate(
                zip(local.children_hashes(self._level, index), children[index], strict=True)
            )
            if mine != theirs
        )
        self._level += 1

    @icontract.require(lambda self: self.wants_leaves, enabled=ENABLED)
    @icontract.require(lambda self, leaves: set(leaves) == set(self.wanted), enabled=ENABLED)
    @icontract.ensure(lambda self: self.done, enabled=ENABLED)
    def receive_leaves(self, leaves: Mapping[int, Iterable[Item]]) -> None:
        """The peer's ``leaf_items(i)`` for every ``i`` in ``wanted``."""
        for index in self._wanted:
            self._keys |= _leaf_diff(dict(self._local.leaf_items(index)), dict(leaves[index]))
        self._wanted = ()
