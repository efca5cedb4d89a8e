"""Quorum settings and the write/read collectors, checked against a brute-force model."""

import ast
import inspect
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

import icontract
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core import quorum
from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.quorum import (
    QuorumConfig,
    QuorumError,
    ReadCollector,
    RequestStatus,
    Target,
    WriteCollector,
    quorum_problems,
)

needs_contracts = pytest.mark.skipif(not ENABLED, reason="contracts are switched off")

PENDING, SUCCEEDED, FAILED = RequestStatus.PENDING, RequestStatus.SUCCEEDED, RequestStatus.FAILED


# Settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n": 3, "r": 0, "w": 2}, "R must be at least 1, got 0"),
        ({"n": 3, "r": 2, "w": 0}, "W must be at least 1, got 0"),
        ({"n": 3, "r": 4, "w": 2}, "R=4 exceeds N=3"),
        ({"n": 3, "r": 2, "w": 4}, "W=4 exceeds N=3"),
        ({"n": 0, "r": 1, "w": 1}, "N must be at least 1, got 0"),
        ({"n": 3, "r": 2, "w": 2, "pr": 3}, "PR=3 exceeds R=2"),
        ({"n": 3, "r": 2, "w": 2, "pw": 3}, "PW=3 exceeds W=2"),
        ({"n": 3, "r": 2, "w": 2, "pr": -1}, "PR must not be negative, got -1"),
        ({"n": "3", "r": 2, "w": 2}, "N must be an integer, got '3'"),
        ({"n": 3, "r": True, "w": 2}, "R must be an integer, got True"),
    ],
)
def test_invalid_settings_get_clear_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(QuorumError) as caught:
        QuorumConfig(sloppy=True, **settings)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(QuorumError) as caught:
        QuorumConfig(n=3, r=0, w=5, sloppy=True)
    assert caught.value.problems == ("R must be at least 1, got 0", "W=5 exceeds N=3")


def test_sloppy_must_be_a_bool() -> None:
    with pytest.raises(QuorumError, match="sloppy must be true or false, got 'yes'"):
        QuorumConfig(n=3, r=2, w=2, sloppy="yes")  # type: ignore[arg-type]


def test_n_beyond_cluster_size_is_refused() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True)
    config.validate_for_cluster(3)
    config.validate_for_cluster(10)
    with pytest.raises(QuorumError, match=r"^N=3 exceeds cluster size 2$"):
        config.validate_for_cluster(2)


def test_per_request_overrides_are_validated() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True)
    assert config.for_request(r=1, pw=2) == QuorumConfig(n=3, r=1, w=2, sloppy=True, pw=2)
    assert config.for_request() == config
    with pytest.raises(QuorumError, match="PR=3 exceeds R=2"):
        config.for_request(pr=3)
    with pytest.raises(QuorumError, match="R=4 exceeds N=3"):
        config.for_request(r=4)
    with pytest.raises(QuorumError, match="W must be an integer, got 'all'"):
        config.for_request(w="all")  # type: ignore[arg-type]


small = st.integers(min_value=-2, max_value=7)


@given(n=small, r=small, w=small, pr=small, pw=small)
def test_settings_are_valid_exactly_within_the_bounds(
    n: int, r: int, w: int, pr: int, pw: int
) -> None:
    valid = 1 <= r <= n and 1 <= w <= n and 0 <= pr <= r and 0 <= pw <= w
    assert (quorum_problems(n, r, w, pr, pw) == []) == valid
    if valid:
        QuorumConfig(n=n, r=r, w=w, sloppy=False, pr=pr, pw=pw)
    else:
        with pytest.raises(QuorumError):
            QuorumConfig(n=n, r=r, w=w, sloppy=False, pr=pr, pw=pw)


@st.composite
def configs(draw: st.DrawFn, max_n: int = 5) -> QuorumConfig:
    n = draw(st.integers(1, max_n))
    r = draw(st.integers(1, n))
    w = draw(st.integers(1, n))
    return QuorumConfig(
        n=n,
        r=r,
        w=w,
        sloppy=draw(st.booleans()),
        pr=draw(st.integers(0, r)),
        pw=draw(st.integers(0, w)),
    )


@given(configs())
def test_strict_intersection_means_every_read_quorum_meets_every_write_quorum(
    config: QuorumConfig,
) -> None:
    replicas = range(config.n)
    always_meet = all(
        set(reads) & set(writes)
        for reads in combinations(replicas, config.r)
        for writes in combinations(replicas, config.w)
    )
    assert config.is_strict_intersecting == always_meet


# Collectors against a model

Kind = Literal["ack", "nack", "timeout"]


@dataclass
class Model:
    """What a collector must decide, computed the slow obvious way."""

    targets: list[Target]
    need: int
    need_primary: int
    first_answer: dict[str, bool] = field(default_factory=dict)  # node -> answered ok
    status: RequestStatus = PENDING

    def primary(self, node: str) -> bool:
        return next(t.is_primary for t in self.targets if t.node == node)

    def oks(self, primaries_only: bool = False) -> int:
        return sum(
            ok and (self.primary(n) or not primaries_only) for n, ok in self.first_answer.items()
        )

    def could_still_succeed(self) -> bool:
        unanswered = [t for t in self.targets if t.node not in self.first_answer]
        return (
            self.oks() + len(unanswered) >= self.need
            and self.oks(primaries_only=True) + sum(t.is_primary for t in unanswered)
            >= self.need_primary
        )

    def decide(self, timed_out: bool = False) -> None:
        if self.status is not PENDING:
            return
        if self.oks() >= self.need and self.oks(primaries_only=True) >= self.need_primary:
            self.status = SUCCEEDED
        elif timed_out or not self.could_still_succeed():
            self.status = FAILED

    def apply(self, kind: Kind, node: str | None) -> None:
        if kind == "timeout":
            self.decide(timed_out=True)
            return
        assert node is not None
        self.first_answer.setdefault(node, kind == "ack")
        self.decide()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[QuorumConfig, list[Target], list[tuple[Kind, str | None]]]:
    config = draw(configs())
    count = draw(st.integers(0, config.n))
    targets = [
        Target(f"n{i}", hint_for=f"owner{i}")
        if config.sloppy and draw(st.booleans())
        else Target(f"n{i}")
        for i in range(count)
    ]
    kinds: list[Kind] = ["ack", "nack", "timeout"] if targets else ["timeout"]
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.sampled_from([t.node for t in targets]) if targets else st.none(),
            ),
            max_size=3 * len(targets) + 2,
        )
    )
    return config, targets, [(k, None if k == "timeout" else n) for k, n in events]


@given(scenarios())
def test_write_collector_decides_like_the_model(
    scenario: tuple[QuorumConfig, list[Target], list[tuple[Kind, str | None]]],
) -> None:
    config, targets, events = scenario
    collector = WriteCollector(config, targets)
    model = Model(targets, config.w, config.pw)
    model.decide()
    assert collector.status is model.status
    for kind, node in events:
        before = collector.status
        if kind == "ack":
            assert node is not None
            assert collector.ack(node) is collector.status
        elif kind == "nack":
            assert node is not None
            collector.nack(node, "disk full")
        else:
            assert collector.timeout() in {SUCCEEDED, FAILED}
        model.apply(kind, node)
        assert collector.status is model.status
        assert before is PENDING or collector.status is before
        assert collector.acked == {n for n, ok in model.first_answer.items() if ok}
        assert collector.refused.keys() == {n for n, ok in model.first_answer.items() if not ok}
        assert collector.primary_ack_count == model.oks(primaries_only=True)
        assert collector.pending == {t.node for t in targets} - model.first_answer.keys()
        assert (collector.reason is None) == (collector.status is not FAILED)
        if collector.status is PENDING:
            assert model.could_still_succeed()


@given(scenarios(), st.data())
def test_read_collector_decides_like_the_model_and_keeps_late_responses(
    scenario: tuple[QuorumConfig, list[Target], list[tuple[Kind, str | None]]],
    data: st.DataObject,
) -> None:
    config, targets, events = scenario
    collector: ReadCollector[int] = ReadCollector(config, targets)
    model = Model(targets, config.r, config.pr)
    model.decide()
    assert collector.status is model.status
    sent: dict[str, int] = {}
    for kind, node in events:
        before = collector.status
        if kind == "ack":
            assert node is not None
            payload = data.draw(st.integers(0, 2))
            collector.respond(node, payload)
            if node not in model.first_answer:
                sent[node] = payload
        elif kind == "nack":
            assert node is not None
            collector.nack(node, "read error")
        else:
            collector.timeout()
        model.apply(kind, node)
        assert collector.status is model.status
        assert before is PENDING or collector.status is before
        assert dict(collector.responses) == sent
        assert collector.primary_response_count == model.oks(primaries_only=True)
    merged = data.draw(st.integers(0, 2))
    assert collector.stale_replicas(merged) == {n for n, p in sent.items() if p != merged}


# Collectors: examples a reader can follow


def test_sloppy_write_succeeds_on_fallback_acks_unless_pw_demands_primaries() -> None:
    targets = [Target("a"), Target("d", hint_for="b"), Target("e", hint_for="c")]
    plain = WriteCollector(QuorumConfig(n=3, r=2, w=2, sloppy=True), targets)
    plain.ack("d")
    assert plain.ack("e") is SUCCEEDED

    strict_pw = WriteCollector(QuorumConfig(n=3, r=2, w=2, sloppy=True, pw=1), targets)
    strict_pw.ack("d")
    assert strict_pw.ack("e") is PENDING
    assert strict_pw.nack("a", "overloaded") is FAILED
    assert strict_pw.reason == (
        "cannot reach PW=1: 1 primary target, 1 refused; refused by a (overloaded)"
    )


def test_write_fails_as_soon_as_w_is_out_of_reach() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=False)
    collector = WriteCollector(config, [Target("a"), Target("b"), Target("c")])
    assert collector.nack("a", "disk full") is PENDING
    assert collector.nack("b", "timeout") is FAILED
    assert collector.reason == (
        "cannot reach W=2: 3 targets, 2 refused; refused by a (disk full), b (timeout)"
    )
    assert collector.ack("c") is FAILED  # decided stays decided
    assert collector.acked == {"c"}  # but the late ack is known


def test_duplicate_acks_count_once_and_a_first_refusal_sticks() -> None:
    collector = WriteCollector(
        QuorumConfig(n=3, r=2, w=2, sloppy=False), [Target("a"), Target("b")]
    )
    collector.ack("a")
    assert collector.ack("a") is PENDING
    assert collector.ack_count == 1
    collector.nack("b", "disk full")
    assert collector.ack("b") is FAILED
    assert collector.ack_count == 1


def test_too_few_targets_fail_at_once_and_timeout_names_the_silent() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True)
    assert WriteCollector(config, []).reason == "cannot reach W=2: 0 targets, 0 refused"
    assert WriteCollector(config, [Target("a")]).status is FAILED

    collector = WriteCollector(config, [Target("a"), Target("b"), Target("c")])
    collector.ack("a")
    assert collector.timeout() is FAILED
    assert collector.reason == (
        "timed out with 1 of W=2 acks, 1 of PW=0 from primaries; no answer from b, c"
    )
    done = WriteCollector(config, [Target("a"), Target("b")])
    done.ack("a")
    done.ack("b")
    assert done.timeout() is SUCCEEDED
    assert done.reason is None


def test_read_repair_covers_responses_that_arrive_after_the_decision() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=False)
    collector: ReadCollector[str] = ReadCollector(config, [Target("a"), Target("b"), Target("c")])
    collector.respond("a", "v2")
    assert collector.respond("b", "v2") is SUCCEEDED
    assert collector.stale_replicas("v2") == frozenset()
    collector.respond("c", "v1")
    assert collector.status is SUCCEEDED
    assert collector.stale_replicas("v2") == {"c"}
    assert list(collector.responses) == ["a", "b", "c"]


# Contracts


@needs_contracts
def test_contract_refuses_answers_from_strangers() -> None:
    collector = WriteCollector(QuorumConfig(n=3, r=2, w=2, sloppy=False), [Target("a")])
    with pytest.raises(icontract.ViolationError):
        collector.ack("z")
    reader: ReadCollector[int] = ReadCollector(QuorumConfig(n=1, r=1, w=1, sloppy=False), [])
    with pytest.raises(icontract.ViolationError):
        reader.respond("z", 1)


@needs_contracts
@pytest.mark.parametrize(
    ("config", "targets"),
    [
        (QuorumConfig(n=3, r=2, w=2, sloppy=True), [Target("a"), Target("a")]),
        (QuorumConfig(n=1, r=1, w=1, sloppy=True), [Target("a"), Target("b")]),
        (QuorumConfig(n=3, r=2, w=2, sloppy=False), [Target("a"), Target("d", hint_for="b")]),
    ],
    ids=["duplicate-target", "more-than-n", "fallback-in-strict-quorum"],
)
def test_contract_refuses_bad_target_lists(config: QuorumConfig, targets: list[Target]) -> None:
    with pytest.raises(icontract.ViolationError):
        WriteCollector(config, targets)
    with pytest.raises(icontract.ViolationError):
        ReadCollector(config, targets)


@needs_contracts
def test_contract_refuses_a_fallback_standing_in_for_itself() -> None:
    with pytest.raises(icontract.ViolationError):
        Target("a", hint_for="a")


def test_module_is_pure() -> None:
    tree = ast.parse(inspect.getsource(quorum))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported.isdisjoint({"time", "random", "datetime", "os", "socket", "asyncio", "secrets"})


@needs_contracts
def test_the_invariants_catch_a_collector_whose_tally_lies() -> None:
    # A planted bug: the decision says success with no answers. The next call must object.
    writer = WriteCollector(QuorumConfig(n=3, r=2, w=2, sloppy=False), [Target("a"), Target("b")])
    writer._tally.status = SUCCEEDED
    with pytest.raises(icontract.ViolationError, match="success implies W acks"):
        writer.ack("a")
    reader: ReadCollector[int] = ReadCollector(
        QuorumConfig(n=3, r=2, w=2, sloppy=False), [Target("a"), Target("b")]
    )
    reader._tally.status = SUCCEEDED
    with pytest.raises(icontract.ViolationError, match="success implies R responses"):
        reader.respond("a", 1)


def test_a_fallback_added_later_counts_toward_w_never_toward_pw() -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True, pw=2)
    writer = WriteCollector(config, [Target("a"), Target("b"), Target("c")])
    writer.ack("a")
    writer.add_fallback(Target("d", hint_for="b"))
    assert writer.stand_ins == {"d": "b"}
    assert writer.ack("d") is PENDING  # W=2 acks, but only one from primaries (PW=2)
    assert writer.ack_count == 2
    assert writer.primary_ack_count == 1
    assert writer.ack("c") is SUCCEEDED


@needs_contracts
@pytest.mark.parametrize(
    ("sloppy", "fallback"),
    [
        (False, Target("d", hint_for="b")),  # no fallbacks under a strict quorum
        (True, Target("d", hint_for="z")),  # stands in for a node that is not a target
        (True, Target("c", hint_for="b")),  # a node that is a target already
        (True, Target("e", hint_for="a")),  # a second stand-in for a
    ],
    ids=["strict", "not-a-primary", "already-a-target", "second-stand-in"],
)
def test_contract_refuses_a_bad_fallback(sloppy: bool, fallback: Target) -> None:
    writer = WriteCollector(
        QuorumConfig(n=3, r=2, w=2, sloppy=sloppy), [Target("a"), Target("b"), Target("c")]
    )
    if sloppy:
        writer.add_fallback(Target("d", hint_for="a"))
    with pytest.raises(icontract.ViolationError):
        writer.add_fallback(fallback)


@needs_contracts
def test_the_invariant_refuses_two_stand_ins_for_one_replica() -> None:
    with pytest.raises(icontract.ViolationError, match="different replica"):
        WriteCollector(
            QuorumConfig(n=3, r=2, w=2, sloppy=True),
            [Target("d", hint_for="b"), Target("e", hint_for="b")],
        )


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6), st.sampled_from(["ack", "nack"])
)
def test_waiting_on_and_outstanding_agree_with_pending(answers: list[str], how: str) -> None:
    targets = [Target("a"), Target("b"), Target("c", hint_for="z")]
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True)
    writer = WriteCollector(config, targets)
    reader: ReadCollector[int] = ReadCollector(config, targets)
    for node in answers:
        if writer.is_target(node):
            writer.ack(node) if how == "ack" else writer.nack(node, "no")
            reader.respond(node, 1) if how == "ack" else reader.nack(node, "no")
        for c in (writer, reader):
            assert c.outstanding() == len(c.pending)
            assert all(c.waiting_on(n) == (n in c.pending) for n in ("a", "b", "c", "d"))
