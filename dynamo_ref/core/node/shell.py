"""The sans-I/O Dynamo node: ``Node.handle(event, now) -> list[Effect]``.

``Node`` is a thin shell over four parts, each a file that owns its state and its spec-named
handlers (``docs/architecture.md`` draws them):

- ``members.Members``: the gossiped view, the ring it describes, the failure detector, joining
  through seeds, admin join and leave, partition transfer;
- ``replica.Replica``: the store and the hints, reads, handoff, reaping tombstones;
- ``coordinator.Coordinator``: client requests: puts, gets, forwarding, read repair;
- ``anti_entropy.AntiEntropy``: Merkle exchanges.

The shell holds nothing of the protocol: one table from message type to handler, one from
``TimerKind`` to handler, and the effect sink (``outbox.Outbox``) every part writes to.

Interface (the simulator and the TCP runtime drive exactly this):

- ``Node(node_id, config, ring, seeds, durable, rng, now, *, engine, addresses, zone)``:
  ``durable`` is what this node's durable effects wrote before (empty for a new node); ``rng``
  is the only randomness (gossip peers, timer jitter); ``engine`` builds the working copy
  (``storage.engine.EngineFactory``). ``ring`` None: the node joins through ``seeds`` (or
  resumes the ring its saved view describes).
- ``start(now)``: the first effects (timers, the first gossip, or a join request). On a
  non-empty ``durable`` this is the spec's ``Recover``; the driver records that action itself.
- ``handle(event, now, wall=...)``: one event in, effects out, to be carried out in order.
  ``now`` is monotonic (timers, the failure detector); ``wall`` only stamps versions.
- ``spec_state()``: this node's part of the spec's ``store``, ``hints``, ``putOps``, ``getOps``.
- Status queries: ``membership``, ``suspected``, ``pending_hints``, ``last_anti_entropy``,
  ``in_progress``, ``status``; ``clock_skew``, ``ring``, ``engine``, ``joined``.

Spec actions (spec/Dynamo.tla) and the handlers that emit them as ``Action(name, args)``:

    ClientPut          Coordinator.ClientPut       a put or delete at a replica of the key
    ClientForward,     Coordinator._forward        a request at a node that is not a replica
      ClientForwardGet                             goes to one (line ``ForwardRequest``)
    ForwardedPut,      Coordinator.forwarded_request, then ClientPut or ClientGet (their lines)
      ForwardedGet
    ReplicaStore       Replica.ReplicaStore        a Store arrives (put, repair, hint, handoff)
    StoreAck           Coordinator.StoreAck        a StoreAck arrives (put ack; then
                       + Replica.hint_acked        the hint handed off is dropped)
    PutTimeout         Coordinator.PutTimeout      a put's timer fires before W (and PW) acks
    SloppyFallback     Coordinator.SloppyFallback  a silent or unreachable replica gets a fallback
    ClientGet          Coordinator.ClientGet       a get at a replica of the key
    ReplicaRead        Replica.ReplicaRead         a Read arrives
    ReadResponse       Coordinator.ReadResponse    a ReadResp arrives
    ReadRepair         Coordinator.ReadRepair      stale responders get the reconciled versions
    HandoffHint        Replica.HandoffHint         hinted versions go back to their owner
    AntiEntropy        AntiEntropy.AntiEntropy     one key of a Merkle exchange merged, in two
                                                   halves: at the peer, then at the initiator
    ReapTombstone      Replica.reap_timer          a reap timer fires: replicas told, key dropped
    ReplicaReap        Replica.reap_received       a Reap arrives: the key dropped if unchanged
    ChangeView         Members._set_view           a view with a new ring (no line of its own)
    TransferPartition  Members._send_chunk         a partition no longer replicated is sent
    ReceiveTransfer    Members.transfer_received   merged and acked: replicated on this ring
    RefuseTransfer     Members.transfer_received   not replicated on this ring: no ack
    TransferAck        Members.transfer_ack        (no line)
    DropPartition      Members._maybe_drop         every transfer of the partition acked
    Recover            Node.Recover                ``start`` on a non-empty durable state
    Receive            Node.Receive                dispatch of a peer message by type

Node-only steps, each an ``Action`` of its own name that changes no spec variable unless
noted: ``ForwardReply``, ``ForwardTimeout`` (the answer's way back, which the spec leaves out),
``GetTimeout`` (drops a get, as a crash would; a trace extension), ``SetClockSkew``
(coordinator); ``Gossip``, ``GossipMerge``, ``JoinRequest``, ``Joined``, ``AdminJoin``,
``AdminLeave``, ``Left``, ``Suspect``, ``Trust`` (members); ``MerkleExchange`` (anti-entropy);
``ClockAhead`` (a writer's timestamps run ahead; replica); ``RejectMessage`` (a peer message
that does not decode); ``HandlerFailed`` (a handler raised: its requests are rolled back).
Failure-detector pings and ``replica_get`` take no action. Trace validation does not map the
forwarding, reap and ring-change actions yet (``docs/architecture.md``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
)
from dynamo_ref.core.membership import Membership
from dynamo_ref.core.messages import (
    Delete,
    ErrorCode,
    Forward,
    ForwardReply,
    Get,
    Gossip,
    Join,
    JoinRequest,
    Leave,
    LeaveRequest,
    MerkleAnswer,
    MerkleQuery,
    Ping,
    Pong,
    Put,
    Read,
    ReadResp,
    Reap,
    ReplicaGet,
    SetClockSkew,
    StatusReply,
    StatusRequest,
    Store,
    StoreAck,
    SyncKeys,
    SyncKeysReply,
    Transfer,
    TransferAck,
    rid_of,
)
from dynamo_ref.core.node.anti_entropy import AntiEntropy, AntiEntropyRecord
from dynamo_ref.core.node.config import DurableState, NodeConfig
from dynamo_ref.core.node.coordinator import Coordinator
from dynamo_ref.core.node.members import Members
from dynamo_ref.core.node.outbox import ClientOrigin, Origin, Outbox, PeerOrigin, TimerKind
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.storage.engine import Engine, EngineFactory

PeerHandler = Callable[[NodeId, Any, float], None]
ClientHandler = Callable[[Origin, Any, float], None]
TimerHandler = Callable[[int, float], None]


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts a node has once it knows its ring."""

    replica: Replica
    coordinator: Coordinator
    anti_entropy: AntiEntropy


class Node:
    """One Dynamo node as a pure state machine (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (the drivers' fixed interface)
        self,
        node_id: NodeId,
        config: NodeConfig,
        ring: Ring | None,
        seeds: Sequence[NodeId],
        durable: DurableState,
        rng: random.Random,
        now: float,
        *,
        engine: EngineFactory,
        addresses: Mapping[NodeId, str] | None = None,
        zone: str | None = None,
    ) -> None:
        boot = durable.meta.get("boot")
        self._id = node_id
        self._config = config
        self._out = Outbox(node_id, (int.from_bytes(boot, "big") if boot else 0) + 1)
        self._recovering = not durable.is_empty()
        self._rng = rng
        self._engine_factory = engine
        self._durable: DurableState | None = durable  # until the parts have loaded it
        self._members = Members(
            self._out,
            config,
            rng,
            ring=ring,
            seeds=seeds,
            durable=durable,
            addresses=addresses or {},
            zone=zone,
        )
        self._parts: _Parts | None = None
        self._noting = False  # per-process traces: note the requests each step touches
        members = self._members
        self._on_event: dict[type, Callable[[Any, float], None]] = {
            PeerReceived: self._received,
            TimerFired: self._timer,
            ClientRequest: self._client_request,
            PeerUnreachable: self._unreachable,
            StorageFailed: self._storage_failed,
        }
        self._on_peer: dict[type, PeerHandler] = {
            Gossip: members.gossip_received,
            Ping: members.ping,
            Pong: members.pong,
            JoinRequest: members.join_request,
            LeaveRequest: members.leave_request,
        }
        self._on_client: dict[type, ClientHandler] = {
            StatusRequest: self._status_request,
            Get: self._joining,
            Put: self._joining,
            Delete: self._joining,
            Join: self._joining,
            Leave: self._joining,
            SetClockSkew: self._joining,
            ReplicaGet: self._joining,
        }
        self._on_timer: dict[str, TimerHandler] = {TimerKind.BOOTSTRAP: members.bootstrap_round}
        self._on_unreachable: tuple[Callable[[NodeId, float], None], ...] = (self._suspect,)
        if members.joined:
            self._assemble()

    def _assemble(self) -> None:
        """Build the parts that need the ring, and route their messages and timers to them."""
        durable = self._durable or DurableState()
        self._durable = None
        members = self._members
        replica = Replica(
            self._out,
            self._config,
            members,
            engine=self._engine_factory,
            q=members.ring.q,
            durable=durable,
        )
        members.attach(replica)
        coordinator = Coordinator(self._out, self._config, replica, members)
        if self._noting:
            coordinator.note_requests()
        anti_entropy = AntiEntropy(self._out, self._config, replica, members, self._rng)
        self._parts = _Parts(replica, coordinator, anti_entropy)
        self._on_peer.update(
            {
                Store: replica.ReplicaStore,
                StoreAck: self._store_ack,
                Read: replica.ReplicaRead,
                ReadResp: coordinator.ReadResponse,
                Reap: replica.reap_received,
                Forward: coordinator.forwarded_request,
                ForwardReply: coordinator.forward_reply,
                MerkleQuery: anti_entropy.merkle_query,
                MerkleAnswer: anti_entropy.merkle_answer,
                SyncKeys: anti_entropy.sync_keys,
                SyncKeysReply: anti_entropy.sync_keys_reply,
                Transfer: members.transfer_received,
                TransferAck: members.transfer_ack,
            }
        )
        self._on_client.update(
            {
                Get: coordinator.client_request,
                Put: coordinator.client_request,
                Delete: coordinator.client_request,
                Join: members.admin_join,
                Leave: members.admin_leave,
                SetClockSkew: coordinator.set_clock_skew,
                ReplicaGet: replica.replica_get,
            }
        )
        self._on_timer.update(
            {
                TimerKind.PUT: coordinator.put_timer,
                TimerKind.FALLBACK: coordinator.fallback_timer,
                TimerKind.GET: coordinator.get_timer,
                TimerKind.FORWARD: coordinator.forward_timer,
                TimerKind.GOSSIP: members.gossip_round,
                TimerKind.TRANSFER: members.transfer_round,
                TimerKind.HANDOFF: replica.handoff_round,
                TimerKind.REAP: replica.reap_timer,
                TimerKind.ANTI_ENTROPY: anti_entropy.round,
            }
        )
        self._on_unreachable = (
            self._suspect,
            coordinator.peer_unreachable,
            anti_entropy.peer_unreachable,
        )

    # ---- the driver's interface -----------------------------------------------------------

    def start(self, now: float, *, wall: float | None = None) -> list[Effect]:
        """Timers and the first gossip; the spec's ``Recover`` when there was durable state."""
        self._out.effects = []
        self._out.wall = now if wall is None else wall
        if self._recovering:
            self.Recover(now)
        else:
            self._boot(now)
        return self._out.take()

    def Recover(self, now: float) -> None:
        """Restart from durable state (loaded by the constructor): timers, then gossip."""
        self._boot(now)

    def _boot(self, now: float) -> None:
        self._out.emit(PersistMeta("boot", self._out.boot.to_bytes(8, "big")))
        self._members.start(now)
        if self._parts is not None:
            self._start_parts(now)

    def _start_parts(self, now: float) -> None:
        assert self._parts is not None
        self._parts.anti_entropy.start(now)
        self._parts.replica.start(now)
        self._members.start_transfers(now)

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Effect]:
        """``now``: the driver's monotonic clock (timers, failure detection); ``wall``: the
        wall clock, for timestamps (default: ``now``, as in the simulator)."""
        out = self._out
        out.effects = []
        out.wall = now if wall is None else wall
        handler = self._on_event.get(type(event))
        if handler is not None:
            first = out.seq + 1  # request ids this event hands out start here
            try:
                handler(event, now)
            except Exception as e:
                self._failed(event, e, first)
        if self._parts is None and self._members.joined:
            self._joined(now)
        return out.take()

    def _failed(self, event: Event, error: Exception, first: int) -> None:
        """A handler raised: what it changed stays (and its effects go out, so memory and disk
        agree), the requests it registered are forgotten, and whoever asked gets an error.
        ``HandlerFailed`` tells the driver (the simulator fails the test on it)."""
        if self._parts is not None:
            self._parts.coordinator.rollback(self._out.boot << 32 | first)
        reason = f"{type(error).__name__}: {error}"
        self._out.action("HandlerFailed", self._id, type(event).__name__, reason)
        origin: Origin | None = None
        if isinstance(event, ClientRequest):
            origin = ClientOrigin(event.client, rid_of(event.msg))
        elif isinstance(event, PeerReceived) and isinstance(event.msg, Forward):
            origin = PeerOrigin(event.src, event.msg.fid, rid_of(event.msg.request))
        if origin is not None:
            self._out.error(
                origin, ErrorCode.INTERNAL_ERROR, f"{self._id} failed on the request: {reason}"
            )

    def _received(self, event: PeerReceived, now: float) -> None:
        src, msg = event.src, event.msg
        self._members.heard(src, now)
        handler = self._on_peer.get(type(msg))  # Receive, inlined: the hottest path
        if handler is None:
            self._out.action("RejectMessage", self._id, src, type(msg).__name__)
            return
        handler(src, msg, now)

    def _timer(self, event: TimerFired, now: float) -> None:
        kind, ident = event.timer
        handler = self._on_timer.get(kind)
        if handler is not None:
            handler(ident, now)

    def _client_request(self, event: ClientRequest, now: float) -> None:
        self._client(event.client, event.msg, now)

    def _storage_failed(self, event: StorageFailed, now: float) -> None:
        """The driver could not make a batch durable: the working copy returns to what is
        durable for its keys and hints, the puts of those keys fail with ``storage_error``,
        and metadata is written again. Reads go on from what is durable."""
        if self._parts is not None:
            self._parts.replica.restore(event.store, event.hints)
            self._parts.coordinator.storage_failed(frozenset(event.keys), event.reason)
        if "membership" in event.meta:
            self._members.persist_view()
        if "boot" in event.meta:
            self._out.emit(PersistMeta("boot", self._out.boot.to_bytes(8, "big")))

    def _unreachable(self, event: PeerUnreachable, now: float) -> None:
        for on_unreachable in self._on_unreachable:
            on_unreachable(event.peer, now)

    def _joined(self, now: float) -> None:
        """A seed let this node in: build the parts and start their timers."""
        self._assemble()
        self._out.cancel_timer(TimerKind.BOOTSTRAP, 0)
        self._members.start(now)
        self._start_parts(now)

    def Receive(self, src: NodeId, msg: object, now: float) -> None:
        """Dispatch a peer message to the one handler of its kind (the spec's Receive)."""
        handler = self._on_peer.get(type(msg))
        if handler is None:
            self._out.action("RejectMessage", self._id, src, type(msg).__name__)
            return
        handler(src, msg, now)

    def _store_ack(self, src: NodeId, m: StoreAck, now: float) -> None:
        # One spec action, two parts: the coordinator counts the ack, the replica drops the
        # hint it handed off. Only a handoff's ack carries versions.
        versions = self._out.decode(src, m.versions) if m.versions else ()
        if versions is None:
            return
        assert self._parts is not None
        self._parts.coordinator.StoreAck(src, m, now)
        self._parts.replica.hint_acked(src, m, versions)

    def _client(self, client: ClientId, msg: object, now: float) -> None:
        # ``object``: whatever a driver hands over, a client gets an answer, never an exception.
        origin = ClientOrigin(client, rid_of(msg))
        handler = self._on_client.get(type(msg))
        if handler is None:
            self._out.error(
                origin,
                ErrorCode.UNKNOWN_MESSAGE,
                f"unknown request {type(msg).__name__}: expected get, put, delete, join, "
                "leave, status, set_clock_skew or replica_get",
            )
            return
        handler(origin, msg, now)

    def _joining(self, origin: Origin, msg: object, now: float) -> None:
        self._out.error(
            origin,
            ErrorCode.UNAVAILABLE,
            f"{self._id} is joining the cluster through its seeds and serves nothing yet",
        )

    def _status_request(self, origin: Origin, msg: StatusRequest, now: float) -> None:
        self._out.reply(origin, self.status(now, origin.rid))

    def _suspect(self, peer: NodeId, now: float) -> None:
        self._members.suspect(peer)

    # ---- queries --------------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def joined(self) -> bool:
        """The node knows its ring and serves (a node started with only seeds waits)."""
        return self._parts is not None

    @property
    def ring(self) -> Ring:
        """The ring this node routes by: the one its membership view's claims describe.

        :raises RuntimeError: the node has not joined yet.
        """
        return self._members.ring

    @property
    def engine(self) -> Engine:
        """The working copy. :raises RuntimeError: the node has not joined yet."""
        return self._part().replica.engine

    @property
    def clock_skew(self) -> float:
        return (
            self._config.clock_skew if self._parts is None else self._parts.coordinator.clock_skew
        )

    @property
    def membership(self) -> Membership:
        """Membership as this node sees it."""
        return self._members.view

    def _part(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError(f"{self._id} has not joined a ring yet")
        return self._parts

    def suspected(self, now: float) -> frozenset[NodeId]:
        """Peers the failure detector holds down."""
        return self._members.suspected(now)

    def pending_hints(self) -> dict[NodeId, int]:
        """Owner -> number of keys this node holds hinted versions of for it."""
        return {} if self._parts is None else self._parts.replica.pending_hints()

    def last_anti_entropy(self) -> dict[NodeId, AntiEntropyRecord]:
        """Peer -> the last completed Merkle exchange with it (either side started it)."""
        return {} if self._parts is None else self._parts.anti_entropy.last()

    def in_progress(self) -> int:
        """Client requests in progress (puts, gets, forwards): 0 once every timer has fired."""
        return 0 if self._parts is None else self._parts.coordinator.pending()

    def status(self, now: float, rid: int = 0) -> StatusReply:
        parts = self._parts
        ae = {} if parts is None else parts.anti_entropy.last()
        return StatusReply(
            node=self._id,
            members=self._members.member_infos(now),
            hints=self.pending_hints(),
            anti_entropy={peer: rec.time for peer, rec in sorted(ae.items())},
            keys=0 if parts is None else len(parts.replica),
            clock_skew=self.clock_skew,
            mode=self._config.mode.value,
            ring_version=self._members.view.digest().hex()[:16],
            rid=rid,
            q=self._members.ring.q if self._members.joined else 0,
            n=self._config.n,
            clocks_ahead={} if parts is None else parts.replica.clocks_ahead(),
        )

    def spec_state(self) -> dict[str, object]:
        """This node's ``store``, ``hints``, ``putOps`` and ``getOps`` in the spec's shapes."""
        if self._parts is None:
            return {"store": {}, "hints": [], "putOps": [], "getOps": []}
        return {**self._parts.replica.spec_state(), **self._parts.coordinator.spec_state()}

    def trace_state(
        self, keys: Sequence[bytes], hints: Sequence[tuple[NodeId, bytes]]
    ) -> dict[str, object]:
        """``spec_state`` for a per-process trace line: of the store and hints only ``keys``
        and ``hints`` (what a step wrote); of the puts and gets those the step touched (after
        ``note_requests``), with the ids of those answered or gone."""
        if self._parts is None:
            return {"store": {}, "hints": [], "putOps": [], "getOps": []}
        return {
            **self._parts.replica.spec_state(keys, hints),
            **self._parts.coordinator.spec_state(noted=True),
        }

    def note_requests(self) -> None:
        """Note the requests each step touches, for ``trace_state`` (a traced node)."""
        self._noting = True
        if self._parts is not None:
            self._parts.coordinator.note_requests()
