"""The sans-I/O Dynamo node: ``Node.handle(event, now) -> list[Effect]``.

Interface changes: none to the agreed interface. Additions: ``DurableState.apply(effects)``;
``Put``/``Delete`` take ``return_body``; ``PutOk`` carries the written version's ``context``
and ``ts`` (and ``siblings`` with ``return_body``); admin requests answer ``AdminOk``;
``Read.hint`` asks a fallback for its hinted versions too. The class is split over
``node_base`` (state, effects, failure detector), ``node_sync`` (gossip, membership,
transfers, anti-entropy, handoff) and this module (interface, client requests).

Interface (the simulator and the TCP runtime drive exactly this):

- ``Node(node_id, config, ring, seeds, durable, rng, now)``: ``durable`` is what this node's
  durable effects wrote before (empty for a new node); ``rng`` is the only randomness
  (gossip peers, timer jitter).
- ``start(now)``: the first effects (timers, the first gossip). On a non-empty ``durable`` this
  is the spec's ``Recover``; the driver records that action itself, so no ``Action`` is emitted.
- ``handle(event, now)``: one event in, effects out, to be carried out in order.
- ``spec_state()``: this node's part of the spec's ``store``, ``hints``, ``putOps``, ``getOps``.
- Status queries: ``membership``, ``suspected``, ``pending_hints``, ``last_anti_entropy``,
  ``status``; ``clock_skew``, ``ring``, ``engine``.

Spec actions (spec/Dynamo.tla) and their handlers, which emit ``Action(name, args)``:

    ClientPut       ClientPut         a put or delete at a replica of the key
    ReplicaStore    ReplicaStore      a Store arrives (put, read repair, hint, handoff)
    StoreAck        StoreAck          a StoreAck arrives (put ack, hint dropped)
    PutTimeout      PutTimeout        a put's timer fires before W (and PW) acks
    SloppyFallback  SloppyFallback    a silent or unreachable replica gets a fallback
    ClientGet       ClientGet         a get at a replica of the key
    ReplicaRead     ReplicaRead       a Read arrives
    ReadResponse    ReadResponse      a ReadResp arrives
    ReadRepair      ReadRepair        stale responders get the reconciled versions
    HandoffHint     HandoffHint       hinted versions go back to their owner
    AntiEntropy     AntiEntropy       one key of a Merkle exchange merged, in two halves:
                                      at the peer on SyncKeys, at the initiator on the reply
    Recover         Recover           ``start`` on a non-empty durable state
    Receive         Receive           dispatch of a peer message by type

Node-only steps, not in the spec; each emits an ``Action`` of its own name and refines to
stuttering on the spec's variables unless noted: ``ForwardRequest``, ``ForwardReply``,
``ForwardTimeout``, ``GetTimeout`` (drops a get, as a crash would), ``Gossip``,
``GossipMerge``, ``MerkleExchange``, ``AdminJoin``, ``AdminLeave``, ``Left`` (a leaving node
has handed everything off), ``SetClockSkew``, ``TransferPartition``, ``ReceiveTransfer``
(merges like ReplicaStore), ``DropPartition`` and ``ReapTombstone`` (remove versions: the spec
has no such step), ``RejectMessage`` (a peer message that does not decode). Failure-detector
pings and ``replica_get`` (the fault harness reading this node's own store) take no action.

Where the node goes beyond the spec, on purpose: a non-replica forwards client requests; a get
under a sloppy quorum reads from fallbacks in place of replicas held down; a get outlives
``ReadRepair`` until every target answered so late responses are repaired too; PR and PW.
"""

from __future__ import annotations

from collections.abc import Sequence

from dynamo_ref.core.effects import (
    ClientId,
    ClientRequest,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    PersistMeta,
    StorageFailed,
    TimerFired,
    TimerId,
)
from dynamo_ref.core.messages import (
    ClientMessage,
    DataRequest,
    Delete,
    ErrorCode,
    Forward,
    ForwardReply,
    Get,
    GetOk,
    Gossip,
    Join,
    Leave,
    MemberInfo,
    MerkleAnswer,
    MerkleQuery,
    MessageError,
    PeerMessage,
    Ping,
    Pong,
    Put,
    PutOk,
    Read,
    ReadResp,
    Reap,
    ReplicaGet,
    ReplicaVersions,
    SetClockSkew,
    SiblingClock,
    StatusReply,
    StatusRequest,
    Store,
    StoreAck,
    SyncKeys,
    SyncKeysReply,
    Transfer,
    TransferAck,
    clock_to_wire,
    decode_context,
    decode_wire_siblings,
    encode_context,
    rid_of,
    siblings_to_wire,
)
from dynamo_ref.core.node_base import (
    MAX_HOPS,
    QUORUM_CACHE,
    TOMBSTONE,
    canonical,
    or_default,
    spec_version,
    text,
    wire_version,
)
from dynamo_ref.core.node_state import (
    AntiEntropyRecord,
    ClientOrigin,
    DurableState,
    ForwardOp,
    GetOp,
    NodeConfig,
    Origin,
    PeerOrigin,
    PutOp,
)
from dynamo_ref.core.node_sync import NodeSync
from dynamo_ref.core.node_versions import VersionMode, read_context, reconcile_mode, write_version
from dynamo_ref.core.quorum import (
    QuorumConfig,
    ReadCollector,
    RequestStatus,
    Target,
    quorum_problems,
)
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Siblings

__all__ = ["DurableState", "Node", "NodeConfig", "VersionMode", "spec_version"]

# Tuples, not ``X | Y``: a union in isinstance is built anew on every call.
_DATA_REQUESTS = (Get, Put, Delete)
_VERSIONED = (Store, StoreAck, ReadResp, Reap)


class Node(NodeSync):
    """One Dynamo node as a pure state machine (see the module docstring)."""

    def start(self, now: float) -> list[Effect]:
        """Timers and the first gossip; the spec's ``Recover`` when there was durable state."""
        self._fx = []
        if self._recovering:
            self.Recover(now)
        else:
            self._boot_timers(now)
        return self._take()

    def handle(self, event: Event, now: float) -> list[Effect]:
        self._fx = []
        if isinstance(event, PeerReceived):
            self._heard(event.src, now)
            self.Receive(event.src, event.msg, now)
        elif isinstance(event, TimerFired):
            self._timer(event.timer, now)
        elif isinstance(event, ClientRequest):
            self._client(event.client, event.msg, now)
        elif isinstance(event, PeerUnreachable):
            self.peer_unreachable(event.peer, now)
        return self._take()

    def spec_state(self) -> dict[str, object]:
        """This node's ``store``, ``hints``, ``putOps`` and ``getOps`` in the spec's shapes.

        Puts and gets already answered are left out: in the spec, ``UpdatePut`` and
        ``ReadRepair`` remove them in the step that answers.
        """
        engine = self._engine
        store = {key: [spec_version(v) for v in engine.get(key)] for key in engine}
        hints = [
            {"key": key, "owner": owner, "ver": spec_version(v)}
            for owner, key in engine.hints()
            for v in engine.get_hint(owner, key)
        ]
        put_ops = [
            {
                "id": op.id,
                "key": op.key,
                "ver": spec_version(op.version),
                "acks": sorted(op.acks),
                "hinted": sorted(op.hinted),
                "extra": sorted(op.extra),
            }
            for op in self._puts.values()
            if not op.answered
        ]
        get_ops = [
            {
                "id": op.id,
                "key": op.key,
                "resps": {
                    n: [spec_version(v) for v in vs] for n, vs in op.collector.responses.items()
                },
                "stand": dict(op.hint_for),
                "done": False,
            }
            for op in self._gets.values()
            if not op.answered
        ]
        return {"store": store, "hints": hints, "putOps": put_ops, "getOps": get_ops}

    def suspected(self, now: float) -> frozenset[NodeId]:
        """Peers the failure detector holds down."""
        return frozenset(n for n in self._view if n != self._id and self._held_down(n, now))

    def pending_hints(self) -> dict[NodeId, int]:
        """Owner -> number of keys this node holds hinted versions of for it."""
        counts: dict[NodeId, int] = {}
        for owner, _ in self._engine.hints():
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    def last_anti_entropy(self) -> dict[NodeId, AntiEntropyRecord]:
        """Peer -> the last completed Merkle exchange with it (either side started it)."""
        return dict(self._ae_last)

    def status(self, now: float, rid: int = 0) -> StatusReply:
        down = self.suspected(now)
        members = [
            MemberInfo(
                n,
                s.status.value,
                s.incarnation,
                len(s.claims),
                n in down,
                s.address,
                s.zone,
                list(s.claims),
            )
            for n, s in self._view.items()
        ]
        return StatusReply(
            node=self._id,
            members=members,
            hints=self.pending_hints(),
            anti_entropy={peer: rec.time for peer, rec in sorted(self._ae_last.items())},
            keys=len(self._engine),
            clock_skew=self._skew,
            mode=self._mode.value,
            ring_version=self._view.digest().hex()[:16],
            rid=rid,
            q=self._ring.q,
            n=self._config.n,
        )

    def peer_unreachable(self, peer: NodeId, now: float) -> None:
        """The driver could not reach ``peer``: suspect it, and route around it now."""
        self._suspect(peer)
        for op in list(self._puts.values()):
            if not op.answered and peer in op.primaries and peer not in op.acks:
                self.SloppyFallback(op, peer, now)
        for gop in list(self._gets.values()):
            c = gop.collector
            if c.is_target(peer) and peer in c.pending:
                c.nack(peer, "unreachable")
                self._after_response(gop, now)
        for fop in list(self._forwards.values()):
            if fop.target == peer:
                self._cancel_timer("fwd", fop.id)
                del self._forwards[fop.id]
                self._forward(fop.origin, fop.request, now, fop.hops, fop.tried)
        for sid in [s.id for s in self._sessions.values() if s.peer == peer]:
            del self._sessions[sid]

    def storage_failed(self, event: StorageFailed, now: float) -> list[Effect]:
        """The driver could not make a batch durable: the engine returns to what is durable
        for its keys and hints, the puts of those keys in progress fail with
        ``storage_error`` (their acknowledgements never left), and metadata is written again.
        Reads go on from the engine, which again holds only what is durable."""
        self._fx = []
        if event.store is not None:
            for key, siblings in event.store.items():
                self._engine.put(key, reconcile_mode(self._mode, siblings) if siblings else ())
        if event.hints is not None:
            for (owner, key), siblings in event.hints.items():
                self._engine.put_hint(owner, key, canonical(siblings))
        keys = set(event.keys)
        for op in list(self._puts.values()):
            if op.key in keys:
                if not op.answered:
                    self._error(
                        op.origin,
                        ErrorCode.STORAGE_ERROR,
                        f"{self._id} could not store the write durably: {event.reason}",
                    )
                self._finish_put(op)
        if "membership" in event.meta:
            self._persist_view()
        if "boot" in event.meta:
            self._fx.append(PersistMeta("boot", self._boot.to_bytes(8, "big")))
        return self._take()

    def _timer(self, timer: TimerId, now: float) -> None:
        kind, ident = timer
        if kind == "put":
            op = self._puts.get(ident)
            if op is not None:
                self.PutTimeout(op, now)
        elif kind == "fallback":
            op = self._puts.get(ident)
            if op is not None and not op.answered:
                for h in op.primaries:
                    if h not in op.acks and h not in op.hinted and h != self._id:
                        self._suspect(h)
                        self.SloppyFallback(op, h, now)
        elif kind == "get":
            gop = self._gets.get(ident)
            if gop is not None:
                self.get_timeout(gop, now)
        elif kind == "fwd":
            fop = self._forwards.pop(ident, None)
            if fop is not None:
                self._action("ForwardTimeout", self._id, fop.target, text(fop.request.key))
                self._error(
                    fop.origin,
                    ErrorCode.TIMEOUT,
                    f"forwarded to replica {fop.target}, which did not answer within "
                    f"{self._config.forward_deadline:g}s",
                )
        elif kind == "gossip":
            self.gossip_round(now)
        elif kind == "ae":
            self.anti_entropy_round(now)
        elif kind == "handoff":
            self.handoff_round(now)
        elif kind == "transfer":
            self.transfer_round(now)
        elif kind == "reap":
            entry = self._reaps.pop(ident, None)
            if entry is not None:
                self.reap(entry[0], entry[1], now)

    def _client(self, client: ClientId, msg: ClientMessage | object, now: float) -> None:
        # ``object``: whatever a driver hands over, a client gets an answer, never an exception.
        origin = ClientOrigin(client, rid_of(msg))
        if isinstance(msg, _DATA_REQUESTS):
            self._data_request(origin, msg, now, hops=0)
        elif isinstance(msg, StatusRequest):
            self._reply(origin, self.status(now, origin.rid))
        elif isinstance(msg, Join):
            self.admin_join(origin, msg, now)
        elif isinstance(msg, Leave):
            self.admin_leave(origin, msg, now)
        elif isinstance(msg, SetClockSkew):
            self.set_clock_skew(origin, msg)
        elif isinstance(msg, ReplicaGet):
            self.replica_get(origin, msg)
        else:
            self._error(
                origin,
                ErrorCode.UNKNOWN_MESSAGE,
                f"unknown request {type(msg).__name__}: expected get, put, delete, join, "
                "leave, status, set_clock_skew or replica_get",
            )

    def replica_get(self, origin: Origin, msg: ReplicaGet) -> None:
        """Node-only query for the fault harness: this node's stored versions, no peer asked.
        No spec action: it reads nothing but the local store and changes nothing."""
        key: object = msg.key
        if not isinstance(key, bytes) or not key or len(key) > self._config.max_key_size:
            self._error(origin, ErrorCode.INVALID_KEY, "the key must be a non-empty byte string")
            return
        raw = self._engine.get_raw(key)
        wire = [] if raw is None else decode_wire_siblings(raw)
        self._reply(origin, ReplicaVersions(wire, origin.rid))

    def _validate(self, msg: DataRequest) -> tuple[ErrorCode, str] | None:
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
            problems = self._quorum_problems(
                or_default(msg.r, cfg.r), cfg.w, or_default(msg.pr, cfg.pr), 0
            )
        else:
            problems = self._quorum_problems(
                cfg.r, or_default(msg.w, cfg.w), 0, or_default(msg.pw, cfg.pw)
            )
        if problems:
            return ErrorCode.INVALID_QUORUM, "; ".join(problems)
        return None

    def _quorum_problems(self, r: int, w: int, pr: int, pw: int) -> Sequence[str]:
        # Pure in its arguments, and requests repeat a handful of overrides. Exact ints only:
        # True == 1 as a dict key, but R=True is an error.
        if type(r) is not int or type(w) is not int or type(pr) is not int or type(pw) is not int:
            return quorum_problems(self._config.n, r, w, pr, pw)
        key = (r, w, pr, pw)
        problems = self._quorum_checks.get(key)
        if problems is None:
            problems = tuple(quorum_problems(self._config.n, r, w, pr, pw))
            if len(self._quorum_checks) < QUORUM_CACHE:
                self._quorum_checks[key] = problems
        return problems

    def _data_request(self, origin: Origin, msg: DataRequest, now: float, hops: int) -> None:
        problem = self._validate(msg)
        if problem is not None:
            self._error(origin, *problem)
            return
        context = VClock.empty()
        if not isinstance(msg, Get):
            try:
                context = decode_context(msg.context)
            except MessageError as e:
                self._error(origin, e.code, e.message)
                return
        if self._pending() >= self._config.max_pending:
            self._error(
                origin,
                ErrorCode.OVERLOAD,
                f"{self._pending()} requests in progress at {self._id}; try again later",
            )
            return
        cfg = self._config
        if self._id not in self._replicas(msg.key):
            self._forward(origin, msg, now, hops, frozenset())
        elif isinstance(msg, Get):
            self.ClientGet(
                origin, msg.key, or_default(msg.r, cfg.r), or_default(msg.pr, cfg.pr), now
            )
        else:
            value = msg.value if isinstance(msg, Put) else None
            w, pw = or_default(msg.w, cfg.w), or_default(msg.pw, cfg.pw)
            self.ClientPut(
                origin, msg.key, value, context, w=w, pw=pw, now=now, body=msg.return_body
            )

    def _forward(
        self,
        origin: Origin,
        msg: DataRequest,
        now: float,
        hops: int,
        tried: frozenset[NodeId] | set[NodeId],
    ) -> None:
        replicas = self._ring.preference_list(msg.key, self._config.n)
        if hops >= MAX_HOPS:
            self._error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"{self._id} is not a replica of the key and the request was forwarded already",
            )
            return
        live = [
            p for p in replicas if p != self._id and p not in tried and not self._held_down(p, now)
        ]
        if not live:
            self._error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"no replica of the key is reachable from {self._id}: "
                f"{', '.join(replicas)} are down or did not answer",
            )
            return
        target = live[0]
        fid = self._new_id()
        self._forwards[fid] = ForwardOp(fid, origin, msg, target, {*tried, target}, hops)
        self._action("ForwardRequest", self._id, target, text(msg.key))
        self._send(target, Forward(fid, msg, hops + 1))
        self._set_timer("fwd", fid, now + self._config.forward_deadline)

    def forwarded_request(self, src: NodeId, m: Forward, now: float) -> None:
        self._data_request(PeerOrigin(src, m.fid, rid_of(m.request)), m.request, now, m.hops)

    def forward_reply(self, src: NodeId, m: ForwardReply) -> None:
        op = self._forwards.get(m.fid)
        if op is None or op.target != src:
            return
        del self._forwards[m.fid]
        self._cancel_timer("fwd", m.fid)
        self._action("ForwardReply", self._id, src, text(op.request.key))
        self._reply(op.origin, m.reply)

    def ClientPut(
        self,
        origin: Origin,
        key: bytes,
        value: bytes | None,
        context: VClock,
        *,
        w: int,
        pw: int,
        now: float,
        body: bool = False,
    ) -> None:
        """Coordinate a put (``value``) or delete (None) of ``key`` with a client's context."""
        cfg = self._config
        ring = self._ring
        primaries = self._replicas(key)
        up = [p for p in primaries if not self._held_down(p, now)]
        spare = 0
        # Fallbacks matter only with a replica down, or for the error message.
        if cfg.sloppy and (len(up) < len(primaries) or len(up) < w or len(up) < pw):
            fallbacks = ring.extended_preference_list(key, cfg.n)[len(primaries) :]
            spare = sum(1 for f in fallbacks if not self._held_down(f, now))
        reachable = len(up) + min(len(primaries) - len(up), spare)
        if reachable < w or len(up) < pw:
            self._error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"a write needs W={w} (PW={pw}) but only {len(up)} of the replicas "
                f"{', '.join(primaries)} are up"
                + (f" and {spare} fallbacks" if cfg.sloppy else " (strict quorum)"),
            )
            return
        stored = self._engine.get(key)
        version = write_version(
            self._mode,
            self._id,
            context,
            stored,
            value=value,
            timestamp=self._timestamp(now),
            prune=cfg.prune,
        )
        op = PutOp(self._new_id(), key, version, origin, primaries, w, pw, {self._id})
        op.return_body = body
        self._puts[op.id] = op
        self._action("ClientPut", self._id, text(key), TOMBSTONE if value is None else text(value))
        self._merge_store(key, (version,), stored)
        wire = [wire_version(version)]
        for j in primaries:
            if j != self._id:
                self._send(j, Store(op.id, key, wire))
        self._set_timer("put", op.id, now + cfg.request_timeout)
        if cfg.sloppy:
            for h in primaries:
                # Nothing since ``up`` was taken changes what the detector says.
                if h != self._id and h not in up:
                    self.SloppyFallback(op, h, now)
            self._set_timer("fallback", op.id, now + cfg.fallback_delay)
        self._check_put(op, now)

    def ReplicaStore(self, src: NodeId, m: Store, versions: Siblings) -> None:
        """Store the versions, or keep them as a hint for replica ``m.hint``; ack puts and
        handoffs."""
        self._action("ReplicaStore", self._id, src, text(m.key), str(m.op), m.hint or "")
        if m.hint is None or m.hint == self._id:
            self._merge_store(m.key, versions)
        else:
            self._add_hint(m.hint, m.key, versions)
        if m.op != 0 or m.hint == self._id:
            self._send(src, StoreAck(m.op, m.key, m.versions, m.hint))

    def StoreAck(self, src: NodeId, m: StoreAck, versions: Siblings, now: float) -> None:
        """An ack for put ``m.op``, and the end of the hints this node holds for ``src``."""
        self._action("StoreAck", self._id, src, text(m.key), str(m.op))
        op = self._puts.get(m.op) if m.op else None
        if op is not None and op.key == m.key:
            op.acks.add(src)
            self._check_put(op, now)
        if m.hint is None or m.hint == src:
            self._drop_hint_versions(src, m.key, versions)

    def _check_put(self, op: PutOp, now: float) -> None:
        if not op.answered and op.quorum_met():
            op.answered = True
            self._cancel_timer("fallback", op.id)
            body = self._engine.get(op.key) if op.return_body else (op.version,)
            context = encode_context(read_context(self._mode, body))
            values = [v.value for v in body if v.value is not None] if op.return_body else []
            self._reply(op.origin, PutOk(context, op.version.timestamp, values, op.origin.rid))
        if not op.answered:
            return
        reaping = op.version.is_tombstone and self._config.reap_tombstones
        if reaping and all(p in op.acks for p in op.primaries):
            self._schedule_reap(op.key, (op.version,), now)
            self._finish_put(op)
        elif not reaping:
            self._finish_put(op)

    def _finish_put(self, op: PutOp) -> None:
        self._puts.pop(op.id, None)
        self._cancel_timer("put", op.id)
        self._cancel_timer("fallback", op.id)

    def PutTimeout(self, op: PutOp, now: float) -> None:
        """The put's timer fired: a put without its quorum fails with a clear error."""
        if not op.answered:
            self._action("PutTimeout", self._id, str(op.id))
            silent = [p for p in op.primaries if p not in op.acks]
            self._error(
                op.origin,
                ErrorCode.TIMEOUT,
                f"the write timed out after {self._config.request_timeout:g}s with "
                f"{len(op.acks)} of W={op.w} acks ({op.primary_acks()} of PW={op.pw} from "
                f"replicas); no ack from {', '.join(silent) or 'nobody'}"
                + (f"; fallbacks {', '.join(sorted(op.extra))} tried" if op.extra else ""),
            )
        self._finish_put(op)

    def SloppyFallback(self, op: PutOp, h: NodeId, now: float) -> None:
        """Replica ``h`` is held down: send the version to the next healthy fallback, with
        ``h`` as its hint."""
        if not self._config.sloppy or op.answered:
            return
        if h not in op.primaries or h in op.acks or h in op.hinted:
            return
        fallbacks = self._ring.extended_preference_list(op.key, self._config.n)
        for f in fallbacks[len(op.primaries) :]:
            if f in op.extra or f == self._id or self._held_down(f, now):
                continue
            op.hinted.add(h)
            op.extra[f] = h
            self._action("SloppyFallback", self._id, str(op.id), h)
            self._send(f, Store(op.id, op.key, [wire_version(op.version)], h))
            return

    def ClientGet(self, origin: Origin, key: bytes, r: int, pr: int, now: float) -> None:
        """Coordinate a get: read locally, ask the other targets, answer after R responses."""
        cfg = self._config
        primaries = self._replicas(key)
        fallbacks: list[NodeId] | None = None  # when a replica is found down
        targets: list[Target] = []
        hint_for: dict[NodeId, NodeId] = {}
        for p in primaries:
            if cfg.sloppy and self._held_down(p, now):
                if fallbacks is None:
                    extended = self._ring.extended_preference_list(key, cfg.n)
                    fallbacks = list(extended[len(primaries) :])
                f = next(
                    (f for f in fallbacks if f != self._id and not self._held_down(f, now)), None
                )
                if f is not None:
                    fallbacks.remove(f)
                    targets.append(Target(f, p))
                    hint_for[f] = p
                    continue
            targets.append(self._primary_target(p))
        up = [t for t in targets if not self._held_down(t.node, now)]
        primary_up = sum(1 for t in up if t.is_primary)
        if len(up) < r or primary_up < pr:
            self._error(
                origin,
                ErrorCode.UNAVAILABLE,
                f"a read needs R={r} (PR={pr}) but only {len(up)} of its targets "
                f"({primary_up} replicas) are up" + ("" if cfg.sloppy else " (strict quorum)"),
            )
            return
        quorum = self._read_quorums.get((r, pr))
        if quorum is None:
            quorum = QuorumConfig(cfg.n, r, cfg.w, cfg.sloppy, pr, 0)
            if len(self._read_quorums) < QUORUM_CACHE:
                self._read_quorums[(r, pr)] = quorum
        op = GetOp(self._new_id(), key, origin, ReadCollector(quorum, targets), hint_for, primaries)
        self._gets[op.id] = op
        self._action("ClientGet", self._id, text(key))
        local = self._engine.get(key)
        op.collector.respond(self._id, local)
        op.believed[self._id] = local
        for t in targets:
            if t.node != self._id:
                self._send(t.node, Read(op.id, key, t.hint_for))
        self._set_timer("get", op.id, now + cfg.request_timeout)
        self._after_response(op, now)

    def _primary_target(self, node: NodeId) -> Target:
        # Targets are immutable: one per node serves every get.
        target = self._targets.get(node)
        if target is None:
            target = self._targets[node] = Target(node)
        return target

    def ReplicaRead(self, src: NodeId, m: Read) -> None:
        """Answer a read with this node's versions (and, as a fallback, its hinted ones)."""
        self._action("ReplicaRead", self._id, src, text(m.key), str(m.op))
        if m.hint is not None and m.hint != self._id:
            held = self._engine.get(m.key)
            held = reconcile_mode(self._mode, (*held, *self._engine.get_hint(m.hint, m.key)))
            self._send(src, ReadResp(m.op, m.key, siblings_to_wire(held)))
        else:
            # The stored bytes are the wire form already: no Version objects in between.
            raw = self._engine.get_raw(m.key)
            wire = [] if raw is None else decode_wire_siblings(raw)
            self._send(src, ReadResp(m.op, m.key, wire))

    def ReadResponse(self, src: NodeId, m: ReadResp, versions: Siblings, now: float) -> None:
        """Record a replica's response; answer at R, repair after (late responses too)."""
        self._action("ReadResponse", self._id, src, text(m.key), str(m.op))
        op = self._gets.get(m.op)
        if op is None or op.key != m.key:
            return
        c = op.collector
        if not c.is_target(src) or src not in c.pending:
            return
        held = reconcile_mode(self._mode, versions)
        c.respond(src, held)
        op.believed[src] = held
        self._after_response(op, now)

    def _after_response(self, op: GetOp, now: float) -> None:
        status = op.collector.status
        if not op.answered:
            if status is RequestStatus.FAILED:
                self._error(op.origin, ErrorCode.UNAVAILABLE, op.collector.reason or "failed")
                self._finish_get(op)
                return
            if status is not RequestStatus.SUCCEEDED:
                return
            op.answered = True
            latest = self._latest(op)
            context = encode_context(read_context(self._mode, latest))
            live = [v for v in latest if v.value is not None]
            values = [v.value for v in live if v.value is not None]
            clocks = [SiblingClock(clock_to_wire(v.clock), v.writer, v.dot) for v in live]
            self._reply(op.origin, GetOk(values, context, op.origin.rid, clocks))
            self.ReadRepair(op, now, answering=True, latest=latest)
        else:
            self.ReadRepair(op, now, answering=False)
        if not op.collector.pending:
            self._finish_get(op)

    def _latest(self, op: GetOp) -> Siblings:
        responses = op.collector.responses.values()
        return reconcile_mode(self._mode, [v for vs in responses for v in vs])

    def ReadRepair(
        self, op: GetOp, now: float, answering: bool, latest: Siblings | None = None
    ) -> None:
        """Send the reconciled versions to every responder known to hold something else.

        Taken when the get is answered (the spec's step, which then forgets the get) and again
        for each late response that shows something stale. ``latest``: the responses
        reconciled, when the caller has just done it.
        """
        if latest is None:
            latest = self._latest(op)
        stale = [n for n in op.collector.responses if op.believed.get(n) != latest]
        if answering or stale:
            self._action("ReadRepair", self._id, str(op.id))
        if not stale:
            self._maybe_reap_after_read(op, latest, now)
            return
        wire = siblings_to_wire(latest)
        for n in stale:
            op.believed[n] = latest
            if n == self._id:
                self._merge_store(op.key, latest)
            else:
                self._send(n, Store(0, op.key, wire, op.hint_for.get(n)))

    def _maybe_reap_after_read(self, op: GetOp, latest: Siblings, now: float) -> None:
        # Every replica (none substituted) returned the same tombstones: they can go.
        if not (self._config.reap_tombstones and latest and op.answered):
            return
        if op.hint_for or any(op.believed.get(p) != latest for p in op.primaries):
            return
        if all(v.is_tombstone for v in latest) and not op.collector.pending:
            self._schedule_reap(op.key, latest, now)

    def get_timeout(self, op: GetOp, now: float) -> None:
        """Not in the spec (whose gets never time out): the get fails or is forgotten."""
        if not op.answered:
            op.collector.timeout()
            self._action("GetTimeout", self._id, str(op.id))
            self._error(
                op.origin,
                ErrorCode.TIMEOUT,
                f"the read timed out after {self._config.request_timeout:g}s: "
                f"{op.collector.reason}",
            )
        self._finish_get(op)

    def _finish_get(self, op: GetOp) -> None:
        if self._gets.pop(op.id, None) is not None:
            self._cancel_timer("get", op.id)

    def _schedule_reap(self, key: bytes, tombstones: Siblings, now: float) -> None:
        if any(k == key and t == tombstones for k, t in self._reaps.values()):
            return
        rid = self._new_id()
        self._reaps[rid] = (key, tombstones)
        self._set_timer("reap", rid, now + self._config.reap_delay)

    def reap(self, key: bytes, tombstones: Siblings, now: float) -> None:
        """Every replica acked or returned these tombstones: tell them all to drop the key."""
        wire = siblings_to_wire(tombstones)
        for p in self._ring.preference_list(key, self._config.n):
            if p != self._id:
                self._send(p, Reap(key, wire))
        self.reap_received(self._id, key, tombstones)

    def reap_received(self, src: NodeId, key: bytes, tombstones: Siblings) -> None:
        """Drop ``key`` only if these tombstones are still all this node holds of it."""
        held = self._engine.get(key)
        if held and held == tombstones and all(v.is_tombstone for v in held):
            self._action("ReapTombstone", self._id, text(key))
            self._persist(key, ())

    def Receive(self, src: NodeId, msg: PeerMessage | object, now: float) -> None:
        """Dispatch a peer message to the one handler of its kind (the spec's Receive)."""
        if isinstance(msg, _VERSIONED):
            versions = self._decode(src, msg.versions)
            if versions is None:
                return
            if isinstance(msg, Store):
                self.ReplicaStore(src, msg, versions)
            elif isinstance(msg, StoreAck):
                self.StoreAck(src, msg, versions, now)
            elif isinstance(msg, ReadResp):
                self.ReadResponse(src, msg, versions, now)
            else:
                self.reap_received(src, msg.key, canonical(versions))
        elif isinstance(msg, Read):
            self.ReplicaRead(src, msg)
        elif isinstance(msg, Forward):
            self.forwarded_request(src, msg, now)
        elif isinstance(msg, ForwardReply):
            self.forward_reply(src, msg)
        elif isinstance(msg, Ping):
            self._send(src, Pong())
        elif isinstance(msg, Pong):
            pass  # _heard has done the work
        elif isinstance(msg, Gossip):
            self.gossip_received(src, msg, now)
        elif isinstance(msg, MerkleQuery):
            self.merkle_query(src, msg, now)
        elif isinstance(msg, MerkleAnswer):
            self.merkle_answer(src, msg, now)
        elif isinstance(msg, SyncKeys):
            self.sync_keys(src, msg, now)
        elif isinstance(msg, SyncKeysReply):
            self.sync_keys_reply(src, msg, now)
        elif isinstance(msg, Transfer):
            self.transfer_received(src, msg)
        elif isinstance(msg, TransferAck):
            self.transfer_ack(src, msg, now)
        else:
            self._action("RejectMessage", self._id, src, type(msg).__name__)

    def Recover(self, now: float) -> None:
        """Restart from durable state (loaded by the constructor): timers, then gossip."""
        self._boot_timers(now)
