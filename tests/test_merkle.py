"""Merkle trees: diff exactness, incremental updates, and the level-by-level remote walk."""

import ast
import inspect
import random
from collections.abc import Callable, Iterable, Sequence

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core import merkle
from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.merkle import EMPTY_HASH, Item, MerkleTree, TreeWalk, diff


def diff_via(
    local: MerkleTree,
    remote_root: bytes,
    children_hashes: Callable[[int, int], Sequence[bytes]],
    leaf_items: Callable[[int], Iterable[Item]],
) -> frozenset[bytes]:
    """Run a ``TreeWalk`` to completion with synchronous fetches (what peers do over messages)."""
    walk = TreeWalk(local, remote_root)
    while not walk.done:
        if walk.wants_leaves:
            walk.receive_leaves({i: leaf_items(i) for i in walk.wanted})
        else:
            walk.receive_children({i: children_hashes(walk.level, i) for i in walk.wanted})
    return walk.keys


needs_contracts = pytest.mark.skipif(not ENABLED, reason="contracts are switched off")

shapes = st.sampled_from([(2, 0), (2, 1), (2, 3), (3, 2), (4, 2), (16, 1), (16, 2), (16, 3)])
keys = st.binary(min_size=0, max_size=4)
digests = st.binary(min_size=1, max_size=2)  # short, so equal digests happen often
contents = st.dictionaries(keys, digests, max_size=40)


@st.composite
def content_pairs(draw: st.DrawFn) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Two contents that mostly agree, as replicas do: a shared base, then a few edits each."""
    base = draw(contents)
    sides = []
    for _ in range(2):
        side = dict(base)
        side.update(draw(st.dictionaries(keys, digests, max_size=5)))
        for key in draw(
            st.lists(st.sampled_from(sorted(base)), max_size=5) if base else st.just([])
        ):
            side.pop(key, None)
        sides.append(side)
    return sides[0], sides[1]


def brute_force_diff(a: dict[bytes, bytes], b: dict[bytes, bytes]) -> set[bytes]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def all_hashes(tree: MerkleTree) -> list[bytes]:
    return [
        tree.node_hash(level, index)
        for level in range(tree.depth + 1)
        for index in range(tree.fanout**level)
    ]


@given(shapes, content_pairs())
def test_diff_is_exactly_the_keys_that_differ(
    shape: tuple[int, int], pair: tuple[dict[bytes, bytes], dict[bytes, bytes]]
) -> None:
    fanout, depth = shape
    a, b = (MerkleTree(side.items(), fanout=fanout, depth=depth) for side in pair)
    assert diff(a, b) == brute_force_diff(*pair)


@given(shapes, content_pairs())
def test_empty_diff_iff_equal_content(
    shape: tuple[int, int], pair: tuple[dict[bytes, bytes], dict[bytes, bytes]]
) -> None:
    fanout, depth = shape
    a, b = (MerkleTree(side.items(), fanout=fanout, depth=depth) for side in pair)
    assert (diff(a, b) == set()) == (pair[0] == pair[1])
    assert (a.root == b.root) == (pair[0] == pair[1])


@given(shapes, content_pairs())
def test_diff_is_symmetric(
    shape: tuple[int, int], pair: tuple[dict[bytes, bytes], dict[bytes, bytes]]
) -> None:
    fanout, depth = shape
    a, b = (MerkleTree(side.items(), fanout=fanout, depth=depth) for side in pair)
    assert diff(a, b) == diff(b, a)


@given(shapes, contents, st.lists(st.tuples(keys, st.none() | digests), max_size=30))
def test_incremental_updates_equal_a_rebuild(
    shape: tuple[int, int],
    start: dict[bytes, bytes],
    edits: list[tuple[bytes, bytes | None]],
) -> None:
    fanout, depth = shape
    tree = MerkleTree(start.items(), fanout=fanout, depth=depth)
    expected = dict(start)
    for key, digest in edits:
        if digest is None:
            assert tree.remove(key) == (key in expected)
            expected.pop(key, None)
        else:
            tree.set(key, digest)
            expected[key] = digest
    rebuilt = MerkleTree(expected.items(), fanout=fanout, depth=depth)
    assert tree.content() == expected
    assert len(tree) == len(expected)
    assert all_hashes(tree) == all_hashes(rebuilt)


@given(shapes, contents, st.randoms(use_true_random=False))
def test_the_tree_depends_on_content_not_on_insertion_order(
    shape: tuple[int, int], content: dict[bytes, bytes], rng: random.Random
) -> None:
    fanout, depth = shape
    items = list(content.items())
    shuffled = list(items)
    rng.shuffle(shuffled)
    a = MerkleTree(items, fanout=fanout, depth=depth)
    b = MerkleTree(shuffled, fanout=fanout, depth=depth)
    assert all_hashes(a) == all_hashes(b)


@given(shapes, content_pairs())
def test_remote_walk_finds_the_same_keys_and_only_visits_differing_nodes(
    shape: tuple[int, int], pair: tuple[dict[bytes, bytes], dict[bytes, bytes]]
) -> None:
    fanout, depth = shape
    local, remote = (MerkleTree(side.items(), fanout=fanout, depth=depth) for side in pair)
    differing = brute_force_diff(*pair)
    asked: list[tuple[int, int]] = []

    def children(level: int, index: int) -> tuple[bytes, ...]:
        asked.append((level, index))
        assert local.node_hash(level, index) != remote.node_hash(level, index)
        return remote.children_hashes(level, index)

    def leaf(index: int) -> tuple[tuple[bytes, bytes], ...]:
        asked.append((depth, index))
        return remote.leaf_items(index)

    assert diff_via(local, remote.root, children, leaf) == differing
    # Per level, at most one visited node per differing key: the walk skips equal subtrees.
    for level in range(depth + 1):
        assert len([a for a in asked if a[0] == level]) <= len(differing)
    assert {local.leaf_of(k) for k in differing} == {i for lv, i in asked if lv == depth}


def test_walk_of_equal_trees_is_done_at_once() -> None:
    tree = MerkleTree([(b"k", b"v")])
    walk = TreeWalk(tree, tree.root)
    assert walk.done
    assert walk.keys == frozenset()


def test_walk_steps_one_level_per_round() -> None:
    local = MerkleTree([(b"a", b"1"), (b"b", b"1")], fanout=4, depth=2)
    remote = MerkleTree([(b"a", b"2"), (b"b", b"1")], fanout=4, depth=2)
    walk = TreeWalk(local, remote.root)
    rounds = 0
    while not walk.done:
        rounds += 1
        if walk.wants_leaves:
            walk.receive_leaves({i: remote.leaf_items(i) for i in walk.wanted})
        else:
            walk.receive_children({i: remote.children_hashes(walk.level, i) for i in walk.wanted})
    assert rounds == 3  # root's children, level-1 children, leaf items
    assert walk.keys == {b"a"}


@given(shapes, contents)
def test_empty_subtrees_hash_to_the_fixed_empty_hash(
    shape: tuple[int, int], content: dict[bytes, bytes]
) -> None:
    fanout, depth = shape
    tree = MerkleTree(content.items(), fanout=fanout, depth=depth)
    occupied = {tree.leaf_of(k) for k in content}
    for level in range(depth + 1):
        span = fanout ** (depth - level)  # leaves under one node at this level
        for index in range(fanout**level):
            covers = any(index * span <= leaf < (index + 1) * span for leaf in occupied)
            assert (tree.node_hash(level, index) == EMPTY_HASH) == (not covers)
    for key in content:
        tree.remove(key)
    assert tree.root == EMPTY_HASH
    assert len(tree) == 0


def test_reading_api() -> None:
    tree = MerkleTree([(b"x", b"1"), (b"y", b"2"), (b"x", b"3")])
    assert len(tree) == 2
    assert tree.get(b"x") == b"3"  # later pair wins, as in dict
    assert b"y" in tree
    assert b"z" not in tree
    assert tree.get(b"z") is None
    assert sorted(tree.items()) == [(b"x", b"3"), (b"y", b"2")]
    assert tree.shape == (16, 3)
    assert tree.leaf_count == 4096
    assert len(tree.children_hashes(0, 0)) == 16
    assert (b"x", b"3") in tree.leaf_items(tree.leaf_of(b"x"))


def test_hashes_are_stable_across_processes_and_versions() -> None:
    # Peers compare these bytes: leaf placement and hashing must never depend on the run.
    tree = MerkleTree([(b"user:42", b"\x01\x02"), (b"cart:7", b"\x03")], fanout=16, depth=2)
    assert tree.leaf_of(b"user:42") == merkle.place(b"user:42", 256)
    assert tree.root.hex() == "f8572060aec98543fe192a162a951a2e"


@needs_contracts
def test_contract_refuses_trees_of_different_shapes() -> None:
    with pytest.raises(icontract.ViolationError):
        diff(MerkleTree(fanout=16, depth=2), MerkleTree(fanout=16, depth=3))


@needs_contracts
def test_contract_refuses_out_of_range_nodes_and_shapes() -> None:
    tree = MerkleTree(fanout=4, depth=2)
    with pytest.raises(icontract.ViolationError):
        tree.children_hashes(2, 0)  # leaves have no children
    with pytest.raises(icontract.ViolationError):
        tree.children_hashes(1, 4)
    with pytest.raises(icontract.ViolationError):
        MerkleTree(fanout=1)
    with pytest.raises(icontract.ViolationError):
        MerkleTree(fanout=16, depth=6)  # 16M leaves


@needs_contracts
def test_contract_refuses_answers_to_questions_not_asked() -> None:
    local = MerkleTree([(b"a", b"1")], fanout=4, depth=1)
    walk = TreeWalk(local, MerkleTree(fanout=4, depth=1).root)
    with pytest.raises(icontract.ViolationError):
        walk.receive_children({1: (EMPTY_HASH,) * 4})
    with pytest.raises(icontract.ViolationError):
        walk.receive_leaves({0: ()})


def test_module_is_pure() -> None:
    tree = ast.parse(inspect.getsource(merkle))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported.isdisjoint({"time", "random", "datetime", "os", "socket", "asyncio", "secrets"})
