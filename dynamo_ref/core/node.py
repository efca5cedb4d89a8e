"""The sans-I/O Dynamo node: ``Node.handle(event, now) -> list[Effect]``.

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
``GossipMerge``, ``Ping``, ``MerkleExchange``, ``AdminJoin``, ``AdminLeave``,
``SetClockSkew``, ``TransferPartition``, ``ReceiveTransfer`` (merges like ReplicaStore),
``DropPartition`` and ``ReapTombstone`` (remove versions: the spec has no such step),
``RejectMessage`` (a peer message that does not decode).

Where the node goes beyond the spec, on purpose: a non-replica forwards client requests; a get
under a sloppy quorum reads from fallbacks in place of replicas held down; a get outlives
``ReadRepair`` until every target answered so late responses are repaired too; PR and PW.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterable, Sequence
from functools import partial

import msgspec

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
from dynamo_ref.core.membership import (
    Membership,
    MemberState,
    PhiAccrualDetector,
    Status,
    claims_of,
)
from dynamo_ref.core.merkle import TreeWalk
from dynamo_ref.core.messages import (
    AdminOk,
    ClientMessage,
    DataRequest,
    Delete,
    ErrorCode,
    ErrorReply,
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
    ReplyMessage,
    SetClockSkew,
    StatusReply,
    StatusRequest,
    Store,
    StoreAck,
    SyncKeys,
    SyncKeysReply,
    Transfer,
    TransferAck,
    WireMember,
    WireVersion,
    decode_context,
    encode_context,
    rid_of,
    siblings_from_wire,
    siblings_to_wire,
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
    SyncSession,
    TransferOp,
)
from dynamo_ref.core.node_versions import (
    VersionMode,
    read_context,
    reconcile_mode,
    spec_clock,
    write_version,
)
from dynamo_ref.core.quorum import (
    QuorumConfig,
    ReadCollector,
    RequestStatus,
    Target,
    quorum_problems,
)
from dynamo_ref.core.ring import RING_BITS, Ring, hash_key
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Siblings, Version, sort_key
from dynamo_ref.storage.memory import MemoryEngine, item_digest

__all__ = ["DurableState", "Node", "NodeConfig", "VersionMode"]

# A request may be forwarded once more by a node whose ring view disagrees, never in a loop.
MAX_HOPS = 2
# Anti-entropy sessions that have not finished after this many request timeouts are dropped.
SESSION_LIFETIME = 10
TOMBSTONE = "<tombstone>"

_MEMBERS_ENCODER = msgspec.msgpack.Encoder()
_MEMBERS_DECODER = msgspec.msgpack.Decoder(list[WireMember])


def text(data: bytes) -> str:
    """Bytes as trace text: UTF-8 when it is, else ``0x`` and hex (as the trace writer does)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()


def spec_version(v: Version) -> dict[str, object]:
    """A version in the spec's shape ``[val, vc, ts]``."""
    return {"val": v.value, "vc": spec_clock(v), "ts": v.timestamp}


def member_to_wire(node: NodeId, s: MemberState) -> WireMember:
    return WireMember(node, s.incarnation, s.status.value, s.address, s.zone, list(s.claims))


def members_from_wire(members: Iterable[WireMember], q: int) -> Membership:
    """:raises ValueError: an unknown status, a bad incarnation or a claim outside 0..q-1."""
    entries: dict[NodeId, MemberState] = {}
    for m in members:
        if not m.node or m.incarnation < 0 or any(not 0 <= p < q for p in m.claims):
            raise ValueError(f"bad membership entry for {m.node!r}")
        entries[m.node] = MemberState(
            m.incarnation, Status(m.status), m.address, m.zone, claims_of(m.claims)
        )
    return Membership(entries)


class Node:
    """One Dynamo node as a pure state machine (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (the drivers' fixed interface)
        self,
        node_id: NodeId,
        config: NodeConfig,
        ring: Ring,
        seeds: Sequence[NodeId],
        durable: DurableState,
        rng: random.Random,
        now: float,
    ) -> None:
        self._id = node_id
        self._config = config
        self._ring = ring
        self._seeds = tuple(s for s in seeds if s != node_id)
        self._rng = rng
        self._mode = config.mode
        self._skew = config.clock_skew
        self._recovering = not durable.is_empty()
        self._fx: list[Effect] = []

        q = ring.q
        # The partition count never changes, so neither does a key's partition.
        self._engine = MemoryEngine(
            partial(_partition, shift=RING_BITS - (q.bit_length() - 1)),
            fanout=config.merkle_fanout,
            depth=config.merkle_depth,
        )
        for key, siblings in durable.store.items():
            if siblings:
                self._engine.put(key, reconcile_mode(self._mode, siblings))
        for (owner, key), siblings in durable.hints.items():
            self._engine.put_hint(owner, key, _canonical(siblings))

        view = Membership(
            {
                n: MemberState(0, Status.UP, n, ring.zone(n), ring.partitions_of(n))
                for n in ring.nodes
            }
        )
        saved = durable.meta.get("membership")
        # Unreadable: the ring and gossip give it back.
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            if saved is not None:
                view = view.merge(members_from_wire(_MEMBERS_DECODER.decode(saved), q))
        self._view = view
        derived = self._ring_of(view)
        if derived is not None:
            self._ring = derived
        boot = durable.meta.get("boot")
        self._boot = (int.from_bytes(boot, "big") if boot else 0) + 1
        self._seq = 0

        self._detector = PhiAccrualDetector(
            threshold=config.phi_threshold,
            window=max(config.detector_window, 2),
            min_std=config.detector_min_std,
            acceptable_pause=config.detector_pause,
            first_interval=config.gossip_interval,
        )
        self._suspects: set[NodeId] = set()
        self._last_heard: dict[NodeId, float] = {}
        self._seed_heard = not self._seeds
        self._seed_cursor = 0

        self._puts: dict[int, PutOp] = {}
        self._gets: dict[int, GetOp] = {}
        self._forwards: dict[int, ForwardOp] = {}
        self._sessions: dict[int, SyncSession] = {}
        self._transfers: dict[int, TransferOp] = {}
        self._reaps: dict[int, tuple[bytes, Siblings]] = {}
        self._ae_cursor = 0
        self._ae_last: dict[NodeId, AntiEntropyRecord] = {}
        self._started = now

    # ---- the driver's interface --------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def ring(self) -> Ring:
        """The ring this node routes by: the one its membership view's claims describe."""
        return self._ring

    @property
    def engine(self) -> MemoryEngine:
        return self._engine

    @property
    def clock_skew(self) -> float:
        return self._skew

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
                "done": False,
            }
            for op in self._gets.values()
            if not op.answered
        ]
        return {"store": store, "hints": hints, "putOps": put_ops, "getOps": get_ops}

    # ---- status ------------------------------------------------------------------------

    @property
    def membership(self) -> Membership:
        """Membership as this node sees it."""
        return self._view

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
            MemberInfo(n, s.status.value, s.incarnation, len(s.claims), n in down)
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
        )

    # ---- effects -----------------------------------------------------------------------

    def _take(self) -> list[Effect]:
        fx, self._fx = self._fx, []
        return fx

    def _action(self, name: str, *args: str) -> None:
        self._fx.append(Action(name, args))

    def _send(self, dest: NodeId, msg: PeerMessage) -> None:
        self._fx.append(Send(dest, msg))

    def _reply(self, origin: Origin, msg: ReplyMessage) -> None:
        if isinstance(origin, ClientOrigin):
            self._fx.append(Reply(origin.client, msg))
        else:
            self._send(origin.node, ForwardReply(origin.fid, msg))

    def _error(self, origin: Origin, code: ErrorCode, message: str) -> None:
        self._reply(origin, ErrorReply(code.value, message, origin.rid))

    def _set_timer(self, kind: str, ident: int, at: float) -> None:
        self._fx.append(SetTimer((kind, ident), at))

    def _cancel_timer(self, kind: str, ident: int) -> None:
        self._fx.append(CancelTimer((kind, ident)))

    def _persist(self, key: bytes, siblings: Siblings) -> None:
        self._engine.put(key, siblings)
        self._fx.append(Persist(key, siblings))

    def _merge_store(self, key: bytes, versions: Iterable[Version]) -> Siblings:
        """Reconcile ``versions`` into the key's sibling set; persist if it changed."""
        held = self._engine.get(key)
        merged = reconcile_mode(self._mode, (*held, *versions))
        if merged != held:
            self._persist(key, merged)
        return merged

    def _new_id(self) -> int:
        self._seq += 1
        return (self._boot << 32) | self._seq

    def _timestamp(self, now: float) -> float:
        return now + self._skew

    def _pending(self) -> int:
        return len(self._puts) + len(self._gets) + len(self._forwards)

    # ---- failure detection -------------------------------------------------------------

    def _heard(self, peer: NodeId, now: float) -> None:
        self._suspects.discard(peer)
        self._last_heard[peer] = now
        if peer in self._seeds:
            self._seed_heard = True
        last = self._detector.last_heartbeat(peer)
        # At most one heartbeat per half interval: bursts of requests would teach phi that
        # silence of a second is abnormal.
        if last is None or now - last >= self._config.gossip_interval / 2:
            self._detector.heartbeat(peer, now)

    def _held_down(self, peer: NodeId, now: float) -> bool:
        if peer == self._id:
            return False
        if peer in self._suspects:
            return True
        last = self._detector.last_heartbeat(peer)
        return last is not None and now >= last and not self._detector.is_available(peer, now)

    def _suspect(self, peer: NodeId) -> None:
        if peer != self._id:
            self._suspects.add(peer)

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

    # ---- timers ------------------------------------------------------------------------

    def _boot_timers(self, now: float) -> None:
        cfg = self._config
        self._fx.append(PersistMeta("boot", self._boot.to_bytes(8, "big")))
        for peer in self._view.live_members():
            if peer != self._id:
                self._detector.heartbeat(peer, now)
        # Jitter keeps nodes started together from gossiping in lockstep.
        self._set_timer("gossip", 0, now + cfg.gossip_interval * self._rng.random())
        self._set_timer("ae", 0, now + cfg.anti_entropy_interval * (0.5 + self._rng.random()))
        self._set_timer("handoff", 0, now + cfg.handoff_interval)
        self._set_timer("transfer", 0, now + cfg.transfer_interval)

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

    # ---- client requests ---------------------------------------------------------------

    def _client(self, client: ClientId, msg: ClientMessage | object, now: float) -> None:
        # ``object``: whatever a driver hands over, a client gets an answer, never an exception.
        origin = ClientOrigin(client, rid_of(msg))
        if isinstance(msg, Get | Put | Delete):
            self._data_request(origin, msg, now, hops=0)
        elif isinstance(msg, StatusRequest):
            self._reply(origin, self.status(now, origin.rid))
        elif isinstance(msg, Join):
            self.admin_join(origin, msg, now)
        elif isinstance(msg, Leave):
            self.admin_leave(origin, msg, now)
        elif isinstance(msg, SetClockSkew):
            self.set_clock_skew(origin, msg)
        else:
            self._error(
                origin,
                ErrorCode.UNKNOWN_MESSAGE,
                f"unknown request {type(msg).__name__}: expected get, put, delete, join, "
                "leave, status or set_clock_skew",
            )

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
            problems = quorum_problems(cfg.n, _or(msg.r, cfg.r), cfg.w, _or(msg.pr, cfg.pr), 0)
        else:
            problems = quorum_problems(cfg.n, cfg.r, _or(msg.w, cfg.w), 0, _or(msg.pw, cfg.pw))
        if problems:
            return ErrorCode.INVALID_QUORUM, "; ".join(problems)
        return None

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
        if self._id not in self._ring.preference_list(msg.key, cfg.n):
            self._forward(origin, msg, now, hops, frozenset())
        elif isinstance(msg, Get):
            self.ClientGet(origin, msg.key, _or(msg.r, cfg.r), _or(msg.pr, cfg.pr), now)
        else:
            value = msg.value if isinstance(msg, Put) else None
            w, pw = _or(msg.w, cfg.w), _or(msg.pw, cfg.pw)
            self.ClientPut(
                origin, msg.key, value, context, w=w, pw=pw, now=now, body=msg.return_body
            )

    # ---- forwarding (not in the spec) --------------------------------------------------

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

    # ---- puts --------------------------------------------------------------------------

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
        primaries = ring.preference_list(key, cfg.n)
        up = [p for p in primaries if not self._held_down(p, now)]
        spare = 0
        if cfg.sloppy:
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
        self._action(
            "ClientPut",
            self._id,
            text(key),
            TOMBSTONE if value is None else text(value),
            _clock_text(context),
        )
        self._merge_store(key, (version,))
        wire = [_wire(version)]
        for j in primaries:
            if j != self._id:
                self._send(j, Store(op.id, key, wire))
        self._set_timer("put", op.id, now + cfg.request_timeout)
        if cfg.sloppy:
            for h in primaries:
                if h != self._id and self._held_down(h, now):
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
            self._send(f, Store(op.id, op.key, [_wire(op.version)], h))
            return

    # ---- hints -------------------------------------------------------------------------

    def _add_hint(self, owner: NodeId, key: bytes, versions: Siblings) -> None:
        held = self._engine.get_hint(owner, key)
        merged = _canonical((*held, *versions))
        if merged != held:
            self._engine.put_hint(owner, key, merged)
            self._fx.append(PersistHint(owner, key, merged))

    def _drop_hint_versions(self, owner: NodeId, key: bytes, versions: Siblings) -> None:
        held = self._engine.get_hint(owner, key)
        if not held:
            return
        rest = tuple(v for v in held if v not in versions)
        if rest == held:
            return
        self._engine.put_hint(owner, key, rest)
        self._fx.append(PersistHint(owner, key, rest) if rest else DropHint(owner, key))

    def handoff_round(self, now: float) -> None:
        """Hand hinted versions to owners that are reachable again (a batch per round)."""
        self._set_timer("handoff", 0, now + self._config.handoff_interval)
        sent = 0
        for owner, key in self._engine.hints():
            if sent >= self._config.handoff_batch:
                break
            if owner not in self._ring.nodes:
                self._rehome_hint(owner, key)
            elif not self._held_down(owner, now):
                self.HandoffHint(owner, key)
                sent += 1

    def HandoffHint(self, owner: NodeId, key: bytes) -> None:
        """Send ``owner`` the versions held for it; they go when it acks (``StoreAck``)."""
        versions = self._engine.get_hint(owner, key)
        if versions:
            self._action("HandoffHint", self._id, owner, text(key))
            self._send(owner, Store(0, key, siblings_to_wire(versions), owner))

    def _rehome_hint(self, owner: NodeId, key: bytes) -> None:
        # The owner left the ring: the key's first replica takes the hint's place.
        versions = self._engine.get_hint(owner, key)
        self._engine.put_hint(owner, key, ())
        self._fx.append(DropHint(owner, key))
        heir = self._ring.preference_list(key, self._config.n)[0]
        if heir == self._id:
            self._merge_store(key, versions)
        else:
            self._add_hint(heir, key, versions)

    # ---- gets --------------------------------------------------------------------------

    def ClientGet(self, origin: Origin, key: bytes, r: int, pr: int, now: float) -> None:
        """Coordinate a get: read locally, ask the other targets, answer after R responses."""
        cfg = self._config
        primaries = self._ring.preference_list(key, cfg.n)
        fallbacks = list(self._ring.extended_preference_list(key, cfg.n)[len(primaries) :])
        targets: list[Target] = []
        hint_for: dict[NodeId, NodeId] = {}
        for p in primaries:
            if cfg.sloppy and self._held_down(p, now):
                f = next(
                    (f for f in fallbacks if f != self._id and not self._held_down(f, now)), None
                )
                if f is not None:
                    fallbacks.remove(f)
                    targets.append(Target(f, p))
                    hint_for[f] = p
                    continue
            targets.append(Target(p))
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
        quorum = QuorumConfig(cfg.n, r, cfg.w, cfg.sloppy, pr, 0)
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

    def ReplicaRead(self, src: NodeId, m: Read) -> None:
        """Answer a read with this node's versions (and, as a fallback, its hinted ones)."""
        self._action("ReplicaRead", self._id, src, text(m.key), str(m.op))
        held = self._engine.get(m.key)
        if m.hint is not None and m.hint != self._id:
            held = reconcile_mode(self._mode, (*held, *self._engine.get_hint(m.hint, m.key)))
        self._send(src, ReadResp(m.op, m.key, siblings_to_wire(held)))

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
            values = [v.value for v in latest if v.value is not None]
            self._reply(op.origin, GetOk(values, context, op.origin.rid))
            self.ReadRepair(op, now)
        else:
            self.ReadRepair(op, now)
        if not op.collector.pending:
            self._finish_get(op)

    def _latest(self, op: GetOp) -> Siblings:
        responses = op.collector.responses.values()
        return reconcile_mode(self._mode, [v for vs in responses for v in vs])

    def ReadRepair(self, op: GetOp, now: float) -> None:
        """Send the reconciled versions to every responder known to hold something else."""
        latest = self._latest(op)
        stale = [n for n in op.collector.responses if op.believed.get(n) != latest]
        if not stale:
            self._maybe_reap_after_read(op, latest, now)
            return
        self._action("ReadRepair", self._id, str(op.id))
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

    # ---- tombstones --------------------------------------------------------------------

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

    # ---- receiving ---------------------------------------------------------------------

    def Receive(self, src: NodeId, msg: PeerMessage | object, now: float) -> None:
        """Dispatch a peer message to the one handler of its kind (the spec's Receive)."""
        if isinstance(msg, Store | StoreAck | ReadResp | Reap):
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
                self.reap_received(src, msg.key, _canonical(versions))
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

    def _decode(self, src: NodeId, wire: list[WireVersion]) -> Siblings | None:
        try:
            return siblings_from_wire(wire)
        except ValueError as e:
            self._action("RejectMessage", self._id, src, str(e))
            return None

    # ---- gossip and membership (not in the spec) ---------------------------------------

    def gossip_round(self, now: float) -> None:
        """Exchange membership with one peer (seeds until one answers); ping quiet peers."""
        cfg = self._config
        self._set_timer("gossip", 0, now + cfg.gossip_interval * (0.75 + 0.5 * self._rng.random()))
        peer: NodeId | None
        if self._seeds and not self._seed_heard:
            peer = self._seeds[self._seed_cursor % len(self._seeds)]
            self._seed_cursor += 1
        else:
            peer = self._view.pick_gossip_peer(self._id, self._rng.random())
        if peer is not None:
            self._action("Gossip", self._id, peer)
            self._send(peer, Gossip(self._wire_view(self._view), True))
        for other in self._view.live_members():
            if other in (self._id, peer):
                continue
            if now - self._last_heard.get(other, -math.inf) >= cfg.gossip_interval:
                self._send(other, Ping())

    def gossip_received(self, src: NodeId, m: Gossip, now: float) -> None:
        try:
            theirs = members_from_wire(m.members, self._ring.q)
        except ValueError as e:
            self._action("RejectMessage", self._id, src, str(e))
            return
        self._action("GossipMerge", self._id, src)
        self._set_view(self._view.merge(theirs), now)
        if m.reply:
            self._send(src, Gossip(self._wire_view(self._view.missing_from(theirs)), False))

    def _wire_view(self, view: Membership) -> list[WireMember]:
        return [member_to_wire(n, s) for n, s in view.items()]

    def _set_view(self, view: Membership, now: float) -> None:
        if view == self._view:
            return
        old_members = set(self._view.live_members())
        self._view = view
        self._fx.append(PersistMeta("membership", _MEMBERS_ENCODER.encode(self._wire_view(view))))
        for peer in set(view.live_members()) - old_members:
            if peer != self._id and self._detector.last_heartbeat(peer) is None:
                self._detector.heartbeat(peer, now)
        ring = self._ring_of(view)
        if ring is not None and ring != self._ring:
            old, self._ring = self._ring, ring
            self._ring_changed(old, now)
        self._check_left()

    def _ring_of(self, view: Membership) -> Ring | None:
        """The ring the view's claims describe; None while they overlap or leave gaps."""
        q = self._ring.q
        owners: list[NodeId | None] = [None] * q
        for node, s in view.items():
            if s.status is Status.LEFT:
                continue
            for p in s.claims:
                if owners[p] is not None:
                    return None
                owners[p] = node
        full = [o for o in owners if o is not None]
        if len(full) != q:
            return None
        nodes = [n for n, s in view.items() if s.status in (Status.JOINING, Status.UP) or s.claims]
        zones = tuple((n, z) for n in nodes if (z := view[n].zone) is not None)
        if zones and len(zones) != len(nodes):
            return None
        try:
            return Ring(q, tuple(full), tuple(nodes), zones, self._ring.target_n)
        except ValueError:
            return None

    def admin_join(self, origin: Origin, m: Join, now: float) -> None:
        """``m.node`` joins: it claims partitions from the others, and the view spreads."""
        try:
            ring = self._ring.join(m.node, m.zone)
        except ValueError as e:
            self._error(origin, ErrorCode.INVALID_REQUEST, f"cannot join {m.node!r}: {e}")
            return
        view = self._view
        for node in ring.nodes:
            claims = claims_of(ring.partitions_of(node))
            s = view.get(node)
            if s is None:
                view = view.update(node, MemberState(1, Status.UP, node, m.zone, claims))
            elif s.claims != claims or s.status is not Status.UP:
                view = view.update(node, s.successor(status=Status.UP, claims=claims))
        self._action("AdminJoin", self._id, m.node)
        self._set_view(view, now)
        self._send(m.node, Gossip(self._wire_view(view), True))
        taken = len(ring.partitions_of(m.node))
        self._reply(origin, AdminOk(f"{m.node} joined and claims {taken} partitions", origin.rid))

    def admin_leave(self, origin: Origin, m: Leave, now: float) -> None:
        """``m.node`` leaves: its partitions go to the others, which it hands its data."""
        if m.node not in self._ring.nodes:
            self._error(origin, ErrorCode.NOT_FOUND, f"{m.node!r} is not in the ring")
            return
        try:
            ring = self._ring.leave(m.node)
        except ValueError as e:
            self._error(origin, ErrorCode.INVALID_REQUEST, f"cannot remove {m.node!r}: {e}")
            return
        view = self._view
        for node, s in view.items():
            if node == m.node:
                view = view.update(node, s.successor(status=Status.LEAVING, claims=()))
            elif node in ring.nodes:
                claims = claims_of(ring.partitions_of(node))
                if claims != s.claims:
                    view = view.update(node, s.successor(claims=claims))
        self._action("AdminLeave", self._id, m.node)
        self._set_view(view, now)
        self._send(m.node, Gossip(self._wire_view(view), True))
        self._reply(origin, AdminOk(f"{m.node} is leaving; its partitions move", origin.rid))

    def set_clock_skew(self, origin: Origin, m: SetClockSkew) -> None:
        """Fault injection: timestamps this node hands out become ``now + skew``."""
        if not math.isfinite(m.skew):
            self._error(origin, ErrorCode.INVALID_REQUEST, "the clock skew must be finite")
            return
        self._skew = m.skew
        self._action("SetClockSkew", self._id, repr(m.skew))
        self._reply(origin, AdminOk(f"clock skew is now {m.skew:g}s", origin.rid))

    # ---- partition transfer after a join or leave (not in the spec) --------------------

    def _ring_changed(self, old: Ring, now: float) -> None:
        """Hand every partition this node holds but no longer replicates to its new replicas."""
        n = self._config.n
        busy = {(t.partition, t.target) for t in self._transfers.values() if not t.done}
        for p in self._engine.partitions():
            replicas = self._ring.preference_list_for_partition(p, n)
            if self._id in replicas:
                continue
            before = old.preference_list_for_partition(p, n)
            for target in [x for x in replicas if x not in before] or list(replicas):
                if (p, target) not in busy:
                    self._start_transfer(p, target, now)

    def _start_transfer(self, p: int, target: NodeId, now: float) -> None:
        t = TransferOp(self._new_id(), p, target, self._engine.keys(p), self._engine.tree(p).root)
        self._transfers[t.id] = t
        self._send_chunk(t, now)

    def _send_chunk(self, t: TransferOp, now: float) -> None:
        chunk = t.keys[t.next : t.next + self._config.transfer_chunk]
        items = [(k, siblings_to_wire(self._engine.get(k))) for k in chunk]
        last = t.next + len(chunk) >= len(t.keys)
        t.sent_at = now
        self._action("TransferPartition", self._id, t.target, str(t.partition))
        self._send(t.target, Transfer(t.id, t.partition, items, last))

    def transfer_received(self, src: NodeId, m: Transfer) -> None:
        self._action("ReceiveTransfer", self._id, src, str(m.partition))
        for key, wire in m.items:
            versions = self._decode(src, wire)
            if versions is None:
                return  # no ack: the sender retries, and a bad chunk stays visible
            self._merge_store(key, versions)
        self._send(src, TransferAck(m.tid, m.partition))

    def transfer_ack(self, src: NodeId, m: TransferAck, now: float) -> None:
        t = self._transfers.get(m.tid)
        if t is None or t.target != src or t.done:
            return
        t.next += self._config.transfer_chunk
        if t.next < len(t.keys):
            self._send_chunk(t, now)
            return
        root = self._engine.tree(t.partition).root
        if root != t.root:
            # Writes arrived while the transfer ran: send the partition again.
            t.keys, t.root, t.next = self._engine.keys(t.partition), root, 0
            self._send_chunk(t, now)
            return
        t.done = True
        self._maybe_drop(t.partition)

    def _maybe_drop(self, p: int) -> None:
        mine = [t for t in self._transfers.values() if t.partition == p]
        if not all(t.done for t in mine):
            return
        for t in mine:
            del self._transfers[t.id]
        if self._id in self._ring.preference_list_for_partition(p, self._config.n):
            return  # the ring changed back: keep it
        self._action("DropPartition", self._id, str(p))
        for key in self._engine.keys(p):
            self._persist(key, ())
        self._check_left()

    def transfer_round(self, now: float) -> None:
        """Resend transfer chunks that were not acked within an interval."""
        interval = self._config.transfer_interval
        self._set_timer("transfer", 0, now + interval)
        for t in list(self._transfers.values()):
            if not t.done and now - t.sent_at >= interval and not self._held_down(t.target, now):
                self._send_chunk(t, now)

    def _check_left(self) -> None:
        """A leaving node whose data has all moved marks itself as left."""
        me = self._view.get(self._id)
        if me is None or me.status is not Status.LEAVING or me.claims:
            return
        if self._transfers or any(
            self._id not in self._ring.preference_list_for_partition(p, self._config.n)
            for p in self._engine.partitions()
        ):
            return
        self._view = self._view.update(self._id, me.successor(status=Status.LEFT))
        self._fx.append(
            PersistMeta("membership", _MEMBERS_ENCODER.encode(self._wire_view(self._view)))
        )
        self._action("Left", self._id)

    # ---- anti-entropy ------------------------------------------------------------------

    def anti_entropy_round(self, now: float) -> None:
        """Compare the next partition this node replicates with its other replicas."""
        cfg = self._config
        self._set_timer("ae", 0, now + cfg.anti_entropy_interval)
        stale = now - SESSION_LIFETIME * cfg.request_timeout
        for sid in [s.id for s in self._sessions.values() if s.started < stale]:
            del self._sessions[sid]
        if self._id not in self._ring.nodes:
            return
        parts = self._ring.partitions_replicated_by(self._id, cfg.n)
        if not parts:
            return
        p = parts[self._ae_cursor % len(parts)]
        self._ae_cursor += 1
        self.start_exchange(p, now)

    def start_exchange(self, p: int, now: float) -> None:
        """Begin a Merkle exchange of partition ``p`` with each other healthy replica."""
        busy = {(s.peer, s.partition) for s in self._sessions.values()}
        fanout, depth = self._engine.shape
        root = self._engine.tree(p).root
        for peer in self._ring.preference_list_for_partition(p, self._config.n):
            if peer == self._id or (peer, p) in busy or self._held_down(peer, now):
                continue
            s = SyncSession(self._new_id(), peer, p, now)
            self._sessions[s.id] = s
            self._action("MerkleExchange", self._id, peer, str(p))
            self._send(peer, MerkleQuery(s.id, p, 0, [0], root, fanout, depth))

    def merkle_query(self, src: NodeId, m: MerkleQuery, now: float) -> None:
        """Answer a peer's walk of our tree of ``m.partition``: children hashes or leaf items."""
        fanout, depth = self._engine.shape
        tree = self._engine.tree(m.partition)
        answer = MerkleAnswer(m.session, m.partition, m.level, tree.root)
        if (m.fanout, m.depth) != (fanout, depth):
            refused = f"tree shape {(fanout, depth)} differs from {(m.fanout, m.depth)}"
            answer = msgspec.structs.replace(answer, refused=refused)
        elif not 0 <= m.partition < self._ring.q or not 0 <= m.level <= depth:
            answer = msgspec.structs.replace(answer, refused="no such partition or level")
        elif not all(0 <= i < fanout**m.level for i in m.indexes):
            answer = msgspec.structs.replace(answer, refused="no such tree nodes")
        elif m.level == 0 and m.root == tree.root:
            self._ae_last[src] = AntiEntropyRecord(now, m.partition, 0)
            answer = msgspec.structs.replace(answer, in_sync=True)
        elif m.level < depth:
            children = [list(tree.children_hashes(m.level, i)) for i in m.indexes]
            answer = msgspec.structs.replace(answer, children=children)
        else:
            leaves = [self._engine.leaf_digests(m.partition, i) for i in m.indexes]
            answer = msgspec.structs.replace(answer, leaves=leaves)
        self._send(src, answer)

    def merkle_answer(self, src: NodeId, m: MerkleAnswer, now: float) -> None:
        s = self._sessions.get(m.session)
        if s is None or s.peer != src or s.partition != m.partition:
            return
        if m.refused or m.in_sync:
            self._finish_session(s, now)
            return
        tree = self._engine.tree(s.partition)
        walk = s.walk
        if walk is None:
            walk = s.walk = TreeWalk(tree, m.root)
            if walk.done:
                self._finish_session(s, now)
                return
        fanout, depth = self._engine.shape
        wanted = walk.wanted
        if walk.wants_leaves:
            if m.level != depth or len(m.leaves) != len(wanted):
                del self._sessions[s.id]
                return
            keys: set[bytes] = set()
            for index, theirs in zip(wanted, m.leaves, strict=True):
                mine = {k: item_digest(raw) for k, raw in walk.tree.leaf_items(index)}
                other = dict(theirs)
                keys |= {k for k in mine.keys() | other.keys() if mine.get(k) != other.get(k)}
            if not keys:
                self._finish_session(s, now)
                return
            s.keys = len(keys)
            items = [(k, siblings_to_wire(self._engine.get(k))) for k in sorted(keys)]
            self._send(src, SyncKeys(s.id, s.partition, items))
            return
        if (
            m.level != walk.level
            or len(m.children) != len(wanted)
            or any(len(c) != fanout for c in m.children)
        ):
            del self._sessions[s.id]
            return
        walk.receive_children(dict(zip(wanted, m.children, strict=True)))
        if walk.done:
            self._finish_session(s, now)
            return
        level = depth if walk.wants_leaves else walk.level
        root = tree.root
        self._send(
            src, MerkleQuery(s.id, s.partition, level, list(walk.wanted), root, fanout, depth)
        )

    def sync_keys(self, src: NodeId, m: SyncKeys, now: float) -> None:
        """The peer's versions of the differing keys: merge each, answer with the result."""
        out: list[tuple[bytes, list[WireVersion]]] = []
        for key, wire in m.items:
            theirs = self._decode(src, wire)
            if theirs is None:
                return
            merged = self.AntiEntropy(src, self._id, key, theirs)
            out.append((key, siblings_to_wire(merged)))
        self._ae_last[src] = AntiEntropyRecord(now, m.partition, len(out))
        self._send(src, SyncKeysReply(m.session, m.partition, out))

    def sync_keys_reply(self, src: NodeId, m: SyncKeysReply, now: float) -> None:
        s = self._sessions.get(m.session)
        if s is None or s.peer != src:
            return
        for key, wire in m.items:
            theirs = self._decode(src, wire)
            if theirs is not None:
                self.AntiEntropy(self._id, src, key, theirs)
        self._finish_session(s, now)

    def AntiEntropy(self, i: NodeId, j: NodeId, key: bytes, theirs: Siblings) -> Siblings:
        """Replicas ``i`` (initiator) and ``j`` reconcile ``key``: this node's half."""
        held = self._engine.get(key)
        if held == theirs:
            return held
        self._action("AntiEntropy", i, j, text(key))
        return self._merge_store(key, theirs)

    def _finish_session(self, s: SyncSession, now: float) -> None:
        self._sessions.pop(s.id, None)
        self._ae_last[s.peer] = AntiEntropyRecord(now, s.partition, s.keys)

    # ---- recovery ----------------------------------------------------------------------

    def Recover(self, now: float) -> None:
        """Restart from durable state (loaded by the constructor): timers, then gossip."""
        self._boot_timers(now)


# ---- helpers --------------------------------------------------------------------------------


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _wire(v: Version) -> WireVersion:
    return siblings_to_wire((v,))[0]


def _canonical(versions: Iterable[Version]) -> Siblings:
    """Distinct versions in canonical order (hints keep every version, as the spec does)."""
    return tuple(sorted(set(versions), key=sort_key))


def _clock_text(clock: VClock) -> str:
    return "{" + ",".join(f"{n}:{c}" for n, c, _ in clock.entries()) + "}"


def _partition(key: bytes, shift: int) -> int:
    return hash_key(key) >> shift
