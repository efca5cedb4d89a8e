"""Lost-writes checker: hand-made negative controls it must reject, good histories it accepts,
unknowns, fault windows, and histories from a sequential vector-clock store."""

from __future__ import annotations

import json
import random

import pytest
from dynamo_histories import H, run_store, steps
from hypothesis import given
from hypothesis import strategies as st

from harness.checkers import datatypes as D
from harness.checkers.causal import fault_windows
from harness.checkers.lost_writes import check_lost_writes
from harness.history import Op

TYPES = {"siblings": D.siblings, "register": D.register, "set": D.set_add}


def verdict(h: H, kind: str = "siblings") -> str:
    return check_lost_writes(h.ops, TYPES[kind]()).verdict


# ---------------------------------------------------------------------------------------------
# Negative controls


def test_register_write_lost_under_partition_is_reported_with_its_fault() -> None:
    h = H().write(0, "v1").nemesis("start", "partition {n1} {n2 n3}", "invoke")
    h.nemesis("start", ["isolated", "n1"]).write(1, "v2").nemesis("stop", None, "invoke")
    h.nemesis("stop", "healed").write(2, "v3", key="other")
    h.read(3, "v1", final=True).read(3, "v3", key="other", final=True)
    result = check_lost_writes(h.ops, D.register())
    assert result.verdict == "invalid"
    (lost,) = result.findings
    assert lost.key == "k"
    assert "write 'v2'" in lost.message
    assert "fault" in lost.message
    assert "['isolated', 'n1']" in lost.message
    details = lost.details
    assert details["write"]["value"] == "v2"  # type: ignore[index]
    faults = details["faults"]
    assert isinstance(faults, list)
    assert [f["name"] for f in faults] == ["fault"]
    assert result.details["lost"] == 1
    assert "smallest failing key 'k'" in result.explanation
    json.dumps(result.to_json())  # machine-readable


def test_concurrent_write_dropped_by_last_writer_wins_is_lost() -> None:
    # Two writes with concurrent clocks; the final read kept only one: vector clocks would
    # have kept both as siblings.
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n2": 1})
    h.read(2, ["y"], clocks=[{"n2": 1}], final=True)
    result = check_lost_writes(h.ops)
    assert result.verdict == "invalid"
    assert [f.details["write"]["value"] for f in result.findings] == ["x"]  # type: ignore[index]


def test_write_missing_from_empty_final_read_without_a_delete_is_lost() -> None:
    h = H().write(0, "x").read(1, [], final=True)
    assert verdict(h) == "invalid"


def test_a_failed_delete_explains_nothing() -> None:
    h = H().write(0, "x").invoke(1, "delete").fail(1, "delete").read(2, [], final=True)
    assert verdict(h) == "invalid"


def test_lost_write_in_only_one_of_two_final_reads() -> None:
    h = H().write(0, "x").read(1, ["x"], final=True).read(2, ["w"], final=True)
    assert verdict(h) == "invalid"


def test_set_lost_add_and_unexpected_element() -> None:
    h = H()
    for i in range(4):
        h.invoke(i, "add", i, key="s").ok(i, "add", i, key="s")
    h.read(9, [0, 1, 3], key="s", final=True)
    result = check_lost_writes(h.ops, D.set_add())
    assert result.verdict == "invalid"
    assert [f.kind for f in result.findings] == ["lost"]
    assert "add 2" in result.findings[0].message

    h2 = H().invoke(0, "add", 1, key="s").ok(0, "add", 1, key="s")
    h2.read(9, [1, 7], key="s", final=True)
    bad = check_lost_writes(h2.ops, D.set_add())
    assert bad.verdict == "invalid"
    assert [f.kind for f in bad.findings] == ["unexpected"]


def test_custom_dominates_is_used() -> None:
    # y's clock dominates x's: superseded under vector clocks, lost under a relation where
    # nothing dominates anything else.
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 2}, context={"n1": 1})
    h.read(2, ["y"], clocks=[{"n1": 2}], final=True)
    assert check_lost_writes(h.ops).verdict == "valid"
    never = check_lost_writes(h.ops, D.siblings(dominates=lambda a, b: a == b))
    assert never.verdict == "invalid"


# ---------------------------------------------------------------------------------------------
# Good histories


def test_superseded_write_is_not_lost() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 2}, context={"n1": 1})
    h.read(2, ["y"], clocks=[{"n1": 2}], final=True)
    result = check_lost_writes(h.ops)
    assert result.verdict == "valid"
    assert (result.details["present"], result.details["superseded"]) == (1, 1)


def test_concurrent_siblings_both_present() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n2": 1})
    h.read(2, ["x", "y"], clocks=[{"n1": 1}, {"n2": 1}], final=True)
    assert verdict(h) == "valid"


def test_register_without_clocks_uses_real_time() -> None:
    h = H().write(0, "v1").write(1, "v2").read(2, "v2", final=True)
    assert verdict(h, "register") == "valid"
    # Concurrent writes: either may win.
    c = H().invoke(0, "write", "a").invoke(1, "write", "b").ok(0, "write", "a")
    c.ok(1, "write", "b").read(2, "a", final=True)
    assert verdict(c, "register") == "valid"


def test_deleted_write_is_not_lost_and_maybe_lost_is_counted() -> None:
    h = H().write(0, "x").delete(1).write(3, "q", key="j")
    h.invoke(2, "write", "z", key="j").info(2, "write", "z", key="j")
    h.read(4, [], final=True).read(4, ["q"], key="j", final=True)
    result = check_lost_writes(h.ops)
    assert result.verdict == "valid"
    assert result.details["maybe_lost"] == 1
    assert result.details["acknowledged"] == 3


# ---------------------------------------------------------------------------------------------
# Unknown: never a silent pass


def test_no_final_read_is_unknown() -> None:
    result = check_lost_writes(H().write(0, "x").read(1, ["x"]).ops)
    assert result.verdict == "unknown"
    assert "no successful final read" in result.explanation


def test_failed_final_read_is_unknown() -> None:
    h = H().write(0, "x").invoke(1, "read", None, final=True).fail(1, "read")
    result = check_lost_writes(h.ops)
    assert result.verdict == "unknown"
    assert result.cases[0].message == "final read failed"


def test_nothing_acknowledged_is_unknown() -> None:
    h = H().invoke(0, "write", "x").info(0, "write", "x").read(1, [], final=True)
    assert verdict(h) == "unknown"
    assert verdict(H().read(1, [], key="s", final=True), "set") == "unknown"


# ---------------------------------------------------------------------------------------------
# Fault windows


def test_fault_windows_jepsen_and_named() -> None:
    h = H().nemesis("start", None, "invoke").nemesis("start", "cut").write(0, "a")
    h.nemesis("stop", None, "invoke").nemesis("stop", "healed").write(0, "b")
    h.nemesis("kill", "n2").nemesis("start-pause", "n3").write(0, "c").nemesis("restart", "n2")
    faults = fault_windows(h.ops)
    assert [(f.name, f.start, f.end, f.value) for f in faults] == [
        ("fault", 0, 5, "cut"),
        ("kill", 8, 12, "n2"),
        ("pause", 9, None, "n3"),
    ]
    assert faults[0].active(3, 4)
    assert not faults[0].active(6, 7)
    assert faults[2].active(100, None)


# ---------------------------------------------------------------------------------------------
# Generated histories


@given(steps, st.booleans())
def test_store_histories_have_no_lost_writes(
    plan: list[tuple[int, str, str, str, str]], with_clocks: bool
) -> None:
    h = run_store(plan, with_clocks=with_clocks)
    result = check_lost_writes(h.ops)
    assert result.verdict in ("valid", "unknown"), result.explanation
    if result.details["acknowledged"]:
        assert result.verdict == "valid"


def _drop_one_sibling(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """Remove one sibling from one final read whose value an ok write wrote. Keys with a
    delete of unknown outcome are left alone: with no clock it may have superseded anything."""
    acked = {(op.key, op.value) for op in ops if op.type == "ok" and op.f == "write"}
    unsure = {op.key for op in ops if op.type == "info" and op.f == "delete"}
    choices = [
        (i, j)
        for i, op in enumerate(ops)
        if op.type == "ok" and op.f == "read" and isinstance(op.value, list)
        for j, v in enumerate(op.value)
        if (op.key, v) in acked and ops[i - 1].extra.get("final") and op.key not in unsure
    ]
    if not choices:
        return None
    i, j = rng.choice(choices)
    op = ops[i]
    assert isinstance(op.value, list)
    extra = dict(op.extra)
    if "clocks" in extra:
        clocks = list(extra["clocks"])  # type: ignore[call-overload]
        del clocks[j]
        extra["clocks"] = clocks
    if len(op.value) == 1:
        extra.pop("context", None)  # a single sibling's context is its clock
    mutated = Op(
        process=op.process,
        type=op.type,
        f=op.f,
        value=op.value[:j] + op.value[j + 1 :],
        time=op.time,
        index=op.index,
        key=op.key,
        extra=extra,
    )
    return [*ops[:i], mutated, *ops[i + 1 :]]


@given(steps, st.booleans(), st.randoms(use_true_random=False))
def test_dropping_an_acknowledged_write_is_caught(
    plan: list[tuple[int, str, str, str, str]], with_clocks: bool, rng: random.Random
) -> None:
    ops = run_store(plan, with_clocks=with_clocks).ops
    mutated = _drop_one_sibling(ops, rng)
    if mutated is None:
        return
    result = check_lost_writes(mutated)
    assert result.verdict == "invalid", result.explanation


@pytest.mark.parametrize("with_clocks", [True, False])
def test_mutation_control_finds_candidates(with_clocks: bool) -> None:
    # The property above must not pass by never mutating.
    plan = [(0, "a", "write", "n1", "ok"), (1, "a", "write", "n2", "ok")]
    ops = run_store(plan, with_clocks=with_clocks).ops
    mutated = _drop_one_sibling(ops, random.Random(1))
    assert mutated is not None
    assert check_lost_writes(mutated).verdict == "invalid"


def test_a_cas_that_took_effect_supersedes_earlier_writes() -> None:
    # Register targets: the final value came from a cas, which wrote its `to`.
    h = H().write(0, "v1").invoke(1, "cas", ["v1", "v2"]).ok(1, "cas", ["v1", "v2"])
    h.read(2, "v2", final=True)
    assert verdict(h, "register") == "valid"
    # A cas that found another value wrote nothing: it cannot explain the final value, so v1
    # is lost (the control).
    bad = H().write(0, "v1").invoke(1, "cas", ["v0", "v2"]).fail(1, "cas", ["v0", "v2"])
    bad.read(2, "v2", final=True)
    assert verdict(bad, "register") == "invalid"


def test_explanations_cut_long_values() -> None:
    # A final read of thousands of elements is summarised, not printed whole.
    h = H()
    for i in range(3000):
        h.invoke(i % 4, "add", i, key="s").ok(i % 4, "add", i, key="s")
    h.read(9, list(range(1, 3000)), key="s", final=True)
    result = check_lost_writes(h.ops, D.set_add())
    assert result.verdict == "invalid"
    assert "..., 2999 in all" in result.explanation
    assert len(result.explanation) < 2000
