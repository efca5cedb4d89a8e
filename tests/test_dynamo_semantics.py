"""Dynamo semantics checker: negative controls for each property (a value never written, a
dominated sibling, a stale read under strict quorum, a resurrected delete), the histories that
must pass, unknowns, and histories from a sequential vector-clock store."""

from __future__ import annotations

import random

from dynamo_histories import H, run_store, steps
from hypothesis import given
from hypothesis import strategies as st

from harness.checkers.dynamo_semantics import check_dynamo
from harness.history import Op


def failing(h: H, *, strict: bool = False) -> list[str]:
    result = check_dynamo(h.ops, strict_quorum=strict)
    return sorted({f.kind for f in result.findings})


# ---------------------------------------------------------------------------------------------
# siblings-written


def test_value_never_written_is_invalid() -> None:
    h = H().write(0, "x").read(1, ["x", "ghost"])
    result = check_dynamo(h.ops)
    assert result.verdict == "invalid"
    assert failing(h) == ["siblings-written"]
    assert "'ghost', which no write wrote" in result.explanation


def test_value_from_a_write_invoked_after_the_read_is_invalid() -> None:
    h = H().read(1, ["x"]).write(0, "x")
    assert failing(h) == ["siblings-written"]


def test_initial_nil_and_failed_or_unknown_writes_explain_a_sibling() -> None:
    h = H().read(0, []).read(0, None).read(0, [None])
    h.invoke(1, "write", "x").fail(1, "write", "x").invoke(2, "write", "y").info(2, "write", "y")
    h.read(0, ["x", "y"])
    result = check_dynamo(h.ops)
    assert result.verdict != "invalid", result.explanation
    assert result.details["failed_write_values_read"] == 1


def test_a_read_concurrent_with_the_write_may_see_it() -> None:
    h = H().invoke(0, "write", "x").invoke(1, "read").ok(1, "read", ["x"]).ok(0, "write", "x")
    assert check_dynamo(h.ops).verdict == "valid"


# ---------------------------------------------------------------------------------------------
# no-dominated-sibling


def test_sibling_dominated_by_another_is_invalid() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 2}, context={"n1": 1})
    h.read(2, ["x", "y"], clocks=[{"n1": 1}, {"n1": 2}])
    assert failing(h) == ["no-dominated-sibling"]


def test_dominated_sibling_found_from_the_writes_clocks() -> None:
    # The read records no clocks: each sibling's clock is the one its write got back.
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 1, "n2": 1})
    h.read(2, ["y", "x"])
    assert failing(h) == ["no-dominated-sibling"]


def test_concurrent_siblings_are_valid() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n2": 1})
    h.read(2, ["x", "y"], clocks=[{"n1": 1}, {"n2": 1}])
    assert check_dynamo(h.ops).verdict == "valid"


def test_siblings_without_any_clock_are_unknown() -> None:
    h = H().write(0, "x").write(1, "y").read(2, ["x", "y"])
    result = check_dynamo(h.ops)
    assert result.verdict == "unknown"
    case = next(c for c in result.cases if c.name == "no-dominated-sibling")
    assert case.verdict == "unknown"


# ---------------------------------------------------------------------------------------------
# strict-quorum


def test_stale_read_after_an_acknowledged_write_under_strict_quorum() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 2}, context={"n1": 1})
    h.read(2, ["x"], clocks=[{"n1": 1}])
    assert failing(h, strict=True) == ["strict-quorum"]
    # A sloppy quorum may return stale data.
    assert check_dynamo(h.ops).verdict == "valid"


def test_stale_read_without_clocks_under_strict_quorum() -> None:
    h = H().write(0, "x").write(1, "y").read(2, ["x"])
    assert failing(h, strict=True) == ["strict-quorum"]
    empty = H().write(0, "x").read(2, [])
    assert failing(empty, strict=True) == ["strict-quorum"]


def test_strict_quorum_accepts_later_and_concurrent_writes() -> None:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n1": 2}, context={"n1": 1})
    h.read(2, ["y"], clocks=[{"n1": 2}])
    h.write(3, "z", clock={"n2": 1}).read(2, ["y", "z"], clocks=[{"n1": 2}, {"n2": 1}])
    assert check_dynamo(h.ops, strict_quorum=True).verdict == "valid"
    # Real time: y is concurrent with the read, x's write finished before y began.
    c = H().write(0, "x").invoke(1, "write", "y").read(2, ["y"]).ok(1, "write", "y")
    assert check_dynamo(c.ops, strict_quorum=True).verdict == "valid"


# ---------------------------------------------------------------------------------------------
# delete-not-undone


def test_resurrected_delete_is_invalid() -> None:
    h = H().write(0, "x").delete(1).read(2, ["x"], final=True)
    assert failing(h) == ["delete-not-undone"]
    with_clocks = H().write(0, "x", clock={"n1": 1})
    with_clocks.delete(1, clock={"n1": 2}, context={"n1": 1})
    with_clocks.read(2, ["x"], clocks=[{"n1": 1}], context={"n1": 2})
    # Not a final read and no strict quorum, but the context shows the read saw the delete.
    assert failing(with_clocks) == ["delete-not-undone"]


def test_concurrent_write_explains_a_value_after_a_delete() -> None:
    h = H().write(0, "x", clock={"n1": 1}).delete(1, clock={"n2": 1})
    h.read(2, ["x"], clocks=[{"n1": 1}], context={"n1": 1, "n2": 1}, final=True)
    assert check_dynamo(h.ops, strict_quorum=True).verdict == "valid"
    # Without clocks: a second write of the value, concurrent with the delete.
    rt = H().write(0, "x").invoke(3, "write", "x").delete(1).ok(3, "write", "x")
    rt.read(2, ["x"], final=True)
    assert check_dynamo(rt.ops, strict_quorum=True).verdict == "valid"


def test_stale_sloppy_read_after_a_delete_is_not_a_resurrection() -> None:
    h = H().write(0, "x").delete(1).read(2, ["x"])
    assert check_dynamo(h.ops).verdict == "valid"


# ---------------------------------------------------------------------------------------------
# Unknown


def test_no_reads_is_unknown() -> None:
    result = check_dynamo(H().write(0, "x").ops)
    assert result.verdict == "unknown"
    assert "no completed reads" in result.explanation


# ---------------------------------------------------------------------------------------------
# Generated histories


@given(steps, st.booleans())
def test_store_histories_satisfy_dynamo_semantics(
    plan: list[tuple[int, str, str, str, str]], with_clocks: bool
) -> None:
    result = check_dynamo(run_store(plan, with_clocks=with_clocks).ops, strict_quorum=True)
    assert result.verdict == "valid", result.explanation


def _mutate_read(ops: list[Op], rng: random.Random, ghost: bool) -> list[Op] | None:
    """Add a never-written sibling to a read, or drop an acknowledged one from it."""
    acked = {(op.key, op.value) for op in ops if op.type == "ok" and op.f == "write"}
    unsure = {op.key for op in ops if op.type == "info" and op.f == "delete"}
    reads = [
        i
        for i, op in enumerate(ops)
        if op.type == "ok"
        and op.f == "read"
        and isinstance(op.value, list)
        and (ghost or (op.key not in unsure and any((op.key, v) in acked for v in op.value)))
    ]
    if not reads:
        return None
    i = rng.choice(reads)
    op = ops[i]
    assert isinstance(op.value, list)
    extra = dict(op.extra)
    clocks = extra.get("clocks")
    if ghost:
        value = [*op.value, "never-written"]
        if isinstance(clocks, list):
            extra["clocks"] = [*clocks, None]
    else:
        j = rng.choice([j for j, v in enumerate(op.value) if (op.key, v) in acked])
        value = op.value[:j] + op.value[j + 1 :]
        if isinstance(clocks, list):
            extra["clocks"] = clocks[:j] + clocks[j + 1 :]
    mutated = Op(
        process=op.process,
        type=op.type,
        f=op.f,
        value=value,
        time=op.time,
        index=op.index,
        key=op.key,
        extra=extra,
    )
    return [*ops[:i], mutated, *ops[i + 1 :]]


@given(steps, st.booleans(), st.booleans(), st.randoms(use_true_random=False))
def test_mutated_reads_are_caught(
    plan: list[tuple[int, str, str, str, str]],
    with_clocks: bool,
    ghost: bool,
    rng: random.Random,
) -> None:
    ops = run_store(plan, with_clocks=with_clocks).ops
    mutated = _mutate_read(ops, rng, ghost)
    if mutated is None:
        return
    result = check_dynamo(mutated, strict_quorum=True)
    assert result.verdict == "invalid", result.explanation


def test_mutation_controls_find_candidates() -> None:
    plan = [(0, "a", "write", "n1", "ok"), (1, "a", "read", "n1", "ok")]
    for ghost in (True, False):
        mutated = _mutate_read(run_store(plan).ops, random.Random(0), ghost)
        assert mutated is not None
        assert check_dynamo(mutated, strict_quorum=True).verdict == "invalid"
