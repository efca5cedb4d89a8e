"""The coordinator: the client requests this node serves, from arrival to answer.

It owns the requests in progress (puts, gets, and requests forwarded to a replica) and the
rules that decide them: validation, forwarding by a node that is not a replica of the key, the
write quorum (``quorum.WriteCollector``, contract-checked), sloppy fallbacks, the read quorum
(``quorum.ReadCollector``) and read repair, including late responses.

Spec actions here: ``ClientPut`` (a put or delete at a replica of the key), ``StoreAck`` (its
first half: an ack counted; the replica drops a handed-off hint in the second), ``PutTimeout``,
``SloppyFallback``, ``ClientGet``, ``ReadResponse``, ``ReadRepair``, and ``ForwardRequest`` (the
spec's ``ClientForward``; the replica's ``ClientPut``/``ClientGet`` are its ``ForwardedPut``/
``ForwardedGet``). Node-only steps: ``ForwardReply``, ``ForwardTimeout`` and ``GetTimeout`` (a
get that fails or is forgotten, as a crash would), ``SetClockSkew``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.messages import (
    AdminOk,
    DataRequest,
    ErrorCode,
    Forward,
    ForwardReply,
    Get,
    GetOk,
    MessageError,
    Put,
    PutOk,
    Read,
    ReadResp,
    SetClockSkew,
    SiblingClock,
    Store,
    StoreAck,
    clock_to_wire,
    decode_context,
    encode_context,
    rid_of,
    siblings_to_wire,
)
from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.core.node.outbox import (
    TOMBSTONE,
    Origin,
    Outbox,
    PeerOrigin,
    TimerKind,
    context_text,
    spec_version,
    text,
    trace_version,
)
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.node.routing import Routing
from dynamo_ref.core.node_versions import (
    CounterExhausted,
    read_context,
    reconcile_mode,
    write_version,
)
from dynamo_ref.core.quorum import (
    QuorumConfig,
    QuorumError,
    ReadCollector,
    RequestStatus,
    Target,
    WriteCollector,
)
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Siblings, Version

# A request may be forwarded once more by a node whose ring view disagrees, never in a loop.
MAX_HOPS = 2
# Distinct per-request quorum overrides whose checks a node remembers.
QUORUM_CACHE = 64


@dataclass(slots=True)
class PutOp:
    """A put or delete this node coordinates: the spec's putOps record, plus PW and its client.

    After the answer, a delete is kept until every primary has acked (or the timer fires) to
    know when to reap.
    """

    id: int
    key: bytes
    version: Version
    origin: Origin
    primaries: tuple[NodeId, ...]
    collector: WriteCollector
    answered: bool = False
    return_body: bool = False


@dataclass(slots=True)
class GetOp:
    """A get this node coordinates. It outlives its answer until every target has responded
    or the timer fires, so that late responses are repaired too."""

    id: int
    key: bytes
    origin: Origin
    collector: ReadCollector[Siblings]
    hint_for: dict[NodeId, NodeId]  # fallback target -> the replica it stands in for
    primaries: tuple[NodeId, ...]
    answered: bool = False
    # What each responder holds as far as this node knows: its response, then the repair sent.
    believed: dict[NodeId, Siblings] = field(default_factory=dict)
    # The responses reconciled, as the last repair found them.
    latest: Siblings | None = None


@dataclass(slots=True)
class ForwardOp:
    """A client request handed to a replica; ``tried`` are the replicas asked so far."""

    id: int
    origin: Origin
    request: DataRequest
    target: NodeId
    tried: set[NodeId]
    hops: int


_V = TypeVar("_V")


class _Noted(dict[int, _V]):
    """A request table that notes which requests a step looked up, added, removed or walked
    over, so a per-process trace logs those and not every request in progress."""

    __slots__ = ("noted",)

    def __init__(self, items: dict[int, _V]) -> None:
        super().__init__(items)
        self.noted: set[int] = set()

    def get(self, key: int, default: _V | None = None) -> _V | None:  # type: ignore[override]
        self.noted.add(key)
        return super().get(key, default)

    def __setitem__(self, key: int, value: _V) -> None:
        self.noted.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        self.noted.add(key)
        super().__delitem__(key)

    def pop(self, key: int, default: _V | None = None) -> _V | None:  # type: ignore[override]
        self.noted.add(key)
        return super().pop(key, default)

    def values(self) -> Any:
        self.noted.update(self)
        return super().values()


def _same(key: bytes) -> bytes | str:
    return key


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


class Coordinator:
    """The client requests this node coordinates (see the module docstring)."""

    def __init__(self, out: Outbox, config: NodeConfig, replica: Replica, routing: Routing) -> None:
        self._out = out
        self._config = config
        self._replica = replica
        self._routing = routing
        self._mode = config.mode
        self._skew = config.clock_skew
        self._base = QuorumConfig(config.n, config.r, config.w, config.sloppy, config.pr, config.pw)
        self._quorums: dict[tuple[int, int, int, int], QuorumConfig | QuorumError] = {}
        self._puts: dict[int, PutOp] = {}
        self._gets: dict[int, GetOp] = {}
        self._forwards: dict[int, ForwardOp] = {}
        self._targets: dict[NodeId, Target] = {}

    @property
    def clock_skew(self) -> float:
        return self._skew

    def pending(self) -> int:
        """Requests in progress: puts, gets and forwards."""
        return len(self._puts) + len(self._gets) + len(self._forwards)

    def rollback(self, first: int) -> None:
        """The event failed half way: forget the requests it registered (ids from ``first``
        on), and their timers."""
        for kind, table in (
            (TimerKind.PUT, self._puts),
            (TimerKind.GET, self._gets),
            (TimerKind.FORWARD, self._forwards),
        ):
            for ident in [i for i in table if i >= first]:
                del table[ident]
                self._out.cancel_timer(kind, ident)
                if kind is TimerKind.PUT:
                    self._out.cancel_timer(TimerKind.FALLBACK, ident)

    # ---- arrival --------------------------------------------------------------------------

    def client_request(self, origin: Origin, msg: DataRequest, now: float) -> None:
        self._data_request(origin, msg, now, hops=0)

    def _quorum(self, r: int, w: int, pr: int, pw: int) -> QuorumConfig | QuorumError:
        """The settings of a request: the node's, with the client's overrides."""
        # Exact ints only: True == 1 as a dict key, but R=True is an error.
        exact = type(r) is int and type(w) is int and type(pr) is int and type(pw) is int
        key = (r, w, pr, pw)
        found = self._quorums.get(key) if exact else None
        if found is None:
            try:
                found = self._base.for_request(r=r, w=w, pr=pr, pw=pw)
            except QuorumError as e:
                found = e
            if exact and len(self._quorums) < QUORUM_CACHE:
                self._quorums[key] = found
        return found

    def _validate(self, msg: DataRequest) -> tuple[ErrorCode, str] | QuorumConfig:
        cfg = self._config
        key: object = msg.key
        if not isinstance(key, bytes) or not key:
            return ErrorCode.INVALID_KEY, "the key must be a non-empty byte string"
        if len(key) > cfg.max_key_size:
            return (
                ErrorCode.INVALID_KEY,
                f"the key is {len(key)} bytes; the limit is {cfg.max_key_size}",
            )
        if isinstance(msg, Put):
            value: object = msg.value
            if not isinstance(value, bytes):
                return ErrorCode.INVALID_VALUE, "the value must be a byte string"
            if len(value) > cfg.max_value_size:
                return (
                    ErrorCode.INVALID_VALUE,
                    f"the value is {len(value)} bytes; the limit is {cfg.max_value_size}",
                )
        if isinstance(msg, Get):
            quorum = self._quorum(_default(msg.r, cfg.r), cfg.w, _default(msg.pr, cfg.pr), 0)
        else:
            quorum = self._quorum(cfg.r, _default(msg.w, cfg.w), 0, _default(msg.pw, cfg.pw))
        if isinstance(quorum, QuorumError):
            return ErrorCode.INVALID_QUORUM, "; ".join(quorum.problems)
        return quorum

    def _data_request(self, origin: Origin, msg: DataRequest, now: float, hops: int) -> None:
        quorum = self._validate(msg)
        if not isinstance(quorum, QuorumConfig):
            self._out.error(origin, *quorum)
            return
        context = VClock.empty()
        if not isinstance(msg, Get):
            try:
                context = decode_context(msg.context)
            except MessageError as e:
                self._out.error(origin, e.code, e.message)
                return
        if self.pending() >= self._config.max_pending:
            self._out.error(
                origin,
                ErrorCode.OVERLOAD,
                f"{self.pending()} requests in progress at {self._out.node_id}; try again later",
            )
            return
        if self._out.node_id not in self._routing.replicas(msg.key):
            self._forward(origin, msg, now, hops, frozenset())
        elif isinstance(msg, Get):
            self.ClientGet(origin, msg.key, quorum, now)
        else:
            value = msg.value if isinstance(msg, Put) else None
            self.ClientPut(origin, msg.key, value, context, quorum, now=now, body=msg.return_body)

    # ---- forwarding -----------------------------------------------------------------------

    def _forward(
        self,
        origin: Origin,
        msg: DataRequest,
        now: float,
        hops: int,
        tried: frozenset[NodeId] | set[NodeId],
    ) -> None:
        me = self._out.node_id
        replicas = self._routing.replicas(msg.key)
        if hops >= MAX_HOPS:
            self._out.error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"{me} is not a replica of the key and the request was forwarded already",
            )
            return
        live = [
            p
            for p in replicas
            if p != me and p not in tried and not self._routing.held_down(p, now)
        ]
        if not live:
            self._out.error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"no replica of the key is reachable from {me}: "
                f"{', '.join(replicas)} are down or did not answer",
            )
            return
        target = live[0]
        fid = self._out.new_id()
        self._forwards[fid] = ForwardOp(fid, origin, msg, target, {*tried, target}, hops)
        self._out.action("ForwardRequest", me, target, text(msg.key))
        self._out.send(target, Forward(fid, msg, hops + 1))
        self._out.set_timer(TimerKind.FORWARD, fid, now + self._config.forward_deadline)

    def forwarded_request(self, src: NodeId, m: Forward, now: float) -> None:
        self._data_request(PeerOrigin(src, m.fid, rid_of(m.request)), m.request, now, m.hops)

    def forward_reply(self, src: NodeId, m: ForwardReply, now: float) -> None:
        op = self._forwards.get(m.fid)
        if op is None or op.target != src:
            return
        del self._forwards[m.fid]
        self._out.cancel_timer(TimerKind.FORWARD, m.fid)
        self._out.action("ForwardReply", self._out.node_id, src, text(op.request.key))
        self._out.reply(op.origin, m.reply)

    def forward_timer(self, ident: int, now: float) -> None:
        fop = self._forwards.pop(ident, None)
        if fop is None:
            return
        self._out.action("ForwardTimeout", self._out.node_id, fop.target, text(fop.request.key))
        self._out.error(
            fop.origin,
            ErrorCode.TIMEOUT,
            f"forwarded to replica {fop.target}, which did not answer within "
            f"{self._config.forward_deadline:g}s",
        )

    # ---- puts -----------------------------------------------------------------------------

    def _timestamp(self) -> float:
        return self._out.wall + self._skew

    def ClientPut(
        self,
        origin: Origin,
        key: bytes,
        value: bytes | None,
        context: VClock,
        quorum: QuorumConfig,
        *,
        now: float,
        body: bool = False,
    ) -> None:
        """Coordinate a put (``value``) or delete (None) of ``key`` with a client's context."""
        cfg = self._config
        routing = self._routing
        me = self._out.node_id
        w, pw = quorum.w, quorum.pw
        primaries = routing.replicas(key)
        up = [p for p in primaries if not routing.held_down(p, now)]
        spare = 0
        # Fallbacks matter only with a replica down, or for the error message.
        if cfg.sloppy and (len(up) < len(primaries) or len(up) < w or len(up) < pw):
            spare = sum(1 for f in routing.fallbacks(key) if not routing.held_down(f, now))
        reachable = len(up) + min(len(primaries) - len(up), spare)
        if reachable < w or len(up) < pw:
            self._out.error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"a write needs W={w} (PW={pw}) but only {len(up)} of the replicas "
                f"{', '.join(primaries)} are up"
                + (f" and {spare} fallbacks" if cfg.sloppy else " (strict quorum)"),
            )
            return
        stored = self._replica.get(key)
        try:
            version = write_version(
                self._mode,
                me,
                context,
                stored,
                value=value,
                timestamp=self._timestamp(),
                prune=cfg.prune,
            )
        except CounterExhausted as e:
            self._out.error(origin, ErrorCode.INVALID_CONTEXT, f"no write is possible: {e}")
            return
        collector = WriteCollector(quorum, [self._primary_target(p) for p in primaries])
        op = PutOp(self._out.new_id(), key, version, origin, primaries, collector)
        op.return_body = body
        self._puts[op.id] = op
        self._out.action(
            "ClientPut",
            me,
            text(key),
            TOMBSTONE if value is None else text(value),
            # Which read the writer had seen: the spec's saw, for trace validation.
            context_text(context),
        )
        self._replica.merge(key, (version,), stored)
        status = collector.ack(me)
        wire = siblings_to_wire((version,))
        for j in primaries:
            if j != me:
                self._out.send(j, Store(op.id, key, wire))
        self._out.set_timer(TimerKind.PUT, op.id, now + cfg.request_timeout)
        if cfg.sloppy:
            for h in primaries:
                # Nothing since ``up`` was taken changes what the detector says.
                if h != me and h not in up:
                    self.SloppyFallback(op, h, now)
            self._out.set_timer(TimerKind.FALLBACK, op.id, now + cfg.fallback_delay)
        self._check_put(op, status, now)

    def StoreAck(self, src: NodeId, m: StoreAck, now: float) -> None:
        """An ack for put ``m.op`` (the replica drops handed-off hints: ``hint_acked``)."""
        self._out.action("StoreAck", self._out.node_id, src, text(m.key), str(m.op))
        op = self._puts.get(m.op) if m.op else None
        if op is not None and op.key == m.key and op.collector.is_target(src):
            self._check_put(op, op.collector.ack(src), now)

    def _check_put(self, op: PutOp, status: RequestStatus, now: float) -> None:
        """Answer once the collector says the write succeeded; a delete stays until every
        primary acked, to know when its tombstone can go."""
        if not op.answered and status is RequestStatus.SUCCEEDED:
            self._answer_put(op)
        if not op.answered:
            return
        reaping = op.version.is_tombstone and self._config.reap_tombstones
        if reaping and op.collector.primary_ack_count == len(op.primaries):
            self._replica.schedule_reap(op.key, (op.version,), now)
            self._finish_put(op)
        elif not reaping:
            self._finish_put(op)

    @icontract.require(
        lambda op: op.collector.ack_count >= op.collector.config.w,
        "a put is answered only with W acks",
        enabled=ENABLED,
    )
    @icontract.require(
        lambda op: op.collector.primary_ack_count >= op.collector.config.pw,
        "a put is answered only with PW acks from primaries",
        enabled=ENABLED,
    )
    @icontract.require(lambda op: not op.answered, "a put is answered once", enabled=ENABLED)
    def _answer_put(self, op: PutOp) -> None:
        op.answered = True
        self._out.cancel_timer(TimerKind.FALLBACK, op.id)
        body = self._replica.get(op.key) if op.return_body else (op.version,)
        context = encode_context(read_context(self._mode, body))
        values = [v.value for v in body if v.value is not None] if op.return_body else []
        self._out.reply(op.origin, PutOk(context, op.version.timestamp, values, op.origin.rid))

    def _finish_put(self, op: PutOp) -> None:
        self._puts.pop(op.id, None)
        self._out.cancel_timer(TimerKind.PUT, op.id)
        self._out.cancel_timer(TimerKind.FALLBACK, op.id)

    def put_timer(self, ident: int, now: float) -> None:
        op = self._puts.get(ident)
        if op is not None:
            self.PutTimeout(op, now)

    def PutTimeout(self, op: PutOp, now: float) -> None:
        """The put's timer fired: a put without its quorum fails with a clear error; an
        answered delete still waiting for every replica's ack gives up its reap."""
        if op.answered and self._in_spec(op):
            self._out.action("PutTimeout", self._out.node_id, str(op.id))
        if not op.answered:
            c = op.collector
            c.timeout()
            self._out.action("PutTimeout", self._out.node_id, str(op.id))
            silent = [p for p in op.primaries if c.waiting_on(p)]
            stand_ins = c.stand_ins
            self._out.error(
                op.origin,
                ErrorCode.TIMEOUT,
                f"the write timed out after {self._config.request_timeout:g}s with "
                f"{c.ack_count} of W={c.config.w} acks ({c.primary_ack_count} of "
                f"PW={c.config.pw} from replicas); no ack from {', '.join(silent) or 'nobody'}"
                + (f"; fallbacks {', '.join(sorted(stand_ins))} tried" if stand_ins else ""),
            )
        self._finish_put(op)

    def fallback_timer(self, ident: int, now: float) -> None:
        """Replicas of the put that have not acked by now are suspected and stood in for."""
        op = self._puts.get(ident)
        if op is None or op.answered:
            return
        me = self._out.node_id
        c = op.collector
        for h in op.primaries:
            if c.waiting_on(h) and h not in c.stand_ins.values() and h != me:
                self._routing.suspect(h)
                self.SloppyFallback(op, h, now)

    def SloppyFallback(self, op: PutOp, h: NodeId, now: float) -> None:
        """Replica ``h`` is held down: send the version to the next healthy fallback, with
        ``h`` as its hint."""
        if not self._config.sloppy or op.answered:
            return
        c = op.collector
        stand_ins = c.stand_ins
        if h not in op.primaries or not c.waiting_on(h) or h in stand_ins.values():
            return
        me = self._out.node_id
        for f in self._routing.fallbacks(op.key):
            if f in stand_ins or f == me or self._routing.held_down(f, now):
                continue
            c.add_fallback(Target(f, h))
            self._out.action("SloppyFallback", me, str(op.id), h)
            self._out.send(f, Store(op.id, op.key, siblings_to_wire((op.version,)), h))
            return

    # ---- gets -----------------------------------------------------------------------------

    def ClientGet(self, origin: Origin, key: bytes, quorum: QuorumConfig, now: float) -> None:
        """Coordinate a get: read locally, ask the other targets, answer after R responses."""
        cfg = self._config
        routing = self._routing
        me = self._out.node_id
        r, pr = quorum.r, quorum.pr
        primaries = routing.replicas(key)
        fallbacks: list[NodeId] | None = None  # when a replica is found down
        targets: list[Target] = []
        hint_for: dict[NodeId, NodeId] = {}
        up = primary_up = 0  # targets not held down: each node is asked once
        for p in primaries:
            down = routing.held_down(p, now)
            if down and cfg.sloppy:
                if fallbacks is None:
                    fallbacks = list(routing.fallbacks(key))
                f = next((f for f in fallbacks if f != me and not routing.held_down(f, now)), None)
                if f is not None:
                    fallbacks.remove(f)
                    targets.append(Target(f, p))
                    hint_for[f] = p
                    up += 1
                    continue
            targets.append(self._primary_target(p))
            if not down:
                up += 1
                primary_up += 1
        if up < r or primary_up < pr:
            self._out.error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"a read needs R={r} (PR={pr}) but only {up} of its targets "
                f"({primary_up} replicas) are up" + ("" if cfg.sloppy else " (strict quorum)"),
            )
            return
        op = GetOp(
            self._out.new_id(), key, origin, ReadCollector(quorum, targets), hint_for, primaries
        )
        self._gets[op.id] = op
        self._out.action("ClientGet", me, text(key))
        local = self._replica.get(key)
        status = op.collector.respond(me, local)
        op.believed[me] = local
        for t in targets:
            if t.node != me:
                self._out.send(t.node, Read(op.id, key, t.hint_for))
        self._out.set_timer(TimerKind.GET, op.id, now + cfg.request_timeout)
        self._after_response(op, status, now)

    def _primary_target(self, node: NodeId) -> Target:
        # Targets are immutable: one per node serves every request.
        target = self._targets.get(node)
        if target is None:
            target = self._targets[node] = Target(node)
        return target

    def ReadResponse(self, src: NodeId, m: ReadResp, now: float) -> None:
        """Record a replica's response; answer at R, repair after (late responses too)."""
        versions = self._out.decode(src, m.versions)
        if versions is None:
            return
        self._out.action("ReadResponse", self._out.node_id, src, text(m.key), str(m.op))
        op = self._gets.get(m.op)
        if op is None or op.key != m.key:
            return
        c = op.collector
        if not c.waiting_on(src):
            return
        held = reconcile_mode(self._mode, versions)
        status = c.respond(src, held)
        op.believed[src] = held
        self._after_response(op, status, now, held)

    def _after_response(
        self, op: GetOp, status: RequestStatus, now: float, held: Siblings | None = None
    ) -> None:
        """``status``: the collector's, as the response or refusal just recorded left it;
        ``held``: the response, if one was recorded."""
        if not op.answered:
            if status is RequestStatus.FAILED:
                # Too many replicas refused or are unreachable: the get ends as a timed-out
                # one does (the trace's step for a get that fails).
                self._out.action("GetTimeout", self._out.node_id, str(op.id))
                self._out.error(op.origin, ErrorCode.UNAVAILABLE, op.collector.reason or "failed")
                self._finish_get(op)
                return
            if status is not RequestStatus.SUCCEEDED:
                return
            op.answered = True
            responses = op.collector.responses  # a copy: read once for both uses
            latest = self._latest(op, responses)
            context = encode_context(read_context(self._mode, latest))
            live = [v for v in latest if v.value is not None]
            values = [v.value for v in live if v.value is not None]
            clocks = [SiblingClock(clock_to_wire(v.clock), v.writer, v.dot) for v in live]
            self._out.reply(op.origin, GetOk(values, context, op.origin.rid, clocks))
            self.ReadRepair(op, now, answering=True, latest=latest, responses=responses)
        elif held is not None and held == op.latest:
            # A late response equal to the reconciled ones leaves them as they are: the
            # reconcile of a set with a subset of itself added is the same.
            self.ReadRepair(op, now, answering=False, latest=held)
        else:
            self.ReadRepair(op, now, answering=False)
        if not op.collector.outstanding():
            self._finish_get(op)

    def _latest(self, op: GetOp, responses: Mapping[NodeId, Siblings] | None = None) -> Siblings:
        if responses is None:
            responses = op.collector.responses
        return reconcile_mode(self._mode, [v for vs in responses.values() for v in vs])

    def ReadRepair(
        self,
        op: GetOp,
        now: float,
        answering: bool,
        latest: Siblings | None = None,
        responses: Mapping[NodeId, Siblings] | None = None,
    ) -> None:
        """Send the reconciled versions to every responder known to hold something else.

        Taken when the get is answered (the spec's step, which then forgets the get) and again
        for each late response that shows something stale. ``latest``: the responses
        reconciled, and ``responses`` the collector's, when the caller has just had them.
        """
        if responses is None:
            responses = op.collector.responses
        if latest is None:
            latest = self._latest(op, responses)
        op.latest = latest
        stale = [n for n in responses if op.believed.get(n) != latest]
        me = self._out.node_id
        if answering or stale:
            self._out.action("ReadRepair", me, str(op.id))
        if not stale:
            self._maybe_reap_after_read(op, latest, now)
            return
        wire = siblings_to_wire(latest)
        for n in stale:
            op.believed[n] = latest
            if n == me:
                self._replica.merge(op.key, latest)
            else:
                self._out.send(n, Store(0, op.key, wire, op.hint_for.get(n)))

    def _maybe_reap_after_read(self, op: GetOp, latest: Siblings, now: float) -> None:
        # Every replica (none substituted) returned the same tombstones: they can go.
        if not (self._config.reap_tombstones and latest and op.answered):
            return
        if op.hint_for or any(op.believed.get(p) != latest for p in op.primaries):
            return
        if all(v.is_tombstone for v in latest) and not op.collector.outstanding():
            self._replica.schedule_reap(op.key, latest, now)

    def get_timer(self, ident: int, now: float) -> None:
        op = self._gets.get(ident)
        if op is not None:
            self.get_timeout(op, now)

    def get_timeout(self, op: GetOp, now: float) -> None:
        """Not in the spec (whose gets never time out): the get fails or is forgotten."""
        if not op.answered:
            op.collector.timeout()
            self._out.action("GetTimeout", self._out.node_id, str(op.id))
            self._out.error(
                op.origin,
                ErrorCode.TIMEOUT,
                f"the read timed out after {self._config.request_timeout:g}s: "
                f"{op.collector.reason}",
            )
        self._finish_get(op)

    def _finish_get(self, op: GetOp) -> None:
        if self._gets.pop(op.id, None) is not None:
            self._out.cancel_timer(TimerKind.GET, op.id)

    # ---- faults ---------------------------------------------------------------------------

    def peer_unreachable(self, peer: NodeId, now: float) -> None:
        """The driver could not reach ``peer``: route the requests waiting on it around it."""
        for op in list(self._puts.values()):
            if not op.answered and peer in op.primaries and op.collector.waiting_on(peer):
                self.SloppyFallback(op, peer, now)
        for gop in list(self._gets.values()):
            c = gop.collector
            if c.waiting_on(peer):
                self._after_response(gop, c.nack(peer, "unreachable"), now)
        for fop in list(self._forwards.values()):
            if fop.target == peer:
                self._out.cancel_timer(TimerKind.FORWARD, fop.id)
                del self._forwards[fop.id]
                self._forward(fop.origin, fop.request, now, fop.hops, fop.tried)

    def storage_failed(self, keys: frozenset[bytes], reason: str) -> None:
        """Puts of these keys did not reach the disk here: they fail with ``storage_error``
        (their acknowledgements never left)."""
        for op in [op for op in self._puts.values() if op.key in keys]:
            if not op.answered:
                self._out.error(
                    op.origin,
                    ErrorCode.STORAGE_ERROR,
                    f"{self._out.node_id} could not store the write durably: {reason}",
                )
            self._finish_put(op)

    def set_clock_skew(self, origin: Origin, m: SetClockSkew, now: float) -> None:
        """Fault injection: timestamps this node hands out become ``now + skew``."""
        if not math.isfinite(m.skew):
            self._out.error(origin, ErrorCode.INVALID_REQUEST, "the clock skew must be finite")
            return
        self._skew = m.skew
        self._out.action("SetClockSkew", self._out.node_id, repr(m.skew))
        self._out.reply(origin, AdminOk(f"clock skew is now {m.skew:g}s", origin.rid))

    # ---- the spec's view ------------------------------------------------------------------

    def note_requests(self) -> None:
        """From now on, note the requests each step touches (``spec_state(noted=True)``)."""
        if not isinstance(self._puts, _Noted):
            self._puts = _Noted(self._puts)
            self._gets = _Noted(self._gets)

    def _in_spec(self, op: PutOp) -> bool:
        """Whether the spec still has the put: until it is answered, and an answered delete
        until every replica acked it (its reap waits for that)."""
        return not op.answered or (op.version.is_tombstone and self._config.reap_tombstones)

    def spec_state(self, *, noted: bool = False) -> dict[str, object]:
        """``putOps`` and ``getOps`` in the spec's shapes. Puts and gets already answered are
        left out: in the spec, ``UpdatePut`` and ``ReadRepair`` remove them in the step that
        answers (but for a delete waiting for every replica's ack, ``_in_spec``).

        ``noted`` (for a per-process trace): only the requests touched since the last such
        call (``note_requests``), and under ``putsDone``/``getsDone`` the ids of those among
        them that are answered or gone; keys and values as text."""
        puts: Iterable[PutOp]
        gets: Iterable[GetOp]
        done: dict[str, list[int]] = {}
        if noted and isinstance(self._puts, _Noted) and isinstance(self._gets, _Noted):
            puts = self._take(self._puts, "putsDone", done)
            gets = self._take(self._gets, "getsDone", done)
        else:
            puts, gets = self._puts.values(), self._gets.values()
        # A trace line is JSON: keys and values as text.
        shape, name = (trace_version, text) if noted else (spec_version, _same)
        put_ops = []
        for op in puts:
            if not self._in_spec(op):
                continue
            stand_ins = op.collector.stand_ins
            put_ops.append(
                {
                    "id": op.id,
                    "key": name(op.key),
                    "ver": shape(op.version),
                    "acks": sorted(op.collector.acked),
                    "hinted": sorted(stand_ins.values()),
                    "extra": sorted(stand_ins),
                }
            )
        get_ops = [
            {
                "id": op.id,
                "key": name(op.key),
                "resps": {n: [shape(v) for v in vs] for n, vs in op.collector.responses.items()},
                "stand": dict(op.hint_for),
                "done": False,
            }
            for op in gets
            if not op.answered
        ]
        return {"putOps": put_ops, "getOps": get_ops, **done}

    def _take(self, table: _Noted[Any], name: str, done: dict[str, list[int]]) -> list[Any]:
        ids, table.noted = sorted(table.noted), set()
        ops = [op for i in ids if (op := dict.get(table, i)) is not None]
        kept = self._in_spec if name == "putsDone" else lambda op: not op.answered
        done[name] = [i for i in ids if (op := dict.get(table, i)) is None or not kept(op)]
        return ops
