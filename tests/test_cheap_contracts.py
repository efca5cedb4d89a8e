"""The contracts made cheaper still refuse what they were written to refuse.

Each rewritten condition is checked two ways: it agrees with the formulation it replaced on
generated inputs (true and false cases alike), and the contract as attached to its function
is false on the bad result it exists to catch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from random import Random
from types import SimpleNamespace
from typing import Any

import icontract
import icontract._represent
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core.contracts import ENABLED, QUERY, query
from dynamo_ref.core.merkle import MerkleTree
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.node_versions import (
    VersionMode,
    dvv_covers,
    is_reconciled,
    only_covered_dropped,
    reconcile_dvv,
    reconcile_mode,
)
from dynamo_ref.core.quorum import QuorumConfig, ReadCollector, Target, WriteCollector
from dynamo_ref.core.ring import Ring, TokenRing
from dynamo_ref.core.vclock import Order, VClock
from dynamo_ref.core.versions import (
    Version,
    covered_gone,
    covers,
    is_antichain,
    is_subset,
    put,
    reconcile,
    sort_key,
)
from dynamo_ref.storage.memory import MemoryEngine

NODES = ("a", "b", "c")
clocks = st.dictionaries(st.sampled_from(NODES), st.tuples(st.integers(1, 3), st.just(1.0))).map(
    VClock.of
)
versions = st.builds(
    Version,
    value=st.sampled_from([None, b"x", b"y"]),
    clock=clocks,
    timestamp=st.just(1.0),
    writer=st.sampled_from(NODES),
    dot=st.integers(0, 2),
)
lists = st.lists(versions, max_size=6)


def v(value: bytes, dot: int = 0, writer: str = "a", **counters: int) -> Version:
    return Version(value, VClock.from_counters(counters, 1.0), 1.0, writer, dot)


def refused(fn: Callable[..., Any], **values: Any) -> list[str]:
    """The text of each postcondition of ``fn`` that is false on ``values``."""
    out = []
    for contract in fn.__postconditions__:  # type: ignore[attr-defined]
        if not contract.condition(**{name: values[name] for name in contract.condition_args}):
            text = icontract._represent.inspect_lambda_condition(condition=contract.condition)
            out.append(contract.description or (text.text if text else "?"))
    return out


# ---- the same answers as the formulations they replaced -------------------------------------


@given(lists)
def test_is_antichain_agrees_with_pairwise_compare(vs: list[Version]) -> None:
    pairwise = all(
        vs[i].clock.compare(vs[j].clock) is Order.CONCURRENT
        for i in range(len(vs))
        for j in range(i + 1, len(vs))
    )
    assert is_antichain(vs) == pairwise


@given(lists, lists)
def test_covers_agrees_with_the_search_over_every_pair(
    result: list[Version], vs: list[Version]
) -> None:
    search = all(any(r.clock.descends(x.clock) for r in result) for x in vs)
    assert covers(result, vs) == search
    assert covers(result, result + vs) == all(
        any(r.clock.descends(x.clock) for r in result) for x in result + vs
    )


@given(lists, lists)
def test_is_subset_agrees_with_membership(part: list[Version], whole: list[Version]) -> None:
    assert is_subset(part, whole) == all(p in whole for p in part)
    assert is_subset(part, part + whole)


@given(lists, versions, lists)
def test_covered_gone_agrees_with_membership(
    existing: list[Version], new: Version, result: list[Version]
) -> None:
    before = all(e not in result for e in existing if new.clock.dominates(e.clock))
    assert covered_gone(existing, new, tuple(result)) == before


@given(lists, lists)
def test_only_covered_dropped_agrees_with_membership(
    vs: list[Version], kept: list[Version]
) -> None:
    before = all(x in kept or any(dvv_covers(u, x) and u != x for u in vs) for x in vs)
    assert only_covered_dropped(vs, tuple(kept)) == before


@given(st.sampled_from(VersionMode), lists, st.randoms(use_true_random=False))
def test_is_reconciled_agrees_with_reconciling_again(
    mode: VersionMode, vs: list[Version], rng: Random
) -> None:
    # The inputs as drawn (rarely reconciled), in canonical order (the order right, often a
    # version in another's history), their reconciliation (always reconciled), and that
    # shuffled (the right versions, often in the wrong order).
    done = reconcile_mode(mode, vs)
    shuffled = list(done)
    rng.shuffle(shuffled)
    for siblings in (tuple(vs), tuple(sorted(set(vs), key=sort_key)), done, tuple(shuffled)):
        assert is_reconciled(mode, siblings) == (reconcile_mode(mode, siblings) == siblings)


# ---- the contracts as attached still refuse their bad results -------------------------------

needs_contracts = pytest.mark.skipif(not ENABLED, reason="contracts are off")


@needs_contracts
def test_reconcile_refuses_a_dominated_pair_an_uncovered_input_and_a_stranger() -> None:
    old, new, other = v(b"1", a=1), v(b"2", a=2), v(b"3", b=1)
    assert refused(reconcile, versions=[old, new], result=(new,)) == []
    assert "is_antichain(result)" in refused(reconcile, versions=[old, new], result=(old, new))
    assert "covers(result, versions)" in refused(reconcile, versions=[new, other], result=(new,))
    stranger = v(b"4", c=1)
    assert "is_subset(result, versions)" in refused(reconcile, versions=[new], result=(stranger,))


@needs_contracts
def test_put_refuses_to_keep_a_version_the_new_write_covers() -> None:
    old, new = v(b"1", a=1), v(b"2", a=2)
    assert refused(put, existing=(old,), new=new, result=(new,)) == []
    assert "the versions the new write covers are gone" in refused(
        put, existing=(old,), new=new, result=(old, new)
    )


@needs_contracts
def test_reconcile_dvv_refuses_a_stranger_and_a_dropped_sibling() -> None:
    x, y = v(b"x", 1, "a"), v(b"y", 1, "b")  # concurrent: neither history has the other
    assert refused(reconcile_dvv, versions=[x, y], result=(x, y)) == []
    assert "only versions in another version's history are dropped" in refused(
        reconcile_dvv, versions=[x, y], result=(x,)
    )
    assert "is_subset(result, versions)" in refused(reconcile_dvv, versions=[x], result=(y,))


@needs_contracts
@pytest.mark.parametrize(
    "make", [lambda: Ring.create(["a", "b", "c"], 4), lambda: TokenRing.create(["a", "b", "c"], 2)]
)
def test_preference_lists_refuse_a_stranger_a_repeat_and_a_short_list(
    make: Callable[[], Ring | TokenRing],
) -> None:
    # Checked against the ring's member set now, not a scan of its node tuple.
    for corrupt in (("a", "b", "x"), ("a", "a", "b"), ("a", "b")):
        ring = make()
        ring.preference_list(b"k", 3)  # builds the table
        ring._tables[3] = tuple(corrupt for _ in ring._tables[3])
        with pytest.raises(icontract.ViolationError, match="is_preference_list"):
            ring.preference_list(b"k", 3)
        with pytest.raises(icontract.ViolationError, match="is_preference_list"):
            ring.preference_list_for_partition(0, 3)


@needs_contracts
@pytest.mark.parametrize("mode", list(VersionMode))
def test_the_store_refuses_a_dominated_pair_a_disorder_and_under_lww_a_second_version(
    mode: VersionMode,
) -> None:
    (condition,) = (c.condition for c in Replica.write.__preconditions__[0])  # type: ignore[attr-defined]

    class At:
        _mode = mode

    def accepts(*siblings: Version) -> bool:
        return bool(condition(self=At(), siblings=siblings))

    old, new, other = v(b"1", 1, a=1), v(b"2", 2, a=2), v(b"3", 1, "b", b=1)
    assert accepts()
    assert accepts(old)
    assert not accepts(old, new)  # ``new``'s history holds ``old``
    pair = tuple(sorted((new, other), key=sort_key))
    assert accepts(*pair) == (mode is not VersionMode.LWW)
    assert not accepts(*reversed(pair))


@needs_contracts
def test_the_memory_engine_refuses_a_read_index_its_trees_disagree_with() -> None:
    # Reads go through a flat dict, digests through the trees: a put must leave both holding
    # the one encoding, or anti-entropy would compare what no read returns.
    engine = MemoryEngine(lambda key: key[0] % 4)
    one, two = (v(b"1", a=1),), (v(b"2", a=2),)
    engine.put(b"k", one)
    engine.put(b"k", two)
    engine.put(b"k", ())
    assert engine.get(b"k") == ()
    assert len(engine) == 0

    class StaleDict(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, raw: bytes) -> None:  # keeps the first encoding
            self.setdefault(key, raw)

    engine._raw = StaleDict()
    engine.put(b"k", one)
    with pytest.raises(icontract.ViolationError, match="the key's tree holds the bytes reads see"):
        engine.put(b"k", two)

    class FirstOnly(MerkleTree):
        def set(self, key: bytes, raw: bytes) -> None:  # keeps the first encoding
            if self.get(key) is None:
                super().set(key, raw)

    engine = MemoryEngine(lambda key: 0)
    engine._trees[0] = FirstOnly(fanout=8, depth=2)
    engine.put(b"k", one)
    with pytest.raises(icontract.ViolationError, match="the key's tree holds the bytes reads see"):
        engine.put(b"k", two)


def _respond_contract(description: str) -> Any:
    (contract,) = (
        c
        for c in ReadCollector.respond.__postconditions__  # type: ignore[attr-defined]
        if c.description == description
    )
    return contract


def _was_pending(c: ReadCollector[int], node: str) -> bool:
    (snap,) = (
        s
        for s in ReadCollector.respond.__postcondition_snapshots__  # type: ignore[attr-defined]
        if s.name == "was_pending"
    )
    return bool(snap.capture(self=c, node=node))


@needs_contracts
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=6))
def test_a_responders_pending_state_agrees_with_the_pending_set(
    answers: list[tuple[str, bool]],
) -> None:
    # ``respond`` snapshots whether the responder was pending without building the set.
    config = QuorumConfig(n=3, r=2, w=2, sloppy=True)
    reader: ReadCollector[int] = ReadCollector(config, [Target("a"), Target("b"), Target("c")])
    for node, ok in answers:
        for n in "abcd":
            assert _was_pending(reader, n) == (n in reader.pending)
        if reader.is_target(node):
            reader.respond(node, 1) if ok else reader.nack(node, "no")


@needs_contracts
def test_a_read_response_counts_once_and_only_from_a_pending_target() -> None:
    counts_once = _respond_contract(
        "a response counts once, and only from a node that had not answered"
    )
    config = QuorumConfig(n=3, r=2, w=2, sloppy=False)
    reader: ReadCollector[int] = ReadCollector(config, [Target("a"), Target("b"), Target("c")])
    reader.nack("b", "down")

    def holds(node: str, record: bool) -> bool:
        old = SimpleNamespace(count=reader.response_count, was_pending=_was_pending(reader, node))
        if record:  # what the body did: record the response, rightly or not
            reader._responses[node] = 1
        return bool(counts_once.condition(self=reader, OLD=old))

    reader.respond("a", 1)
    assert holds("a", record=False)  # answered already: the repeat is ignored
    assert not holds("c", record=False)  # pending, and dropped
    assert holds("c", record=True)  # pending, and counted
    assert not holds("b", record=True)  # refused, and counted all the same


# ---- queries: methods the invariants are not checked around -------------------------------


def _state(obj: object) -> object:
    """Everything an object holds, as plain values to compare."""
    if isinstance(obj, dict):
        return {k: _state(x) for k, x in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return type(obj)(_state(x) for x in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return (type(obj).__name__, _state(vars(obj)))
    return obj


def _queries(cls: type) -> list[str]:
    out = []
    for name, attr in vars(cls).items():
        fn = attr.fget if isinstance(attr, property) else attr
        if callable(fn) and getattr(fn, QUERY, False):
            out.append(name)
    return out


def _changed_by_a_query(obj: object, args: dict[str, list[object]]) -> list[str]:
    """The queries of ``obj``'s class that changed ``obj``, called with every argument of
    ``args`` their parameters name."""
    changed = []
    for name in _queries(type(obj)):
        attr = inspect.getattr_static(obj, name)
        before = _state(obj)
        if isinstance(attr, property):
            getattr(obj, name)
        else:
            params = list(inspect.signature(attr).parameters)[1:]
            calls: list[list[object]] = [[]]
            for p in params:
                calls = [[*c, a] for c in calls for a in args[p]]
            for call in calls:
                getattr(obj, name)(*call)
        if _state(obj) != before:
            changed.append(name)
    return changed


_collector_steps = st.lists(
    st.tuples(st.sampled_from(["ok", "no", "timeout", "fallback"]), st.sampled_from("abcd")),
    max_size=6,
)


@given(st.booleans(), st.booleans(), _collector_steps)
def test_no_query_of_a_collector_changes_it(
    read: bool, sloppy: bool, steps: list[tuple[str, str]]
) -> None:
    config = QuorumConfig(n=3, r=2, w=2, sloppy=sloppy)
    targets = [Target("a"), Target("b"), Target("c")]
    c: WriteCollector | ReadCollector[bytes] = (
        ReadCollector(config, targets) if read else WriteCollector(config, targets)
    )
    for op, node in steps:
        if op == "ok" and c.is_target(node):
            c.respond(node, node.encode()) if isinstance(c, ReadCollector) else c.ack(node)
        elif op == "no" and c.is_target(node):
            c.nack(node, "refused")
        elif op == "timeout":
            c.timeout()
        elif (
            op == "fallback"
            and sloppy
            and isinstance(c, WriteCollector)
            and not c.is_target("d")
            and "b" not in c.stand_ins.values()
        ):
            c.add_fallback(Target("d", hint_for="b"))
        assert _changed_by_a_query(c, {"node": list("abcde"), "merged": [b"a", b"x"]}) == []
    assert len(_queries(type(c))) >= 12  # every getter and read-only method is one


def test_a_query_that_changes_its_instance_is_found() -> None:
    # The negative control of the test above: the same search, on a query that lies.
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        @property
        @query
        def value(self) -> int:
            return self.n

        @query
        def peek(self, by: int) -> int:
            self.n += by  # a planted write in a query
            return self.n

    assert _changed_by_a_query(Counter(), {"by": [0, 1]}) == ["peek"]


@needs_contracts
@needs_contracts
@pytest.mark.parametrize("cls", [ReadCollector, WriteCollector])
def test_a_query_runs_as_the_method_itself(cls: type) -> None:
    # No invariant-check wrapper: a pass-through was, once, one per invariant of the class.
    names = _queries(cls)
    assert names
    for name in names:
        attr = inspect.getattr_static(cls, name)
        fn = attr.fget if isinstance(attr, property) else attr
        assert not getattr(fn, "__is_invariant_check__", False), name
        # What it wraps, if anything, is its own contracts' checker, not invariant checks.
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
            assert not getattr(fn, "__is_invariant_check__", False), name


def test_invariants_are_checked_around_changes_and_not_around_queries() -> None:
    checked: list[int] = []

    def holds(self: Any) -> bool:
        checked.append(self.n)
        return bool(self.n >= 0)

    @icontract.invariant(holds)
    class Count:
        def __init__(self) -> None:
            self.n = 0

        def add(self, by: int) -> None:
            self.n += by

        @property
        @query
        def value(self) -> int:
            return self.n

    c = Count()
    assert checked == [0]  # after __init__
    c.add(2)
    assert checked == [0, 0, 2]  # before and after the change
    assert c.value == 2
    assert checked == [0, 0, 2]  # a query: not again
    c.n = -1  # state broken behind the class's back
    with pytest.raises(icontract.ViolationError):
        c.add(1)  # the next change finds it before it runs
