"""Sequential specifications for the linearizability checker.

A model is a record of functions and the checker knows nothing else about the system under test,
so a new data type is a new `Model`, not a new checker. States must be hashable, and `==` is
state equality (one notion for both the memo cache and comparison). `step` must be pure: the
checker remembers its answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from harness.checkers.verdict import json_able
from harness.history import Operation

__all__ = [
    "Fast",
    "Model",
    "ModelError",
    "cas_register",
    "etcd_register",
    "freeze",
    "kv",
    "multi_register",
    "mutex",
    "partition_by_key",
    "register",
    "show",
]

S = TypeVar("S", bound=Hashable)
In = TypeVar("In", bound=Hashable)
Out = TypeVar("Out")


class ModelError(ValueError):
    """An operation the model cannot interpret (an unknown `f`, a malformed value)."""


def show(value: object) -> str:
    """A value as compact JSON text, for people: `"a"`, `null`, `[1, 2]` (tuples as lists,
    sets sorted), not a Python repr."""
    return json.dumps(json_able(value), ensure_ascii=False)


def _no_partition(ops: Sequence[Operation]) -> list[list[Operation]]:
    return [list(ops)]


def _never(_input: Any, _output: Any) -> bool:
    return False


def _no_fast(_input: Any, _output: Any) -> None:
    return None


Fast: TypeAlias = tuple[Literal["reads", "reads-any", "writes", "appends"], Hashable]
"""A step the checker can take without calling `step`:

- ("reads", v): legal exactly in state v, which it leaves unchanged;
- ("reads-any", None): legal in every state, which it leaves unchanged;
- ("writes", v): legal in every state, and the next state is v;
- ("appends", v): legal in every state, and the next state is `state + v` (strings, tuples).
"""


@dataclass(frozen=True, slots=True)
class Model(Generic[S, In, Out]):
    """A sequential specification, Porcupine style.

    - `init()`: the initial state.
    - `step(state, input, output) -> (legal, next_state)`: can the operation, applied to `state`,
      return `output`? For an operation whose outcome is unknown, `output` is what `encode`
      gave for it, and `step` answers whether it can take effect in `state` at all.
    - `encode(op)`: the operation as (input, output), or None if it did not happen (e.g. a
      Knossos `:fail`). Called once per operation, so models normalize values here.
    - `partition(ops)`: independent sub-histories (P-compositionality), e.g. one per key.
    - `read_only(input, output)`: True if the operation leaves the state unchanged in every state
      where it is legal. A hint: the checker then linearizes it as early as it can instead of
      branching on it. A wrong True gives wrong verdicts; False is always safe.
    - `fast(input, output)`: a `Fast` shape of the step, or None. A hint like `read_only`: the
      checker then compares states inline instead of calling `step`, which is most of the cost
      of a search in Python. It must agree with `step`.
    - `describe_operation(input, output)`, `describe_state(state)`: text for reports.
    """

    name: str
    init: Callable[[], S]
    step: Callable[[S, In, Out], tuple[bool, S]]
    encode: Callable[[Operation], tuple[In, Out] | None]
    partition: Callable[[Sequence[Operation]], list[list[Operation]]] = _no_partition
    read_only: Callable[[In, Out], bool] = _never
    fast: Callable[[In, Out], Fast | None] = _no_fast
    describe_operation: Callable[[In, Out], str] = field(
        default=lambda i, o: f"{show(i)} -> {show(o)}"
    )
    describe_state: Callable[[S], str] = show


Value: TypeAlias = Hashable


_SCALARS = frozenset({int, str, float, bool, type(None)})


def freeze(value: object) -> Hashable:
    """JSON data as a hashable value: lists become tuples, maps sorted tuples of pairs."""
    # Set-add histories carry whole sets of scalars in every op: skip the recursion for them.
    if type(value) is list and all(type(v) in _SCALARS for v in value):
        return tuple(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((str(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, Hashable):
        return value
    raise ModelError(f"cannot use {value!r} as a value")


def partition_by_key(ops: Sequence[Operation]) -> list[list[Operation]]:
    """One sub-history per `key`, each in call order."""
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(freeze(op.key), []).append(op)
    return list(groups.values())


def _pair(op: Operation) -> tuple[Value, Value]:
    value = freeze(op.input)
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ModelError(f"op {op.invoke.index}: {op.f} needs [from to], got {op.input!r}")
    return value[0], value[1]


def _unknown_f(model: str, op: Operation) -> ModelError:
    return ModelError(f"op index {op.invoke.index}: the {model} model has no operation {op.f!r}")


# Inputs are tuples tagged with the operation name; outputs are plain values.
RegInput: TypeAlias = tuple[str, Value, Value]


def _fast_reg(inp: RegInput, out: Value) -> Fast | None:
    if inp[0] == "read":
        return "reads", out
    if inp[0] == "write":
        return "writes", inp[1]
    return None


# ---------------------------------------------------------------------------------------------
# Knossos' CAS register


def _describe_reg(inp: RegInput, out: object) -> str:
    f, a, b = inp
    if f == "read":
        return f"read -> {show(out)}"
    if f == "write":
        return f"write {show(a)}"
    if f == "cas":
        status = {True: " ok", False: " failed", None: ""}.get(out, f" -> {show(out)}")  # type: ignore[call-overload]
        return f"cas {show(a)}->{show(b)}{status}"
    return f"{f} {show(a)} {show(b)} -> {show(out)}"


def cas_register(initial: object = 0) -> Model[Value, RegInput, Value]:
    """Knossos' `(cas-register initial)`: read, write, cas [from to].

    `:fail` means the operation did not happen, so it is dropped. A read that returned nil matches
    any value (Knossos reads nil as "value not known"). A cas is legal only when the register
    holds `from`.
    """
    init_value = freeze(initial)

    def encode(op: Operation) -> tuple[RegInput, Value] | None:
        if op.status == "fail":
            return None
        if op.f == "read":
            return None if op.unknown else (("read", None, None), freeze(op.output))
        if op.f == "write":
            return ("write", freeze(op.input), None), None
        if op.f == "cas":
            return ("cas", *_pair(op)), None
        raise _unknown_f("cas-register", op)

    def step(state: Value, inp: RegInput, out: Value) -> tuple[bool, Value]:
        f = inp[0]
        if f == "read":
            return (out is None or out == state), state
        if f == "write":
            return True, inp[1]
        return (state == inp[1]), inp[2] if state == inp[1] else state

    return Model(
        name=f"cas-register({initial!r})",
        init=lambda: init_value,
        step=step,
        encode=encode,
        read_only=lambda inp, out: inp[0] == "read",
        fast=lambda inp, out: (
            ("reads-any", None) if inp[0] == "read" and out is None else _fast_reg(inp, out)
        ),
        describe_operation=_describe_reg,
    )


# ---------------------------------------------------------------------------------------------
# Porcupine's etcd register


def etcd_register() -> Model[Value, RegInput, Value]:
    """Porcupine's etcd model: a register that starts nil (absent), read/write/cas.

    A read returns the current value (nil when absent). An `:ok` cas swapped; a `:fail` cas is
    a real operation that saw a value other than `from`, and is checked. A `:fail` read (timed
    out) is dropped. Unknown writes and cases may take effect any time after their call, or not
    at all; an unknown cas that takes effect swaps only if it sees `from`.
    """

    def encode(op: Operation) -> tuple[RegInput, Value] | None:
        if op.f == "read":
            if op.status != "ok":
                return None
            return ("read", None, None), freeze(op.output)
        if op.f == "write":
            return None if op.status == "fail" else (("write", freeze(op.input), None), None)
        if op.f == "cas":
            out = None if op.unknown else op.status == "ok"
            return ("cas", *_pair(op)), out
        raise _unknown_f("etcd", op)

    def step(state: Value, inp: RegInput, out: Value) -> tuple[bool, Value]:
        f = inp[0]
        if f == "read":
            return out == state, state
        if f == "write":
            return True, inp[1]
        swapped = state == inp[1]
        if out is None:
            return True, inp[2] if swapped else state
        return swapped == out, inp[2] if swapped else state

    return Model(
        name="etcd-register",
        init=lambda: None,
        step=step,
        encode=encode,
        read_only=lambda inp, out: inp[0] == "read" or (inp[0] == "cas" and out is False),
        fast=_fast_reg,
        describe_operation=_describe_reg,
    )


# ---------------------------------------------------------------------------------------------
# Our own harness: a read/write register per key


def register(initial: object = None) -> Model[Value, RegInput, Value]:
    """A read/write/cas register per key (partitioned by `key`) for the harness' own
    histories.

    Every key starts at `initial` (None: absent). A read must return exactly the current value;
    a cas [from, to] is legal only when the register holds `from`. `:fail` means the operation
    did not happen (a cas that found another value is recorded so, as Knossos does).
    """
    init_value = freeze(initial)

    def encode(op: Operation) -> tuple[RegInput, Value] | None:
        if op.status == "fail":
            return None
        if op.f == "read":
            return None if op.unknown else (("read", None, None), freeze(op.output))
        if op.f == "write":
            return ("write", freeze(op.input), None), None
        if op.f == "cas":
            return ("cas", *_pair(op)), None
        raise _unknown_f("register", op)

    def step(state: Value, inp: RegInput, out: Value) -> tuple[bool, Value]:
        if inp[0] == "read":
            return out == state, state
        if inp[0] == "cas":
            return state == inp[1], inp[2]
        return True, inp[1]

    return Model(
        name="register",
        init=lambda: init_value,
        step=step,
        encode=encode,
        partition=partition_by_key,
        read_only=lambda inp, out: inp[0] == "read",
        fast=_fast_reg,
        describe_operation=_describe_reg,
    )


# ---------------------------------------------------------------------------------------------
# Porcupine's key-value store

KvInput: TypeAlias = tuple[str, Value, str]
KvState: TypeAlias = str | tuple[tuple[Value, str], ...]


def _describe_kv(inp: KvInput, out: object) -> str:
    f, key, value = inp
    if f == "get":
        return f"get {show(key)} -> {show(out)}"
    return f"{f} {show(key)} {show(value)}"


def _fast_kv(inp: KvInput, out: object) -> Fast | None:
    if inp[0] == "get":
        return ("reads", out) if isinstance(out, str) else None
    if inp[0] == "put":
        return "writes", inp[2]
    return "appends", inp[2]


def kv(*, partitioned: bool = True) -> Model[KvState, KvInput, object]:
    """Porcupine's kv model: get/put/append on string keys; every key starts as "".

    Partitioned (the default), each key is its own sub-history and the state is that key's
    string. Unpartitioned, the state is the whole map as a sorted tuple of (key, value) pairs.
    `:fail` means the operation did not happen.
    """

    def encode(op: Operation) -> tuple[KvInput, object] | None:
        if op.status == "fail":
            return None
        key = freeze(op.key)
        if op.f == "get":
            return None if op.unknown else (("get", key, ""), op.output)
        if op.f in ("put", "append"):
            if not isinstance(op.input, str):
                raise ModelError(f"op index {op.invoke.index}: {op.f} needs a string value")
            return (op.f, key, op.input), None
        raise _unknown_f("kv", op)

    def step_one(state: KvState, inp: KvInput, out: object) -> tuple[bool, KvState]:
        f = inp[0]
        if f == "get":
            return out == state, state
        if f == "put":
            return True, inp[2]
        assert isinstance(state, str)
        return True, state + inp[2]

    def step_map(state: KvState, inp: KvInput, out: object) -> tuple[bool, KvState]:
        f, key, value = inp
        assert isinstance(state, tuple)
        current = dict(state)
        if f == "get":
            return out == current.get(key, ""), state
        current[key] = value if f == "put" else current.get(key, "") + value
        return True, tuple(sorted(current.items(), key=lambda kv: repr(kv[0])))

    return Model(
        name="kv" if partitioned else "kv-no-partition",
        init=(lambda: "") if partitioned else tuple,
        step=step_one if partitioned else step_map,
        encode=encode,
        partition=partition_by_key if partitioned else _no_partition,
        read_only=lambda inp, out: inp[0] == "get",
        fast=_fast_kv if partitioned else _no_fast,
        describe_operation=_describe_kv,
    )


# ---------------------------------------------------------------------------------------------
# Knossos' multi-register

MicroOp: TypeAlias = tuple[str, Value, Value]
Txn: TypeAlias = tuple[MicroOp, ...]
MultiState: TypeAlias = tuple[tuple[Value, Value], ...]


def _describe_txn(inp: Txn, out: object) -> str:
    return " ".join(f"{f}({show(k)}, {show(v)})" for f, k, v in inp)


def multi_register(initial: Mapping[str, object]) -> Model[MultiState, Txn, None]:
    """Knossos' `(multi-register initial)`: `:txn` of `[:read k v]` / `[:write k v]` micro-ops.

    A read of nil matches any value. A completed txn is checked with its completion's micro-ops
    (the values read); an unknown one with its invocation's. `:fail` means it did not happen.
    """
    start: MultiState = tuple(sorted(((k, freeze(v)) for k, v in initial.items()), key=repr))

    def encode(op: Operation) -> tuple[Txn, None] | None:
        if op.status == "fail":
            return None
        if op.f != "txn":
            raise _unknown_f("multi-register", op)
        raw = op.input if op.unknown else op.output
        txn = freeze(raw)
        if not isinstance(txn, tuple) or not all(
            isinstance(m, tuple) and len(m) == 3 and m[0] in ("read", "write") for m in txn
        ):
            raise ModelError(f"op index {op.invoke.index}: malformed txn {raw!r}")
        return txn, None

    def step(state: MultiState, txn: Txn, _out: None) -> tuple[bool, MultiState]:
        current = dict(state)
        for f, k, v in txn:
            if f == "read":
                if v is not None and current.get(k) != v:
                    return False, state
            else:
                current[k] = v
        return True, tuple(sorted(current.items(), key=repr))

    return Model(
        name="multi-register",
        init=lambda: start,
        step=step,
        encode=encode,
        read_only=lambda txn, out: all(m[0] == "read" for m in txn),
        describe_operation=_describe_txn,
        describe_state=lambda s: "{" + ", ".join(f"{k}: {show(v)}" for k, v in s) + "}",
    )


# ---------------------------------------------------------------------------------------------
# Knossos' mutex


def mutex() -> Model[bool, str, None]:
    """Knossos' `(mutex)`: acquire on a free lock, release on a held one; starts free.

    The state is only whether the lock is held, not by whom (as in Knossos). `:fail` means the
    operation did not happen.
    """

    def encode(op: Operation) -> tuple[str, None] | None:
        if op.status == "fail":
            return None
        if op.f not in ("acquire", "release"):
            raise _unknown_f("mutex", op)
        return op.f, None

    def step(held: bool, f: str, _out: None) -> tuple[bool, bool]:
        if f == "acquire":
            return (not held), True
        return held, False

    return Model(
        name="mutex",
        init=lambda: False,
        step=step,
        encode=encode,
        describe_operation=lambda f, out: f,
        describe_state=lambda held: "held" if held else "free",
    )
