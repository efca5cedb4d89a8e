"""A cheaper runtime for icontract: the same contracts, checked at the same calls.

icontract's wrapper, on every call, builds a dict of the call's arguments, filters it once per
condition, and asks ``inspect`` whether each condition is a coroutine function. That machinery,
not the conditions, was most of what contracts cost (benchmarks/README.md). ``install`` makes
icontract build, for a plain sync function, a wrapper written for that function: its signature,
each condition called with the arguments it names, no per-call lookups. It is written at the
function's first call, and again at the next call after a contract is added to the function. A
method of a class with invariants gets a wrapper that calls each invariant with the instance,
from a tuple made once per class.

What icontract stores is unchanged: a checker still carries ``__preconditions__``,
``__postcondition_snapshots__``, ``__postconditions__`` (the very lists icontract fills) and
``__wrapped__``, and a class its ``__invariants__``, so CrossHair and ``proofs/run.py`` read the
same contracts. Every condition runs where icontract runs it, in icontract's order, with
icontract's guard against recursive checks, and a violation raises the error icontract itself
builds. Anything else (async functions, ``*args``/``**kwargs``, "require else" groups and DBC
inheritance, a condition whose arguments the call cannot bind, ``_ARGS``/``_KWARGS``,
``__setattr__``) keeps icontract's wrapper, as does everything while a tool has switched
icontract's checks off.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
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
# Marks a query (``contracts.query``). Defined here, not imported: contracts.py imports this
# module, which may be imported first.
QUERY = "__dynamo_ref_query__"
_LISTS = ("__preconditions__", "__postcondition_snapshots__", "__postconditions__")
_REGENERATE = "__dynamo_ref_regenerate__"
# In a written checker's source: true while a tool has icontract's checks off (see above).
_TOOL_OFF = "_dc_ic._assert_preconditions.__module__ != _dc_ICONTRACT"
# A checker is written at its first call, with the contracts it holds then: each contract
# added would write it again, and most functions are never called in a given process (a
# node's start compiled some 500 checkers, half of its import time). Until then it runs this.
# It writes nothing while a tool has icontract's checks off: under CrossHair a write inside one
# path and not in the next is a path that changed without a decision (NotDeterministic).
_UNWRITTEN = next(
    c
    for c in compile(
        "def _dc_unwritten(*args, **kwargs):\n"
        f"    if {_TOOL_OFF}:\n"
        "        return _dc_slow(*args, **kwargs)\n"
        "    return _dc_write()(*args, **kwargs)\n",
        "<contract checker not yet written>",
        "exec",
    ).co_consts
    if isinstance(c, types.CodeType)
)


def _plain_signature(sig: inspect.Signature) -> bool:
    names = set(sig.parameters)
    kinds = [p.kind for p in sig.parameters.values()]
    # Keyword-only parameters after the positional ones, none named like icontract's own.
    return (
        kinds == sorted(kinds)
        and set(kinds) <= {_PLAIN, _KW_ONLY}
        and not names & _RESERVED
        and not any(n.startswith("_dc_") for n in names)  # the wrapper's own variables
    )


def _call(fn: Callable[..., Any], available: Sequence[str]) -> str | None:
    """The argument list of a call of ``fn`` (a condition or capture) from the wrapper's
    variables, as icontract binds them: by name, leaving out parameters with defaults that
    the call lacks. None if a parameter can be bound by none of them."""
    params = inspect.signature(fn).parameters.values()
    if all(p.kind is _PLAIN and p.default is _EMPTY for p in params):
        if all(p.name in available for p in params):
            return ", ".join(_local(p.name) for p in params)  # positionally: the cheaper call
        return None
    out = []
    for p in params:
        if p.kind not in (_PLAIN, _KW_ONLY):
            return None
        if p.name in available:
            out.append(f"{p.name}={_local(p.name)}")
        elif p.default is _EMPTY:
            return None
    return ", ".join(out)


def _local(name: str) -> str:
    # ``result`` and ``OLD`` live in the wrapper's own variables, named apart from parameters.
    return {"result": "_dc_result", "OLD": "_dc_old"}.get(name, name)


def _violation(contract: Any, values: dict[str, Any]) -> BaseException:
    """icontract's error for ``contract``, from the wrapper's variables at the violation."""
    resolved = {
        _RESOLVED.get(k, k): v for k, v in values.items() if k[:4] != "_dc_" or k in _RESOLVED
    }
    error: BaseException = _ic._create_violation_error(contract=contract, resolved_kwargs=resolved)
    return error


_RESOLVED = {"_dc_result": "result", "_dc_old": "OLD"}


def _source(
    name: str, positional: Sequence[str], keyword: Sequence[str], checker: Any
) -> tuple[str, dict[str, Any]] | None:
    """The wrapper's source for the contracts ``checker`` holds now, and the names it uses;
    None if icontract's own wrapper must serve (see the module docstring)."""
    pres: list[list[Any]] = checker.__preconditions__
    snaps: list[Any] = checker.__postcondition_snapshots__
    posts: list[Any] = checker.__postconditions__
    if len(pres) > 1:
        return None  # "require else" groups
    params = [*positional, *(["*", *keyword] if keyword else [])]
    forward = ", ".join([*positional, *(f"{k}={k}" for k in keyword)])
    names: dict[str, Any] = {}
    body = []
    report = "locals()"  # the wrapper's variables: _violation makes icontract's report of them
    for i, contract in enumerate(pres[0] if pres else []):
        args = _call(contract.condition, [*positional, *keyword])
        if args is None:
            return None
        names[f"_dc_pre{i}"], names[f"_dc_prec{i}"] = contract.condition, contract
        body += [f"if not _dc_pre{i}({args}):", f"    raise _dc_violation(_dc_prec{i}, {report})"]
    call = f"_dc_func({forward})"
    if posts:
        available = [*positional, *keyword]
        if snaps:
            captures = []
            for i, snap in enumerate(snaps):
                args = _call(snap.capture, available)
                if args is None:
                    return None
                names[f"_dc_snap{i}"] = snap.capture
                captures.append(f"{snap.name!r}: _dc_snap{i}({args})")
            body.append(f"_dc_old = _dc_Old({{{', '.join(captures)}}})")
        body.append(f"_dc_result = {call}")
        for i, contract in enumerate(posts):
            args = _call(contract.condition, [*available, "result", *(["OLD"] if snaps else [])])
            if args is None:
                return None
            names[f"_dc_post{i}"], names[f"_dc_postc{i}"] = contract.condition, contract
            body += [
                f"if not _dc_post{i}({args}):",
                f"    raise _dc_violation(_dc_postc{i}, {report})",
            ]
        body.append("return _dc_result")
    else:
        body.append(f"return {call}")
    lines = [
        f"def {name}({', '.join(params)}):",
        f"    if {_TOOL_OFF}:",
        f"        return _dc_slow({forward})",
        "    _dc_ip = _dc_IN_PROGRESS.get()",
        "    if _dc_ip is None:",
        "        _dc_ip = set()",
        "        _dc_IN_PROGRESS.set(_dc_ip)",
        "    if _dc_ID in _dc_ip:",
        f"        return {call}",
        "    _dc_ip.add(_dc_ID)",
        "    try:",
        *(f"        {line}" for line in body),
        "    finally:",
        "        _dc_ip.discard(_dc_ID)",
    ]
    return "\n".join(lines) + "\n", names


def decorate_with_checker(func: Callable[..., Any]) -> Callable[..., Any]:
    """icontract's checker for ``func``; for a plain sync function, a wrapper written for its
    signature and its contracts, written at its first call after a contract is added."""
    slow: Callable[..., Any] = _icontract_checker(func)
    sig = inspect.signature(func)
    caller = sys._getframe(1).f_globals.get("__name__")
    if (
        inspect.iscoroutinefunction(func)
        or not _plain_signature(sig)
        or caller == "icontract._metaclass"  # DBC inheritance replaces a checker's lists
    ):
        return slow
    positional = [n for n, p in sig.parameters.items() if p.kind is _PLAIN]
    keyword = [n for n, p in sig.parameters.items() if p.kind is _KW_ONLY]
    name = func.__name__ if func.__name__.isidentifier() else "wrapper"
    space: dict[str, Any] = {
        "_dc_func": func,
        "_dc_slow": slow,
        "_dc_ic": _ic,
        "_dc_ICONTRACT": _ICONTRACT,
        "_dc_IN_PROGRESS": _IN_PROGRESS,
        "_dc_ID": id(func),
        "_dc_Old": _ic.Old,
        "_dc_violation": _violation,
    }
    signature = ", ".join([*positional, *(["*", *keyword] if keyword else [])])
    forward = ", ".join([*positional, *(f"{k}={k}" for k in keyword)])
    fallback = f"def {name}({signature}):\n    return _dc_slow({forward})\n"
    where = f"<contract checker of {func.__module__}.{func.__qualname__}>"

    def write() -> Any:
        made = _source(name, positional, keyword, slow)
        source, names = (fallback, {}) if made is None else made
        space.update(names)
        # Into a scope of its own: two threads may write the same checker at once.
        scope: dict[str, Any] = {}
        exec(compile(source, where, "exec"), space, scope)
        wrapper.__code__ = scope[name].__code__
        return wrapper

    def regenerate() -> None:
        wrapper.__code__ = _UNWRITTEN

    space["_dc_write"] = write
    wrapper = types.FunctionType(_UNWRITTEN, space, name)
    wrapper.__defaults__ = func.__defaults__
    wrapper.__kwdefaults__ = func.__kwdefaults__
    functools.update_wrapper(wrapper, func)
    for attr in _LISTS:
        setattr(wrapper, attr, getattr(slow, attr))
    setattr(wrapper, _REGENERATE, regenerate)
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


def _invariant_broken(
    instance: Any, condition: Callable[[Any], Any], invariants: list[Any] | None = None
) -> BaseException:
    if invariants is None:
        invariants = instance.__class__.__invariants_on_call__
    for contract, made in zip(invariants, _invariant_conditions(invariants), strict=True):
        if made is condition:
            error: BaseException = _ic._create_violation_error(
                contract=contract, resolved_kwargs={"self": instance}
            )
            return error
    raise AssertionError("a condition of no invariant")  # unreachable: made from the list


def _decorate_with_invariants(func: Callable[..., Any], cls: type, is_init: bool) -> Any:
    """icontract's invariant wrapper, with a fast path for a plain sync method; none for a
    method marked ``query`` (core/contracts.py): it changes nothing the invariants read."""
    if not is_init and getattr(func, QUERY, False):
        # The method itself, unwrapped and unmarked: each invariant of the class brings it back
        # here and it comes back unchanged. (Marked as an invariant check, CrossHair would
        # unwrap it, and it wraps nothing.)
        return func
    if is_init and not inspect.iscoroutinefunction(func):
        return _init_with_invariants(func, cls)
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
    return _invariant_check(wrapper, func)


def _init_with_invariants(func: Callable[..., Any], cls: type) -> Any:
    """icontract's ``__init__`` wrapper, with the same fast path as a method's: no invariant
    checks on the instance while the constructor runs, then those of ``cls.__invariants__``
    (icontract's list, which a subclass's invariants join)."""
    if _ic._already_decorated_with_invariants(func=func):
        return func

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args or _ic._assert_invariant.__module__ != _ICONTRACT:
            return slow(*args, **kwargs)
        instance = args[0]
        in_progress = _IN_PROGRESS.get()
        if in_progress is None:
            in_progress = set()
            _IN_PROGRESS.set(in_progress)
        id_instance = id(instance)
        in_progress.add(id_instance)
        try:
            result = func(*args, **kwargs)
            invariants = cls.__invariants__  # type: ignore[attr-defined]
            for condition in _invariant_conditions(invariants):
                if not condition(instance):
                    raise _invariant_broken(instance, condition, invariants)
            return result
        finally:
            in_progress.discard(id_instance)

    slow = _icontract_invariants(func=func, cls=cls, is_init=True)
    return _invariant_check(wrapper, func)


def _invariant_check(wrapper: Callable[..., Any], func: Callable[..., Any]) -> Any:
    """``wrapper`` as icontract marks its own: it wraps ``func`` (CrossHair follows
    ``__wrapped__``) and is not wrapped again for the class's next invariant."""
    functools.update_wrapper(wrapper, func)
    wrapper.__is_invariant_check__ = True  # type: ignore[attr-defined]
    return wrapper


def _regenerating(add: Callable[..., None]) -> Callable[..., None]:
    def added(*args: Any, **kwargs: Any) -> None:
        add(*args, **kwargs)
        checker = args[0] if args else kwargs.get("checker")
        regenerate = getattr(checker, _REGENERATE, None)
        if regenerate is not None:
            regenerate()

    return added


def install() -> None:
    """Make icontract build the checkers above from now on (decorations already made keep
    icontract's own)."""
    for name, add in _icontract_adds.items():
        setattr(_ic, name, _regenerating(add))
    _ic.decorate_with_checker = decorate_with_checker  # type: ignore[assignment]
    _ic._decorate_with_invariants = _decorate_with_invariants
