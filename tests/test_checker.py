"""The cheaper contract runtime (dynamo_ref/core/checker.py) checks what icontract checks.

Every contract decorated after ``dynamo_ref.core.contracts`` is imported gets the planned
wrapper; these tests pin that it still refuses what icontract refuses, with icontract's own
messages, keeps icontract's recursion guard and leaves CrossHair the same attributes to read.
"""

from __future__ import annotations

import icontract
import icontract._checkers
import pytest

from dynamo_ref.core import checker
from dynamo_ref.core.contracts import ENABLED

pytestmark = pytest.mark.skipif(not ENABLED, reason="contracts are off")


def _fast(fn: object) -> bool:
    """``fn`` is a wrapper the runtime wrote (one that calls the function, not icontract's),
    or will write at its next call (it is written here, as that call would)."""
    code = getattr(fn, "__code__", None)
    if code is checker._UNWRITTEN:
        fn.__globals__["_dc_write"]()  # type: ignore[attr-defined]
        code = fn.__code__  # type: ignore[attr-defined]
    return code is not None and "_dc_func" in code.co_names


def test_a_checker_is_written_at_its_first_call_with_every_contract_it_holds() -> None:
    @icontract.ensure(lambda result: result > 0)
    @icontract.require(lambda x: x < 100)
    @icontract.require(lambda x: x != 13, "unlucky")
    def inc(x: int) -> int:
        return x + 1

    assert inc.__code__ is checker._UNWRITTEN  # decorated three times, written none
    assert inc(1) == 2
    written = inc.__code__
    assert "_dc_func" in written.co_names
    assert inc(2) == 3
    assert inc.__code__ is written  # once
    with pytest.raises(icontract.ViolationError, match="unlucky"):
        inc(13)
    with pytest.raises(icontract.ViolationError, match="x < 100"):
        inc(100)
    with pytest.raises(icontract.ViolationError, match="result > 0"):
        inc(-5)


def _invariant_wrapper(fn: object) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename == checker.__file__


@icontract.require(lambda lo, hi: lo <= hi, "an empty interval")
@icontract.ensure(lambda lo, hi, result: lo <= result <= hi)
def clamp(x: int, lo: int = 0, hi: int = 10) -> int:
    return x if lo <= x <= hi else (lo if x < lo else hi + 1 if x == 99 else hi)


def test_a_plain_function_gets_a_written_checker_with_icontracts_lists() -> None:
    assert _fast(clamp)
    assert icontract._checkers.find_checker(clamp) is clamp
    assert [len(g) for g in clamp.__preconditions__] == [1]  # type: ignore[attr-defined]
    assert len(clamp.__postconditions__) == 1  # type: ignore[attr-defined]
    assert clamp.__wrapped__.__name__ == "clamp"  # type: ignore[attr-defined]
    assert not hasattr(clamp.__wrapped__, "__preconditions__")  # type: ignore[attr-defined]


def test_arguments_positional_keyword_and_default_all_reach_the_conditions() -> None:
    assert clamp(5) == 5
    assert clamp(-3, 1) == 1
    assert clamp(20, hi=12) == 12
    assert clamp(x=7, lo=7, hi=7) == 7
    with pytest.raises(icontract.ViolationError, match="an empty interval"):
        clamp(1, 5, 2)
    with pytest.raises(icontract.ViolationError, match="an empty interval"):
        clamp(1, hi=-1)
    with pytest.raises(TypeError):
        clamp(1, nope=2)  # type: ignore[call-arg]


def test_a_broken_postcondition_raises_icontracts_message_with_the_values() -> None:
    with pytest.raises(icontract.ViolationError) as info:
        clamp(99)
    text = str(info.value)
    assert "lo <= result <= hi" in text
    assert "result was 11" in text
    assert "hi was 10" in text


@icontract.snapshot(lambda items: len(items), name="before")  # noqa: PLW0108
@icontract.ensure(lambda items, OLD: len(items) == OLD.before + 1, "appends one")
def push(items: list[int], item: int, twice: bool = False) -> None:
    items.append(item)
    if twice:
        items.append(item)


def test_snapshots_are_taken_before_the_call() -> None:
    items: list[int] = []
    push(items, 1)
    assert items == [1]
    with pytest.raises(icontract.ViolationError, match="appends one"):
        push(items, 2, twice=True)


@icontract.ensure(lambda n, result: result is countdown(n))  # type: ignore[has-type]
def countdown(n: int) -> bool:
    return True


def test_a_condition_calling_its_own_function_does_not_recurse() -> None:
    # icontract's guard: inside its own check the function runs unchecked.
    assert countdown(5)


@icontract.invariant(lambda self: self.size >= 0, "size never negative")
class Counter:
    def __init__(self) -> None:
        self._n = 0

    @property
    def size(self) -> int:
        return self._n

    def add(self, k: int) -> int:
        self._n += k
        return self._n


def test_invariants_are_checked_after_a_method_and_on_a_getter() -> None:
    c = Counter()
    assert c.add(2) == 2
    assert _invariant_wrapper(Counter.add)
    assert getattr(Counter.add, "__is_invariant_check__", False)
    with pytest.raises(icontract.ViolationError, match="size never negative"):
        c.add(-5)
    # Broken from outside: the next call, even a getter, refuses it before running.
    c._n = -1
    with pytest.raises(icontract.ViolationError, match="size never negative"):
        _ = c.size


def test_a_constructor_is_checked_once_it_has_run() -> None:
    @icontract.invariant(lambda self: self.lo <= self.hi, "an interval, not an empty one")
    class Interval:
        def __init__(self, lo: int, hi: int) -> None:
            self.lo, self.hi = lo, lo - 1
            self.widen(hi - self.hi)  # a method on a half-built instance: not checked yet

        def widen(self, by: int) -> None:
            self.hi += by

    assert _invariant_wrapper(Interval.__init__)
    assert Interval(1, 3).hi == 3
    with pytest.raises(icontract.ViolationError, match="an interval, not an empty one"):
        Interval(3, 1)
    interval = Interval(0, 0)
    with pytest.raises(icontract.ViolationError, match="an interval, not an empty one"):
        interval.widen(-1)


def test_what_the_plan_does_not_cover_keeps_icontracts_wrapper() -> None:
    @icontract.require(lambda _ARGS: len(_ARGS) > 0)
    def star(*args: int) -> int:
        return sum(args)

    assert not _fast(star)
    assert star(1, 2) == 3
    with pytest.raises(icontract.ViolationError):
        star()

    @icontract.require(lambda x, limit=3: x < limit)
    def with_default_in_condition(x: int) -> int:
        return x

    assert with_default_in_condition(2) == 2
    with pytest.raises(icontract.ViolationError):
        with_default_in_condition(3)


def test_a_contract_added_after_a_call_is_checked_from_then_on() -> None:
    def ident(x: int) -> int:
        return x

    checked = icontract.ensure(lambda result: result > 0)(ident)
    assert checked(1) == 1
    # ``error``: icontract builds its message from decorator syntax, which this is not.
    again = icontract.require(lambda x: x < 5, error=ValueError("under five"))(checked)
    assert again is checked
    with pytest.raises(ValueError, match="under five"):
        again(7)


@icontract.require(lambda lo, hi: lo <= hi, "an empty interval")
@icontract.ensure(lambda lo, result: result >= lo)
def floor_at(x: int, *, lo: int, hi: int = 10) -> int:
    return max(x, lo) if x != 42 else lo - 1


def test_keyword_only_parameters_reach_the_conditions() -> None:
    assert floor_at(1, lo=3) == 3
    assert floor_at(5, lo=3, hi=3) == 5
    with pytest.raises(icontract.ViolationError, match="an empty interval"):
        floor_at(1, lo=3, hi=2)
    with pytest.raises(icontract.ViolationError, match="result >= lo"):
        floor_at(42, lo=0)
    with pytest.raises(TypeError):
        floor_at(1, 2)  # type: ignore[call-arg]


def test_when_a_tool_turns_icontracts_checks_off_they_are_off_here_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CrossHair replaces these to evaluate the contracts itself; nested calls must not check.
    for name in ("_assert_preconditions", "_assert_postconditions", "_assert_invariant"):
        monkeypatch.setattr(icontract._checkers, name, lambda *a, **k: None)
    assert clamp(1, 5, 2) == 5  # the precondition lo <= hi is not checked
    c = Counter()
    assert c.add(-5) == -5  # nor the invariant


def test_a_checker_is_not_written_while_a_tool_has_icontracts_checks_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under CrossHair, a checker written inside one path and not in the next makes the two
    # paths differ without a decision between them: CrossHair reports NotDeterministic.
    @icontract.require(lambda x: x >= 0)
    def root(x: int) -> int:
        return x

    with monkeypatch.context() as tool:
        tool.setattr(icontract._checkers, "_assert_preconditions", lambda *a, **k: None)
        assert root(-1) == -1  # icontract's wrapper served, and checked nothing
        assert root.__code__ is checker._UNWRITTEN
    assert root(1) == 1
    assert root.__code__ is not checker._UNWRITTEN
    with pytest.raises(icontract.ViolationError, match="x >= 0"):
        root(-1)
