"""Linearizability checker: Wing & Gong's search with Lowe's memo cache, over a `Model`.

The history becomes a doubly linked list of call and return entries in real-time order. The
search linearizes ("lifts") an operation whose call comes before the first return still in the
list, if the model accepts it in the current state, and backtracks ("unlifts") when it meets a
return entry it cannot pass. A cache of (linearized set as an int bitset, state) skips any
configuration seen before. Independent partitions (per key) are checked separately.

Operations with an unknown outcome (`:info`, or never returned) have no return entry: they may
be linearized at any point after their call, or never. Beyond the plain search:

- An operation the model calls read-only is linearized as soon as it is legal, without
  branching (moving a state-preserving operation earlier never hurts).
- An unknown operation is only linearized if it changes the state, and of several unknown
  operations with the same input only the earliest called is tried.
- Steps the model describes with a `Fast` shape (reads, writes, appends) are taken inline;
  other step results are memoized per operation and state while that pays.
- With appends on string states, a node is abandoned as soon as a pending read asks for a
  value the state can no longer become. (On "invalid", a second search that applies this only
  to the read at the first return locates the failure exactly where a plain search would.)

Each rule only skips configurations that cannot succeed where another explored one would not;
tests cross-check the verdicts against a brute-force search of every order.

The verdict is "valid", "invalid", or "unknown" when the time budget runs out: never a silent
pass. On "invalid" the result names the smallest failing partition, the first operation that
cannot be linearized, the longest linearizable prefix and the operations pending around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from harness.checkers.models import Fast, Model, freeze, partition_by_key
from harness.checkers.verdict import Case, Finding, Result
from harness.history import Op, Operation, pair

__all__ = [
    "CheckResult",
    "PartitionResult",
    "Verdict",
    "check",
    "check_history",
]

Verdict: TypeAlias = Literal["valid", "invalid", "unknown"]

AnyModel: TypeAlias = Model[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The verdict on one partition.

    `linearization`: for "valid", a full linearization (unknown operations that took effect
    included); otherwise the longest linearizable prefix found. `failed_op`: the first operation
    that no linearization gets past (its return comes before any order of the operations
    pending with it can be made legal), and `previous_ok` the last `:ok` to return before it.
    `pending`: the operations called but not linearized at that point, `failed_op` included.
    """

    verdict: Verdict
    key: object
    operations: list[Operation]
    linearization: list[Operation]
    state: str
    failed_op: Operation | None = None
    previous_ok: Operation | None = None
    pending: list[Operation] = field(default_factory=list)
    explored: int = 0
    elapsed: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a whole history: "invalid" if any partition is, else "unknown" if any
    partition ran out of time, else "valid". Partitions are checked smallest first and the check
    stops at the first invalid one, so `failure` is the smallest failing partition."""

    verdict: Verdict
    model: AnyModel
    operations: list[Operation]
    partitions: list[PartitionResult]
    failure: PartitionResult | None
    elapsed: float

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def describe(self, context: int = 8) -> str:
        """A short human-readable report."""
        lines = [
            f"{self.verdict}: {len(self.operations)} operations, {len(self.partitions)} "
            f"partition(s) checked, model {self.model.name}, {self.elapsed:.3f} s"
        ]
        for part in self.partitions:
            if part.verdict == "unknown":
                lines.append(f"  partition {part.key!r}: unknown ({part.reason})")
        fail = self.failure
        if fail is None:
            return "\n".join(lines)
        lines.append(f"  failing partition: key {fail.key!r}, {len(fail.operations)} operations")
        if fail.failed_op is not None:
            lines.append(f"  cannot linearize: {_describe_op(self.model, fail.failed_op)}")
        if fail.previous_ok is not None:
            lines.append(f"  previous ok:      {_describe_op(self.model, fail.previous_ok)}")
        prefix = fail.linearization
        lines.append(
            f"  longest linearizable prefix: {len(prefix)} operations, state {fail.state}"
            + (", ending with:" if prefix else "")
        )
        for op in prefix[-context:]:
            lines.append(f"    {_describe_op(self.model, op)}")
        lines.append("  pending at that point:")
        for op in fail.pending:
            lines.append(f"    {_describe_op(self.model, op)}")
        return "\n".join(lines)


def _describe_op(model: AnyModel, op: Operation) -> str:
    try:
        enc = model.encode(op)
    except ValueError:
        enc = None
    what = model.describe_operation(*enc) if enc is not None else f"{op.f} {op.input!r}"
    where = f"index {op.invoke.index}"
    if op.completion is not None:
        where += f"..{op.completion.index}"
    where += op.at_node()
    return f"process {op.process!r} {op.status:4} {what}  ({where})"


def check_history(
    model: AnyModel,
    history: Sequence[Op],
    *,
    time_limit: float | None = None,
    timeline: str | Path | None = None,
) -> CheckResult:
    """Pair the history's invocations with their completions, then `check`."""
    return check(model, pair(history), time_limit=time_limit, timeline=timeline)


def check(
    model: AnyModel,
    operations: Sequence[Operation],
    *,
    time_limit: float | None = None,
    timeline: str | Path | None = None,
) -> CheckResult:
    """Is the history of `operations` linearizable with respect to `model`?

    `time_limit` (seconds) bounds the whole check; when it runs out the verdict is "unknown".
    `timeline`: where to write an HTML timeline when the verdict is "invalid".
    """
    started = time.monotonic()
    deadline = None if time_limit is None else started + time_limit
    parts = sorted(model.partition(list(operations)), key=len)
    results: list[PartitionResult] = []
    failure: PartitionResult | None = None
    for part in parts:
        result = _check_partition(model, part, deadline)
        results.append(result)
        if result.verdict == "invalid":
            failure = result
            break
    verdict: Verdict = "valid"
    if failure is not None:
        verdict = "invalid"
    elif any(r.verdict == "unknown" for r in results):
        verdict = "unknown"
    outcome = CheckResult(
        verdict=verdict,
        model=model,
        operations=list(operations),
        partitions=results,
        failure=failure,
        elapsed=time.monotonic() - started,
    )
    if timeline is not None and failure is not None:
        from harness.report.timeline import write_timeline  # drawing is the report's business

        write_timeline(outcome, timeline)
    return outcome


def _common_key(ops: Sequence[Operation]) -> object:
    keys = {freeze(op.key) for op in ops}
    return ops[0].key if len(keys) == 1 and ops else None


class _Bits:
    """`bits[k] == 1 << k`, without storing them."""

    __slots__ = ()

    def __getitem__(self, k: int) -> int:
        return 1 << k


_FAIL = object()  # memo value: the step is illegal in that state
_MISS = object()


@dataclass(slots=True)
class _Search:
    """What the search loop leaves behind."""

    verdict: Verdict
    order: list[int]  # op numbers of the final (valid) or deepest (otherwise) linearization
    state: Hashable
    failed: int  # op number whose return could not be passed, or -1
    explored: int
    pruned: bool = False


def _check_partition(
    model: AnyModel, ops: Sequence[Operation], deadline: float | None
) -> PartitionResult:
    started = time.monotonic()
    key = _common_key(ops)
    kept: list[Operation] = []
    inputs: list[Any] = []
    outputs: list[Any] = []
    optional: list[bool] = []
    read_only: list[bool] = []
    shapes: list[Fast | None] = []
    for op in sorted(ops, key=lambda op: op.call):
        enc = model.encode(op)
        if enc is None:
            continue
        inp, out = enc
        shape = model.fast(inp, out)
        ro = bool(model.read_only(inp, out)) or (
            shape is not None and shape[0] in ("reads", "reads-any")
        )
        unknown = op.unknown or op.ret is None
        if unknown and ro:
            continue  # may or may not have happened, and could not have mattered
        kept.append(op)
        inputs.append(inp)
        outputs.append(out)
        optional.append(unknown)
        read_only.append(ro)
        shapes.append(shape)

    def search(prune_window: bool) -> _Search:
        return _search(
            model,
            kept,
            inputs=inputs,
            outputs=outputs,
            optional=optional,
            read_only=read_only,
            shapes=shapes,
            deadline=deadline,
            prune_window=prune_window,
        )

    res = search(prune_window=True)
    note = ""
    if res.verdict == "invalid" and res.pruned:
        # The verdict stands; search again with the narrower pruning so the report names the
        # same failing operation a plain search would.
        exact = search(prune_window=False)
        exact.explored += res.explored
        if exact.verdict == "invalid":
            res = exact
        else:
            note = "failure point approximate: time ran out while locating it exactly"
    order = [kept[k] for k in res.order]
    failed_op = kept[res.failed] if res.failed >= 0 else None
    previous_ok: Operation | None = None
    pending: list[Operation] = []
    if failed_op is not None:
        limit = failed_op.ret
        assert limit is not None
        done = set(res.order)
        for op in ops:
            if (
                op.status == "ok"
                and op.ret is not None
                and op.ret < limit
                and (previous_ok is None or op.ret > (previous_ok.ret or -1))
            ):
                previous_ok = op
        pending = [
            op
            for k, op in enumerate(kept)
            if k not in done and op.call < limit and (optional[k] or (op.ret or 0) >= limit)
        ]
    reason = note
    if res.verdict == "unknown":
        reason = f"time budget ran out after {res.explored} configurations"
    return PartitionResult(
        verdict=res.verdict,
        key=key,
        operations=list(ops),
        linearization=order,
        state=model.describe_state(res.state),
        failed_op=failed_op,
        previous_ok=previous_ok,
        pending=pending,
        explored=res.explored,
        elapsed=time.monotonic() - started,
        reason=reason,
    )


def _search(
    model: AnyModel,
    ops: Sequence[Operation],
    *,
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    optional: Sequence[bool],
    read_only: Sequence[bool],
    shapes: Sequence[Fast | None],
    deadline: float | None,
    prune_window: bool = True,
) -> _Search:
    """Depth-first search for a linearization of `ops` (in call order).

    `prune_window`: abandon a node for any read in the window that can no longer be satisfied
    (fast), or only for the read whose return comes first (slower, but the deepest point
    reached is then exactly where a search without this pruning would stop).

    The list of call and return entries is kept as four linked lists over operation numbers:
    the returns of operations with a known outcome (in return order), and the calls of
    read-only, other and unknown-outcome operations (in call order). The operations callable at
    a node are those whose call comes before the first return left; lifting an operation unlinks
    its call and return, unlifting relinks them (dancing links, in stack order).
    """
    n = len(ops)
    step: Callable[[Any, Any, Any], tuple[bool, Any]] = model.step
    state: Any = model.init()

    call = [op.call for op in ops]
    retpos = [op.ret if op.ret is not None and not optional[k] else -1 for k, op in enumerate(ops)]
    # How each step is taken: GENERAL calls `step` (memoized), the others compare inline.
    kind = [GENERAL] * n
    val: list[Any] = [None] * n
    for k, shape in enumerate(shapes):
        if shape is not None:
            kind[k] = _SHAPES[shape[0]]
            val[k] = shape[1]

    # Call lists share the arrays c_nxt/c_prv; their heads are n (read-only), n + 1 (others)
    # and n + 2 (unknown outcome). The return list has head n in r_nxt/r_prv. -1 ends a list.
    h_ro, h_w, h_opt = n, n + 1, n + 2
    c_nxt = [-1] * (n + 3)
    c_prv = [-1] * (n + 3)
    tails = {h_ro: h_ro, h_w: h_w, h_opt: h_opt}
    for k in range(n):
        if optional[k]:
            h = h_opt
        elif read_only[k]:
            h = h_ro
        else:
            h = h_w
        t = tails[h]
        c_nxt[t] = k
        c_prv[k] = t
        tails[h] = k
    r_head = n
    r_nxt = [-1] * (n + 1)
    r_prv = [-1] * (n + 1)
    t = r_head
    for k in sorted((k for k in range(n) if not optional[k]), key=retpos.__getitem__):
        r_nxt[t] = k
        r_prv[k] = t
        t = k

    # Of unknown operations with equal input, only the earliest unused one is tried.
    twin_bit = [0] * n
    last_twin: dict[Any, int] = {}
    for k in range(n):
        if not optional[k]:
            continue
        try:
            sig = (inputs[k], outputs[k])
            hash(sig)
        except TypeError:
            continue
        if sig in last_twin:
            twin_bit[k] = 1 << last_twin[sig]
        last_twin[sig] = k

    # A table of single-bit ints costs n^2/16 bytes, so huge partitions make them on demand.
    bit: list[int] | _Bits = [1 << k for k in range(n)] if n <= 8192 else _Bits()
    memo: list[dict[Any, Any]] = [{} for _ in range(n)]

    # Appends only extend a string state, so a read of v can still be satisfied only if v
    # extends the state, or extends a write not yet linearized, or some op of unknown effect
    # remains. `prefix_writes[k]`: the writes whose value v extends; `general`: ops whose
    # effect only `step` knows.
    prune_reads = isinstance(state, str) and any(kd == APPENDS for kd in kind)
    prefix_writes = [0] * n
    general = 0
    if prune_reads:
        for k in range(n):
            if kind[k] == GENERAL and not read_only[k]:
                general |= bit[k]
            elif kind[k] in (READS, WRITES, APPENDS) and not isinstance(val[k], str):
                prune_reads = False
        writes = [k for k in range(n) if kind[k] == WRITES]
        for k in range(n):
            if kind[k] == READS and prune_reads:
                for w in writes:
                    if val[k].startswith(val[w]):
                        prefix_writes[k] |= bit[w]
    use_memo = True
    lookups = misses = 0

    remaining = sum(1 for k in range(n) if not optional[k])
    if remaining == 0:
        return _Search("valid", [], state, -1, 0)

    lin = 0
    cache: set[tuple[int, Any]] = set()
    # Frames: (kind, op, state before, first-return position of the node).
    stack: list[tuple[int, int, Any, int]] = []
    # The deepest point reached (the furthest first return), for the failure report. Its path
    # is copied when the search first backtracks from it, not at every new record.
    best_pos = -1
    best_order: list[int] = []
    best_state: Any = state
    snapshot = False
    pruned = False  # whether a read made a node fail early
    failed = -1
    explored = 0

    mode = NODE
    x = -1
    s2: Any = None
    nl = 0
    limit = 0
    while True:
        if mode == NODE:
            explored += 1
            if deadline is not None and explored & 1023 == 1 and time.monotonic() > deadline:
                if snapshot:
                    best_order, best_state = [f[1] for f in stack], state
                return _Search("unknown", best_order, best_state, -1, explored)
            # Forced moves: a legal read-only operation goes first. It keeps the state, so the
            # scan goes on after it rather than from the start.
            limit = retpos[r_nxt[r_head]]
            x = c_nxt[h_ro]
            dead = False
            while x >= 0 and call[x] < limit:
                kd = kind[x]
                if kd == READS:
                    legal = state == val[x]
                elif kd == READS_ANY:
                    legal = True
                elif use_memo:
                    lookups += 1
                    t_ = memo[x]
                    s2 = t_.get(state, _MISS)
                    if s2 is _MISS:
                        misses += 1
                        ok, s2 = step(state, inputs[x], outputs[x])
                        t_[state] = s2 if ok else _FAIL
                        legal = ok
                    else:
                        legal = s2 is not _FAIL
                else:
                    legal, s2 = step(state, inputs[x], outputs[x])
                if not legal:
                    if (
                        prune_reads
                        and kd == READS
                        and (prune_window or retpos[x] == limit)
                        and lin & general == general
                        and lin & prefix_writes[x] == prefix_writes[x]
                        and not val[x].startswith(state)
                    ):
                        pruned = dead = True
                        break
                    x = c_nxt[x]
                    continue
                nl = lin | bit[x]
                size = len(cache)
                cache.add((nl, state))
                if len(cache) == size:
                    dead = True
                    break
                stack.append((FORCED, x, state, -1))
                lin = nl
                p, q = c_prv[x], c_nxt[x]
                c_nxt[p] = q
                if q >= 0:
                    c_prv[q] = p
                p, q2 = r_prv[x], r_nxt[x]
                r_nxt[p] = q2
                if q2 >= 0:
                    r_prv[q2] = p
                remaining -= 1
                if remaining == 0:
                    break
                limit = retpos[r_nxt[r_head]]
                x = q
            if remaining == 0:
                break
            if limit > best_pos:
                best_pos = limit
                failed = r_nxt[r_head]
                snapshot = True
            if dead:
                mode = BACK
            else:
                x = c_nxt[h_w]
                mode = SCAN
        if mode == SCAN:
            # Branch on each callable operation that may change the state.
            while x >= 0 and call[x] < limit:
                kd = kind[x]
                if kd == WRITES:
                    s2 = val[x]
                elif kd == APPENDS:
                    s2 = state + val[x]
                elif use_memo:
                    lookups += 1
                    t_ = memo[x]
                    s2 = t_.get(state, _MISS)
                    if s2 is _MISS:
                        misses += 1
                        ok, s2 = step(state, inputs[x], outputs[x])
                        if not ok:
                            s2 = _FAIL
                        t_[state] = s2
                else:
                    ok, s2 = step(state, inputs[x], outputs[x])
                    if not ok:
                        s2 = _FAIL
                if s2 is not _FAIL:
                    nl = lin | bit[x]
                    size = len(cache)
                    cache.add((nl, s2))
                    if len(cache) != size:
                        break
                x = c_nxt[x]
            else:
                x = c_nxt[h_opt]
                mode = OSCAN
            if mode == SCAN:
                stack.append((BRANCH, x, state, limit))
                state = s2
                lin = nl
                p, q = c_prv[x], c_nxt[x]
                c_nxt[p] = q
                if q >= 0:
                    c_prv[q] = p
                p, q = r_prv[x], r_nxt[x]
                r_nxt[p] = q
                if q >= 0:
                    r_prv[q] = p
                remaining -= 1
                if remaining == 0:
                    break
                mode = NODE
                continue
        if mode == OSCAN:
            # Branch on each callable unknown operation that would change the state.
            while x >= 0 and call[x] < limit:
                if lin & twin_bit[x] == twin_bit[x]:
                    kd = kind[x]
                    if kd == WRITES:
                        s2 = val[x]
                    elif kd == APPENDS:
                        s2 = state + val[x]
                    elif use_memo:
                        lookups += 1
                        t_ = memo[x]
                        s2 = t_.get(state, _MISS)
                        if s2 is _MISS:
                            misses += 1
                            ok, s2 = step(state, inputs[x], outputs[x])
                            if not ok:
                                s2 = _FAIL
                            t_[state] = s2
                    else:
                        ok, s2 = step(state, inputs[x], outputs[x])
                        if not ok:
                            s2 = _FAIL
                    if s2 is not _FAIL and s2 != state:
                        nl = lin | bit[x]
                        size = len(cache)
                        cache.add((nl, s2))
                        if len(cache) != size:
                            break
                x = c_nxt[x]
            else:
                mode = BACK
            if mode == OSCAN:
                stack.append((OPTIONAL, x, state, limit))
                state = s2
                lin = nl
                p, q = c_prv[x], c_nxt[x]
                c_nxt[p] = q
                if q >= 0:
                    c_prv[q] = p
                mode = NODE
                continue
        # mode == BACK: this node is exhausted.
        if snapshot:
            best_order, best_state = [f[1] for f in stack], state
            snapshot = False
        if misses > 4096 and use_memo:
            # Memoizing only pays when states recur (small registers, not growing strings).
            if misses * 4 > lookups * 3:
                use_memo = False
                memo = []
            lookups = misses = 0
        while True:
            if not stack:
                return _Search("invalid", best_order, best_state, failed, explored, pruned)
            fkind, x, state, limit = stack.pop()
            lin ^= bit[x]
            p, q = c_prv[x], c_nxt[x]
            c_nxt[p] = x
            if q >= 0:
                c_prv[q] = x
            if fkind == OPTIONAL:
                x = q
                mode = OSCAN
                break
            remaining += 1
            p, q2 = r_prv[x], r_nxt[x]
            r_nxt[p] = x
            if q2 >= 0:
                r_prv[q2] = x
            if fkind == BRANCH:
                x = q
                mode = SCAN
                break
            # A forced move was the node's only option: keep backtracking.

    return _Search("valid", [f[1] for f in stack], state, -1, explored)


# Loop modes and stack frame kinds of `_search`, and how a step is taken.
NODE, SCAN, OSCAN, BACK = range(4)
BRANCH, OPTIONAL, FORCED = range(3)
GENERAL, READS, READS_ANY, WRITES, APPENDS = range(5)
_SHAPES = {"reads": READS, "reads-any": READS_ANY, "writes": WRITES, "appends": APPENDS}


def as_result(result: CheckResult) -> Result:
    """The verdict as the other checkers give theirs: a case per key checked, the failing
    key as a finding."""
    cases: list[Case] = []
    findings: list[Finding] = []
    for part in result.partitions:
        name = "history" if len(result.partitions) == 1 else f"key {part.key!r}"
        message = part.reason
        if part is result.failure:
            message = result.describe()
            failed = part.failed_op
            findings.append(
                Finding(
                    kind="not-linearizable",
                    key=freeze(part.key),
                    message=f"no linearization of key {part.key!r}",
                    ops=() if failed is None else (failed.invoke.index,),
                )
            )
        cases.append(Case(name, part.verdict, message))
    unchecked = len(partition_by_key(result.operations)) if result.failure else 0
    return Result(
        checker=f"linearizable ({result.model.name})",
        verdict=result.verdict,
        explanation=result.describe(),
        details={
            "operations": len(result.operations),
            "partitions_checked": len(result.partitions),
            "partitions_not_checked": max(0, unchecked - len(result.partitions)),
        },
        findings=tuple(findings),
        cases=tuple(cases),
        elapsed=result.elapsed,
        source=result,
    )
