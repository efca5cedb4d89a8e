"""Vector clocks: partial-order laws, merge as least upper bound, pruning's one-sided safety."""

import math

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.vclock import BIG_VCLOCK, Order, VClock

# A small alphabet and small counters, so that related and equal clocks come up often.
NODES = ("a", "b", "c", "d", "e")
STAMPS = (0.0, 1.0, 50.0, 100.0, 1000.0)

entry = st.tuples(st.integers(1, 3), st.sampled_from(STAMPS))
clocks = st.dictionaries(st.sampled_from(NODES), entry).map(VClock.of)

# Wider clocks for pruning: up to 14 nodes, timestamps spread over a day and a half.
WIDE_NODES = tuple(f"n{i:02d}" for i in range(14))
wide_clocks = st.dictionaries(
    st.sampled_from(WIDE_NODES),
    st.tuples(st.integers(1, 3), st.floats(0.0, 130_000.0)),
).map(VClock.of)


@st.composite
def below(draw: st.DrawFn, clock: VClock) -> VClock:
    """A clock pointwise <= ``clock``."""
    out: dict[str, tuple[int, float]] = {}
    for node, counter, ts in clock.entries():
        c = draw(st.integers(0, counter))
        if c:
            out[node] = (c, ts)
    return VClock.of(out)


def pointwise_le(a: VClock, b: VClock) -> bool:
    return all(a.counter(n) <= b.counter(n) for n in set(a) | set(b))


# -- partial order ---------------------------------------------------------------------------


@given(clocks)
def test_reflexive(a: VClock) -> None:
    assert a.compare(a) is Order.EQUAL
    assert a.descends(a)
    assert not a.dominates(a)


@given(clocks, clocks)
def test_antisymmetric(a: VClock, b: VClock) -> None:
    if a.descends(b) and b.descends(a):
        assert a.compare(b) is Order.EQUAL
        assert all(a.counter(n) == b.counter(n) for n in NODES)


@given(st.data(), clocks)
def test_transitive(data: st.DataObject, a: VClock) -> None:
    b = data.draw(below(a))
    c = data.draw(below(b))
    assert a.descends(b)
    assert b.descends(c)
    assert a.descends(c)
    if a.dominates(b) or b.dominates(c):
        assert a.compare(c) is Order.AFTER


@given(clocks, clocks, clocks)
def test_transitive_unconstrained(a: VClock, b: VClock, c: VClock) -> None:
    if a.descends(b) and b.descends(c):
        assert a.descends(c)


@given(clocks, clocks)
def test_compare_matches_pointwise_definition(a: VClock, b: VClock) -> None:
    ge, le = pointwise_le(b, a), pointwise_le(a, b)
    expected = {
        (True, True): Order.EQUAL,
        (True, False): Order.AFTER,
        (False, True): Order.BEFORE,
        (False, False): Order.CONCURRENT,
    }[(ge, le)]
    assert a.compare(b) is expected
    assert a.descends(b) == ge
    assert a.dominates(b) == (ge and not le)
    assert b.compare(a) is expected.flip()


@given(clocks, clocks)
def test_timestamps_do_not_affect_order(a: VClock, b: VClock) -> None:
    restamped = VClock.of({n: (c, 7.0) for n, c, _ in b.entries()})
    assert a.compare(b) is a.compare(restamped)


# -- merge is the least upper bound ----------------------------------------------------------


@given(clocks, clocks)
def test_merge_is_upper_bound(a: VClock, b: VClock) -> None:
    m = a.merge(b)
    assert m.descends(a)
    assert m.descends(b)


@given(clocks, clocks, clocks)
def test_merge_is_least(a: VClock, b: VClock, u: VClock) -> None:
    if u.descends(a) and u.descends(b):
        assert u.descends(a.merge(b))


@given(clocks, clocks, clocks, st.sampled_from(NODES))
def test_merge_is_least_for_constructed_bounds(a: VClock, b: VClock, c: VClock, node: str) -> None:
    # Upper bounds built on purpose, since random ones rarely bound both.
    u = a.merge(b).merge(c).increment(node, 5.0)
    assert u.descends(a.merge(b))
    assert u.dominates(a.merge(b))


@given(clocks, clocks)
def test_merge_commutative(a: VClock, b: VClock) -> None:
    assert a.merge(b) == b.merge(a)


@given(clocks, clocks, clocks)
def test_merge_associative(a: VClock, b: VClock, c: VClock) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(clocks)
def test_merge_idempotent_and_empty_is_identity(a: VClock) -> None:
    assert a.merge(a) == a
    assert a.merge(VClock.empty()) == a
    assert VClock.empty().merge(a) == a


@given(clocks, clocks)
def test_merge_of_related_is_the_larger(a: VClock, b: VClock) -> None:
    if a.descends(b):
        assert a.merge(b).compare(a) is Order.EQUAL


# -- increment -------------------------------------------------------------------------------


@given(clocks, st.sampled_from((*NODES, "z")), st.sampled_from(STAMPS))
def test_increment_strictly_dominates(a: VClock, node: str, now: float) -> None:
    b = a.increment(node, now)
    assert b.compare(a) is Order.AFTER
    assert b.dominates(a)
    assert b.counter(node) == a.counter(node) + 1
    assert b.last_update(node) == now
    assert all(b.counter(n) == a.counter(n) for n in NODES if n != node)


@given(clocks, st.sampled_from(NODES))
def test_increments_after_a_common_past_are_concurrent(base: VClock, node: str) -> None:
    # Two different nodes writing on the same context produce siblings.
    x = base.increment(node, 1.0)
    y = base.increment("z", 1.0)
    assert x.compare(y) is Order.CONCURRENT


# -- canonical form, identity, serialization -------------------------------------------------


@given(st.dictionaries(st.sampled_from(NODES), entry))
def test_canonical_form_independent_of_insertion_order(d: dict[str, tuple[int, float]]) -> None:
    a = VClock.of(d)
    b = VClock.of(dict(reversed(list(d.items()))))
    assert a == b
    assert hash(a) == hash(b)
    assert a.entries() == b.entries()
    assert [n for n, _, _ in a.entries()] == sorted(d)
    assert list(a) == sorted(d)


@given(clocks)
def test_dict_round_trip(a: VClock) -> None:
    assert VClock.from_dict(a.to_dict()) == a
    as_json = {n: [c, t] for n, (c, t) in a.to_dict().items()}
    assert VClock.from_dict(as_json) == a


@pytest.mark.parametrize(
    "bad",
    [
        {"a": (0, 1.0)},
        {"a": (-1, 1.0)},
        {"a": (True, 1.0)},
        {"a": (1.5, 1.0)},
        {"a": (1, math.nan)},
        {"a": (1, math.inf)},
        {"a": (1, 10**400)},
        {"a": (1, "1.0")},
        {"a": (1,)},
        {"a": "1,1"},
        {1: (1, 1.0)},
    ],
)
def test_from_dict_rejects_bad_input(bad: dict[object, object]) -> None:
    with pytest.raises(ValueError, match="vector clock"):
        VClock.from_dict(bad)


def test_immutable() -> None:
    a = VClock.of({"a": (1, 0.0)})
    with pytest.raises(AttributeError):
        a._c = {}
    b = a.increment("a", 1.0)
    assert a.counter("a") == 1
    assert b.counter("a") == 2


def test_structural_versus_causal_equality() -> None:
    a = VClock.of({"a": (1, 0.0)})
    b = VClock.of({"a": (1, 9.0)})
    assert a != b
    assert a.compare(b) is Order.EQUAL
    assert a.merge(b) == b


# -- pruning ---------------------------------------------------------------------------------


@given(wide_clocks, wide_clocks, st.floats(0.0, 200_000.0))
def test_pruned_clock_never_looks_newer(c: VClock, y: VClock, now: float) -> None:
    p = c.prune(now)
    assert set(p.entries()) <= set(c.entries())
    assert c.descends(p)
    if p.descends(y):
        assert c.descends(y)
    if p.compare(y) is Order.AFTER:
        assert c.compare(y) is Order.AFTER
    # The contrapositive, as the issue states it: concurrent or older stays not-newer.
    if c.compare(y) in (Order.CONCURRENT, Order.BEFORE):
        assert p.compare(y) in (Order.CONCURRENT, Order.BEFORE)


@given(
    c=wide_clocks,
    now=st.floats(0.0, 200_000.0),
    small=st.integers(0, 6),
    extra=st.integers(0, 8),
    young=st.floats(0.0, 100.0),
    old=st.floats(0.0, 100_000.0),
)
def test_prune_follows_its_rule(
    *, c: VClock, now: float, small: int, extra: int, young: float, old: float
) -> None:
    big = small + extra
    p = c.prune(now, small=small, big=big, young=young, old=old)
    kept = {n for n, _, _ in p.entries()}
    dropped = [(ts, n) for n, _, ts in c.entries() if n not in kept]
    # Never below small, never an entry younger than `young`.
    assert len(p) >= min(small, len(c))
    assert all(now - ts >= young for ts, _ in dropped)
    # Oldest first: every dropped entry is older than every kept one.
    if dropped:
        assert len(c) > small
        if kept:
            assert max(dropped) < min((ts, n) for n, _, ts in p.entries())
    # Stopping was forced: the oldest kept entry (if over small) may not go.
    if len(p) > small:
        oldest_ts, _ = min((ts, n) for n, _, ts in p.entries())
        age = now - oldest_ts
        assert age < young or (len(p) <= big and age <= old)


def test_paper_threshold_drops_the_oldest_entry() -> None:
    # Eleven writers, all idle for an hour: the clock is cut to the paper's 10.
    now = 10_000.0
    c = VClock.of({f"n{i:02d}": (1, now - 3600.0 - i) for i in range(11)})
    p = c.prune(now)
    assert len(p) == BIG_VCLOCK
    assert "n10" not in p  # the oldest timestamp
    assert p.prune(now) == p


def test_young_entries_are_never_pruned() -> None:
    now = 10_000.0
    c = VClock.of({f"n{i:02d}": (1, now - 5.0) for i in range(15)})
    assert c.prune(now) == c


def test_old_entries_go_between_small_and_big() -> None:
    now = 200_000.0
    stale = {f"s{i}": (1, 0.0) for i in range(4)}
    fresh = {f"f{i}": (1, now - 60.0) for i in range(3)}
    c = VClock.of(stale | fresh)  # 7 entries: above small (5), below big (10)
    p = c.prune(now)
    assert len(p) == 5
    assert set(fresh) <= set(p)


def test_pruning_creates_a_false_sibling() -> None:
    # y is an ancestor of c, but c's entry for y's node is the oldest and gets pruned.
    now = 100_000.0
    y = VClock.of({"old": (1, 0.0)})
    c = y
    for i in range(10):
        c = c.increment(f"w{i}", now - 60.0)
    assert c.compare(y) is Order.AFTER
    p = c.prune(now)
    assert "old" not in p
    assert p.compare(y) is Order.CONCURRENT  # a false sibling, not a lost write


def test_pruning_can_make_a_concurrent_clock_look_older() -> None:
    # The danger the age threshold guards against: c is concurrent with y only through its
    # oldest entry; pruning drops it, the pruned c looks older than y, and reconcile would
    # discard it (a lost write).
    now = 100_000.0
    others = VClock.of({f"w{i}": (1, now - 60.0) for i in range(10)})
    c = VClock.of({"gone": (1, 0.0)} | others.to_dict())
    y = others.increment("w3", now)
    assert c.compare(y) is Order.CONCURRENT
    assert c.prune(now).compare(y) is Order.BEFORE
    # Had every entry been updated less than `young` seconds ago, pruning would refuse.
    recent = VClock.of({n: (counter, now - 1.0) for n, counter, _ in c.entries()})
    assert recent.prune(now) == recent
    assert recent.prune(now).compare(y) is Order.CONCURRENT


# -- contracts -------------------------------------------------------------------------------


@pytest.mark.skipif(not ENABLED, reason="contracts switched off")
def test_contracts_fire_on_bad_arguments() -> None:
    with pytest.raises(icontract.ViolationError):
        VClock.of({"a": (0, 1.0)})
    with pytest.raises(icontract.ViolationError):
        VClock.empty().increment("a", math.nan)
    with pytest.raises(icontract.ViolationError):
        VClock.empty().prune(0.0, small=5, big=3)
