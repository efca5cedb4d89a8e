"""Merge per-process traces into one behaviour consistent with happens-before.

Each node writes its own steps (``dynamo_ref.net.trace``, docs/trace-format.md version 2): no
global state, no clock shared between processes, no id on the wire. The merger rebuilds what
the spec needs to follow a run:

- **Messages.** A received message is paired with a send on the same link (sender, receiver)
  that carried the same bytes (the same digest ``h``). Pairs are made first in, first out, as
  TCP delivers them; sends passed over were lost (a link that broke); a message received again
  after it was paired is a duplicate. A message received that was never sent is an error.
- **Order.** Steps are ordered by a topological sort of each node's own order and each send
  before its receive; among steps both orders leave free, the earlier local monotonic time goes
  first (one machine shares ``CLOCK_MONOTONIC``; across machines it only breaks ties). Every
  step gets a Lamport clock.
- **Restarts.** A node's file goes on after a restart, behind a new header: its steps from
  then on are a new incarnation, and the merged behaviour shows a ``Restart`` step there.
- **Faults.** Whoever injects faults logs them (a fault log: JSON lines ``{"fault", "t", ...}``
  on the same monotonic clock): the harness its signals to processes (``start``, ``SIGKILL``,
  ``SIGSTOP``, ...), its network changes (``net-cut`` with the links, ``net-heal``, ...), and
  the proxy each message a cut lost (``drop``, with the link and the digest). They become steps
  of an ``environment`` process, in time order; a drop is paired with the earliest send on its
  link with its digest that was neither received nor dropped already, after which it comes, and
  shows as ``LoseMessage``. A drop that pairs with no send is a frame no trace logs (a
  handshake) and is only counted.

Bad input (a line that is not JSON or lacks a field, a step number or a time that goes
backwards, a message received that was never sent) raises ``TraceInputError`` naming the file
and the line: a merge never accepts what it cannot read.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

FORMAT_VERSION: Final = 2


class TraceInputError(ValueError):
    """A trace that cannot be read or does not hang together, with where."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


class Header(msgspec.Struct, forbid_unknown_fields=False):
    trace: str
    v: int
    node: str
    t: float
    address: str = ""
    pid: int = 0
    config: dict[str, Any] = {}


class Recv(msgspec.Struct):
    # "from" is a keyword: renamed on the wire.
    src: str = msgspec.field(name="from")
    h: str


class Sent(msgspec.Struct):
    to: str
    h: str


class StepLine(msgspec.Struct, forbid_unknown_fields=False):
    node: str
    i: int
    t: float
    event: str
    recv: Recv | None
    actions: list[list[str]]
    sent: list[Sent]
    state: dict[str, Any]
    hintKeys: list[list[str]] = []


class FaultLine(msgspec.Struct, forbid_unknown_fields=False):
    fault: str
    t: float
    node: str | None = None
    pid: int | None = None
    links: list[list[str]] = []
    params: dict[str, float] = {}
    src: str | None = msgspec.field(name="from", default=None)
    to: str | None = None
    h: str | None = None


ENVIRONMENT: Final = "environment"

# What a fault is in the merged behaviour.
FAULT_ACTIONS: Final = {
    "start": "Start",
    "SIGKILL": "Kill",
    "SIGTERM": "Stop",
    "SIGSTOP": "Pause",
    "SIGCONT": "Resume",
    "net-cut": "Partition",
    "net-heal": "Heal",
    "drop": "LoseMessage",
}


@dataclass
class Step:
    """One step of one node, where it was read, and what the merge learns of it."""

    node: str
    incarnation: int
    line: StepLine | None  # None: the node's restart (a header after the first), or a fault
    path: Path
    lineno: int
    t: float
    index: int = 0  # in the node's own order
    lamport: int = 0
    recv_msg: str | None = None  # the id of the message this step consumed
    duplicate: bool = False
    sent_msgs: list[str] = field(default_factory=list)
    after: list[int] = field(default_factory=list)  # steps that wait for this one
    waiting: int = 0  # steps this one waits for
    fault: FaultLine | None = None  # a step of the environment


@dataclass
class MergeResult:
    steps: list[Step]  # in the merged order
    nodes: list[str]
    messages: int  # sent
    delivered: int
    lost: int  # sent, never received, not known to be dropped
    duplicates: int
    dropped: int = 0  # sent, and lost by the network (a fault log says which)
    faults: int = 0  # steps of the environment
    unmatched_drops: int = 0  # frames the network lost that no trace logs

    def summary(self) -> str:
        text = (
            f"{len(self.steps)} steps of {len(self.nodes)} nodes "
            f"({', '.join(self.nodes)}); {self.messages} messages sent, {self.delivered} "
            f"received, {self.lost} never received, {self.duplicates} received twice"
        )
        if self.faults:
            text += (
                f"; {self.faults} faults, {self.dropped} messages dropped by the network"
                f" (and {self.unmatched_drops} frames no trace logs)"
            )
        return text


def trace_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the ``*.jsonl`` files of the directories named and of their
    subdirectories one level down (a run's ``<node>/trace.jsonl``)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted({*p.glob("*.jsonl"), *p.glob("*/*.jsonl")}))
        else:
            out.append(p)
    return out


def is_fault_log(path: Path) -> bool:
    """Whether ``path``'s first line is a fault, not a trace header."""
    try:
        with path.open("rb") as f:
            first = f.readline()
        obj = msgspec.json.decode(first)
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(obj, dict) and "fault" in obj and "trace" not in obj


def read_fault_log(path: Path) -> list[Step]:
    """The environment's steps, in time order.

    :raises TraceInputError: unreadable, or a line that is not a fault.
    """
    steps: list[Step] = []
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TraceInputError(path, 0, f"cannot read: {e.strerror}") from None
    if raw and not raw.endswith(b"\n"):
        raise TraceInputError(path, raw.count(b"\n") + 1, "truncated: the last line is unfinished")
    for lineno, text in enumerate(raw.splitlines(), 1):
        try:
            fault = msgspec.json.decode(text, type=FaultLine)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise TraceInputError(path, lineno, f"not a fault: {e}") from None
        if fault.fault == "drop" and not (fault.src and fault.to and fault.h):
            raise TraceInputError(path, lineno, "a drop names its link (from, to) and digest h")
        steps.append(Step(ENVIRONMENT, 1, None, path, lineno, fault.t, fault=fault))
    # Threads log on one clock but may write out of order.
    steps.sort(key=lambda s: s.t)
    return steps


def read_process_trace(path: Path) -> list[Step]:
    """One node's steps, in its own order.

    :raises TraceInputError: unreadable, or out of order.
    """
    steps: list[Step] = []
    node: str | None = None
    incarnation = 0
    last_i = 0
    last_t = float("-inf")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TraceInputError(path, 0, f"cannot read: {e.strerror}") from None
    if not raw.strip():
        raise TraceInputError(path, 0, "empty trace")
    if not raw.endswith(b"\n"):
        raise TraceInputError(path, raw.count(b"\n") + 1, "truncated: the last line is unfinished")
    for lineno, text in enumerate(raw.splitlines(), 1):
        if not text.strip():
            raise TraceInputError(path, lineno, "blank line")
        try:
            obj = msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            raise TraceInputError(path, lineno, f"not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise TraceInputError(path, lineno, "a line must be a JSON object")
        try:
            if "trace" in obj:
                header = msgspec.convert(obj, Header)
                if header.v != FORMAT_VERSION:
                    raise TraceInputError(
                        path, lineno, f"format version {header.v}; this reads {FORMAT_VERSION}"
                    )
                if node is not None and header.node != node:
                    raise TraceInputError(
                        path, lineno, f"a header of node {header.node} in {node}'s trace"
                    )
                if header.t < last_t:
                    raise TraceInputError(path, lineno, "the clock goes backwards")
                if node is not None:
                    steps.append(Step(node, incarnation + 1, None, path, lineno, header.t))
                node, incarnation, last_i, last_t = header.node, incarnation + 1, 0, header.t
                continue
            line = msgspec.convert(obj, StepLine)
        except msgspec.ValidationError as e:
            raise TraceInputError(path, lineno, f"malformed: {e}") from None
        if node is None:
            raise TraceInputError(path, lineno, "a step before the header")
        if line.node != node:
            raise TraceInputError(path, lineno, f"a step of node {line.node} in {node}'s trace")
        if line.i != last_i + 1:
            raise TraceInputError(path, lineno, f"step {line.i} after step {last_i}")
        if line.t < last_t:
            raise TraceInputError(
                path, lineno, f"the clock goes backwards ({line.t} after {last_t})"
            )
        last_i, last_t = line.i, line.t
        steps.append(Step(node, incarnation, line, path, lineno, line.t))
    return steps


def merge(per_process: Sequence[Sequence[Step]]) -> MergeResult:
    """One behaviour of all the steps (see the module docstring).

    :raises TraceInputError: a message received that was never sent, or traces whose
        send/receive pairs contradict each node's own order.
    """
    steps: list[Step] = []
    nodes: list[str] = []
    environment = False
    for own in per_process:
        if not own:
            continue
        if own[0].node == ENVIRONMENT:
            if environment:
                raise TraceInputError(own[0].path, 1, "a second fault log")
            environment = True
        elif own[0].node in nodes:
            raise TraceInputError(own[0].path, 1, f"a second trace of node {own[0].node}")
        else:
            nodes.append(own[0].node)
        for k, step in enumerate(own):
            step.index = k
            if k:
                steps[-1].after.append(len(steps))
                step.waiting += 1
            steps.append(step)
    # Sends per link, in the sender's order: (digest, step number, message id).
    links: dict[tuple[str, str], list[tuple[str, int, str]]] = defaultdict(list)
    for n, step in enumerate(steps):
        if step.line is None:
            continue
        for sent in step.line.sent:
            link = links[(step.node, sent.to)]
            msg = f"{step.node}>{sent.to}#{len(link) + 1}"
            link.append((sent.h, n, msg))
            step.sent_msgs.append(msg)
    cursor: dict[tuple[str, str], int] = defaultdict(int)
    delivered: set[str] = set()
    duplicates = 0
    for n, step in enumerate(steps):
        if step.line is None or step.line.recv is None:
            continue
        src, h = step.line.recv.src, step.line.recv.h
        link = links.get((src, step.node), [])
        at = cursor[(src, step.node)]
        j = next((j for j in range(at, len(link)) if link[j][0] == h), None)
        if j is not None:
            cursor[(src, step.node)] = j + 1
        else:
            # Received before: a duplicate of a message already paired.
            j = next((j for j in range(at - 1, -1, -1) if link[j][0] == h), None)
            if j is None:
                raise TraceInputError(
                    step.path,
                    step.lineno,
                    f"{step.node} received a message from {src} ({h}) that {src} never sent",
                )
            step.duplicate = True
            duplicates += 1
        _, sender, msg = link[j]
        step.recv_msg = msg
        delivered.add(msg)
        steps[sender].after.append(n)
        step.waiting += 1
    dropped: set[str] = set()
    unmatched = 0
    for n, step in enumerate(steps):
        f = step.fault
        if f is None or f.fault != "drop":
            continue
        link = links.get((f.src or "", f.to or ""), [])
        j = next(
            (
                j
                for j, (h, sender, msg) in enumerate(link)
                if h == f.h
                and msg not in delivered
                and msg not in dropped
                and steps[sender].t <= f.t
            ),
            None,
        )
        if j is None:
            unmatched += 1
            continue
        _, sender, msg = link[j]
        dropped.add(msg)
        step.recv_msg = msg
        steps[sender].after.append(n)
        step.waiting += 1
    # Kahn's sort; ties by local time, then node, then own order.
    ready = [(s.t, s.node, s.index, n) for n, s in enumerate(steps) if s.waiting == 0]
    heapq.heapify(ready)
    order: list[Step] = []
    while ready:
        _, _, _, n = heapq.heappop(ready)
        step = steps[n]
        step.lamport += 1
        order.append(step)
        for m in step.after:
            nxt = steps[m]
            nxt.lamport = max(nxt.lamport, step.lamport)
            nxt.waiting -= 1
            if nxt.waiting == 0:
                heapq.heappush(ready, (nxt.t, nxt.node, nxt.index, m))
    if len(order) != len(steps):
        stuck = next(s for s in steps if s.waiting > 0)
        raise TraceInputError(
            stuck.path,
            stuck.lineno,
            "the traces contradict each other: this step waits, through message pairs, for "
            "a later step of its own node",
        )
    sent_total = sum(len(link) for link in links.values())
    return MergeResult(
        order,
        nodes,
        messages=sent_total,
        delivered=len(delivered),
        lost=sent_total - len(delivered) - len(dropped),
        duplicates=duplicates,
        dropped=len(dropped),
        faults=sum(1 for s in steps if s.fault is not None),
        unmatched_drops=unmatched,
    )


def merge_files(paths: Iterable[Path]) -> MergeResult:
    """Read and merge the per-process traces at ``paths`` (files or directories of them)."""
    files = trace_files(paths)
    if not files:
        raise TraceInputError(Path("."), 0, "no trace files")
    return merge([read_fault_log(p) if is_fault_log(p) else read_process_trace(p) for p in files])


def merged_line(step: Step) -> dict[str, Any]:
    """A merged step as a JSON object (the merged trace's lines)."""
    out: dict[str, Any] = {
        "lc": step.lamport,
        "node": step.node,
        "inc": step.incarnation,
    }
    if step.fault is not None:
        f = step.fault
        out |= {"action": FAULT_ACTIONS.get(f.fault, f.fault), "t": f.t}
        if f.node is not None:
            out["target"] = f.node
        if f.links:
            out["links"] = f.links
        if f.params:
            out["params"] = f.params
        if f.fault == "drop":
            out["msg"] = step.recv_msg  # None: a frame no trace logs
        return out
    if step.line is None:
        out["action"] = "Restart"
        return out
    line = step.line
    out |= {
        "i": line.i,
        "t": line.t,
        "event": line.event,
        "recv": None
        if line.recv is None
        else {"from": line.recv.src, "msg": step.recv_msg, "dup": step.duplicate},
        "actions": line.actions,
        "sent": [{"to": s.to, "msg": m} for s, m in zip(line.sent, step.sent_msgs, strict=True)],
        "state": line.state,
        "hintKeys": line.hintKeys,
    }
    return out


def write_merged(result: MergeResult, out: Path) -> None:
    with out.open("w", encoding="utf-8") as f:
        for step in result.steps:
            f.write(json.dumps(merged_line(step), separators=(",", ":")) + "\n")
