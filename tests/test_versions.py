"""Sibling sets: reconcile to a maximal antichain, writes with a read context, LWW, digests."""

import math

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.vclock import Order, VClock
from dynamo_ref.core.versions import (
    Mode,
    Siblings,
    Version,
    digest,
    encode,
    is_antichain,
    merge,
    merge_context,
    new_version,
    put,
    reconcile,
    reconcile_for,
    reconcile_lww,
)

NODES = ("a", "b", "c", "d")
FRESH = "z"  # a coordinator no generated clock mentions
STAMPS = (0.0, 1.0, 50.0)

clocks = st.dictionaries(
    st.sampled_from(NODES), st.tuples(st.integers(1, 3), st.sampled_from(STAMPS))
).map(VClock.of)
values = st.one_of(st.none(), st.binary(max_size=2))
versions = st.builds(
    Version,
    value=values,
    clock=clocks,
    timestamp=st.sampled_from(STAMPS),
    writer=st.sampled_from(NODES),
)
version_lists = st.lists(versions, max_size=7)
sibling_sets = version_lists.map(reconcile)


def clock(**counters: int) -> VClock:
    return VClock.from_counters(counters)


# -- reconcile -------------------------------------------------------------------------------


@given(version_lists)
def test_reconcile_is_a_dominating_antichain_of_the_input(vs: list[Version]) -> None:
    result = reconcile(vs)
    assert is_antichain(result)
    assert all(r in vs for r in result)
    # Dominates its input: everything dropped is descended by something kept.
    assert all(any(r.clock.descends(v.clock) for r in result) for v in vs)
    # Maximal: nothing kept is dominated by any input.
    assert not any(v.clock.dominates(r.clock) for r in result for v in vs)
    assert bool(result) == bool(vs)


@given(version_lists)
def test_reconcile_is_idempotent(vs: list[Version]) -> None:
    once = reconcile(vs)
    assert reconcile(once) == once
    assert reconcile(vs + vs) == once


@given(st.data(), version_lists)
def test_reconcile_ignores_input_order(data: st.DataObject, vs: list[Version]) -> None:
    shuffled = data.draw(st.permutations(vs))
    assert reconcile(shuffled) == reconcile(vs)


def test_equal_clocks_collapse_deterministically() -> None:
    c = clock(a=1)
    x = Version(b"x", c, 1.0, "a")
    y = Version(b"y", c, 1.0, "a")
    assert reconcile([x, y]) == reconcile([y, x]) == (x,)


@given(sibling_sets, sibling_sets)
def test_merge_commutative(a: Siblings, b: Siblings) -> None:
    assert merge(a, b) == merge(b, a)


@given(sibling_sets, sibling_sets, sibling_sets)
def test_merge_associative_and_idempotent(a: Siblings, b: Siblings, c: Siblings) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a


@given(version_lists, clocks)
def test_merge_context_is_least_upper_bound(vs: list[Version], u: VClock) -> None:
    context = merge_context(vs)
    assert all(context.descends(v.clock) for v in vs)
    if all(u.descends(v.clock) for v in vs):
        assert u.descends(context)
    assert merge_context(vs).compare(merge_context(reconcile(vs))) is Order.EQUAL


# -- writes with a read context --------------------------------------------------------------


@given(st.data(), sibling_sets, values, st.sampled_from((*NODES, FRESH)))
def test_put_with_read_context_drops_exactly_what_the_context_covers(
    data: st.DataObject, existing: Siblings, value: bytes | None, node: str
) -> None:
    read = data.draw(st.lists(st.sampled_from(existing), unique=True) if existing else st.just([]))
    context = merge_context(read)
    new = new_version(context, node, value, 99.0)
    assert new.clock.dominates(context)
    result = put(existing, new)
    covered = [e for e in existing if context.descends(e.clock)]
    uncovered = [e for e in existing if not context.descends(e.clock)]
    assert all(e not in result for e in covered)
    if all(e.clock.counter(node) <= context.counter(node) for e in existing):
        # The coordinator's own entry is current: the new write is a sibling of the rest.
        assert all(new.clock.compare(e.clock) is Order.CONCURRENT for e in uncovered)
        assert set(result) == {new, *uncovered}


def test_paper_figure_3() -> None:
    # D1, D2 by Sx; D3 by Sy and D4 by Sz both from D2; D5 by Sx reconciling D3 and D4.
    d1 = new_version(VClock.empty(), "Sx", b"D1", 1.0)
    d2 = new_version(d1.clock, "Sx", b"D2", 2.0)
    assert put((d1,), d2) == (d2,)
    d3 = new_version(d2.clock, "Sy", b"D3", 3.0)
    d4 = new_version(d2.clock, "Sz", b"D4", 4.0)
    siblings = put(put((d2,), d3), d4)
    assert set(siblings) == {d3, d4}
    # A replica that still has D2 and hears only of D4 keeps D4.
    assert merge((d2,), (d4,)) == (d4,)
    d5 = new_version(merge_context(siblings), "Sx", b"D5", 5.0)
    assert d5.clock.to_dict() == {"Sx": (3, 5.0), "Sy": (1, 3.0), "Sz": (1, 4.0)}
    assert put(siblings, d5) == (d5,)
    # Out of order delivery changes nothing.
    assert merge((d5,), (d1,)) == (d5,)


def test_stale_coordinator_counter_loses_a_write() -> None:
    # The documented limit of per-node clocks (dotted version vectors fix it): two clients
    # read the empty context and write through the same coordinator.
    first = new_version(VClock.empty(), "a", b"first", 1.0)
    second = new_version(VClock.empty(), "a", b"second", 2.0)
    assert first.clock.compare(second.clock) is Order.EQUAL
    assert len(put((first,), second)) == 1


# -- tombstones ------------------------------------------------------------------------------


def test_delete_is_a_version_with_a_clock() -> None:
    v1 = new_version(VClock.empty(), "a", b"v1", 1.0)
    gone = new_version(v1.clock, "a", None, 2.0)
    assert gone.is_tombstone
    assert not v1.is_tombstone
    assert put((v1,), gone) == (gone,)
    # A write that did not see the delete survives next to it ...
    concurrent = new_version(v1.clock, "b", b"v2", 3.0)
    both = put((gone,), concurrent)
    assert set(both) == {gone, concurrent}
    # ... and a write that did see it replaces it.
    after = new_version(merge_context(both), "a", b"v3", 4.0)
    assert put(both, after) == (after,)


@given(version_lists)
def test_tombstones_reconcile_like_values(vs: list[Version]) -> None:
    # Reconcile only looks at clocks: turning values into tombstones keeps the same clocks.
    def kill(v: Version) -> Version:
        return Version(None, v.clock, v.timestamp, v.writer)

    def alive(v: Version) -> Version:
        return Version(b"", v.clock, v.timestamp, v.writer)

    assert {r.clock for r in reconcile([kill(v) for v in vs])} == {
        r.clock for r in reconcile([alive(v) for v in vs])
    }


# -- LWW -------------------------------------------------------------------------------------


def test_lww_loses_a_concurrent_write() -> None:
    base = new_version(VClock.empty(), "a", b"base", 1.0)
    alice = new_version(base.clock, "a", b"alice", 2.0)
    bob = new_version(base.clock, "b", b"bob", 3.0)
    assert alice.clock.compare(bob.clock) is Order.CONCURRENT
    kept_vclock = reconcile_for(Mode.VCLOCK, [base, alice, bob])
    kept_lww = reconcile_for(Mode.LWW, [base, alice, bob])
    assert {v.value for v in kept_vclock} == {b"alice", b"bob"}
    assert kept_lww == (bob,)  # alice's write is gone without a trace


def test_lww_follows_skewed_clocks_over_causality() -> None:
    # The coordinator of the newer write has a clock 10 s behind.
    old = new_version(VClock.empty(), "a", b"old", 100.0)
    new = new_version(old.clock, "b", b"new", 90.0)
    assert new.clock.dominates(old.clock)
    assert reconcile([old, new]) == (new,)
    assert reconcile_lww([old, new]) == (old,)


def test_lww_breaks_timestamp_ties_by_writer() -> None:
    x = Version(b"x", clock(a=1), 5.0, "a")
    y = Version(b"y", clock(b=1), 5.0, "b")
    assert reconcile_lww([x, y]) == reconcile_lww([y, x]) == (y,)
    assert reconcile_lww([]) == ()


@given(st.data(), version_lists)
def test_lww_keeps_one_highest_version_in_any_order(data: st.DataObject, vs: list[Version]) -> None:
    result = reconcile_lww(vs)
    assert len(result) == min(1, len(vs))
    if vs:
        assert (result[0].timestamp, result[0].writer) == max((v.timestamp, v.writer) for v in vs)
        assert reconcile_lww(data.draw(st.permutations(vs))) == result


# -- digests ---------------------------------------------------------------------------------


@given(st.data(), version_lists)
def test_equal_sibling_sets_have_equal_digests(data: st.DataObject, vs: list[Version]) -> None:
    siblings = reconcile(vs)
    shuffled = data.draw(st.permutations(siblings))
    assert digest(shuffled) == digest(siblings)
    assert len(digest(siblings)) == 16


@given(sibling_sets, sibling_sets)
def test_different_sibling_sets_have_different_digests(a: Siblings, b: Siblings) -> None:
    assert (set(a) == set(b)) == (digest(a) == digest(b))
    assert (set(a) == set(b)) == (encode(a) == encode(b))


def test_digest_sees_every_field() -> None:
    base = Version(b"v", VClock.of({"a": (1, 1.0)}), 1.0, "a")
    variants = [
        Version(b"w", base.clock, 1.0, "a"),  # value
        Version(b"", base.clock, 1.0, "a"),  # empty value ...
        Version(None, base.clock, 1.0, "a"),  # ... is not a tombstone
        Version(b"v", VClock.of({"a": (2, 1.0)}), 1.0, "a"),  # counter
        Version(b"v", VClock.of({"a": (1, 2.0)}), 1.0, "a"),  # clock timestamp
        Version(b"v", VClock.of({"b": (1, 1.0)}), 1.0, "a"),  # clock node
        Version(b"v", base.clock, 2.0, "a"),  # write timestamp
        Version(b"v", base.clock, 1.0, "b"),  # writer
    ]
    digests = {digest((v,)) for v in [base, *variants]}
    assert len(digests) == len(variants) + 1
    assert digest(()) not in digests


def test_digest_is_injective_across_field_boundaries() -> None:
    # Length prefixes: moving bytes between adjacent fields must change the digest.
    x = Version(b"ab", VClock.of({"a": (1, 0.0)}), 0.0, "c")
    y = Version(b"a", VClock.of({"a": (1, 0.0)}), 0.0, "bc")
    assert digest((x,)) != digest((y,))


def test_negative_zero_timestamps_digest_alike() -> None:
    x = Version(b"v", VClock.of({"a": (1, 0.0)}), 0.0, "a")
    y = Version(b"v", VClock.of({"a": (1, -0.0)}), -0.0, "a")
    assert x == y
    assert digest((x,)) == digest((y,))


# -- contracts -------------------------------------------------------------------------------


@pytest.mark.skipif(not ENABLED, reason="contracts switched off")
def test_contracts_fire_on_bad_arguments() -> None:
    with pytest.raises(icontract.ViolationError):
        Version(b"v", VClock.empty(), math.nan, "a")
    with pytest.raises(icontract.ViolationError):
        new_version(VClock.empty(), "a", b"v", math.inf)


def test_versions_are_immutable() -> None:
    v = Version(b"v", VClock.empty(), 0.0, "a")
    with pytest.raises(AttributeError):
        v.value = b"w"  # type: ignore[misc]
