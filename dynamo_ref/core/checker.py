"""A cheaper runtime for icontract: the same contracts, checked at the same calls.

icontract's wrapper, on every call, builds a dict of the call's arguments, filters it once per
condition, and asks ``inspect`` whether each condition is a coroutine function. That machinery,
not the conditions, was most of what contracts cost (benchmarks/README.md). ``install`` makes
icontract build, for a plain sync function, a wrapper that plans the argument lookup once per
function and then calls each condition with positional arguments; and, for a method of a class
with invariants, a wrapper without icontract's per-call lookups.

What icontract stores is unchanged: a checker still carries ``__preconditions__``,
``__postcondition_snapshots__``, ``__postconditions__`` (the very lists icontract fills) and
``__wrapped__``, and a class its ``__invariants__``, so CrossHair and ``proofs/run.py`` read the
same contracts. Every condition runs where icontract runs it, with icontract's guard against
recursive checks, and a violation raises the error icontract itself builds. Anything else
(async functions, ``*args``/``**kwargs`` or keyword-only parameters, "require else" groups,
conditions with defaults or ``_ARGS``/``_KWARGS``, ``__setattr__``) keeps icontract's wrapper.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import icontract._checkers as _ic

_EMPTY = inspect.Parameter.empty
_PLAIN = inspect.Parameter.POSITIONAL_OR_KEYWORD
_KW_ONLY = inspect.Parameter.KEYWORD_ONLY
_RESERVED = frozenset({"_ARGS", "_KWARGS", "result", "OLD"})
_IN_PROGRESS = _ic._IN_PROGRESS

_icontract_checker = _ic.decorate_with_checker
_icontract_invariants = _ic._decorate_with_invariants
# A tool that switches icontract's checks off replaces its assert functions (CrossHair does,
# before it imports the code, to evaluate the contracts itself): the wrappers below then hand
# every call to icontract's own. Told by the module of the function in place.
_ICONTRACT = _ic.__name__
_icontract_adds = {
    name: getattr(_ic, name)
    for name in (
        "add_precondition_to_checker",
        "add_snapshot_to_checker",
        "add_postcondition_to_checker",
    )
}
_LISTS = ("__preconditions__", "__postcondition_snapshots__", "__postconditions__")
# Bumped by every contract added anywhere: a plan made before is made again at its next call.
_GENERATION = [0]

Values = Sequence[Any]
Call = Callable[[Values], Any]


def _caller(fn: Callable[..., Any], at: tuple[int, ...]) -> Call:
    """``fn`` called with the values at the indices ``at``, positionally."""
    if not at:
        return lambda v: fn()
    if len(at) == 1:
        (i,) = at
        return lambda v: fn(v[i])
    if len(at) == 2:
        i, j = at
        return lambda v: fn(v[i], v[j])
    if len(at) == 3:
        i, j, k = at
        return lambda v: fn(v[i], v[j], v[k])
    return lambda v: fn(*[v[i] for i in at])


def _indices(
    fn: Callable[..., Any], names: Sequence[str], index: dict[str, int]
) -> tuple[int, ...]:
    """Where each parameter of a condition is among the call's values; KeyError if it is not
    there or cannot be passed positionally (icontract's own path handles those)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is not _PLAIN or p.default is not _EMPTY for p in params):
        raise KeyError(fn)
    return tuple(index[name] for name in names)


class _Plan:
    """The conditions of one checker, each with where its arguments are."""

    def __init__(
        self, names: Sequence[str], pres: list[list[Any]], snaps: list[Any], posts: list[Any]
    ) -> None:
        self.generation = _GENERATION[0]
        index = {name: i for i, name in enumerate(names)}
        self.pre = [
            (c, _caller(c.condition, _indices(c.condition, c.condition_args, index)))
            for g in pres
            for c in g
        ]
        self.snap = [
            (s.name, _caller(s.capture, _indices(s.capture, s.args, index))) for s in snaps
        ]
        index = {**index, "result": len(names), "OLD": len(names) + 1}
        self.post = [
            (c, _caller(c.condition, _indices(c.condition, c.condition_args, index))) for c in posts
        ]


def _plain_signature(sig: inspect.Signature) -> bool:
    names = set(sig.parameters)
    kinds = [p.kind for p in sig.parameters.values()]
    # Keyword-only parameters after the positional ones: a call's values keep that order.
    return kinds == sorted(kinds) and set(kinds) <= {_PLAIN, _KW_ONLY} and not names & _RESERVED


def _violation(
    contract: Any, names: Sequence[str], values: Values, args: Any, kwargs: Any
) -> BaseException:
    resolved = {"_ARGS": args, "_KWARGS": kwargs, **dict(zip(names, values, strict=False))}
    if len(values) > len(names):
        resolved["result"] = values[len(names)]
        if values[len(names) + 1] is not None:
            resolved["OLD"] = values[len(names) + 1]
    error: BaseException = _ic._create_violation_error(contract=contract, resolved_kwargs=resolved)
    return error


def decorate_with_checker(func: Callable[..., Any]) -> Callable[..., Any]:
    """icontract's checker for ``func``, with a planned fast path for plain sync functions."""
    _GENERATION[0] += 1
    slow: Callable[..., Any] = _icontract_checker(func)
    sig = inspect.signature(func)
    if inspect.iscoroutinefunction(func) or not _plain_signature(sig):
        return slow
    names = tuple(sig.parameters)
    defaults = tuple(p.default for p in sig.parameters.values())
    count = len(names)
    positional = sum(p.kind is _PLAIN for p in sig.parameters.values())
    exact = count if positional == count else -1  # the arity of a call that binds by position
    pres: list[list[Any]] = slow.__preconditions__  # type: ignore[attr-defined]
    snaps: list[Any] = slow.__postcondition_snapshots__  # type: ignore[attr-defined]
    posts: list[Any] = slow.__postconditions__  # type: ignore[attr-defined]
    id_func = id(func)
    plans: list[_Plan | None] = [None]
    unplanned = -1  # the generation at which planning was found impossible

    def resolve(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Values | None:
        if len(args) > positional:
            return None
        values = list(args)
        used = 0
        for name, default in zip(names[len(args) :], defaults[len(args) :], strict=True):
            if name in kwargs:
                values.append(kwargs[name])
                used += 1
            elif default is not _EMPTY:
                values.append(default)
            else:
                return None
        return values if used == len(kwargs) else None

    def plan() -> _Plan | None:
        # Built at the first call after any decoration, so it sees every contract.
        nonlocal unplanned
        if unplanned == _GENERATION[0]:
            return None
        made: _Plan | None = None
        pres, snaps, posts = (getattr(wrapper, name) for name in _LISTS)
        with contextlib.suppress(KeyError):  # a condition the plan cannot call positionally
            made = _Plan(names, pres, snaps, posts) if len(pres) <= 1 else None
        if made is None:
            unplanned = _GENERATION[0]
        plans[0] = made
        return made

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _ic._assert_preconditions.__module__ != _ICONTRACT:
            return slow(*args, **kwargs)
        values = args if not kwargs and len(args) == exact else resolve(args, kwargs)
        checks = plans[0]
        if checks is None or checks.generation != _GENERATION[0]:
            checks = plan()
        if values is None or checks is None:
            return slow(*args, **kwargs)
        in_progress = _IN_PROGRESS.get()
        if in_progress is None:
            in_progress = set()
            _IN_PROGRESS.set(in_progress)
        if id_func in in_progress:
            return func(*args, **kwargs)
        in_progress.add(id_func)
        try:
            for contract, check in checks.pre:
                if not check(values):
                    raise _violation(contract, names, values, args, kwargs)
            if not checks.post:
                return func(*args, **kwargs)
            old = (
                _ic.Old({name: capture(values) for name, capture in checks.snap})
                if checks.snap
                else None
            )
            result = func(*args, **kwargs)
            after = (*values, result, old)
            for contract, check in checks.post:
                if not check(after):
                    raise _violation(contract, names, after, args, kwargs)
            return result
        finally:
            in_progress.discard(id_func)

    functools.update_wrapper(wrapper, func)
    wrapper.__preconditions__ = pres  # type: ignore[attr-defined]
    wrapper.__postcondition_snapshots__ = snaps  # type: ignore[attr-defined]
    wrapper.__postconditions__ = posts  # type: ignore[attr-defined]
    return wrapper


# Per list of invariants (a class's): each condition as a function of the instance alone.
_INVARIANT_CONDITIONS: dict[int, tuple[list[Any], int, tuple[Callable[[Any], Any], ...]]] = {}


def _invariant_conditions(invariants: list[Any]) -> tuple[Callable[[Any], Any], ...]:
    known = _INVARIANT_CONDITIONS.get(id(invariants))
    if known is not None and known[0] is invariants and known[1] == len(invariants):
        return known[2]
    conditions = tuple(_of_instance(c) for c in invariants)
    _INVARIANT_CONDITIONS[id(invariants)] = (invariants, len(invariants), conditions)
    return conditions


def _of_instance(contract: Any) -> Callable[[Any], Any]:
    # icontract passes ``self`` by keyword when the condition takes it, else nothing.
    condition: Callable[..., Any] = contract.condition
    params = list(inspect.signature(condition).parameters.values())
    if [(p.name, p.kind, p.default) for p in params] == [("self", _PLAIN, _EMPTY)]:
        return condition
    if "self" in contract.condition_arg_set:
        return lambda instance: condition(self=instance)
    return lambda instance: condition()


def _invariant_broken(instance: Any, condition: Callable[[Any], Any]) -> BaseException:
    invariants = instance.__class__.__invariants_on_call__
    for contract, made in zip(invariants, _invariant_conditions(invariants), strict=True):
        if made is condition:
            error: BaseException = _ic._create_violation_error(
                contract=contract, resolved_kwargs={"self": instance}
            )
            return error
    raise AssertionError("a condition of no invariant")  # unreachable: made from the list


def _decorate_with_invariants(func: Callable[..., Any], cls: type, is_init: bool) -> Any:
    """icontract's invariant wrapper, with a fast path for a plain sync method."""
    if (
        is_init
        or func.__name__ == "__setattr__"
        or inspect.iscoroutinefunction(func)
        or _ic._already_decorated_with_invariants(func=func)
        or next(iter(inspect.signature(func).parameters), None) != "self"
    ):
        return _icontract_invariants(func=func, cls=cls, is_init=is_init)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args or _ic._assert_invariant.__module__ != _ICONTRACT:
            return slow(*args, **kwargs)
        instance = args[0]
        conditions = _invariant_conditions(instance.__class__.__invariants_on_call__)
        in_progress = _IN_PROGRESS.get()
        if in_progress is None:
            in_progress = set()
            _IN_PROGRESS.set(in_progress)
        id_instance = id(instance)
        if id_instance in in_progress:
            return func(*args, **kwargs)
        in_progress.add(id_instance)
        try:
            for condition in conditions:
                if not condition(instance):
                    raise _invariant_broken(instance, condition)
            result = func(*args, **kwargs)
            for condition in conditions:
                if not condition(instance):
                    raise _invariant_broken(instance, condition)
            return result
        finally:
            in_progress.discard(id_instance)

    slow = _icontract_invariants(func=func, cls=cls, is_init=is_init)
    functools.update_wrapper(wrapper, func)
    wrapper.__is_invariant_check__ = True  # type: ignore[attr-defined]
    return wrapper


def _counting(add: Callable[..., None]) -> Callable[..., None]:
    def counted(*args: Any, **kwargs: Any) -> None:
        _GENERATION[0] += 1
        add(*args, **kwargs)

    return counted


def install() -> None:
    """Make icontract build the checkers above from now on (decorations already made keep
    icontract's own)."""
    for name, add in _icontract_adds.items():
        setattr(_ic, name, _counting(add))
    _ic.decorate_with_checker = decorate_with_checker  # type: ignore[assignment]
    _ic._decorate_with_invariants = _decorate_with_invariants
