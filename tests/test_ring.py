"""The ring: MD5 placement, balanced claims that move little, and preference lists."""

import hashlib
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core import ring as ring_module
from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.ring import (
    MAX_Q,
    RING_BITS,
    Owners,
    Partitioner,
    Ring,
    TokenRing,
    hash_key,
    is_balanced,
    moved,
    moves_only_from,
    moves_only_to,
    repeat_windows,
    token_position,
)

needs_contracts = pytest.mark.skipif(not ENABLED, reason="contracts are switched off")

keys = st.binary(max_size=24)
powers_of_two = st.sampled_from([1, 2, 4, 8, 16, 32, 64])


def reference_preference(ring: Ring, p: int, n: int) -> list[str]:
    """The preference list as the issue states it, written the slow, obvious way."""
    order: list[str] = []
    for i in range(ring.q):
        owner = ring.owners[(p + i) % ring.q]
        if owner not in order:
            order.append(owner)
    order += [v for v in ring.nodes if v not in order]
    if not ring.zones:
        return order[:n]
    zone = dict(ring.zones)
    picked: list[str] = []
    for v in order:
        if len(picked) < n and zone[v] not in {zone[u] for u in picked}:
            picked.append(v)
    for v in order:
        if len(picked) < n and v not in picked:
            picked.append(v)
    return picked


@dataclass
class History:
    """A ring built by create and then a sequence of joins and leaves, with every step kept."""

    rings: list[Ring]
    ops: list[tuple[str, str]]


@st.composite
def histories(draw: st.DrawFn, zoned: bool = False, max_ops: int = 12) -> History:
    q = draw(powers_of_two)
    target_n = draw(st.integers(1, 4))
    k = draw(st.integers(1, 6))
    names = iter(f"n{i}" for i in range(1000))
    nodes = [next(names) for _ in range(k)]
    zone_names = st.sampled_from(["az-a", "az-b", "az-c", "az-d"])
    zones = {v: draw(zone_names) for v in nodes} if zoned else None
    ring = Ring.create(nodes, q, zones=zones, target_n=target_n)
    rings, ops = [ring], []
    for join, pick in draw(
        st.lists(st.tuples(st.booleans(), st.integers(0, 99)), max_size=max_ops)
    ):
        if join or len(ring.nodes) == 1:
            node = next(names)
            ring = ring.join(node, draw(zone_names) if zoned else None)
            ops.append(("join", node))
        else:
            node = ring.nodes[pick % len(ring.nodes)]
            ring = ring.leave(node)
            ops.append(("leave", node))
        rings.append(ring)
    return History(rings, ops)


def replay(history: History) -> Ring:
    ring = Ring.create(
        history.rings[0].nodes, history.rings[0].q, target_n=history.rings[0].target_n
    )
    for op, node in history.ops:
        ring = ring.join(node) if op == "join" else ring.leave(node)
    return ring


# --- Placement ----------------------------------------------------------------------------------


def test_hash_key_fixed_vectors() -> None:
    # Any implementation, in any language, must place these keys here.
    assert hash_key(b"hello") == 0x5D41402ABC4B2A76B9719D911017C592
    assert hash_key(b"") == 0xD41D8CD98F00B204E9800998ECF8427E
    assert token_position("node-a", 7) == hash_key(b"node-a/7")
    assert Ring.create(["a"], 1024).partition_of(b"hello") == 373  # top 10 bits of 0x5d41...


@given(keys)
def test_hash_key_is_md5_big_endian(key: bytes) -> None:
    assert hash_key(key) == int(hashlib.md5(key).hexdigest(), 16)


@given(keys, st.integers(0, 16))
def test_partition_of_is_the_top_bits(key: bytes, bits: int) -> None:
    ring = Ring.create(["a", "b", "c"], 1 << bits)
    p = ring.partition_of(key)
    assert p == hash_key(key) >> (RING_BITS - bits)
    start, end = ring.partition_bounds(p)
    assert start <= hash_key(key) < end


# --- Claims -------------------------------------------------------------------------------------


def test_create_balances_and_keeps_windows_distinct() -> None:
    """Exhaustive over small rings: the claim stated in Ring.create's docstring."""
    for q in (1, 2, 4, 8, 16, 32, 64, 128):
        for k in range(1, q + 3):
            ring = Ring.create([f"v{i:03d}" for i in range(k)], q)
            assert is_balanced(ring.owners, ring.nodes)
            for n in range(1, 5):
                if k >= n and (q % k == 0 or n < k <= q // n):
                    assert repeat_windows(ring.owners, n) == 0, (q, k, n)
    for k in (64, 100, 200, 341):
        ring = Ring.create([f"v{i:03d}" for i in range(k)], 1024)
        assert ring.repeat_windows(3) == 0
        assert max(ring.ownership().values()) - min(ring.ownership().values()) <= 1


@given(histories())
def test_claims_stay_balanced_and_move_only_the_changing_node(history: History) -> None:
    for (op, node), before, after in zip(
        history.ops, history.rings[:-1], history.rings[1:], strict=True
    ):
        assert is_balanced(after.owners, after.nodes)
        assert after.q == before.q
        if op == "join":
            assert set(after.nodes) == {*before.nodes, node}
            assert moves_only_to(before.owners, after.owners, node)
            # The fewest moves balance allows: the newcomer gets floor(q / k).
            assert moved(before.owners, after.owners) == before.q // len(after.nodes)
        else:
            assert set(after.nodes) == set(before.nodes) - {node}
            assert moves_only_from(before.owners, after.owners, node)
            assert moved(before.owners, after.owners) == before.ownership()[node]


@given(histories())
def test_claims_are_deterministic(history: History) -> None:
    assert replay(history) == history.rings[-1]


@given(
    st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=12, unique=True), st.randoms()
)
def test_create_ignores_input_order(nodes: list[str], rnd: random.Random) -> None:
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    assert Ring.create(nodes, 64) == Ring.create(shuffled, 64)
    assert TokenRing.create(nodes, 4) == TokenRing.create(shuffled, 4)


def test_claims_agree_across_processes() -> None:
    """Hash randomisation must not leak into a claim: other processes compute the same ring."""
    script = (
        "from dynamo_ref.core.ring import Ring\n"
        "r = Ring.create(['c', 'a', 'b', 'e', 'd'], 128)\n"
        "for v in ['f', 'g', 'h']: r = r.join(v)\n"
        "r = r.leave('b').leave('g').join('i')\n"
        "print(','.join(r.owners))\n"
    )
    here = Ring.create(["c", "a", "b", "e", "d"], 128)
    for v in ["f", "g", "h"]:
        here = here.join(v)
    here = here.leave("b").leave("g").join("i")
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "DYNAMO_REF_CONTRACTS": "0"}
        out = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip().split(",") == list(here.owners)


def test_joins_keep_a_clean_large_ring_clean() -> None:
    ring = Ring.create([f"v{i:02d}" for i in range(64)], 1024)
    assert ring.repeat_windows(3) == 0
    for i in range(8):
        ring = ring.join(f"w{i}")
        assert ring.repeat_windows(3) == 0


def test_more_nodes_than_partitions() -> None:
    ring = Ring.create([f"v{i}" for i in range(6)], 4)
    assert sorted(ring.ownership().values()) == [0, 0, 1, 1, 1, 1]
    joined = ring.join("z")
    assert joined.owners == ring.owners
    assert joined.preference_list(b"k", 7)[-3:] == tuple(
        v for v in joined.nodes if v not in joined.owners
    )
    shrunk = joined.leave(joined.owners[0])
    assert is_balanced(shrunk.owners, shrunk.nodes)


# --- Preference lists ---------------------------------------------------------------------------


@given(histories(zoned=False, max_ops=6), keys, st.integers(1, 8))
def test_preference_list_walks_clockwise_over_distinct_nodes(
    history: History, key: bytes, n: int
) -> None:
    ring = history.rings[-1]
    p = ring.partition_of(key)
    pref = ring.preference_list(key, n)
    assert list(pref) == reference_preference(ring, p, n)
    assert len(pref) == min(n, len(ring.nodes)) == len(set(pref))
    assert pref[0] == ring.owners[p]
    assert pref == ring.preference_list_for_partition(p, n)


@given(histories(zoned=True, max_ops=6), keys, st.integers(1, 6))
def test_preference_list_takes_distinct_zones_first(history: History, key: bytes, n: int) -> None:
    ring = history.rings[-1]
    pref = ring.preference_list(key, n)
    assert list(pref) == reference_preference(ring, ring.partition_of(key), n)
    zones_used = [ring.zone(v) for v in pref]
    distinct = min(n, len({z for _, z in ring.zones}))
    assert len(set(zones_used[:distinct])) == distinct
    assert len(pref) == min(n, len(ring.nodes)) == len(set(pref))


@given(histories(zoned=True, max_ops=6), keys, st.integers(1, 6))
def test_extended_list_is_every_node_after_the_preference_list(
    history: History, key: bytes, n: int
) -> None:
    ring = history.rings[-1]
    pref = ring.preference_list(key, n)
    extended = ring.extended_preference_list(key, n)
    assert extended[: len(pref)] == pref
    assert sorted(extended) == sorted(ring.nodes)
    # Past the preference list, the fallbacks come in clockwise order.
    clockwise = reference_preference(
        Ring(ring.q, ring.owners, ring.nodes, target_n=ring.target_n),
        ring.partition_of(key),
        len(ring.nodes),
    )
    assert [v for v in clockwise if v not in pref] == list(extended[len(pref) :])


@given(histories(max_ops=6), st.integers(1, 4))
def test_partitions_replicated_by_matches_the_preference_lists(history: History, n: int) -> None:
    ring = history.rings[-1]
    total = 0
    for node in ring.nodes:
        replicated = ring.partitions_replicated_by(node, n)
        total += len(replicated)
        for p in range(ring.q):
            assert (p in replicated) == (node in ring.preference_list_for_partition(p, n))
    assert total == ring.q * min(n, len(ring.nodes))


def test_zones_fill_with_next_nodes_when_too_few() -> None:
    zones = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
    ring = Ring.create(zones, 16, zones=zones)
    for p in range(ring.q):
        pref = ring.preference_list_for_partition(p, 3)
        assert {ring.zone(v) for v in pref[:2]} == {"a", "b"}
        assert len(set(pref)) == 3
    assert ring.join("c1", "c").preference_list_for_partition(0, 3)


# --- Strategy 1 ---------------------------------------------------------------------------------


@given(
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True),
    st.integers(1, 8),
    keys,
    st.integers(1, 5),
)
def test_token_ring_places_and_moves_like_consistent_hashing(
    nodes: list[str], tokens: int, key: bytes, n: int
) -> None:
    ring = TokenRing.create(nodes, tokens)
    assert ring.partition_count == len(nodes) * tokens
    positions = [pos for pos, _ in ring.tokens]
    assert positions == sorted(positions)
    assert {(token_position(v, i), v) for v in nodes for i in range(tokens)} == set(ring.tokens)
    assert sum(ring.key_space_share().values()) == pytest.approx(1.0)
    pref = ring.preference_list(key, n)
    assert len(pref) == min(n, len(nodes)) == len(set(pref))
    assert pref[0] == ring.owner_at(hash_key(key))
    extended = ring.extended_preference_list(key, n)
    assert extended[: len(pref)] == pref
    assert sorted(extended) == sorted(nodes)
    joined = ring.join("z")
    assert joined.preference_list(key, 1)[0] in (pref[0], "z")
    if len(nodes) > 1:
        left = ring.leave(nodes[0])
        if pref[0] != nodes[0]:
            assert left.preference_list(key, 1)[0] == pref[0]


def test_both_strategies_are_partitioners() -> None:
    strategies: list[Partitioner] = [Ring.create(["a", "b"], 8), TokenRing.create(["a", "b"], 2)]
    for strategy in strategies:
        assert isinstance(strategy, Partitioner)
        assert strategy.join("c").leave("a").nodes == ("b", "c")
        assert strategy.preference_list(b"k", 2) == strategy.preference_list_for_partition(
            strategy.partition_of(b"k"), 2
        )


def test_strategy_three_spreads_load_evenly_where_tokens_do_not() -> None:
    nodes = [f"v{i:02d}" for i in range(32)]
    even = Ring.create(nodes, 1024).key_space_share().values()
    tokens = TokenRing.create(nodes, 32).key_space_share().values()
    assert max(even) - min(even) <= 1 / 1024
    assert max(tokens) - min(tokens) > 1 / 1024


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, -4, 3, 1000, 2 * MAX_Q])
def test_q_must_be_a_power_of_two(q: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Ring.create(["a"], q)


def test_bad_input_is_refused_with_a_clear_error() -> None:
    ring = Ring.create(["a", "b"], 8)
    with pytest.raises(ValueError, match="at least one node"):
        Ring.create([], 8)
    with pytest.raises(ValueError, match="duplicate"):
        Ring.create(["a", "a"], 8)
    with pytest.raises(TypeError, match="collection"):
        Ring.create("ab", 8)
    with pytest.raises(ValueError, match="non-empty string"):
        Ring.create([""], 8)
    for call in (ring.preference_list, ring.extended_preference_list):
        with pytest.raises(ValueError, match="at least 1"):
            call(b"k", 0)
    with pytest.raises(ValueError, match="outside"):
        ring.preference_list_for_partition(8, 3)
    with pytest.raises(ValueError, match="not in the ring"):
        ring.leave("z")
    with pytest.raises(ValueError, match="already in the ring"):
        ring.join("a")
    with pytest.raises(ValueError, match="last node"):
        ring.leave("a").leave("b")
    with pytest.raises(ValueError, match="no zones"):
        ring.join("c", "az-1")
    zoned = Ring.create(["a", "b"], 8, zones={"a": "x", "b": "y"})
    with pytest.raises(ValueError, match="has zones"):
        zoned.join("c")
    with pytest.raises(ValueError, match="have none"):
        Ring.create(["a", "b"], 8, zones={"a": "x"})
    with pytest.raises(ValueError, match="not in the ring"):
        Ring.create(["a"], 8, zones={"a": "x", "b": "y"})
    with pytest.raises(ValueError, match="owned by nodes not in the ring"):
        Ring(2, ("a", "z"), ("a",))
    with pytest.raises(ValueError, match="entries"):
        Ring(4, ("a",), ("a",))
    with pytest.raises(TypeError):
        ring.preference_list("text", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens_per_node"):
        TokenRing.create(["a"], 0)
    with pytest.raises(ValueError, match="not in the ring"):
        TokenRing.create(["a"], 1).leave("b")


# --- Contracts ----------------------------------------------------------------------------------


@needs_contracts
def test_claim_contracts_fire(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(icontract.ViolationError):
        ring_module._claim_join(("a",) * 8, ("a", "b"), "c", 3)  # unbalanced input
    monkeypatch.setattr(ring_module, "_spread_claim", lambda order, q: (order[0],) * q)
    with pytest.raises(icontract.ViolationError, match="is_balanced"):
        Ring.create(["a", "b"], 8)
    monkeypatch.undo()
    real_claim = ring_module._claim_join

    def claim_that_also_swaps(owners: Owners, nodes: Owners, node: str, target_n: int) -> Owners:
        """A balanced claim that also trades two untouched partitions between other nodes."""
        claimed = list(real_claim(owners, nodes, node, target_n))
        i = next(
            i
            for i in range(len(owners) - 1)
            if claimed[i] == owners[i] != node != claimed[i + 1] != claimed[i]
        )
        claimed[i], claimed[i + 1] = claimed[i + 1], claimed[i]
        return tuple(claimed)

    monkeypatch.setattr(ring_module, "_claim_join", claim_that_also_swaps)
    with pytest.raises(icontract.ViolationError, match="moves_only_to"):
        Ring.create(["a", "b", "c"], 16).join("d")


@needs_contracts
def test_preference_list_contract_fires_on_a_corrupt_table() -> None:
    ring = Ring.create(["a", "b", "c"], 2)
    ring._tables[3] = (("a", "a", "b"), ("a", "b", "c"))
    with pytest.raises(icontract.ViolationError, match="is_preference_list"):
        ring.preference_list_for_partition(0, 3)
