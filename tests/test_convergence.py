"""Convergence checker: diverged replicas are rejected, equal ones accepted, unreadable ones give
unknown; input read from a history's replica reads."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from dynamo_histories import H
from hypothesis import given
from hypothesis import strategies as st

from harness.checkers.convergence import check_convergence, check_convergence_history
from harness.history import HistoryError, Op


def v(value: object, **clock: int) -> dict[str, object]:
    return {"value": value, "clock": clock}


def replica_reads(reads: Mapping[str, Mapping[str, list[object] | None]]) -> list[Op]:
    h = H()
    for key, replicas in reads.items():
        for node, versions in replicas.items():
            h.invoke("c", "replica-read", None, key, node=node)
            if versions is None:
                h.fail("c", "replica-read", None, key)
            else:
                h.ok("c", "replica-read", versions, key)
    return h.ops


def test_equal_replicas_are_valid() -> None:
    ops = replica_reads(
        {
            "a": {"n1": [v("x", n1=1), v("y", n2=1)], "n2": [v("y", n2=1), v("x", n1=1)]},
            "b": {"n1": [], "n3": []},
        }
    )
    result = check_convergence_history(ops)
    assert result.verdict == "valid", result.explanation
    assert [c.verdict for c in result.cases] == ["valid", "valid"]


def test_diverged_replica_is_invalid_and_named() -> None:
    ops = replica_reads(
        {
            "a": {"n1": [v("x", n1=1)], "n2": [v("x", n1=1)], "n3": [v("old", n1=0, n2=1)]},
            "b": {"n1": [v("q", n1=1)], "n2": [v("q", n1=1)]},
        }
    )
    result = check_convergence_history(ops)
    assert result.verdict == "invalid"
    (finding,) = result.findings
    assert finding.key == "a"
    assert "n1, n2 hold {'x' @n1:1}" in finding.message
    assert "n3 hold {'old' @n2:1}" in finding.message
    assert result.details["diverged"] == ["'a'"]


def test_same_value_different_clock_is_divergence() -> None:
    ops = replica_reads({"a": {"n1": [v("x", n1=1)], "n2": [v("x", n1=2)]}})
    assert check_convergence_history(ops).verdict == "invalid"


def test_zero_clock_entries_and_bare_values_compare_equal() -> None:
    ops = replica_reads({"a": {"n1": [v("x", n1=1, n2=0)], "n2": [v("x", n1=1)]}})
    assert check_convergence_history(ops).verdict == "valid"
    bare = replica_reads({"a": {"n1": ["x", None], "n2": [None, "x"]}})
    assert check_convergence_history(bare).verdict == "valid"
    differ = replica_reads({"a": {"n1": ["x"], "n2": ["x", None]}})
    assert check_convergence_history(differ).verdict == "invalid"


def test_unreadable_replica_is_unknown_but_divergence_wins() -> None:
    ops = replica_reads({"a": {"n1": [v("x", n1=1)], "n2": None}})
    result = check_convergence_history(ops)
    assert result.verdict == "unknown"
    assert "n2" in result.explanation
    both = replica_reads(
        {"a": {"n1": [v("x", n1=1)], "n2": None, "n3": []}, "b": {"n1": [], "n2": None}}
    )
    assert check_convergence_history(both).verdict == "invalid"


def test_a_later_successful_read_replaces_a_failed_one() -> None:
    ops = replica_reads({"a": {"n1": [v("x", n1=1)], "n2": None}})
    ops += replica_reads({"a": {"n2": [v("x", n1=1)]}})
    renumbered = [
        Op(
            process=o.process,
            type=o.type,
            f=o.f,
            value=o.value,
            time=i,
            index=i,
            key=o.key,
            extra=o.extra,
        )
        for i, o in enumerate(ops)
    ]
    assert check_convergence_history(renumbered).verdict == "valid"


def test_expected_replicas_never_read_are_unknown() -> None:
    result = check_convergence({"a": {"n1": frozenset()}}, replicas={"a": ["n1", "n2"]})
    assert result.verdict == "unknown"
    assert check_convergence({}).verdict == "unknown"


def test_replica_read_without_a_node_is_malformed() -> None:
    h = H().invoke("c", "replica-read", None, "a").ok("c", "replica-read", [], "a")
    with pytest.raises(HistoryError, match=r"extra\.node") as exc:
        check_convergence_history(h.ops)
    assert exc.value.field == "node"
    bad = H().invoke("c", "replica-read", None, "a", node="n1").ok("c", "replica-read", 5, "a")
    with pytest.raises(HistoryError, match="list of versions"):
        check_convergence_history(bad.ops)


versions = st.lists(
    st.builds(
        lambda value, a, b: v(value, n1=a, n2=b),
        st.text("xyz", max_size=2),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    max_size=4,
)


@given(st.dictionaries(st.sampled_from("abcd"), versions, min_size=1), st.integers(2, 5))
def test_identical_copies_converge(reads: dict[str, list[object]], n: int) -> None:
    ops = replica_reads({k: {f"n{i}": list(vs) for i in range(n)} for k, vs in reads.items()})
    assert check_convergence_history(ops).verdict == "valid"


@given(
    st.dictionaries(st.sampled_from("abcd"), versions.filter(bool), min_size=1),
    st.integers(2, 5),
    st.data(),
)
def test_dropping_a_version_on_one_replica_is_caught(
    reads: dict[str, list[object]], n: int, data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(reads)))
    replica = data.draw(st.integers(0, n - 1))
    versions_of = reads[key]
    drop = data.draw(st.integers(0, len(versions_of) - 1))
    table = {k: {f"n{i}": list(vs) for i in range(n)} for k, vs in reads.items()}
    # Drop every copy of that version on the replica (the list may repeat it).
    table[key][f"n{replica}"] = [x for x in versions_of if x != versions_of[drop]]
    result = check_convergence_history(replica_reads(table))
    assert result.verdict == "invalid"
    assert [f.key for f in result.findings] == [key]
