"""The contracts made cheaper still refuse what they were written to refuse.

Each rewritten condition is checked two ways: it agrees with the formulation it replaced on
generated inputs (true and false cases alike), and the contract as attached to its function
is false on the bad result it exists to catch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import icontract
import icontract._represent
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.node_versions import dvv_covers, only_covered_dropped, reconcile_dvv
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
)

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
