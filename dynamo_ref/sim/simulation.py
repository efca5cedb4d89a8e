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
from collections.abc import Callable, Iterable, Sequence
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
HANDLER_FAILED: Final = "HandlerFailed"


class HandlerError(AssertionError):
    """A node's handler raised while the simulation ran it."""


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

    def spec_state(self) -> dict[str, object]: ...


# Builds a node from its id, its disk, its own Random and the time: a start or a restart.
NodeFactory = Callable[[NodeId, DurableState, random.Random, float], SimNode]

HistoryKind = Literal["acked", "answered"]
Verdict = Literal["drop", "hold"]


class SpecView(Protocol):
    """How the spec sees what the simulation holds: messages, disks of nodes that are down,
    and client replies. ``spec_view.NodeSpecView`` is the real node's."""

    def message(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> object | None:
        """The spec's record of a message in flight, or None when the spec has no such kind."""
        ...

    def durable_state(self, node: NodeId, durable: DurableState) -> dict[str, object]:
        """The spec variables a node that is down still has (store, hints), from its disk."""
        ...

    def reply(
        self, request: ClientMessage, reply: ReplyMessage
    ) -> tuple[HistoryKind, dict[str, object]] | None:
        """An acknowledged write ``("acked", {key, ver})`` or an answered read
        ``("answered", {key, ...})``; None for failures and anything else."""
        ...


class SimClock:
    """Simulated seconds. Only the simulation moves it, and never backwards."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def advance(self, to: float) -> None:
        self.now = max(self.now, to)


@dataclass(slots=True, eq=False)
class ClientHandle:
    """One client request; ``reply`` is filled when the node answers."""

    client: ClientId
    node: NodeId
    request: ClientMessage
    sent: float
    reply: ReplyMessage | None = None
    replied: float | None = None
    # Set when no reply can come: the node was down, or crashed before it answered.
    error: str | None = None
    # Writes acknowledged before the request began (the spec's ``after`` of a get).
    after: int = 0

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None


@dataclass(slots=True)
class Stats:
    """What happened, spec-visible or not; ``faults`` counts only what the spec sees."""

    events: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    held: int = 0
    timers: int = 0
    client_requests: int = 0
    replies: int = 0
    unreachable: int = 0
    faults: dict[str, int] = field(
        default_factory=lambda: {"crash": 0, "partition": 0, "loss": 0, "dup": 0}
    )


# (time, seq, kind, and up to three fields whose types the kind fixes)
_QueueEntry = tuple[float, int, int, Any, Any, Any]


class Simulation:
    """A cluster of nodes on a simulated clock and network, driven by one seed."""

    # Stale timer entries tolerated in the queue before it is compacted.
    compact_at = 1024

    def __init__(
        self,
        node_ids: Sequence[NodeId],
        factory: NodeFactory,
        *,
        seed: int,
        link: LinkConfig | None = None,
        view: SpecView | None = None,
        trace: IO[str] | TraceWriter | None = None,
        manual: bool = False,
        notify_unreachable: bool = True,
        history: bool = True,
        start: float = 0.0,
    ) -> None:
        if len(set(node_ids)) != len(node_ids) or not node_ids:
            raise ValueError("node ids must be distinct and not empty")
        self.node_ids: tuple[NodeId, ...] = tuple(node_ids)
        self.rng = random.Random(seed)
        self.clock = SimClock(start)
        self.network = SimNetwork(link)
        self.stats = Stats()
        self.manual = manual
        self.notify_unreachable = notify_unreachable
        self._factory = factory
        self._factories: dict[NodeId, NodeFactory] = {}
        self._view = view
        self._history = history and view is not None
        if trace is None or isinstance(trace, TraceWriter):
            self._trace = trace
        else:
            self._trace = TraceWriter(trace)
        if self._trace is not None and view is None:
            raise ValueError("a trace needs a SpecView")
        self._queue: list[_QueueEntry] = []
        self._seq = 0
        # Queue entries of timers since cancelled or reset, left for ``step`` to skip.
        self._stale = 0
        self.nodes: dict[NodeId, SimNode] = {}
        self.disks: dict[NodeId, DurableState] = {nid: DurableState() for nid in self.node_ids}
        self._incarnation = dict.fromkeys(self.node_ids, 0)
        # Per node, the live timers: timer id -> (due time, seq of its queue entry).
        self._timers: dict[NodeId, dict[TimerId, tuple[float, int]]] = {
            nid: {} for nid in self.node_ids
        }
        self._clients: dict[ClientId, ClientHandle] = {}
        self._next_client = 0
        self.outstanding = 0
        self.stray_replies = 0
        # A node's handler raised (the node answered and went on): a bug, which fails the run
        # unless a test expects it.
        self.handler_failures: list[tuple[NodeId, Action]] = []
        self.fail_on_handler_error = True
        # Tests' hooks: every message sent (when a list), every spec action taken (when a list),
        # and a verdict on each message as it is sent: dropped (the sender is not told) or held
        # (until ``release``).
        self.sent: list[tuple[NodeId, NodeId, PeerMessage]] | None = None
        self.actions: list[tuple[NodeId, Action]] | None = None
        self.intercept: Callable[[NodeId, NodeId, PeerMessage], Verdict | None] | None = None
        self.held: list[tuple[NodeId, NodeId, PeerMessage]] = []
        # Spec history and counters.
        self.acked: list[dict[str, object]] = []
        self.answered: list[dict[str, object]] = []
        self.puts = 0
        self.gets = 0
        self._duplicates: list[InFlight] = []
        # Trace text of parts of the state, kept until they change: a line re-encodes only
        # the node that stepped and the messages in flight.
        self._node_texts: dict[NodeId, dict[str, str]] = {}
        self._acked_texts: list[str] = []
        self._answered_texts: list[str] = []
        for nid in self.node_ids:
            self._boot(nid)
        if self._trace is not None:
            self._trace.record(INIT, [], None, self.clock.now, self._trace_state())

    # ---- time and the queue ----------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def _push(self, at: float, kind: int, a: object, b: object = None, c: object = None) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))
        return self._seq

    def schedule(self, at: float, fn: Callable[[], object]) -> None:
        """Call ``fn`` at simulated time ``at`` (scripted faults, workload arrivals)."""
        self._push(max(at, self.clock.now), _CALL, fn)

    def next_time(self) -> float | None:
        """When the next queued event happens (None when the queue is empty)."""
        return self._queue[0][0] if self._queue else None

    def step(self) -> bool:
        """Process the next event; False when there is none."""
        queue = self._queue
        if not queue:
            return False
        at, seq, kind, a, b, c = heapq.heappop(queue)
        # Nothing is ever queued before the clock, so the heap's order is time's order.
        self.clock.now = at
        self.stats.events += 1
        if kind == _DELIVER:
            net = self.network
            m = net.in_flight.get(a)
            if m is None:
                return True  # dropped or delivered by hand meanwhile
            dst = m.dst
            if m.doomed:
                self._lose(m)
            elif net.cut_set and (m.src, dst) in net.cut_set:
                if not m.held:
                    m.held = True
                    self.stats.held += 1
            elif dst not in self.nodes:
                self._lose(m)
            else:
                del net.in_flight[a]
                self.stats.delivered += 1
                self._apply(dst, self.nodes[dst].handle(PeerReceived(m.src, m.msg), at))
        elif kind == _TIMER:
            timers = self._timers[a]
            entry = timers.get(b)
            if entry is not None and entry[1] == seq:
                del timers[b]
                self.stats.timers += 1
                self._apply(a, self.nodes[a].handle(TimerFired(b), at))
            else:
                self._stale -= 1
        elif kind == _CLIENT:
            self._client_arrives(a)
        elif kind == _UNREACHABLE:
            # Only the incarnation that sent hears back.
            if a in self.nodes and self._incarnation[a] == c:
                self.stats.unreachable += 1
                self._run(a, PeerUnreachable(b))
        else:
            a()
        return True

    def run_until(self, time: float) -> None:
        """Process every event due at or before ``time``; the clock ends at ``time``."""
        queue = self._queue
        while queue and queue[0][0] <= time:
            self.step()
        self.clock.advance(time)

    def run_for(self, duration: float) -> None:
        self.run_until(self.clock.now + duration)

    def run_until_quiet(self, limit: float = 3600.0) -> bool:
        """Run until every client has its answer and no message can still be delivered, or
        until ``limit`` simulated seconds have passed. True when quiet was reached."""
        deadline = self.clock.now + limit
        while not self.is_quiet():
            if not self._queue or self._queue[0][0] > deadline:
                self.clock.advance(deadline)
                return False
            self.step()
        return True

    def run_until_done(self, handles: Iterable[ClientHandle], limit: float = 3600.0) -> bool:
        """Run until every one of ``handles`` is done, or ``limit`` simulated seconds pass."""
        pending = [h for h in handles if not h.done]
        deadline = self.clock.now + limit
        while pending:
            if not self._queue or self._queue[0][0] > deadline:
                self.clock.advance(deadline)
                return False
            self.step()
            if pending[-1].done:
                pending = [h for h in pending if not h.done]
        return True

    def is_quiet(self) -> bool:
        if self.outstanding:
            return False
        if self.manual:
            return True
        # A held message waits for a heal that only the caller can bring.
        return all(m.held for m in self.network.in_flight.values())

    # ---- nodes -----------------------------------------------------------------------------

    def _boot(self, nid: NodeId) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        node = self._factories.get(nid, self._factory)(nid, self.disks[nid], rng, self.clock.now)
        self.nodes[nid] = node
        self._apply(nid, node.start(self.clock.now))

    def is_up(self, nid: NodeId) -> bool:
        return nid in self.nodes

    def add_node(self, nid: NodeId, factory: NodeFactory | None = None) -> None:
        """Start a new node on an empty disk (``factory``: how to build it, now and after a
        restart; default: the simulation's)."""
        if nid in self._incarnation:
            raise ValueError(f"{nid} is already a node")
        self.node_ids = (*self.node_ids, nid)
        self.disks[nid] = DurableState()
        self._incarnation[nid] = 0
        self._timers[nid] = {}
        if factory is not None:
            self._factories[nid] = factory
        self._boot(nid)

    def _run(self, nid: NodeId, event: Event) -> None:
        self._apply(nid, self.nodes[nid].handle(event, self.clock.now))

    def inject(self, nid: NodeId, event: Event) -> None:
        """Hand a running node an event now (a test's stand-in for the world)."""
        self._run(nid, event)

    def release(self, keep: Callable[[NodeId, NodeId, PeerMessage], bool] | None = None) -> None:
        """Send the held messages (all, or those ``keep`` does not match) on their way."""
        back = [m for m in self.held if keep is None or not keep(*m)]
        self.held = [m for m in self.held if keep is not None and keep(*m)]
        for src, dst, msg in back:
            self._transmit(src, dst, msg)

    def _apply(self, nid: NodeId, effects: list[Effect]) -> None:
        """Carry out a node's effects in order, then record its spec actions."""
        disk = self.disks[nid]
        actions: list[Action] | None = None
        failed: Action | None = None
        if self._trace is not None:
            self._node_texts.pop(nid, None)
        for e in effects:
            # Exact types, the most frequent first: effect types have no subclasses, and
            # ``type(e) is`` is cheaper than ``isinstance``.
            if type(e) is Action:
                if self.actions is not None:
                    self.actions.append((nid, e))
                if e.name == HANDLER_FAILED:
                    failed = e
                if e.name == "ClientPut":
                    self.puts += 1
                elif e.name == "ClientGet":
                    self.gets += 1
                if self._trace is not None:
                    if actions is None:
                        actions = []
                    actions.append(e)
            elif type(e) is Send:
                self._send(nid, e.dest, e.msg)
            elif type(e) is Persist:
                if e.siblings:
                    disk.store[e.key] = e.siblings
                else:
                    disk.store.pop(e.key, None)
            elif type(e) is SetTimer:
                self._set_timer(nid, e.timer, e.at)
            elif type(e) is CancelTimer:
                if self._timers[nid].pop(e.timer, None) is not None:
                    self._stale += 1
            elif type(e) is Reply:
                self._reply(e.client, e.msg)
            elif isinstance(e, PersistHint):
                if e.siblings:
                    disk.hints[(e.owner, e.key)] = e.siblings
                else:
                    disk.hints.pop((e.owner, e.key), None)
            elif isinstance(e, DropHint):
                disk.hints.pop((e.owner, e.key), None)
            elif isinstance(e, PersistMeta):
                disk.meta[e.name] = e.data
            else:
                raise TypeError(f"unknown effect {e!r}")
        if actions is not None:
            assert self._trace is not None
            now = self.clock.now
            last = len(actions) - 1
            for i, act in enumerate(actions):
                state = self._trace_state() if i == last else None
                self._trace.record(act.name, list(act.args), nid, now, state)
        if failed is not None:
            self.handler_failures.append((nid, failed))
            if self.fail_on_handler_error:
                raise HandlerError(f"{nid}: " + " ".join(failed.args[1:]))
        if self._duplicates:
            # After the sender's own step: the copy is a step of its own.
            copies, self._duplicates = self._duplicates, []
            for m in copies:
                self._copy(m)

    def _set_timer(self, nid: NodeId, timer: TimerId, at: float) -> None:
        at = max(at, self.clock.now)
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, _TIMER, nid, timer, None))
        timers = self._timers[nid]
        if timer in timers:
            self._stale += 1
        timers[timer] = (at, self._seq)
        if self._stale > self.compact_at and 2 * self._stale > len(self._queue):
            self._compact()

    def _compact(self) -> None:
        """Drop the queue entries of timers cancelled or reset since (most of a busy queue).

        The order of what stays is unchanged, so runs are the same with or without this."""
        timers = self._timers
        queue = self._queue
        # In place: callers hold the list.
        queue[:] = [
            x for x in queue if x[2] != _TIMER or timers[x[3]].get(x[4], (0.0, -1))[1] == x[1]
        ]
        heapq.heapify(queue)
        self._stale = 0

    # ---- the network -----------------------------------------------------------------------

    def _send(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> None:
        if self.sent is not None:
            self.sent.append((src, dst, msg))
        if self.intercept is not None:
            verdict = self.intercept(src, dst, msg)
            if verdict == "drop":
                self.stats.lost += 1
                return
            if verdict == "hold":
                self.held.append((src, dst, msg))
                return
        self._transmit(src, dst, msg)

    def _transmit(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> None:
        now = self.clock.now
        net = self.network
        cfg = net.link(src, dst)
        if self.manual:
            net.add(src, dst, msg, now, now)
        else:
            rng = self.rng
            delay = cfg.delay if cfg.jitter == 0.0 else cfg.draw_delay(rng)
            m = net.add(src, dst, msg, now, now + delay)
            if cfg.loss and rng.random() < cfg.loss:
                m.doomed = True
            self._seq += 1
            heapq.heappush(self._queue, (m.due, self._seq, _DELIVER, m.id, None, None))
            if cfg.duplicate and rng.random() < cfg.duplicate:
                self._duplicates.append(m)
        if self.notify_unreachable and (dst not in self.nodes or net.is_cut(src, dst)):
            self._push(now + cfg.delay, _UNREACHABLE, src, dst, self._incarnation[src])

    def _deliver(self, m: InFlight) -> None:
        del self.network.in_flight[m.id]
        self.stats.delivered += 1
        dst = m.dst
        self._apply(dst, self.nodes[dst].handle(PeerReceived(m.src, m.msg), self.clock.now))

    def _lose(self, m: InFlight) -> None:
        del self.network.in_flight[m.id]
        self.stats.lost += 1
        rec = self._spec_message(m)
        if rec is not None:
            self.stats.faults["loss"] += 1
            self._record_env(LOSE, [rec], None)

    def _copy(self, m: InFlight) -> InFlight:
        now = self.clock.now
        net = self.network
        if self.manual:
            copy = net.add(m.src, m.dst, m.msg, now, now)
        else:
            cfg = net.link(m.src, m.dst)
            copy = net.add(m.src, m.dst, m.msg, now, now + cfg.draw_delay(self.rng))
            self._push(copy.due, _DELIVER, copy.id)
        self.stats.duplicated += 1
        rec = self._spec_message(copy)
        if rec is not None:
            self.stats.faults["dup"] += 1
            self._record_env(DUPLICATE, [rec], None)
        return copy

    def _spec_message(self, m: InFlight) -> object | None:
        if self._view is None:
            return None
        return self._view.message(m.src, m.dst, m.msg)

    def _spec_text(self, m: InFlight) -> str | None:
        if not m.spec_known:
            rec = self._spec_message(m)
            m.spec_text = None if rec is None else encode(rec)
            m.spec_known = True
        return m.spec_text

    def _record_env(self, name: str, args: list[object], node: NodeId | None) -> None:
        if self._trace is not None:
            self._trace.record(name, args, node, self.clock.now, self._trace_state())

    # Explicit control of messages (manual mode, or any time).

    def in_flight(self) -> list[InFlight]:
        """Messages in flight, in send order (held and doomed ones included)."""
        return list(self.network.in_flight.values())

    def deliverable(self) -> list[InFlight]:
        """Messages that ``deliver`` would hand to a running node now."""
        net = self.network
        return [
            m
            for m in net.in_flight.values()
            if m.dst in self.nodes and not net.is_cut(m.src, m.dst)
        ]

    def _message(self, message: InFlight | int) -> InFlight:
        mid = message if isinstance(message, int) else message.id
        m = self.network.in_flight.get(mid)
        if m is None:
            raise KeyError(f"message {mid} is not in flight")
        return m

    def deliver(self, message: InFlight | int) -> None:
        """Deliver a message now, whatever its due time.

        :raises ValueError: its link is cut or its destination is down.
        """
        m = self._message(message)
        if self.network.is_cut(m.src, m.dst) or m.dst not in self.nodes:
            raise ValueError(f"message {m.id} cannot be delivered now")
        self._deliver(m)

    def drop(self, message: InFlight | int) -> None:
        """Lose a message in flight (the spec's LoseMessage)."""
        self._lose(self._message(message))

    def duplicate(self, message: InFlight | int) -> InFlight:
        """Put a second copy of a message in flight (the spec's DuplicateMessage)."""
        return self._copy(self._message(message))

    # ---- timers ----------------------------------------------------------------------------

    def pending_timers(self) -> list[tuple[float, NodeId, TimerId]]:
        """Live timers of running nodes, by due time."""
        out = [
            (at, nid, timer)
            for nid in self.node_ids
            for timer, (at, _seq) in self._timers[nid].items()
        ]
        out.sort(key=lambda x: (x[0], x[1]))
        return out

    def fire_timer(self, nid: NodeId, timer: TimerId) -> None:
        """Fire a live timer now, ahead of its time."""
        if timer not in self._timers[nid]:
            raise KeyError(f"{nid} has no timer {timer!r}")
        del self._timers[nid][timer]
        self._stale += 1
        self.stats.timers += 1
        self._run(nid, TimerFired(timer))

    # ---- clients ---------------------------------------------------------------------------

    def client_request(self, node: NodeId, msg: ClientMessage, delay: float = 0.0) -> ClientHandle:
        """Send a client request to ``node``; it arrives ``delay`` seconds from now."""
        if node not in self._incarnation:
            raise KeyError(f"no node {node!r}")
        if not delay >= 0.0:
            raise ValueError("a request cannot arrive before it is sent")
        self._next_client += 1
        handle = ClientHandle(self._next_client, node, msg, self.clock.now)
        self._clients[handle.client] = handle
        self.outstanding += 1
        self._push(self.clock.now + delay, _CLIENT, handle)
        return handle

    def _client_arrives(self, handle: ClientHandle) -> None:
        if handle.done:
            return  # its node crashed before the request got there
        self.stats.client_requests += 1
        if handle.node not in self.nodes:
            handle.error = "node down"
            self._finish(handle)
            return
        handle.after = len(self.acked)
        self._run(handle.node, ClientRequest(handle.client, handle.request))

    def _reply(self, client: ClientId, msg: ReplyMessage) -> None:
        handle = self._clients.get(client)
        if handle is None or handle.done:
            self.stray_replies += 1  # a second answer, or one to a client long gone
            return
        handle.reply = msg
        handle.replied = self.clock.now
        self.stats.replies += 1
        self._finish(handle)
        if self._history:
            assert self._view is not None
            seen = self._view.reply(handle.request, msg)
            if seen is not None:
                kind, record = seen
                epoch = self.stats.faults["crash"] + self.stats.faults["partition"]
                if kind == "acked":
                    record = {**record, "seq": len(self.acked) + 1, "epoch": epoch}
                    self.acked.append(record)
                    if self._trace is not None:
                        self._acked_texts.append(encode(record))
                else:
                    record = {**record, "after": handle.after, "epoch": epoch}
                    self.answered.append(record)
                    if self._trace is not None:
                        self._answered_texts.append(encode(record))

    def _finish(self, handle: ClientHandle) -> None:
        self.outstanding -= 1
        # The simulation keeps no finished handle: a long run must not grow with its clients.
        del self._clients[handle.client]

    # ---- faults ----------------------------------------------------------------------------

    def crash(self, nid: NodeId) -> None:
        """Stop a node: its volatile state and timers go, its disk stays."""
        if nid not in self.nodes:
            raise ValueError(f"{nid} is already down")
        del self.nodes[nid]
        self._node_texts.pop(nid, None)
        self._incarnation[nid] += 1
        self._stale += len(self._timers[nid])
        self._timers[nid].clear()
        # Its clients' connections drop: they will never know how their requests ended.
        for handle in [h for h in self._clients.values() if h.node == nid]:
            handle.error = "connection lost"
            self._finish(handle)
        self.stats.faults["crash"] += 1
        self._record_env(CRASH, [nid], nid)

    def restart(self, nid: NodeId, factory: NodeFactory | None = None) -> None:
        """Start a node again from its disk (``factory``: built another way from now on)."""
        if nid in self.nodes:
            raise ValueError(f"{nid} is already up")
        if factory is not None:
            self._factories[nid] = factory
        rng = random.Random(self.rng.getrandbits(64))
        node = self._factories.get(nid, self._factory)(nid, self.disks[nid], rng, self.clock.now)
        self.nodes[nid] = node
        self._node_texts.pop(nid, None)
        self._record_env(RECOVER, [nid], nid)
        self._apply(nid, node.start(self.clock.now))

    def partition(self, links: Iterable[Link]) -> None:
        """Cut directed links. The spec's cut is of pairs: one is cut when either way is."""
        before = self._cut_pairs()
        self.network.cut(links)
        for pair in sorted(self._cut_pairs() - before):
            self.stats.faults["partition"] += 1
            self._record_env(PARTITION, list(pair), None)

    def partition_groups(self, *groups: Iterable[NodeId]) -> None:
        """Cut every link between nodes of different groups, both ways."""
        sets = [list(g) for g in groups]
        self.partition(
            (a, b)
            for i, ga in enumerate(sets)
            for j, gb in enumerate(sets)
            if i != j
            for a in ga
            for b in gb
        )

    def isolate(self, nid: NodeId) -> None:
        """Cut a node off from all others, both ways."""
        others = [x for x in self.node_ids if x != nid]
        self.partition_groups([nid], others)

    def heal(self, links: Iterable[Link] | None = None) -> None:
        """Heal the given directed links (all when None); held messages leave now."""
        before = self._cut_pairs()
        healed = set(self.network.restore(links))
        for pair in sorted(before - self._cut_pairs()):
            self._record_env(HEAL, list(pair), None)
        if not healed:
            return
        now = self.clock.now
        for m in self.network.in_flight.values():
            if m.held and (m.src, m.dst) in healed:
                m.held = False
                if not self.manual:
                    m.due = now + self.network.link(m.src, m.dst).draw_delay(self.rng)
                    self._push(m.due, _DELIVER, m.id)

    def _cut_pairs(self) -> set[tuple[NodeId, NodeId]]:
        return {(min(a, b), max(a, b)) for a, b in self.network.cut_links()}

    def configure_link(self, src: NodeId, dst: NodeId, config: LinkConfig) -> None:
        self.network.configure(src, dst, config)

    def configure_links(self, config: LinkConfig) -> None:
        self.network.configure_all(config)

    # ---- the spec's view -------------------------------------------------------------------

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
