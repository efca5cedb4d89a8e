"""Gossip membership (semilattice laws) and the phi accrual failure detector."""

import ast
import inspect
import random
import time

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core import membership
from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.membership import (
    Membership,
    MemberState,
    PhiAccrualDetector,
    Status,
    claims_of,
)

needs_contracts = pytest.mark.skipif(not ENABLED, reason="contracts are switched off")

# Few values per field, so equal incarnations with different fields (merge ties) are common.
states = st.builds(
    MemberState,
    incarnation=st.integers(0, 3),
    status=st.sampled_from(Status),
    address=st.sampled_from(["10.0.0.1:7000", "10.0.0.2:7000"]),
    zone=st.sampled_from([None, "", "eu-1", "us-1"]),
    claims=st.frozensets(st.integers(0, 7), max_size=3).map(claims_of),
)
views = st.dictionaries(st.sampled_from("abcde"), states, max_size=5).map(Membership)


def below(a: Membership, b: Membership) -> bool:
    """a <= b in the semilattice: b already knows everything a knows."""
    return a.merge(b) == b


# Merge laws


@given(views, views)
def test_merge_is_commutative(a: Membership, b: Membership) -> None:
    assert a.merge(b) == b.merge(a)


@given(views, views, views)
def test_merge_is_associative(a: Membership, b: Membership, c: Membership) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(views)
def test_merge_is_idempotent(a: Membership) -> None:
    assert a.merge(a) == a


@given(views, views)
def test_merge_is_an_upper_bound_of_both(a: Membership, b: Membership) -> None:
    joined = a.merge(b)
    assert below(a, joined)
    assert below(b, joined)
    assert set(joined) == set(a) | set(b)


@given(views, views)
def test_merging_never_lowers_an_incarnation(a: Membership, b: Membership) -> None:
    joined = a.merge(b)
    for node, state in [*a.items(), *b.items()]:
        assert joined[node].incarnation >= state.incarnation
        assert joined[node] in {a.get(node), b.get(node)}  # merge invents nothing


@given(st.lists(views, min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_gossip_in_any_order_converges_to_the_join(
    nodes_views: list[Membership], rng: random.Random
) -> None:
    expected = Membership()
    for view in nodes_views:
        expected = expected.merge(view)
    current = list(nodes_views)
    # Random push-pull exchanges, then one sweep each way so every view has met every other.
    for _ in range(10):
        i, j = rng.randrange(len(current)), rng.randrange(len(current))
        current[i] = current[j] = current[i].merge(current[j])
    order = list(range(len(current)))
    for i, j in zip(order, order[1:] + order[:1], strict=True):
        current[j] = current[i].merge(current[j])
    for i, j in zip(order, order[1:] + order[:1], strict=True):
        current[j] = current[i].merge(current[j])
    assert all(view == expected for view in current)


@given(views, views)
def test_a_delta_carries_everything_the_peer_lacks(a: Membership, b: Membership) -> None:
    delta = a.missing_from(b)
    assert b.merge(delta) == b.merge(a)
    assert len(delta) <= len(a)
    assert a.missing_from(a.merge(b)) == Membership()


@given(views, views)
def test_digests_agree_exactly_when_views_do(a: Membership, b: Membership) -> None:
    assert (a.digest() == b.digest()) == (a == b)
    assert (hash(a) == hash(b)) or a != b


def test_digest_takes_any_incarnation_and_partition_number() -> None:
    huge = MemberState(incarnation=2**70, status=Status.UP, address="a", claims=(2**40,))
    small = MemberState(incarnation=1, status=Status.UP, address="a", claims=(1,))
    assert Membership({"a": huge}).digest() != Membership({"a": small}).digest()


# Updates and queries


def test_a_node_announces_a_change_with_a_higher_incarnation_and_it_wins() -> None:
    old = MemberState(incarnation=1, status=Status.JOINING, address="10.0.0.1:7000")
    view = Membership({"a": old})
    new = old.successor(status=Status.UP, claims=[5, 1, 5])
    assert new == MemberState(2, Status.UP, "10.0.0.1:7000", None, (1, 5))
    updated = view.update("a", new)
    assert updated["a"] == new
    assert view["a"] == old  # views are immutable
    assert view.merge(updated)["a"] == new
    stale_gossip = Membership({"a": old.successor(status=Status.LEAVING)})  # same incarnation 2
    assert updated.merge(stale_gossip)["a"].status is Status.LEAVING  # tie: later stage wins


@needs_contracts
def test_contract_refuses_an_update_without_a_higher_incarnation() -> None:
    state = MemberState(incarnation=3, status=Status.UP, address="10.0.0.1:7000")
    view = Membership({"a": state})
    with pytest.raises(icontract.ViolationError):
        view.update("a", MemberState(incarnation=3, status=Status.LEAVING, address="x"))
    with pytest.raises(icontract.ViolationError):
        view.update("a", MemberState(incarnation=2, status=Status.UP, address="x"))


@needs_contracts
def test_contract_refuses_malformed_member_states() -> None:
    with pytest.raises(icontract.ViolationError):
        MemberState(incarnation=0, status=Status.UP, address="x", claims=(3, 1))
    with pytest.raises(icontract.ViolationError):
        MemberState(incarnation=-1, status=Status.UP, address="x")


def test_live_members_are_those_that_have_not_left() -> None:
    view = Membership(
        {
            node: MemberState(0, status, f"{node}:7000")
            for node, status in [
                ("d", Status.LEFT),
                ("b", Status.UP),
                ("a", Status.JOINING),
                ("c", Status.LEAVING),
            ]
        }
    )
    assert view.live_members() == ("a", "b", "c")
    assert view.with_status(Status.LEFT) == ("d",)
    assert list(view) == ["a", "b", "c", "d"]


@given(views, st.sampled_from("abcde"), st.floats(0.0, 1.0, exclude_max=True))
def test_gossip_peer_is_a_live_member_other_than_me(view: Membership, me: str, draw: float) -> None:
    peer = view.pick_gossip_peer(me, draw, exclude={"e"})
    candidates = [n for n in view.live_members() if n not in {me, "e"}]
    if candidates:
        assert peer in candidates
        # Draws spread over [0, 1) reach every candidate.
        reached = {
            view.pick_gossip_peer(me, i / len(candidates), {"e"}) for i in range(len(candidates))
        }
        assert reached == set(candidates)
    else:
        assert peer is None


# Failure detector


def steady(detector: PhiAccrualDetector, node: str, interval: float, count: int) -> float:
    now = 0.0
    for i in range(count):
        now = i * interval
        detector.heartbeat(node, now)
    return now


@given(
    interval=st.floats(0.05, 10.0),
    jitter=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_steady_heartbeats_keep_phi_low(interval: float, jitter: float, seed: int) -> None:
    rng = random.Random(seed)
    # The node knows its gossip period, so the detector starts from that estimate.
    detector = PhiAccrualDetector(first_interval=interval)
    now = 0.0
    worst = 0.0
    for _ in range(50):
        # Each interval within jitter of the usual one: the peer is alive and on time.
        now += interval * (1 + rng.uniform(-jitter, jitter))
        worst = max(worst, detector.phi("b", now))
        detector.heartbeat("b", now)
    assert worst < 1.0


@given(interval=st.floats(0.05, 10.0), steps=st.lists(st.floats(0.0, 5.0), max_size=40))
def test_silence_grows_phi_monotonically_past_the_threshold(
    interval: float, steps: list[float]
) -> None:
    detector = PhiAccrualDetector(threshold=8.0)
    last = steady(detector, "b", interval, 20)
    elapsed, previous = 0.0, 0.0
    for step in steps:
        elapsed += step
        phi = detector.phi("b", last + elapsed)
        assert phi >= previous
        previous = phi
    # Long enough silence always convicts: mean + pause + many deviations.
    assert not detector.is_available("b", last + 10 * interval + 60.0)


def test_a_new_heartbeat_brings_a_suspected_node_back() -> None:
    detector = PhiAccrualDetector()
    last = steady(detector, "b", 1.0, 30)
    assert not detector.is_available("b", last + 30.0)
    detector.heartbeat("b", last + 30.0)
    assert detector.phi("b", last + 30.0) < 1.0
    assert detector.is_available("b", last + 31.0)


def test_irregular_peers_are_given_more_slack_than_regular_ones() -> None:
    detector = PhiAccrualDetector()
    steady(detector, "regular", 1.0, 100)
    rng, now = random.Random(7), 0.0
    for _ in range(100):
        now += rng.expovariate(1.0)  # random-peer gossip: exponential gaps, mean 1 s
        detector.heartbeat("irregular", now)
    regular = detector.phi("regular", 99.0 + 4.0)
    irregular = detector.phi("irregular", now + 4.0)
    assert regular > detector.threshold > irregular


def test_the_window_forgets_old_intervals() -> None:
    short = PhiAccrualDetector(window=10)
    long = PhiAccrualDetector(window=1000)
    for detector in (short, long):
        now = 0.0
        for gap in [30.0] * 50 + [1.0] * 10:
            now += gap
            detector.heartbeat("b", now)
    last = 50 * 30.0 + 10 * 1.0
    assert not short.is_available("b", last + 5.0)  # judged on the recent 1 s rhythm
    assert long.is_available("b", last + 5.0)


def test_unknown_and_forgotten_nodes() -> None:
    detector = PhiAccrualDetector()
    assert detector.phi("x", 1e6) == 0.0
    assert detector.is_available("x", 1e6)
    detector.heartbeat("x", 0.0)
    assert detector.monitored() == {"x"}
    detector.forget("x")
    assert detector.monitored() == frozenset()
    assert detector.last_heartbeat("x") is None


@needs_contracts
def test_contract_refuses_time_running_backwards() -> None:
    detector = PhiAccrualDetector()
    detector.heartbeat("b", 10.0)
    with pytest.raises(icontract.ViolationError):
        detector.heartbeat("b", 9.0)
    with pytest.raises(icontract.ViolationError):
        detector.phi("b", float("nan"))
    with pytest.raises(icontract.ViolationError):
        PhiAccrualDetector(threshold=0.0)


def test_detector_reads_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock() -> float:
        raise AssertionError("the failure detector must not read a clock")

    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    monkeypatch.setattr(random, "random", no_clock)
    detector = PhiAccrualDetector()
    for t in range(5):
        detector.heartbeat("b", float(t))
    assert detector.phi("b", 4.5) == detector.phi("b", 4.5)
    assert detector.is_available("b", 4.5)
    assert not detector.is_available("b", 100.0)


def test_module_is_pure() -> None:
    tree = ast.parse(inspect.getsource(membership))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported.isdisjoint({"time", "random", "datetime", "os", "socket", "asyncio", "secrets"})
