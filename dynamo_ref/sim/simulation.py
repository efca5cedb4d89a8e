"""The deterministic simulation: one clock, one event queue, one seeded ``Random``.

The simulation is a driver of ``Node.handle``. It delivers messages, fires timers, applies
durable effects to each node's disk (a ``DurableState``), answers clients and injects faults. It
takes no protocol decision: what a node sends, stores or replies is the node's alone.

Determinism. Events are ordered by ``(time, seq)``, ``seq`` counting pushes, so ties break the
same way every run; every random draw comes from the simulation's ``Random(seed)`` in an order
fixed by the events, and each node gets its own ``Random`` seeded from it. Nothing iterates a
set of strings, so the hash seed does not matter. Tracing and history only read state: a run
draws the same numbers with or without them.

Faults. A crash throws the ``Node`` away and keeps its disk; a restart builds a new ``Node`` from
the disk. A cut link holds its messages until it heals (the spec's partitions do the same);
a message that reaches a node that is down is lost. A sender whose message goes to a node that
is down, or over a cut link, gets ``PeerUnreachable`` one link delay later (a refused or timed-out
connection), unless ``notify_unreachable`` is off.

Manual mode (``manual=True``) delivers no message by itself and draws no loss, duplication or
delay: ``in_flight``/``deliverable`` list the messages, ``deliver``, ``drop`` and ``duplicate``
choose. Timers, client requests and unreachable notices still run on the clock, and
``pending_timers``/``fire_timer`` fire a timer early.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal, Protocol

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    ClientId,
    ClientRequest,
    DropHint,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    Persist,
    PersistHint,
    PersistMeta,
    Reply,
    Send,
    SetTimer,
    TimerFired,
    TimerId,
)
from dynamo_ref.core.messages import ClientMessage, PeerMessage, ReplyMessage
from dynamo_ref.core.node import DurableState
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.sim.network import InFlight, Link, LinkConfig, SimNetwork
from dynamo_ref.sim.trace import Raw, TraceWriter, dumps, encode, encode_fields

# Spec action names of the environment's steps.
CRASH: Final = "Crash"
RECOVER: Final = "Recover"
PARTITION: Final = "Partition"
HEAL: Final = "Heal"
LOSE: Final = "LoseMessage"
DUPLICATE: Final = "DuplicateMessage"
INIT: Final = "Init"

# The spec's variables that are per node.
_NODE_VARIABLES: Final = ("store", "hints", "putOps", "getOps")

# Event kinds in the queue.
_DELIVER: Final = 0
_TIMER: Final = 1
_CLIENT: Final = 2
_UNREACHABLE: Final = 3
_CALL: Final = 4


class SimNode(Protocol):
    """What the simulation needs of a node: the sans-I/O interface of ``core.node.Node``."""

    def start(self, now: float) -> list[Effect]: ...

    def handle(self, event: Event, now: float) -> list[Effect]: ...

    def _node_parts(self, nid: NodeId) -> dict[str, object]:
        node = self.nodes.get(nid)
        if node is not None:
            return node.spec_state()
        assert self._view is not None
        durable = self._view.durable_state(nid, self.disks[nid])
        return {"putOps": frozenset(), "getOps": frozenset(), **durable}

    def _trace_state(self) -> Raw:
        """``encode(self.spec_state())``, from the parts that did not change kept as text."""
        texts = self._node_texts
        ids = sorted(self.node_ids)
        for nid in ids:
            if nid not in texts:
                texts[nid] = {var: encode(v) for var, v in self._node_parts(nid).items()}
        fields: dict[str, object] = {}
        for var in sorted({var for nid in ids for var in texts[nid]} | set(_NODE_VARIABLES)):
            parts = (f"{dumps(nid)}:{texts[nid][var]}" for nid in ids if var in texts[nid])
            fields[var] = Raw("{" + ",".join(parts) + "}")
        bag: dict[str, int] = {}
        for m in self.network.in_flight.values():
            text = self._spec_text(m)
            if text is not None:
                bag[text] = bag.get(text, 0) + 1
        fields["msgs"] = Raw("[" + ",".join(f"[{t},{n}]" for t, n in sorted(bag.items())) + "]")
        fields["acked"] = Raw("[" + ",".join(self._acked_texts) + "]")
        fields["answered"] = Raw("[" + ",".join(self._answered_texts) + "]")
        fields.update(self._env_state())
        return Raw(encode_fields(fields))

    def _env_state(self) -> dict[str, object]:
        return {
            "up": {nid: nid in self.nodes for nid in self.node_ids},
            "cut": [list(p) for p in sorted(self._cut_pairs())],
            "clock": self.puts,
            "gets": self.gets,
            "faults": dict(self.stats.faults),
        }

    def spec_state(self) -> dict[str, object]:
        """The spec's variables for the whole cluster (needs a SpecView)."""
        view = self._view
        if view is None:
            raise ValueError("spec_state needs a SpecView")
        per_node: dict[str, dict[NodeId, object]] = {var: {} for var in _NODE_VARIABLES}
        for nid in self.node_ids:
            for var, value in self._node_parts(nid).items():
                per_node.setdefault(var, {})[nid] = value
        bag: dict[str, tuple[object, int]] = {}
        for m in self.network.in_flight.values():
            rec = view.message(m.src, m.dst, m.msg)
            if rec is not None:
                text = encode(rec)
                seen = bag.get(text)
                bag[text] = (rec, 1 if seen is None else seen[1] + 1)
        return {
            **per_node,
            "msgs": [list(bag[k]) for k in sorted(bag)],
            "acked": list(self.acked),
            "answered": list(self.answered),
            **self._env_state(),
        }
