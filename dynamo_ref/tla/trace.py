"""Trace validation: is a recorded run a behaviour of spec/Dynamo.tla?

A trace is JSON lines, one per spec action step (``dynamo_ref.sim`` writes them; the Structs
below are the format, and spec/README.md documents it for other implementations). This module
turns a trace into a TLA+ module, ``TraceData``, holding the run's constants and its lines in the
spec's shapes, and runs TLC on spec/DynamoTrace.tla, which follows the trace line by line: each
step must be the recorded action with the recorded arguments and must end in the recorded
state. TLC explores every way the spec can do so (choices the trace does not record, such as
the context of a put); the trace is accepted when some behaviour reaches its last line, and
rejected at the first line no behaviour can take.

Mapped here rather than left to TLC, because the spec and an implementation name things apart:

- Op ids. An implementation names requests as it likes (the node: per-incarnation counters);
  the spec names a put by its timestamp (the number of puts so far) and a get by the number of
  gets so far. A local id is bound to the spec's at the ``ClientPut``/``ClientGet`` whose step
  first shows it.
- Versions, known by value, clock and the implementation's timestamp. The spec's timestamp is
  the number of puts at the ``ClientPut`` that made the version.
- ``after`` of a get the trace leaves it out of: the number of acks before its ``ClientGet``.
- One partition (or heal) of several pairs at once: the simulator writes the final cut on
  every line of the batch, and each line gets the cut as it was after its own pair.

An id or a version that no client request made is bound to a number no spec step can make, so
the line that shows it is rejected, not the mapping: TLC is the only judge.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import msgspec

from dynamo_ref.core.node.outbox import text as key_text
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.sim.cluster import Cluster
from dynamo_ref.tla.tlc import TlcResult, Verdict, run_tlc

# ---- the trace format ---------------------------------------------------------------------------

OpId = int | str


class Version(msgspec.Struct, frozen=True):
    """``[val, vc, ts, wr, dot]``: ``val`` null for a delete, ``vc`` without zero entries
    allowed, ``ts`` whatever the implementation stamps (it only tells versions apart). With
    dotted version vectors ``(wr, dot)`` is the write's own event and ``vc`` its context;
    otherwise ``wr`` is absent and ``dot`` 0."""

    val: str | None
    vc: dict[str, int]
    ts: float | int | str | None = None
    wr: str | None = None
    dot: int = 0


class Hint(msgspec.Struct):
    key: str
    owner: str
    ver: Version


class PutOp(msgspec.Struct):
    id: OpId
    key: str
    ver: Version
    acks: list[str] = []
    hinted: list[str] = []
    extra: list[str] = []


class GetOp(msgspec.Struct):
    id: OpId
    key: str
    resps: dict[str, list[Version]] = {}
    # Fallback read -> the replica it stands in for (a sloppy get); none: only replicas.
    stand: dict[str, str] = {}
    done: bool = False
    after: int | None = None


class Message(msgspec.Struct):
    mtype: Literal["store", "storeAck", "read", "readResp"]
    msrc: str
    mdest: str
    mkey: str
    mvers: list[Version] = []
    mop: OpId = 0
    mhint: str | None = ""


class Faults(msgspec.Struct):
    crash: int = 0
    partition: int = 0
    loss: int = 0
    dup: int = 0


class Acked(msgspec.Struct):
    key: str
    ver: Version
    seq: int
    epoch: int


class Answered(msgspec.Struct):
    """A read's answer: the spec's ``vers``, or what a client sees of them, ``vals`` and ``vc``."""

    key: str
    after: int
    epoch: int
    vals: list[str | None] | None = None
    vc: dict[str, int] | None = None
    vers: list[Version] | None = None


class State(msgspec.Struct, rename="camel"):
    """The spec's twelve variables; per-node maps may leave out empty entries."""

    store: dict[str, dict[str, list[Version]]]
    hints: dict[str, list[Hint]]
    put_ops: dict[str, list[PutOp]]
    get_ops: dict[str, list[GetOp]]
    up: dict[str, bool]
    msgs: list[tuple[Message, int]]
    cut: list[tuple[str, str]]
    clock: int
    gets: int
    faults: Faults
    acked: list[Acked]
    answered: list[Answered]


class Line(msgspec.Struct):
    """One action step. ``state`` is null on all but the last of several actions that one node
    step took at once."""

    action: str
    args: list[Any] = []
    node: str | None = None
    state: State | None = None
    step: int | None = None
    time: float | None = None


_RENAME_CONSTANTS: Final = {
    "n": "N",
    "r": "R",
    "w": "W",
    "sloppy": "Sloppy",
    "lww": "LWW",
    "pref": "Pref",
    "dvv": "DVV",
}


class TraceConstants(msgspec.Struct, frozen=True, rename=_RENAME_CONSTANTS):
    """The spec's constants for a run; ``pref[k]`` is k's extended preference list (all nodes)."""

    n: int
    r: int
    w: int
    sloppy: bool
    lww: bool
    pref: dict[str, list[str]]
    # Dotted version vectors (per-process traces of a node in --mode dvv).
    dvv: bool = False

    def header(self) -> str:
        """The trace's first line, naming these constants."""
        return msgspec.json.encode({"constants": self}).decode()


class TraceFormatError(ValueError):
    """The trace cannot be read: not JSON lines of the documented shape, or no constants."""


def cluster_constants(cluster: Cluster, keys: Iterable[bytes]) -> TraceConstants:
    """The constants of a simulated cluster's run over ``keys``."""
    cfg = cluster.config
    return TraceConstants(
        n=cfg.n,
        r=cfg.r,
        w=cfg.w,
        sloppy=cfg.sloppy,
        lww=cfg.mode is VersionMode.LWW,
        pref={key_text(k): list(cluster.ring.extended_preference_list(k, cfg.n)) for k in keys},
    )


def read_trace(text: str) -> tuple[TraceConstants | None, list[Line]]:
    """The constants (from a line ``{"constants": ...}``, first or last, if any) and the
    action lines."""
    constants: TraceConstants | None = None
    lines: list[Line] = []
    closed = False  # constants came after the steps: nothing may follow them
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            data = msgspec.json.decode(raw)
            if isinstance(data, dict) and "constants" in data and "action" not in data:
                # First or last: a writer may learn the keys only as the run goes.
                if constants is not None:
                    raise TraceFormatError(f"line {number}: a second constants line")
                closed = bool(lines)
                constants = msgspec.convert(data["constants"], TraceConstants)
                continue
            if closed:
                raise TraceFormatError(f"line {number}: constants must come first or last")
            lines.append(msgspec.convert(data, Line))
        except msgspec.MsgspecError as e:
            raise TraceFormatError(f"line {number}: {e}") from None
    if not lines:
        raise TraceFormatError("the trace has no action lines")
    if lines[0].action != "Init" or lines[0].state is None:
        raise TraceFormatError("the first action line must be Init, with its state")
    if lines[-1].state is None:
        raise TraceFormatError("the last line has no state: the trace is cut off")
    return constants, lines


# ---- the actions --------------------------------------------------------------------------------

# Spec actions and their arguments: n a node, k a key, v a value, p a put id, g a get id, o the
# op id of a message (of the sender's op for a store or read, of the receiver's for an ack or a
# response), h a hint ("" or null for none), m a message.
SPEC_ACTIONS: Final = {
    "Init": "",
    "ClientPut": "nkv",
    "ReplicaStore": "nnkoh",
    "StoreAck": "nnko",
    "PutTimeout": "np",
    "SloppyFallback": "npn",
    "ClientGet": "nk",
    "ReplicaRead": "nnko",
    "ReadResponse": "nnko",
    "ReadRepair": "ng",
    "HandoffHint": "nnk",
    "ReapTombstone": "nk",
    "ReplicaReap": "nnk",
    "AntiEntropy": "nnk",
    "Crash": "n",
    "Recover": "n",
    "Partition": "nn",
    "Heal": "nn",
    "LoseMessage": "m",
    "DuplicateMessage": "m",
}

# Node steps the spec lacks, validated by the extensions of DynamoTrace.tla.
EXTENSION_ACTIONS: Final = {"GetTimeout": "ng"}

# Node-only steps: each must leave every spec variable as it was (they refine to stuttering).
STUTTER_ACTIONS: Final = frozenset(
    {
        "Gossip",
        "GossipMerge",
        "MerkleExchange",
        "ForwardRequest",
        "ForwardReply",
        "ForwardTimeout",
        "SetClockSkew",
        "RejectMessage",
        "TransferPartition",
        "Suspect",
        "Trust",
    }
)

VARIABLES: Final = (
    "store",
    "hints",
    "putOps",
    "getOps",
    "up",
    "msgs",
    "cut",
    "clock",
    "gets",
    "faults",
    "acked",
    "answered",
)

NO_NODE: Final = ""
TOMBSTONE: Final = "<tombstone>"
# Numbers for ids and versions no client request made: beyond anything a trace reaches.
_FORGED: Final = 1_000_000_000


# ---- TLA+ text ----------------------------------------------------------------------------------


def tla_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tla_set(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(set(items))) + "}"


def tla_fn(pairs: Iterable[tuple[str, str]]) -> str:
    """The function of rendered keys to rendered values, ``(k :> v @@ ...)``."""
    items = sorted(pairs)
    if not items:
        return "[x \\in {} |-> 0]"
    return "(" + " @@ ".join(f"{k} :> {v}" for k, v in items) + ")"


def tla_record(fields: Mapping[str, str]) -> str:
    return "[" + ", ".join(f"{k} |-> {v}" for k, v in fields.items()) + "]"


def tla_seq(items: Iterable[str]) -> str:
    return "<<" + ", ".join(items) + ">>"


def tla_bool(b: bool) -> str:
    return "TRUE" if b else "FALSE"


class Interned:
    """Names for repeated TLA+ values, so that each distinct one is written and evaluated once."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        name = self.names.get(text)
        if name is None:
            name = self.names[text] = f"{self.prefix}{len(self.names) + 1}"
        return name

    def definitions(self) -> Iterator[str]:
        for text, name in self.names.items():
            yield f"{name} == {text}"


# ---- mapping a trace onto the spec -------------------------------------------------------------

VersionKey = tuple[str | None, tuple[tuple[str, int], ...], str, str | None, int]


def _version_key(v: Version) -> VersionKey:
    clock = tuple(sorted((n, c) for n, c in v.vc.items() if c))
    return (v.val, clock, repr(v.ts), v.wr, v.dot)


def _message_owner(m: Message) -> tuple[str, str]:
    """Whose op ``m.mop`` names, and whether it is a put or a get."""
    kind = "put" if m.mtype in ("store", "storeAck") else "get"
    return (m.msrc if m.mtype in ("store", "read") else m.mdest), kind


def _versions(s: State) -> Iterator[Version]:
    """Every version a state shows."""
    for per_key in s.store.values():
        for vs in per_key.values():
            yield from vs
    for hs in s.hints.values():
        yield from (h.ver for h in hs)
    for puts in s.put_ops.values():
        yield from (op.ver for op in puts)
    for gets in s.get_ops.values():
        for op in gets:
            for vs in op.resps.values():
                yield from vs
    for m, _ in s.msgs:
        yield from m.mvers
    yield from (a.ver for a in s.acked)


# Values longer than this are renamed in the spec's module (Mapper.value).
_LONG_VALUE: Final = 24


class Mapper:
    """Binds ids and versions along a trace and renders its states in TLA+."""

    def __init__(self, constants: TraceConstants, nodes: list[str]) -> None:
        self.nodes = nodes
        self.keys = sorted(constants.pref)
        self.values: set[str] = set()
        self._long_values: dict[str, str] = {}
        self.versions: dict[VersionKey, int] = {}
        self.ops: dict[tuple[str, str, str], int] = {}  # (kind, owner, local id) -> spec id
        self.after: dict[int, int] = {}  # spec get id -> acks before it began
        self.forged = 0
        self.ver = Interned("Ver")

    def _forge(self) -> int:
        self.forged += 1
        return _FORGED + self.forged

    def op(self, kind: str, owner: str, local: object) -> int:
        if local in (0, "0", "", None):
            return 0
        key = (kind, owner, str(local))
        if key not in self.ops:
            self.ops[key] = self._forge()
        return self.ops[key]

    # Binding what client requests create.

    def _new_ids(self, s: State, group: list[Line], kind: str, owner: str) -> set[str]:
        ops = s.put_ops if kind == "put" else s.get_ops
        found = {str(op.id) for op in ops.get(owner, [])}
        found |= {str(m.mop) for m, _ in s.msgs if _message_owner(m) == (owner, kind)}
        code = "p" if kind == "put" else "g"
        for line in group:
            kinds = SPEC_ACTIONS.get(line.action) or EXTENSION_ACTIONS.get(line.action, "")
            if line.args and line.args[0] == owner:
                found |= {str(a) for c, a in zip(kinds, line.args, strict=False) if c == code}
        return {x for x in found - {"0", ""} if (kind, owner, x) not in self.ops}

    def bind(self, group: list[Line], before: State, after: State) -> None:
        """Bind the ids, and the version, that a node step's client request created."""
        for action, kind in (("ClientPut", "put"), ("ClientGet", "get")):
            made = [x for x in group if x.action == action and x.args]
            if not made:
                continue
            step = made[0]
            if len(made) > 1:
                raise TraceFormatError(
                    f"step {step.step}: several {action}s with no state between them"
                )
            owner = str(step.args[0])
            spec_id = after.clock if kind == "put" else after.gets
            new = self._new_ids(after, group, kind, owner)
            # One request makes one id and one version; with more, which is which cannot be
            # told, so none is bound and the step is rejected for what it shows.
            if len(new) == 1:
                self.ops[(kind, owner, new.pop())] = spec_id
            if kind == "get":
                self.after[spec_id] = len(before.acked)
                continue
            fresh = {_version_key(v) for v in _versions(after)} - self.versions.keys()
            if len(fresh) == 1:
                self.versions[fresh.pop()] = spec_id

    # Rendering.

    def value(self, v: str | None) -> str:
        """A value as the spec sees it: only told apart from others, so a long one (a set-add
        workload writes the whole set) is named by its start and a number, once: a name
        longer than any value left as it is, so none can be mistaken for another."""
        s = TOMBSTONE if v is None else v
        if len(s) > _LONG_VALUE:
            name = self._long_values.get(s)
            if name is None:
                name = f"{s[:_LONG_VALUE]}...#{len(self._long_values) + 1}"
                self._long_values[s] = name
            s = name
        self.values.add(s)
        return tla_string(s)

    def clock(self, vc: Mapping[str, int]) -> str:
        return tla_fn((tla_string(n), str(vc.get(n, 0))) for n in self.nodes)

    def version(self, v: Version) -> str:
        key = _version_key(v)
        if key not in self.versions:
            self.versions[key] = self._forge()
        ts = self.versions[key]
        return self.ver(
            tla_record(
                {
                    "val": self.value(v.val),
                    "vc": self.clock(v.vc),
                    "ts": str(ts),
                    "wr": tla_string(v.wr if v.dot and v.wr else NO_NODE),
                    "dot": str(v.dot),
                }
            )
        )

    def version_set(self, vs: Iterable[Version]) -> str:
        return tla_set(self.version(v) for v in vs)

    def nodes_set(self, xs: Iterable[str]) -> str:
        return tla_set(tla_string(x) for x in xs)

    def message(self, m: Message) -> str:
        owner, kind = _message_owner(m)
        return tla_record(
            {
                "mtype": tla_string(m.mtype),
                "msrc": tla_string(m.msrc),
                "mdest": tla_string(m.mdest),
                "mkey": tla_string(m.mkey),
                "mvers": self.version_set(m.mvers),
                "mop": str(self.op(kind, owner, m.mop)),
                "mhint": tla_string(m.mhint or NO_NODE),
            }
        )

    def per_node(self, render: Mapping[str, str], empty: str) -> str:
        return tla_fn((tla_string(n), render.get(n, empty)) for n in self.nodes)

    def state(self, s: State, step: int) -> dict[str, str]:
        unknown = {
            f"{var} of {n}"
            for var, per in (
                ("store", s.store),
                ("hints", s.hints),
                ("putOps", s.put_ops),
                ("getOps", s.get_ops),
                ("up", s.up),
            )
            for n in per
            if n not in self.nodes
        } | {
            f"store of {n} for key {k!r}"
            for n, ks in s.store.items()
            for k in ks
            if k not in self.keys
        }
        if unknown:
            raise TraceFormatError(
                f"step {step}: the state names nodes or keys the constants lack: "
                + ", ".join(sorted(unknown))
            )
        empty_store = tla_fn((tla_string(k), "{}") for k in self.keys)
        bag = Counter[str]()
        for m, copies in s.msgs:
            bag[self.message(m)] += copies
        return {
            "store": self.per_node(
                {
                    n: tla_fn((tla_string(k), self.version_set(ks.get(k, []))) for k in self.keys)
                    for n, ks in s.store.items()
                },
                empty_store,
            ),
            "hints": self.per_node(
                {n: tla_set(self.hint(h) for h in hs) for n, hs in s.hints.items()}, "{}"
            ),
            "putOps": self.per_node(
                {n: tla_set(self.put_op(n, op) for op in ops) for n, ops in s.put_ops.items()},
                "{}",
            ),
            "getOps": self.per_node(
                {n: tla_set(self.get_op(n, op) for op in ops) for n, ops in s.get_ops.items()},
                "{}",
            ),
            "up": self.per_node({n: tla_bool(b) for n, b in s.up.items()}, "FALSE"),
            "msgs": tla_fn((m, str(c)) for m, c in bag.items()),
            "cut": tla_set(self.nodes_set(pair) for pair in s.cut),
            "clock": str(s.clock),
            "gets": str(s.gets),
            "faults": tla_record(
                {f: str(getattr(s.faults, f)) for f in ("crash", "partition", "loss", "dup")}
            ),
            "acked": tla_set(self.acked(a) for a in s.acked),
            "answered": tla_set(self.answered(a) for a in s.answered),
        }

    def hint(self, h: Hint) -> str:
        return tla_record(
            {"key": tla_string(h.key), "owner": tla_string(h.owner), "ver": self.version(h.ver)}
        )

    def put_op(self, owner: str, op: PutOp) -> str:
        return tla_record(
            {
                "id": str(self.op("put", owner, op.id)),
                "key": tla_string(op.key),
                "ver": self.version(op.ver),
                "acks": self.nodes_set(op.acks),
                "hinted": self.nodes_set(op.hinted),
                "extra": self.nodes_set(op.extra),
            }
        )

    def get_op(self, owner: str, op: GetOp) -> str:
        spec_id = self.op("get", owner, op.id)
        after = self.after.get(spec_id, 0) if op.after is None else op.after
        return tla_record(
            {
                "id": str(spec_id),
                "key": tla_string(op.key),
                "resps": tla_fn(
                    (tla_string(n), self.version_set(vs)) for n, vs in op.resps.items()
                ),
                "stand": tla_fn((tla_string(f), tla_string(h)) for f, h in op.stand.items()),
                "after": str(after),
                "done": tla_bool(op.done),
            }
        )

    def acked(self, a: Acked) -> str:
        return tla_record(
            {
                "key": tla_string(a.key),
                "ver": self.version(a.ver),
                "seq": str(a.seq),
                "epoch": str(a.epoch),
            }
        )

    def answered(self, a: Answered) -> str:
        """As DynamoTrace.tla compares reads: the values returned and their merged clock."""
        if a.vers is not None:
            vals = [v.val for v in a.vers]
            vc: dict[str, int] = {}
            for v in a.vers:
                for n, c in v.vc.items():
                    vc[n] = max(vc.get(n, 0), c)
        else:
            vals, vc = list(a.vals or []), dict(a.vc or {})
        return tla_record(
            {
                "key": tla_string(a.key),
                "vals": tla_set(self.value(v) for v in vals),
                "vc": self.clock(vc),
                "after": str(a.after),
                "epoch": str(a.epoch),
            }
        )

    def args(self, line: Line) -> list[str]:
        kinds = SPEC_ACTIONS.get(line.action) or EXTENSION_ACTIONS.get(line.action)
        if kinds is None:
            return []  # a node-only step, or unknown: DynamoTrace.tla judges by the name
        if len(line.args) < len(kinds):
            raise TraceFormatError(
                f"step {line.step}: {line.action} takes {len(kinds)} arguments, "
                f"got {len(line.args)}"
            )
        first = str(line.args[0]) if line.args else ""
        out: list[str] = []
        for code, arg in zip(kinds, line.args, strict=False):
            if code == "m":
                try:
                    out.append(self.message(msgspec.convert(arg, Message)))
                except msgspec.ValidationError as e:
                    raise TraceFormatError(f"step {line.step}: a message argument: {e}") from None
            elif code in "pg":
                out.append(str(self.op("put" if code == "p" else "get", first, arg)))
            elif code == "o":
                kind = "put" if line.action in ("ReplicaStore", "StoreAck") else "get"
                sender = line.action in ("ReplicaStore", "ReplicaRead")
                out.append(str(self.op(kind, str(line.args[1]) if sender else first, arg)))
            elif code == "v":
                out.append(self.value(None if arg is None else str(arg)))
            else:
                out.append(tla_string(NO_NODE if arg is None else str(arg)))
        if line.action == "AntiEntropy":
            # Which of the two replicas merged: the node reconciles in two halves.
            out.append(tla_string(line.node or ""))
        if line.action == "ClientPut" and len(line.args) > len(kinds):
            # The client's context: it names the read the writer had seen (the spec's saw).
            out.append(self.clock(_context_clock(line.args[len(kinds)], line.step)))
        return out


def _context_clock(arg: object, step: int | None) -> dict[str, int]:
    """A ``ClientPut`` context argument, ``node:counter`` pairs comma-separated, as a clock."""
    clock: dict[str, int] = {}
    for pair in str(arg or "").split(","):
        if not pair:
            continue
        node, _, counter = pair.rpartition(":")
        if not node or not counter.isdigit():
            raise TraceFormatError(f"step {step}: a put's context is not node:counter pairs")
        clock[node] = int(counter)
    return clock


def split_fault_batches(lines: list[Line]) -> None:
    """Give each line of one multi-pair partition (or heal) the cut after its own pair."""
    before: set[tuple[str, str]] = set()
    i = 0
    while i < len(lines):
        first = lines[i]
        if first.action not in ("Partition", "Heal") or first.state is None:
            if first.state is not None:
                before = {(min(p), max(p)) for p in first.state.cut}
            i += 1
            continue
        final = {(min(p), max(p)) for p in first.state.cut}
        j = i
        while j < len(lines):
            s = lines[j].state
            if lines[j].action != first.action or s is None:
                break
            if {(min(p), max(p)) for p in s.cut} != final:
                break
            j += 1
        pairs = [(min(map(str, x.args[:2])), max(map(str, x.args[:2]))) for x in lines[i:j]]
        grown = before | set(pairs) if first.action == "Partition" else before - set(pairs)
        if j - i > 1 and grown == final:
            cut = set(before)
            for line, pair in zip(lines[i:j], pairs, strict=True):
                if first.action == "Partition":
                    cut.add(pair)
                else:
                    cut.discard(pair)
                assert line.state is not None
                line.state = msgspec.structs.replace(line.state, cut=sorted(cut))
        before = final
        i = j


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A trace in the spec's terms: the TraceData module and what the lines hold."""

    module: str
    lines: list[Line]
    actions: Counter[str]
    # Lines that only an extension of DynamoTrace.tla can take: step -> kind.
    beyond: dict[int, str]

    @property
    def extensions(self) -> Counter[str]:
        return Counter(self.beyond.values())


def prepare(
    lines: list[Line],
    constants: TraceConstants,
    *,
    extensions: bool = True,
    diagnose_at: int = 0,
) -> Prepared:
    """Map a trace onto the spec and render its ``TraceData`` module."""
    for number, line in enumerate(lines, 1):
        line.step = number
    init = lines[0].state
    assert init is not None
    nodes = sorted(init.up)
    for k, pref in constants.pref.items():
        if sorted(pref) != nodes:
            raise TraceFormatError(
                f"Pref of key {k!r} must list every node once: {pref} (nodes: {nodes})"
            )
    split_fault_batches(lines)
    mapper = Mapper(constants, nodes)
    states = Interned("State")
    parts = {var: Interned(var[0].upper() + var[1:]) for var in VARIABLES}
    rendered: list[str] = []
    actions = Counter[str]()
    beyond: dict[int, str] = {}
    repaired: set[int] = set()
    before = init
    group: list[Line] = []
    max_msgs = 0
    for line in lines:
        group.append(line)
        if line.state is None:
            continue
        mapper.bind(group, before, line.state)
        for g in group:
            assert g.step is not None
            actions[g.action] += 1
            args = mapper.args(g)
            state = "[none |-> TRUE]"
            if g.state is not None:
                mapped = mapper.state(g.state, g.step)
                state = states(tla_record({v: parts[v](mapped[v]) for v in VARIABLES}))
                max_msgs = max(max_msgs, sum(c for _, c in g.state.msgs))
            if g.action in EXTENSION_ACTIONS or g.action == "AntiEntropy":
                beyond[g.step] = g.action
            elif g.action == "ReadRepair":
                get = int(args[1])
                if get in repaired:
                    beyond[g.step] = "late ReadRepair"
                repaired.add(get)
            action = "Stutter" if g.action in STUTTER_ACTIONS else g.action
            rendered.append(
                tla_record(
                    {
                        "action": tla_string(action),
                        "args": tla_seq(args),
                        "has": tla_bool(g.state is not None),
                        "state": state,
                    }
                )
            )
        before = line.state
        group = []
    last = lines[-1].state
    assert last is not None
    bounds = {
        "MaxClock": last.clock,
        "MaxGets": last.gets,
        # Room for the messages a step sends before the next state is seen.
        "MaxMsgs": max_msgs + 2 * len(nodes) * max(1, len(mapper.keys)),
        "MaxCrashes": last.faults.crash,
        "MaxPartitions": last.faults.partition,
        "MaxLosses": last.faults.loss,
        "MaxDups": last.faults.dup,
    }
    header = [
        "---------------------------- MODULE TraceData ----------------------------",
        "\\* Generated by dynamo_ref.tla.trace: a recorded trace's constants and lines.",
        "EXTENDS TLC",
        "",
        f"TNodes == {mapper.nodes_set(nodes)}",
        f"TKeys == {tla_set(tla_string(k) for k in mapper.keys)}",
        f"TValues == {tla_set(tla_string(v) for v in mapper.values - {TOMBSTONE})}",
        f"TN == {constants.n}",
        f"TR == {constants.r}",
        f"TW == {constants.w}",
        f"TSloppy == {tla_bool(constants.sloppy)}",
        f"TMode == {tla_string('LWW' if constants.lww else 'VClock')}",
        "TPR == 0",
        "TPW == 0",
        "TDeletes == FALSE",
        f"TTomb == {tla_string(TOMBSTONE)}",
        "TMaxForwards == 0",
        f"TNoNode == {tla_string(NO_NODE)}",
        "TPref == "
        + tla_fn(
            (tla_string(k), tla_seq(tla_string(n) for n in constants.pref[k])) for k in mapper.keys
        ),
        *(f"T{name} == {value}" for name, value in bounds.items()),
        f"TExtensions == {tla_bool(extensions)}",
        f"TDiagnoseAt == {diagnose_at}",
        "",
        *mapper.ver.definitions(),
        *(d for var in VARIABLES for d in parts[var].definitions()),
        *states.definitions(),
        "",
        "TraceLog == <<",
        ",\n".join("  " + r for r in rendered),
        ">>",
        "=" * 76,
    ]
    return Prepared("\n".join(header) + "\n", lines, actions, beyond)


# ---- running TLC --------------------------------------------------------------------------------

SPEC_FILES: Final = ("Dynamo.tla", "DynamoTrace.tla", "DynamoTrace.cfg", "DynamoTraceDiagnose.cfg")

# The spec's safety properties checked at every line (DynamoTrace.tla's Trace<name>), and what
# breaking each means to a client.
PROMISES: Final = {
    "SiblingsAntichain": "a replica keeps a version that another of its versions supersedes",
    "AckedWritesSurvive": (
        "an acknowledged write is stored nowhere any more, nor any version that descends from it"
    ),
    "CausalWritesSurvive": (
        "an acknowledged write is stored nowhere any more, nor any version whose writer had "
        "seen it: a later write that did not see it made it obsolete (with plain vector "
        "clocks, two puts through one coordinator with the same stale context do this)"
    ),
    "StrictQuorumRead": (
        "a read that began after a write was acknowledged, with no fault between, did not "
        "return it (R + W > N with a strict quorum promises it does)"
    ),
    "DeletesNotUndone": (
        "a version an acknowledged delete superseded is present again, superseded by nothing"
    ),
}


def promises(constants: TraceConstants) -> tuple[str, ...]:
    """The promises a run's mode keeps, checked at every line by default. LWW keeps no write
    against a concurrent one; plain vector clocks keep AckedWritesSurvive but not
    CausalWritesSurvive (a blind put through a coordinator supersedes the writes before it),
    which is checked only when asked for; dotted version vectors keep both."""
    out = ["SiblingsAntichain"]
    if not constants.lww:
        out.append("AckedWritesSurvive")
    if constants.dvv:
        out.append("CausalWritesSurvive")
    if not constants.sloppy and constants.r + constants.w > constants.n:
        out.append("StrictQuorumRead")
    return tuple(out)


def _with_promises(cfg: str, names: Iterable[str]) -> str:
    lines = "".join(f"INVARIANT Trace{name}\n" for name in names)
    return cfg.replace("INVARIANT TraceIncomplete", lines + "INVARIANT TraceIncomplete", 1)


_LINE_OF_STATE = re.compile(r"^/\\ l = (\d+)$", re.M)


@dataclasses.dataclass(frozen=True)
class TraceVerdict:
    """How validating one trace ended.

    ``accepted``: every line matched. Otherwise ``failed_step`` is the first line no behaviour
    of the spec takes (None when TLC could not judge: ``reason`` says why), or, with ``broken``
    set, the first line after which the run breaks that promise of the spec (``PROMISES``).
    """

    accepted: bool
    steps: int
    failed_step: int | None
    failed_action: str | None
    reason: str
    details: list[str]
    result: TlcResult
    seconds: float
    actions: Counter[str]
    extensions: Counter[str]
    broken: str | None = None
    promised: tuple[str, ...] = ()

    @property
    def error(self) -> bool:
        return not self.accepted and self.failed_step is None

    def figures(self) -> str:
        r = self.result
        return (
            f"{r.generated or 0:,} states generated, {r.distinct or 0:,} distinct, "
            f"depth {r.depth or 0}, {self.seconds:.1f} s"
        )

    def describe(self) -> str:
        if self.accepted:
            return f"accepted: all {self.steps} steps are a behaviour of Dynamo.tla"
        if self.failed_step is None:
            return f"error: {self.reason}"
        if self.broken is not None:
            return (
                f"{self.broken} broken at step {self.failed_step} of {self.steps} "
                f"({self.failed_action}): {self.reason}"
            )
        return (
            f"rejected at step {self.failed_step} of {self.steps} ({self.failed_action}): "
            f"{self.reason}"
        )


def _line_text(line: Line) -> str:
    if line.action in ("LoseMessage", "DuplicateMessage") and line.args:
        m = line.args[0]
        if isinstance(m, dict):
            return (
                f"{line.action}({m.get('mtype')} {m.get('msrc')}->{m.get('mdest')} "
                f"key {m.get('mkey')} op {m.get('mop')})"
            )
    return f"{line.action}({', '.join(str(a) for a in line.args)})"


_MISMATCH = re.compile(r'<<\s*"mismatch",\s*(\d+),\s*\{(.*?)\}\s*>>', re.S)
_GUARDS = re.compile(r'<<\s*"guards",\s*(\d+),\s*\{(.*?)\}\s*>>', re.S)
_DETAIL = re.compile(r'<<\s*"detail",\s*"(\w+)",\s*')
_TLC_STATUS = re.compile(
    r"^(?:Model checking completed|Finished|Progress|\d+ states generated)", re.M
)


def _diagnosis(output: str) -> tuple[list[str] | None, list[str]]:
    """From a diagnosis run: the variables the first successor got wrong (None: there was no
    successor), and TLC's account of each, ``<<only in the spec, only in the trace>>``."""
    first = _MISMATCH.search(output)
    if first is None:
        return None, []
    names = [x.strip().strip('"') for x in first.group(2).split(",") if x.strip()]
    rest = output[first.end() :]
    stop = min(
        (m.start() for m in (_MISMATCH.search(rest), _TLC_STATUS.search(rest)) if m),
        default=len(rest),
    )
    parts = _DETAIL.split(" ".join(rest[:stop].split()))[1:]
    details = [
        f"{name}: {_shorten(text.strip().removesuffix('>>').strip())}"
        for name, text in zip(parts[::2], parts[1::2], strict=False)
    ]
    return names, details


def _shorten(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def validate(
    text: str,
    *,
    spec_dir: Path,
    constants: TraceConstants | None = None,
    keep: Path | None = None,
    extensions: bool = True,
    workers: int = 1,
    timeout: float | None = None,
    explain: bool = True,
    promised: Iterable[str] | None = None,
) -> TraceVerdict:
    """Check with TLC that a trace (its text) is a behaviour of spec/Dynamo.tla that keeps
    the ``promised`` properties at every line (default: ``promises`` of its constants).

    :raises TraceFormatError: the trace cannot be read, names no constants, or a promise
        that is not one of ``PROMISES``.
    """
    header, lines = read_trace(text)
    consts = constants or header
    if consts is None:
        raise TraceFormatError(
            'the trace names no constants: give it a line {"constants": {...}}, first or '
            "last (see spec/README.md), or pass them apart"
        )
    checked = promises(consts) if promised is None else tuple(dict.fromkeys(promised))
    unknown = [p for p in checked if p not in PROMISES]
    if unknown:
        raise TraceFormatError(
            f"no promise named {', '.join(unknown)}: the spec's are {', '.join(PROMISES)}"
        )
    prepared = prepare(lines, consts, extensions=extensions)
    with tempfile.TemporaryDirectory(prefix="dynamo-trace-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in SPEC_FILES:
            shutil.copy(spec_dir / name, work / name)
        (work / "TraceData.tla").write_text(prepared.module)
        cfg = work / "DynamoTrace.cfg"
        cfg.write_text(_with_promises(cfg.read_text(), checked))
        result = run_tlc(
            work / "DynamoTrace.tla",
            work / "DynamoTrace.cfg",
            workers=workers,
            timeout=timeout,
            trace_lines=len(lines),
        )
        seconds = result.seconds or 0.0
        verdict = functools.partial(
            TraceVerdict,
            steps=len(lines),
            result=result,
            seconds=seconds,
            actions=prepared.actions,
            extensions=prepared.extensions,
            promised=checked,
        )
        if result.verdict is Verdict.INVARIANT and result.violated == "TraceIncomplete":
            return verdict(True, failed_step=None, failed_action=None, reason="", details=[])
        promise = (result.violated or "").removeprefix("Trace")
        if result.verdict is Verdict.INVARIANT and promise in PROMISES:
            # The counterexample's last state is the line after which the promise is broken.
            matched = [int(n) for n in _LINE_OF_STATE.findall(result.trace)]
            at = matched[-1] if matched else len(lines)
            return verdict(
                False,
                failed_step=at,
                failed_action=_line_text(lines[at - 1]),
                reason=PROMISES[promise],
                details=[],
                broken=promise,
            )
        if result.verdict is not Verdict.PASS:
            reason = result.message or result.describe()
            return verdict(False, failed_step=None, failed_action=None, reason=reason, details=[])
        # No behaviour got further than the deepest state TLC found: it matched lines 1..depth.
        failed = min((result.depth or 0) + 1, len(lines))
        line = lines[failed - 1]
        reason, details = "no behaviour of the spec takes this step", list[str]()
        if line.action not in SPEC_ACTIONS and line.action not in EXTENSION_ACTIONS:
            if line.action not in STUTTER_ACTIONS:
                reason = (
                    f"{line.action} is neither an action of Dynamo.tla nor a node-only step "
                    "that trace validation knows"
                )
                explain = False
        elif not extensions and failed in prepared.beyond:
            reason = f"{prepared.beyond[failed]} is beyond Dynamo.tla (refused by --strict)"
            explain = False
        if explain:
            reason, details = _explain(
                consts,
                lines,
                failed,
                work=work / "diagnose",
                spec_dir=spec_dir,
                extensions=extensions,
                timeout=timeout,
            )
        return verdict(
            False,
            failed_step=failed,
            failed_action=_line_text(line),
            reason=reason,
            details=details,
        )


def _explain(
    constants: TraceConstants,
    lines: list[Line],
    failed: int,
    *,
    work: Path,
    spec_dir: Path,
    extensions: bool,
    timeout: float | None,
) -> tuple[str, list[str]]:
    """Why line ``failed`` cannot be taken: its action is not enabled, or it ends elsewhere."""
    prepared = prepare(lines, constants, extensions=extensions, diagnose_at=failed)
    work.mkdir(parents=True, exist_ok=True)
    for name in SPEC_FILES:
        shutil.copy(spec_dir / name, work / name)
    (work / "TraceData.tla").write_text(prepared.module)
    result = run_tlc(
        work / "DynamoTrace.tla",
        work / "DynamoTraceDiagnose.cfg",
        workers=1,
        timeout=timeout,
        trace_lines=failed,
    )
    reason, details, _ = explanation(result, failed)
    return reason, details


class Explanation(NamedTuple):
    """Why a line cannot be taken: ``reason`` as a sentence, the ``variables`` the spec's step
    leaves otherwise than recorded (none when the action is not enabled), and TLC's account
    of each in ``details``."""

    reason: str
    details: list[str]
    variables: list[str]


def explanation(result: TlcResult, failed: int, recorded: str = "recorded") -> Explanation:
    """Why line ``failed`` cannot be taken, from TLC's diagnosis run (DynamoTrace's
    DiagnoseReport or DynamoProcessTrace's ProcessDiagnoseReport): a guard of its action
    fails, or the step ends with the variables named otherwise than ``recorded``, with each
    difference as ``<<only in the spec, only in the trace>>``."""
    names, details = _diagnosis(result.output)
    if names is None:
        if result.verdict is Verdict.ERROR:
            reason = f"no behaviour of the spec takes this step ({result.describe()})"
        elif failed == 1:
            reason = "the Init line is not the spec's initial state"
        else:
            guards = _GUARDS.search(result.output)
            failing = (
                [" ".join(g.split()) for g in re.findall(r'"((?:[^"\\]|\\.)*)"', guards.group(2))]
                if guards
                else []
            )
            reason = (
                f"the action is not enabled: {', '.join(failing)} fails"
                if failing
                else "the action is not enabled in any state that matches the trace so far"
            )
        return Explanation(reason, [], [])
    if not names:
        reason = "the action is enabled, but the rest of its node step cannot follow"
        return Explanation(reason, [], [])
    reason = f"the spec's step leaves {', '.join(names)} otherwise than {recorded}"
    return Explanation(reason, details, names)
