"""Trace validation of real runs: merged per-process traces against spec/Dynamo.tla.

Each node of a real cluster logs its own steps (``dynamo_ref.net.trace``, docs/trace-format.md
version 2) and ``dynamo_ref.tla.merge`` orders them by happens-before. This module turns the
merged run into a ``TraceData`` module of lines, one per action, each with the acting node's
own variables after it as far as its log shows them, and runs TLC on
spec/DynamoProcessTrace.tla, which lets the spec choose everything no process logs (the
messages in flight, the other nodes' variables between their lines). The run is accepted when
some behaviour of the spec takes every line.

Mapped here, as for the global format (``dynamo_ref.tla.trace``): op ids and versions are bound
at the ``ClientPut``/``ClientGet`` that made them, in the merged order, to the spec's numbers.
A restart becomes ``Crash`` then ``Recover`` before the node's first step after it. Cut links
are not lines: a cut only delays or loses messages, and the spec may leave a message in flight
for ever.

All three version modes are mapped (the spec's ``Mode``; a DVV version carries its writer and
dot). What this validator does not map yet is refused before TLC runs, with the step that shows
it: deletes and ring changes (joins, leaves, transfers). Dynamo.tla has both; its TLC models
check them.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from dynamo_ref.core.ring import Ring
from dynamo_ref.tla.merge import MergeResult, Step, merge_files, trace_files
from dynamo_ref.tla.tlc import TlcResult, Verdict, run_tlc
from dynamo_ref.tla.trace import (
    _LINE_OF_STATE,
    EXTENSION_ACTIONS,
    NO_NODE,
    PROMISES,
    SPEC_ACTIONS,
    STUTTER_ACTIONS,
    TOMBSTONE,
    Explanation,
    GetOp,
    Hint,
    Interned,
    Line,
    Mapper,
    PutOp,
    TraceConstants,
    TraceFormatError,
    Version,
    _version_key,
    explanation,
    promises,
    tla_bool,
    tla_fn,
    tla_record,
    tla_seq,
    tla_set,
    tla_string,
)

SPEC_FILES: Final = ("Dynamo.tla", "DynamoTrace.tla", "DynamoProcessTrace.tla")
CFG: Final = "DynamoProcessTrace.cfg"
DIAGNOSE_CFG: Final = "DynamoProcessDiagnose.cfg"

# Node-only steps beyond the global format's: they leave every spec variable alone.
LOCAL_ONLY: Final = frozenset({"ClockAhead"})
_NO_SPEC_STEP: Final = STUTTER_ACTIONS | LOCAL_ONLY | {"Stutter"}
# Steps of a changing ring, which the spec does not have.
RING_CHANGES: Final = frozenset(
    {
        "Joined",
        "Left",
        "AdminJoin",
        "AdminLeave",
        "ReceiveTransfer",
        "RefuseTransfer",
        "DropPartition",
        "JoinRequest",
    }
)


# The node's --mode -> the spec's Mode.
_MODES: Final = {"dvv": "DVV", "vclock": "VClock", "lww": "LWW"}


class RunHeader(msgspec.Struct, forbid_unknown_fields=False):
    trace: str
    node: str
    config: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class RunLine:
    """A line of the generated trace and the merged step it comes from."""

    action: str
    node: str
    step: Step | None


@dataclasses.dataclass(frozen=True)
class RunVerdict:
    """How validating one run ended; ``failed`` is the line no behaviour takes (None when
    accepted, or when TLC could not judge: ``reason`` says why)."""

    accepted: bool
    lines: int
    failed: int | None
    failed_action: str | None
    failed_at: str | None  # the trace file and line of the step it came from
    reason: str
    result: TlcResult
    seconds: float
    actions: Counter[str]
    broken: str | None = None  # the promise the run breaks, if it is one that failed
    promised: tuple[str, ...] = ()
    # Of a rejected step, the node's variables the spec's step leaves otherwise than its line
    # says, and each difference as <<the spec's, the node's>>.
    differing: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.accepted:
            kept = f", keeping {', '.join(self.promised)}" if self.promised else ""
            return f"accepted: all {self.lines} actions are a behaviour of Dynamo.tla{kept}"
        if self.failed is None:
            return f"error: {self.reason}"
        where = f" ({self.failed_at})" if self.failed_at else ""
        detail = "".join(f"\n  {d}" for d in self.details)
        return (
            f"rejected at action {self.failed} of {self.lines}, {self.failed_action}{where}: "
            f"{self.reason}{detail}"
        )


# What spec/DynamoProcessTrace.tla prints once a state has matched the whole run.
ACCEPTED: Final = '"dynamo-run-accepted"'


def run_promises(constants: TraceConstants, deletes: bool = False) -> tuple[str, ...]:
    """The promises checked by default after every step of a real run: those its mode and
    quorums keep (StrictQuorumRead for a strict quorum with R + W > N), and DeletesNotUndone
    where the run deletes."""
    kept = promises(constants)
    return (*kept, "DeletesNotUndone") if deletes else kept


def _cut_begins(step: Step) -> bool:
    fault = step.fault
    return fault is not None and fault.fault == "net-cut" and bool(fault.links)


def run_constants(paths: Iterable[Path]) -> tuple[dict[str, Any], list[str]]:
    """The nodes' shared configuration (from their trace headers) and their ids.

    :raises TraceFormatError: no traces, or nodes configured apart.
    """
    configs: dict[str, dict[str, Any]] = {}
    for path in trace_files(paths):
        with path.open("rb") as f:
            first = f.readline()
        try:
            header = msgspec.json.decode(first, type=RunHeader)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a fault log, or not a trace: the merge judges
        configs[header.node] = header.config
    if not configs:
        raise TraceFormatError("no per-process traces")
    nodes = sorted(configs)
    first_config = configs[nodes[0]]
    for node in nodes:
        if configs[node] != first_config:
            raise TraceFormatError(f"{node} runs with settings other than {nodes[0]}'s")
    return first_config, nodes


def _versions_in(state: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for vs in state.get("store", {}).values():
        yield from vs
    for h in state.get("hints", []):
        yield h["ver"]
    for op in state.get("putOps", []):
        yield op["ver"]
    for op in state.get("getOps", []):
        for vs in op.get("resps", {}).values():
            yield from vs


def _check_covered(config: Mapping[str, Any], step: Step) -> None:
    line = step.line
    assert line is not None
    for action in line.actions:
        if action[0] in RING_CHANGES:
            raise TraceFormatError(
                f"{step.path}:{step.lineno}: {action[0]}: the ring changes, which trace "
                "validation does not map yet (Dynamo.tla's models check ring changes)"
            )
    if not config.get("reap_tombstones", True) and any(
        v.get("val") is None for v in _versions_in(line.state)
    ):
        raise TraceFormatError(
            f"{step.path}:{step.lineno}: a delete on nodes that never reap tombstones "
            "(reap_tombstones off), which Dynamo.tla does not have: its deletes are reaped"
        )


class _Binder:
    """Binds a run's op ids and versions to the spec's numbers, in the merged order."""

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper
        self.puts = 0
        self.gets = 0

    def client_put(self, node: str, state: Mapping[str, Any]) -> None:
        self.puts += 1
        m = self.mapper
        new_ops = [
            op for op in state.get("putOps", []) if ("put", node, str(op["id"])) not in m.ops
        ]
        if len(new_ops) == 1:
            op = msgspec.convert(new_ops[0], PutOp)
            m.ops[("put", node, str(op.id))] = self.puts
            m.versions.setdefault(_version_key(op.ver), self.puts)
        else:
            # An answered-at-once put leaves no op, only its id among those done (so a node
            # that answers too early is caught at this step), and its version is the new one
            # in the store.
            self._bind_done("put", node, state.get("putsDone", []), self.puts)
            fresh = {
                _version_key(msgspec.convert(v, Version))
                for vs in state.get("store", {}).values()
                for v in vs
            } - m.versions.keys()
            if len(fresh) == 1:
                m.versions[fresh.pop()] = self.puts

    def client_get(self, node: str, state: Mapping[str, Any]) -> None:
        self.gets += 1
        m = self.mapper
        new_ops = [
            op for op in state.get("getOps", []) if ("get", node, str(op["id"])) not in m.ops
        ]
        if len(new_ops) == 1:
            m.ops[("get", node, str(new_ops[0]["id"]))] = self.gets
        else:
            self._bind_done("get", node, state.get("getsDone", []), self.gets)

    def _bind_done(self, kind: str, node: str, done: Sequence[object], number: int) -> None:
        fresh = [i for i in done if (kind, node, str(i)) not in self.mapper.ops]
        if len(fresh) == 1:
            self.mapper.ops[(kind, node, str(fresh[0]))] = number


def _local_state(mapper: Mapper, node: str, step: Step) -> str:
    line = step.line
    assert line is not None
    s = line.state
    store = {
        k: mapper.version_set(msgspec.convert(vs, list[Version]))
        for k, vs in s.get("store", {}).items()
    }
    hints: dict[tuple[str, str], list[str]] = {
        (owner, key): [] for owner, key in (tuple(p) for p in line.hintKeys)
    }
    for raw in s.get("hints", []):
        h = msgspec.convert(raw, Hint)
        hints.setdefault((h.owner, h.key), []).append(mapper.hint(h))
    put_ops = [mapper.put_op(node, msgspec.convert(op, PutOp)) for op in s.get("putOps", [])]
    get_ops = [mapper.get_op(node, msgspec.convert(op, GetOp)) for op in s.get("getOps", [])]
    puts_done = [str(mapper.op("put", node, i)) for i in s.get("putsDone", [])]
    gets_done = [str(mapper.op("get", node, i)) for i in s.get("getsDone", [])]
    return tla_record(
        {
            "node": tla_string(node),
            "store": tla_fn((tla_string(k), v) for k, v in store.items()),
            "hints": tla_fn(
                (tla_seq([tla_string(o), tla_string(k)]), tla_set(hs))
                for (o, k), hs in hints.items()
            ),
            "putOps": tla_set(put_ops),
            "putsDone": tla_set(puts_done),
            "getOps": tla_set(get_ops),
            "getsDone": tla_set(gets_done),
        }
    )


@dataclasses.dataclass
class PreparedRun:
    module: str
    lines: list[RunLine]
    actions: Counter[str]
    constants: TraceConstants
    deletes: bool = False


def _preference_lists(
    config: Mapping[str, Any], nodes: Sequence[str], keys: Sequence[str], n: int
) -> dict[str, list[str]]:
    """Each key's extended preference list: the nodes' own (``config["pref"]``, for an
    implementation that places keys its own way), else dynamo-ref's ring of ``partitions``.

    :raises TraceFormatError: a key the given lists leave out, or a list that is not every
        node once.
    """
    given = config.get("pref")
    if given is None:
        ring = Ring.create(list(nodes), int(config.get("partitions", 64)), target_n=n)
        return {k: list(ring.extended_preference_list(k.encode(), n)) for k in keys}
    if not isinstance(given, dict):
        raise TraceFormatError("the nodes' config.pref is not a map of keys to node lists")
    out: dict[str, list[str]] = {}
    for k in keys:
        order = given.get(k)
        if order is None:
            raise TraceFormatError(f"the run uses key {k!r}, which the nodes' config.pref lacks")
        if not isinstance(order, list) or sorted(map(str, order)) != sorted(nodes):
            raise TraceFormatError(
                f"config.pref[{k!r}] must name every node ({', '.join(nodes)}) once"
            )
        out[k] = [str(x) for x in order]
    return out


def prepare_run(
    merged: MergeResult,
    config: Mapping[str, Any],
    nodes: Sequence[str],
    *,
    diagnose_at: int = 0,
) -> PreparedRun:
    """Map a merged run onto the spec and render its ``TraceData`` module (``diagnose_at``:
    the line a diagnosis run explains, 0 for none).

    :raises TraceFormatError: the run does what the spec does not cover.
    """
    # Of the faults, only a cut's start is a line (CutBegins): it moves the promises' epoch
    # on. The links themselves are not modelled: what a cut lost stays in flight.
    steps = [s for s in merged.steps if s.fault is None or _cut_begins(s)]
    for s in steps:
        if s.line is not None:
            _check_covered(config, s)
    n = int(config.get("n", 3))
    keys = sorted(
        {
            str(a[2])
            for s in steps
            if s.line is not None
            for a in s.line.actions
            if a[0] in ("ClientPut", "ClientGet") and len(a) > 2
        }
        | {k for s in steps if s.line is not None for k in s.line.state.get("store", {})}
    )
    pref = _preference_lists(config, nodes, keys, n)
    constants = TraceConstants(
        n=n,
        r=int(config.get("r", 2)),
        w=int(config.get("w", 2)),
        sloppy=bool(config.get("sloppy", True)),
        lww=config.get("mode") == "lww",
        pref=pref,
        dvv=config.get("mode", "dvv") == "dvv",
    )
    mapper = Mapper(constants, list(nodes))
    binder = _Binder(mapper)
    states = Interned("Local")
    out: list[RunLine] = [RunLine("Init", "", None)]
    rendered = [
        tla_record(
            {
                "action": tla_string("Init"),
                "args": "<<>>",
                "has": "FALSE",
                "state": "[none |-> TRUE]",
            }
        )
    ]
    actions = Counter[str]()
    crashes = 0

    def emit(action: str, node: str, step: Step, args: list[str], state: str | None) -> None:
        actions[action] += 1
        out.append(RunLine(action, node, step))
        rendered.append(
            tla_record(
                {
                    "action": tla_string(action),
                    "args": tla_seq(args),
                    "has": tla_bool(state is not None),
                    "state": state or "[none |-> TRUE]",
                }
            )
        )

    for step in steps:
        node = step.node
        if step.fault is not None:
            emit("CutBegins", node, step, [], None)
            continue
        if step.line is None:  # a restart
            crashes += 1
            emit("Crash", node, step, [tla_string(node)], None)
            emit("Recover", node, step, [tla_string(node)], None)
            continue
        line = step.line
        named = [a for a in line.actions if a]
        touched = any(
            line.state.get(v)
            for v in ("store", "hints", "putOps", "getOps", "putsDone", "getsDone")
        ) or bool(line.hintKeys)
        # A step the spec does not model (gossip, a Merkle exchange, forwarding) that left the
        # node's variables as they were says nothing TLC could check: no state for it.
        if not touched and all(a[0] in _NO_SPEC_STEP for a in named):
            continue
        for a in named:
            if a[0] == "ClientPut":
                binder.client_put(node, line.state)
            elif a[0] == "ClientGet":
                binder.client_get(node, line.state)
        if not named:
            named = [["Stutter"]]
        for k, a in enumerate(named):
            name, args = str(a[0]), list(a[1:])
            last = k == len(named) - 1
            state = states(_local_state(mapper, node, step)) if last else None
            if name in SPEC_ACTIONS or name in EXTENSION_ACTIONS:
                rendered_args = mapper.args(Line(name, args, node, None, len(out)))
                emit(name, node, step, rendered_args, state)
            elif name in STUTTER_ACTIONS or name in LOCAL_ONLY or name == "Stutter":
                emit("Stutter", node, step, [], state)
            else:
                raise TraceFormatError(
                    f"{step.path}:{step.lineno}: {name} is neither an action of Dynamo.tla nor "
                    "a node-only step that trace validation knows"
                )
    deletes = TOMBSTONE in mapper.values
    bounds = {
        "MaxClock": binder.puts,
        "MaxGets": binder.gets,
        # Messages to a node that was down, or across a cut, stay in flight for ever.
        "MaxMsgs": merged.messages + 2 * len(nodes) * max(1, len(keys)),
        "MaxCrashes": crashes,
        "MaxPartitions": 0,
        "MaxLosses": 0,
        "MaxDups": 0,
    }
    header = [
        "---------------------------- MODULE TraceData ----------------------------",
        "\\* Generated by dynamo_ref.tla.process_trace: a real run's constants and lines.",
        "EXTENDS TLC",
        "",
        f"TNodes == {mapper.nodes_set(nodes)}",
        f"TKeys == {tla_set(tla_string(k) for k in keys)}",
        f"TValues == {tla_set(tla_string(v) for v in mapper.values - {TOMBSTONE})}",
        f"TN == {constants.n}",
        f"TR == {constants.r}",
        f"TW == {constants.w}",
        f"TSloppy == {tla_bool(constants.sloppy)}",
        f"TMode == {tla_string(_MODES[str(config.get('mode', 'dvv'))])}",
        f"TPR == {int(config.get('pr', 0))}",
        f"TPW == {int(config.get('pw', 0))}",
        f"TDeletes == {tla_bool(deletes)}",
        f"TTomb == {tla_string(TOMBSTONE)}",
        "TMaxForwards == 0",
        f"TNoNode == {tla_string(NO_NODE)}",
        "TPref == "
        + tla_fn((tla_string(k), tla_seq(tla_string(x) for x in pref[k])) for k in keys),
        *(f"T{name} == {value}" for name, value in bounds.items()),
        "TExtensions == TRUE",
        f"TDiagnoseAt == {diagnose_at}",
        "",
        *mapper.ver.definitions(),
        *states.definitions(),
        "",
        "TraceLog == <<",
        ",\n".join("  " + r for r in rendered),
        ">>",
        "=" * 76,
    ]
    return PreparedRun("\n".join(header) + "\n", out, actions, constants, deletes)


def validate_run(
    paths: Sequence[Path],
    *,
    spec_dir: Path,
    keep: Path | None = None,
    workers: int = 1,
    timeout: float | None = None,
    promised: Sequence[str] | None = None,
    also: Sequence[str] = (),
    explain: bool = True,
) -> RunVerdict:
    """Merge the per-process traces at ``paths`` and check with TLC that the run is a
    behaviour of spec/Dynamo.tla, and that it keeps the spec's promises (``promised``, by
    default those the run's mode keeps: ``run_promises``; and ``also``) after every step.
    A rejected step is explained by a second TLC run (``explain``): the guard of its action
    that fails, or the node's variables the spec's step leaves otherwise.

    :raises TraceFormatError: no traces, a run the spec does not cover, or an unknown promise.
    :raises dynamo_ref.tla.merge.TraceInputError: traces that do not merge.
    """
    config, nodes = run_constants(paths)
    merged = merge_files(paths)
    prepared = prepare_run(merged, config, nodes)
    base = (
        run_promises(prepared.constants, prepared.deletes) if promised is None else tuple(promised)
    )
    checked = tuple(dict.fromkeys((*base, *also)))
    unknown = [p for p in checked if p not in PROMISES]
    if unknown:
        raise TraceFormatError(
            f"no promise named {', '.join(unknown)}: the spec's are {', '.join(PROMISES)}"
        )
    with tempfile.TemporaryDirectory(prefix="dynamo-run-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in (*SPEC_FILES, CFG):
            shutil.copy(spec_dir / name, work / name)
        (work / "TraceData.tla").write_text(prepared.module)
        cfg = (work / CFG).read_text()
        invariants = "".join(f"INVARIANT Trace{name}\n" for name in checked)
        (work / CFG).write_text(
            cfg.replace("INVARIANT ProcessAccepted", invariants + "INVARIANT ProcessAccepted")
        )
        result = run_tlc(
            work / "DynamoProcessTrace.tla",
            work / CFG,
            workers=workers,
            timeout=timeout,
            trace_lines=len(prepared.lines),
        )
    verdict = functools.partial(
        RunVerdict,
        promised=checked,
        lines=len(prepared.lines),
        result=result,
        seconds=result.seconds or 0.0,
        actions=prepared.actions,
    )
    if result.verdict is Verdict.PASS and ACCEPTED in result.output:
        return verdict(True, failed=None, failed_action=None, failed_at=None, reason="")
    promise = (result.violated or "").removeprefix("Trace")
    if result.verdict is Verdict.INVARIANT and promise in PROMISES:
        # The counterexample's last state is the line after which the promise is broken.
        matched = [int(n) for n in _LINE_OF_STATE.findall(result.trace)]
        after = matched[-1] if matched else len(prepared.lines)
        line = prepared.lines[after - 1]
        return verdict(
            False,
            failed=after,
            failed_action=f"{line.action} of {line.node}",
            failed_at=None if line.step is None else f"{line.step.path}:{line.step.lineno}",
            reason=f"{promise} broken after this step: {PROMISES[promise]}",
            broken=promise,
        )
    if result.verdict is not Verdict.PASS:
        reason = result.message or result.describe()
        return verdict(False, failed=None, failed_action=None, failed_at=None, reason=reason)
    failed = min((result.depth or 0) + 1, len(prepared.lines))
    line = prepared.lines[failed - 1]
    at = None if line.step is None else f"{line.step.path}:{line.step.lineno}"
    why = Explanation(
        "no behaviour of the spec takes this step and ends where the node says it did", [], []
    )
    if explain:
        why = _explain_run(
            merged, config, nodes, failed, spec_dir=spec_dir, keep=keep, timeout=timeout
        )
    return verdict(
        False,
        failed=failed,
        failed_action=f"{line.action} of {line.node}",
        failed_at=at,
        reason=why.reason,
        differing=tuple(why.variables),
        details=tuple(why.details),
    )


def _explain_run(
    merged: MergeResult,
    config: Mapping[str, Any],
    nodes: Sequence[str],
    failed: int,
    *,
    spec_dir: Path,
    keep: Path | None,
    timeout: float | None,
) -> Explanation:
    """Why line ``failed`` of a run cannot be taken (DynamoProcessDiagnose.cfg)."""
    prepared = prepare_run(merged, config, nodes, diagnose_at=failed)
    with tempfile.TemporaryDirectory(prefix="dynamo-run-diagnose-") as scratch:
        work = (keep / "diagnose") if keep else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in (*SPEC_FILES, DIAGNOSE_CFG):
            shutil.copy(spec_dir / name, work / name)
        (work / "TraceData.tla").write_text(prepared.module)
        result = run_tlc(
            work / "DynamoProcessTrace.tla",
            work / DIAGNOSE_CFG,
            workers=1,
            timeout=timeout,
            trace_lines=failed,
        )
    return explanation(result, failed, recorded="the node logged")
