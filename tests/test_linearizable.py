"""The linearizability checker: tiny hand-made histories, a brute-force cross-check, and
properties of histories generated from real sequential executions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checkers import models as M
from harness.checkers.linearizable import CheckResult, check, check_history
from harness.checkers.models import Model
from harness.history import Op, Operation, pair

AnyModel = Model[Any, Any, Any]


def history(*events: tuple[Any, ...]) -> list[Op]:
    """Ops from (process, type, f, value) or (process, type, f, value, key) tuples."""
    ops = []
    for i, ev in enumerate(events):
        process, typ, f, value = ev[:4]
        key = ev[4] if len(ev) > 4 else None
        ops.append(Op(process=process, type=typ, f=f, value=value, time=i, index=i, key=key))
    return ops


def verdict(model: AnyModel, *events: tuple[Any, ...]) -> str:
    return check_history(model, history(*events)).verdict


# ---------------------------------------------------------------------------------------------
# Hand-made histories


def test_sequential_history_is_valid() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (0, "ok", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
            (1, "invoke", "cas", [1, 2]),
            (1, "ok", "cas", [1, 2]),
            (0, "invoke", "read", None),
            (0, "ok", "read", 2),
        )
        == "valid"
    )


def test_stale_read_after_completed_write_is_invalid() -> None:
    result = check_history(
        M.cas_register(0),
        history(
            (0, "invoke", "write", 1),
            (0, "ok", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 0),
        ),
    )
    assert result.verdict == "invalid"
    assert not result.valid
    assert result.failure is not None
    assert result.failure.failed_op is not None
    assert result.failure.failed_op.process == 1
    assert result.failure.failed_op.completion is not None
    assert result.failure.failed_op.completion.index == 3
    assert [op.process for op in result.failure.linearization] == [0]


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (0, 1):
        assert (
            verdict(
                M.cas_register(0),
                (0, "invoke", "write", 1),
                (1, "invoke", "read", None),
                (1, "ok", "read", seen),
                (0, "ok", "write", 1),
            )
            == "valid"
        )


def test_concurrent_reads_cannot_disagree_on_order() -> None:
    # Both writes complete before the reads start: the reads must agree on the last one.
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (1, "invoke", "write", 2),
            (0, "ok", "write", 1),
            (1, "ok", "write", 2),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
            (3, "invoke", "read", None),
            (3, "ok", "read", 2),
        )
        == "invalid"
    )


def test_unknown_write_may_have_happened() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (0, "info", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
        )
        == "valid"
    )


def test_unknown_write_may_not_have_happened() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (0, "info", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 0),
        )
        == "valid"
    )


def test_unknown_write_may_take_effect_after_its_info() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (0, "info", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 0),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
        )
        == "valid"
    )


def test_unknown_write_happens_at_most_once() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (0, "invoke", "write", 1),
            (0, "info", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
            (1, "invoke", "write", 0),
            (1, "ok", "write", 0),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
        )
        == "invalid"
    )


def test_unknown_write_cannot_happen_before_its_call() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (1, "invoke", "read", None),
            (1, "ok", "read", 1),
            (0, "invoke", "write", 1),
            (0, "info", "write", 1),
        )
        == "invalid"
    )


def test_never_returned_operation_is_unknown() -> None:
    ops = history(
        (0, "invoke", "write", 1),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
    )
    (write, *_) = pair(ops)
    assert write.ret is None
    assert write.status == "info"
    assert check_history(M.cas_register(0), ops).verdict == "valid"


def test_unknown_cas_chain_is_found() -> None:
    # Two unknown CASes must both have happened, in order, for the last read.
    assert (
        verdict(
            M.etcd_register(),
            (0, "invoke", "write", 1),
            (0, "ok", "write", 1),
            (1, "invoke", "cas", [2, 3]),
            (2, "invoke", "cas", [1, 2]),
            (1, "info", "cas", "timed-out"),
            (2, "info", "cas", "timed-out"),
            (3, "invoke", "read", None),
            (3, "ok", "read", 3),
        )
        == "valid"
    )


def test_knossos_fail_means_did_not_happen() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (1, "invoke", "read", None),
            (101, "invoke", "write", 3),
            (101, "fail", "write", 3),
            (1, "ok", "read", 3),
        )
        == "invalid"
    )


def test_knossos_nil_read_matches_any_value() -> None:
    assert (
        verdict(
            M.cas_register(0),
            (1, "invoke", "read", None),
            (1, "ok", "read", None),
        )
        == "valid"
    )


def test_etcd_failed_cas_is_checked() -> None:
    # The register holds 1, so a CAS from 1 cannot have failed.
    events = [
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "cas", [1, 2]),
        (1, "fail", "cas", [1, 2]),
    ]
    assert verdict(M.etcd_register(), *events) == "invalid"
    events[2:] = [(1, "invoke", "cas", [5, 2]), (1, "fail", "cas", [5, 2])]
    assert verdict(M.etcd_register(), *events) == "valid"


def test_etcd_register_starts_absent() -> None:
    assert verdict(M.etcd_register(), (0, "invoke", "read", None), (0, "ok", "read", None)) == (
        "valid"
    )
    assert verdict(M.etcd_register(), (0, "invoke", "read", None), (0, "ok", "read", 0)) == (
        "invalid"
    )


def test_mutex() -> None:
    ok = [
        (0, "invoke", "acquire", None),
        (0, "ok", "acquire", None),
        (1, "invoke", "acquire", None),
        (0, "invoke", "release", None),
        (0, "ok", "release", None),
        (1, "ok", "acquire", None),
    ]
    assert verdict(M.mutex(), *ok) == "valid"
    double = [
        (0, "invoke", "acquire", None),
        (0, "ok", "acquire", None),
        (1, "invoke", "acquire", None),
        (1, "ok", "acquire", None),
    ]
    assert verdict(M.mutex(), *double) == "invalid"


def test_kv_partitions_and_reports_smallest_failing_key() -> None:
    events = [
        (0, "invoke", "put", "a", "k1"),
        (0, "ok", "put", "a", "k1"),
        (0, "invoke", "get", None, "k1"),
        (0, "ok", "get", "a", "k1"),
        (1, "invoke", "append", "x", "k2"),
        (1, "ok", "append", "x", "k2"),
        (1, "invoke", "append", "y", "k2"),
        (1, "ok", "append", "y", "k2"),
        (1, "invoke", "get", None, "k2"),
        (1, "ok", "get", "yx", "k2"),
    ]
    result = check_history(M.kv(), history(*events))
    assert result.verdict == "invalid"
    assert result.failure is not None
    assert result.failure.key == "k2"
    unpartitioned = check_history(M.kv(partitioned=False), history(*events))
    assert unpartitioned.verdict == "invalid"


def test_register_per_key() -> None:
    events = [
        (0, "invoke", "write", 1, "a"),
        (1, "invoke", "write", 2, "b"),
        (0, "ok", "write", 1, "a"),
        (1, "ok", "write", 2, "b"),
        (0, "invoke", "read", None, "b"),
        (0, "ok", "read", 2, "b"),
        (1, "invoke", "read", None, "a"),
        (1, "ok", "read", 1, "a"),
        (2, "invoke", "read", None, "c"),
        (2, "ok", "read", None, "c"),
    ]
    result = check_history(M.register(), history(*events))
    assert result.verdict == "valid"
    assert len(result.partitions) == 3


def test_multi_register() -> None:
    model = M.multi_register({"x": 0, "y": 0})
    assert (
        verdict(
            model,
            (0, "invoke", "txn", [["write", "x", 1], ["write", "y", 1]]),
            (0, "ok", "txn", [["write", "x", 1], ["write", "y", 1]]),
            (1, "invoke", "txn", [["read", "x", None], ["read", "y", None]]),
            (1, "ok", "txn", [["read", "x", 1], ["read", "y", 1]]),
        )
        == "valid"
    )
    assert (
        verdict(
            model,
            (0, "invoke", "txn", [["write", "x", 1], ["write", "y", 1]]),
            (1, "invoke", "txn", [["read", "x", None], ["read", "y", None]]),
            (1, "ok", "txn", [["read", "x", 1], ["read", "y", 0]]),
            (0, "ok", "txn", [["write", "x", 1], ["write", "y", 1]]),
        )
        == "invalid"
    )


def test_empty_history_is_valid() -> None:
    result = check(M.cas_register(0), [])
    assert result.verdict == "valid"


def test_time_budget_gives_unknown_not_a_pass() -> None:
    # Seven concurrent appends and a get that needs one particular order of them.
    events: list[tuple[Any, ...]] = []
    letters = "abcdefg"
    for p, letter in enumerate(letters):
        events.append((p, "invoke", "append", letter, "k"))
    events.append((99, "invoke", "get", None, "k"))
    events.append((99, "ok", "get", letters[::-1], "k"))
    for p, letter in enumerate(letters):
        events.append((p, "ok", "append", letter, "k"))
    result = check_history(M.kv(), history(*events), time_limit=0.0)
    assert result.verdict == "unknown"
    assert not result.valid
    assert "time budget" in result.partitions[0].reason
    assert check_history(M.kv(), history(*events)).verdict == "valid"


def test_unknown_model_operation_is_an_error() -> None:
    with pytest.raises(M.ModelError, match="no operation 'frobnicate'"):
        verdict(M.cas_register(0), (0, "invoke", "frobnicate", 1), (0, "ok", "frobnicate", 1))


def test_report_and_timeline(tmp_path: Path) -> None:
    events = [
        (0, "invoke", "write", 0),
        (0, "ok", "write", 0),
        (1, "invoke", "read", None),
        (2, "invoke", "write", 4),
        (1, "ok", "read", 3),
        (2, "ok", "write", 4),
        (3, "invoke", "read", None),
        (3, "ok", "read", 4),
    ]
    target = tmp_path / "out" / "timeline.html"
    result = check_history(M.cas_register(None), history(*events), timeline=target)
    assert result.verdict == "invalid"
    text = result.describe()
    assert "cannot linearize: process 1" in text
    assert "read -> 3" in text
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http" not in page  # self-contained
    assert "op failed" in page
    assert "region" in page

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in ("meta", "br"):
                self.stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.stack.pop() == tag

    parser = Checker()
    parser.feed(page)
    assert parser.stack == []


# ---------------------------------------------------------------------------------------------
# The fast paths and read-only hints agree with the models' steps


MODEL_SAMPLES: list[tuple[AnyModel, list[Any], list[tuple[str, Any, Any, str]]]] = [
    (
        M.cas_register(0),
        [0, 1, 2, None],
        [
            ("read", None, 1, "ok"),
            ("read", None, None, "ok"),
            ("write", 2, 2, "ok"),
            ("cas", [1, 2], [1, 2], "ok"),
            ("cas", [1, 2], None, "info"),
        ],
    ),
    (
        M.etcd_register(),
        [0, 1, 2, None],
        [
            ("read", None, 1, "ok"),
            ("read", None, None, "ok"),
            ("write", 2, 2, "ok"),
            ("cas", [1, 2], [1, 2], "ok"),
            ("cas", [1, 2], [1, 2], "fail"),
            ("cas", [1, 2], None, "info"),
        ],
    ),
    (
        M.register(),
        [0, 1, None],
        [("read", None, 1, "ok"), ("read", None, None, "ok"), ("write", 1, 1, "ok")],
    ),
    (
        M.kv(),
        ["", "x", "xy"],
        [("get", None, "x", "ok"), ("put", "x", "x", "ok"), ("append", "y", "y", "ok")],
    ),
]


@pytest.mark.parametrize(("model", "states", "samples"), MODEL_SAMPLES)
def test_fast_paths_agree_with_step(
    model: AnyModel, states: list[Any], samples: list[tuple[str, Any, Any, str]]
) -> None:
    for f, value, output, status in samples:
        ops = history((0, "invoke", f, value), (0, status, f, output))
        (op,) = pair(ops)
        enc = model.encode(op)
        assert enc is not None
        inp, out = enc
        shape = model.fast(inp, out)
        for state in states:
            ok, nxt = model.step(state, inp, out)
            if model.read_only(inp, out) and ok:
                assert nxt == state
            if shape is None:
                continue
            tag, val = shape
            if tag == "reads":
                assert (ok, nxt) == (state == val, state)
            elif tag == "reads-any":
                assert (ok, nxt) == (True, state)
            elif tag == "writes":
                assert (ok, nxt) == (True, val)
            else:
                assert (ok, nxt) == (True, state + val)


# ---------------------------------------------------------------------------------------------
# Cross-check against a brute-force search of every order, on small random histories


def brute_force(model: AnyModel, operations: Sequence[Operation]) -> bool:
    """Linearizable by definition: some order of all completed operations and any subset of
    unknown ones, respecting real time, that the model accepts."""
    for part in model.partition(list(operations)):
        items = []
        for op in part:
            enc = model.encode(op)
            if enc is None:
                continue
            unknown = op.unknown or op.ret is None
            ret = math.inf if unknown else float(op.ret or 0)
            items.append((op.call, ret, enc[0], enc[1], unknown))

        @cache
        def search(state: Any, remaining: frozenset[int], items: Any = tuple(items)) -> bool:
            if all(items[i][4] for i in remaining):
                return True
            for i in remaining:
                call, _, inp, out, _ = items[i]
                if any(items[j][1] < call for j in remaining if j != i):
                    continue
                ok, nxt = model.step(state, inp, out)
                if ok and search(nxt, remaining - {i}):
                    return True
            return False

        if not search(model.init(), frozenset(range(len(items)))):
            return False
    return True


def _random_op(data: st.DataObject, kind: str) -> tuple[str, Any, Any, Any]:
    """(f, invoke value, ok value, key) for one operation of a workload."""
    small = st.sampled_from([0, 1, 2])
    if kind == "register":
        f = data.draw(st.sampled_from(["read", "write", "cas"]))
        if f == "read":
            return f, None, data.draw(st.sampled_from([None, 0, 1, 2])), None
        if f == "write":
            v = data.draw(small)
            return f, v, v, None
        swap = [data.draw(small), data.draw(small)]
        return f, swap, swap, None
    if kind == "keyed":
        key = data.draw(st.sampled_from(["a", "b"]))
        f = data.draw(st.sampled_from(["read", "write"]))
        if f == "read":
            return f, None, data.draw(st.sampled_from([None, 1, 2])), key
        v = data.draw(st.sampled_from([1, 2]))
        return f, v, v, key
    if kind == "kv":
        key = data.draw(st.sampled_from(["a", "b"]))
        f = data.draw(st.sampled_from(["get", "put", "append"]))
        if f == "get":
            return f, None, data.draw(st.sampled_from(["", "x", "y", "xy", "yx"])), key
        suffix = data.draw(st.sampled_from(["x", "y"]))
        return f, suffix, suffix, key
    if kind == "mutex":
        return data.draw(st.sampled_from(["acquire", "release"])), None, None, None
    micro = st.tuples(
        st.sampled_from(["read", "write"]), st.sampled_from(["x", "y"]), st.sampled_from([0, 1])
    )
    txn = [list(m) for m in data.draw(st.lists(micro, min_size=1, max_size=2))]
    invoke = [[f, k, None if f == "read" else v] for f, k, v in txn]
    return "txn", invoke, txn, None


def _random_history(data: st.DataObject, kind: str, statuses: list[str]) -> list[Op]:
    n_proc = data.draw(st.integers(1, 3))
    n_ops = data.draw(st.integers(1, 7))
    alive = set(range(n_proc))
    open_ops: dict[int, tuple[str, Any, Any, Any]] = {}
    events: list[tuple[Any, ...]] = []
    started = 0
    while True:
        ready = sorted(p for p in alive if p in open_ops or started < n_ops)
        if not ready:
            break
        p = data.draw(st.sampled_from(ready))
        if p in open_ops:
            f, _, ok_value, key = open_ops.pop(p)
            status = data.draw(st.sampled_from(statuses))
            if status == "none":  # never returns: the process is gone
                alive.discard(p)
                continue
            events.append((p, status, f, ok_value if status != "info" else None, key))
        else:
            f, invoke_value, ok_value, key = _random_op(data, kind)
            open_ops[p] = (f, invoke_value, ok_value, key)
            events.append((p, "invoke", f, invoke_value, key))
            started += 1
    return history(*events)


CROSS_MODELS: dict[str, tuple[str, AnyModel, list[str]]] = {
    "cas-register": ("register", M.cas_register(0), ["ok", "ok", "ok", "fail", "info", "none"]),
    "etcd": ("register", M.etcd_register(), ["ok", "ok", "fail", "info", "none"]),
    "register": ("keyed", M.register(), ["ok", "ok", "fail", "info", "none"]),
    "kv": ("kv", M.kv(), ["ok", "ok", "ok", "info", "none"]),
    "kv-no-partition": ("kv", M.kv(partitioned=False), ["ok", "ok", "info"]),
    "mutex": ("mutex", M.mutex(), ["ok", "ok", "fail", "info", "none"]),
    "multi-register": ("txn", M.multi_register({"x": 0, "y": 0}), ["ok", "ok", "fail", "info"]),
}


def _assert_legal_order(model: AnyModel, order: Sequence[Operation]) -> None:
    """The model accepts `order`, and it respects real time."""
    state = model.init()
    for op in order:
        enc = model.encode(op)
        assert enc is not None
        ok, state = model.step(state, *enc)
        assert ok, f"step {op} is illegal"
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            assert not (b.ret is not None and not b.unknown and b.ret < a.call), (
                f"{a} is placed before {b}, which returned before {a} was called"
            )


def _assert_is_linearization(model: AnyModel, result: CheckResult) -> None:
    """A "valid" verdict comes with a witness: replay it."""
    for part in result.partitions:
        _assert_legal_order(model, part.linearization)
        placed = {id(op) for op in part.linearization}
        for op in part.operations:
            if not op.unknown and model.encode(op) is not None:
                assert id(op) in placed, f"completed {op} missing from the witness"


@pytest.mark.parametrize("name", sorted(CROSS_MODELS))
@settings(max_examples=200)
@given(data=st.data())
def test_agrees_with_brute_force(name: str, data: st.DataObject) -> None:
    kind, model, statuses = CROSS_MODELS[name]
    ops = pair(_random_history(data, kind, statuses))
    expected = brute_force(model, ops)
    result = check(model, ops)
    assert result.verdict == ("valid" if expected else "invalid"), result.describe()
    if expected:
        _assert_is_linearization(model, result)
    else:
        assert result.failure is not None
        _assert_legal_order(model, result.failure.linearization)
        failed = result.failure.failed_op
        assert failed is not None
        assert failed in result.failure.pending
        assert failed not in result.failure.linearization


# ---------------------------------------------------------------------------------------------
# Histories from real sequential executions are linearizable


@st.composite
def executed_register_history(draw: st.DrawFn) -> list[Op]:
    """Run read/write/cas ops on a real register one after another, then give each op an
    interval around its moment of execution; a process's intervals never overlap. Some
    completions are lost or become :info."""
    n_proc = draw(st.integers(1, 5))
    n_ops = draw(st.integers(1, 40))
    value: int | None = None
    ops_by_proc: dict[int, list[tuple[int, str, Any, Any, str]]] = {}
    for i in range(n_ops):
        p = draw(st.integers(0, n_proc - 1))
        f = draw(st.sampled_from(["read", "write", "cas"]))
        at = i * 100 + 50
        entry: tuple[int, str, Any, Any, str]
        if f == "read":
            entry = (at, f, None, value, "ok")
        elif f == "write":
            v = draw(st.integers(0, 4))
            value = v
            entry = (at, f, v, v, "ok")
        else:
            cas = [draw(st.integers(0, 4)), draw(st.integers(0, 4))]
            if value == cas[0]:
                value = cas[1]
                entry = (at, f, cas, cas, "ok")
            else:
                entry = (at, f, cas, cas, "fail")
        ops_by_proc.setdefault(p, []).append(entry)
    events: list[tuple[int, tuple[Any, ...]]] = []
    for p, entries in ops_by_proc.items():
        free_from = 0
        for j, (at, f, inv, out, status) in enumerate(entries):
            call = draw(st.integers(free_from, at))
            nxt = entries[j + 1][0] if j + 1 < len(entries) else n_ops * 100 + 1000
            ret = draw(st.integers(at, nxt - 2))
            free_from = ret + 1
            last = j + 1 == len(entries)
            fate = draw(st.sampled_from(["done"] * 6 + ["info"] + (["lost"] if last else [])))
            events.append((call * 2, (p, "invoke", f, inv)))
            if fate == "lost":
                continue  # the process crashed: no completion
            events.append((ret * 2 + 1, (p, "info" if fate == "info" else status, f, out)))
    events.sort(key=lambda e: e[0])
    return history(*(ev for _, ev in events))


@given(executed_register_history())
def test_executed_histories_are_linearizable(ops: list[Op]) -> None:
    result = check_history(M.etcd_register(), ops)
    assert result.verdict == "valid", result.describe()
    _assert_is_linearization(M.etcd_register(), result)


@given(executed_register_history(), st.data())
def test_read_of_never_written_value_is_invalid(ops: list[Op], data: st.DataObject) -> None:
    reads = [i for i, op in enumerate(ops) if op.f == "read" and op.type == "ok"]
    if not reads:
        ops = [
            *ops,
            Op(process=99, type="invoke", f="read", value=None, time=-1, index=len(ops)),
            Op(process=99, type="ok", f="read", value=0, time=-1, index=len(ops) + 1),
        ]
        reads = [len(ops) - 1]
    i = data.draw(st.sampled_from(reads))
    bad = ops[i]
    ops[i] = Op(
        process=bad.process, type="ok", f="read", value=1000, time=bad.time, index=bad.index
    )
    result = check_history(M.etcd_register(), ops)
    assert result.verdict == "invalid"
    assert result.failure is not None
    assert result.failure.failed_op is not None


def test_the_harness_register_checks_cas() -> None:
    ok = [
        (0, "invoke", "write", 1, "k"),
        (0, "ok", "write", 1, "k"),
        (1, "invoke", "cas", [1, 2], "k"),
        (1, "ok", "cas", [1, 2], "k"),
        (0, "invoke", "read", None, "k"),
        (0, "ok", "read", 2, "k"),
    ]
    assert verdict(M.register(None), *ok) == "valid"
    # A cas from a value the register never held cannot have swapped.
    bad = [*ok[:2], (1, "invoke", "cas", [7, 2], "k"), (1, "ok", "cas", [7, 2], "k"), *ok[4:]]
    assert verdict(M.register(None), *bad) == "invalid"
    # One that found another value (fail) did not happen.
    failed = [*ok[:2], (1, "invoke", "cas", [7, 2], "k"), (1, "fail", "cas", [7, 2], "k")]
    assert (
        verdict(
            M.register(None), *failed, (0, "invoke", "read", None, "k"), (0, "ok", "read", 1, "k")
        )
        == "valid"
    )
