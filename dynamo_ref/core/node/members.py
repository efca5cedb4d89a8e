"""Membership: who is in the cluster, which partitions each claims, and who seems down.

It owns the node's gossiped view (``core.membership.Membership``), the ring that the view's
claims describe (``ring_from_claims``), the local failure detector, joining through seeds, the
admin join and leave, and the transfer of partitions after the ring changes. The other parts see
it as ``Routing``.

Bootstrap. A node started with a ring (a new cluster's, or one derived from its saved view)
serves at once. A node started with only seeds sends ``JoinRequest`` to one seed after another
until a view that gives it partitions comes back as gossip; until then it serves nothing.

Transfer. When the ring changes, every partition this node holds but no longer replicates is
sent, in chunks, to its new replicas (``TransferPartition``); writes that arrive meanwhile change
the partition's Merkle root, and the partition is sent again. Only when every transfer of a
partition is acked is it dropped (``DropPartition``). A leaving node whose data has all moved
marks itself as left (``Left``).

Spec actions here (the spec has one ring change, the node any number): ``ChangeView``
(``_set_view`` adopting a view whose claims describe a new ring; no action line of its own),
``TransferPartition``, ``ReceiveTransfer``, ``RefuseTransfer``, ``TransferAck`` (no action
line) and ``DropPartition``. A transfer of a partition this node does not replicate on its own
ring is refused without an ack: it has not learnt the change yet, and were it to ack, it could
hand the partition back and both nodes would drop it on each other's ack. Gossip, the failure
detector, joining and admin join and leave are node-only steps that change no spec variable.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from dynamo_ref.core.effects import PersistMeta
from dynamo_ref.core.membership import (
    Membership,
    MemberState,
    PhiAccrualDetector,
    Status,
    claims_of,
    ring_from_claims,
    view_claims,
)
from dynamo_ref.core.messages import (
    AdminOk,
    ErrorCode,
    Gossip,
    Join,
    JoinRequest,
    Leave,
    LeaveRequest,
    MemberInfo,
    Ping,
    Pong,
    Transfer,
    TransferAck,
    WireMember,
    siblings_to_wire,
)
from dynamo_ref.core.node.config import DurableState, NodeConfig
from dynamo_ref.core.node.outbox import Origin, Outbox, TimerKind
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.ring import MAX_Q, Ring
from dynamo_ref.core.vclock import NodeId

_MEMBERS_ENCODER = msgspec.msgpack.Encoder()
_MEMBERS_DECODER = msgspec.msgpack.Decoder(list[WireMember])


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


@dataclass(slots=True)
class TransferOp:
    """Handing ``partition`` to ``target`` in chunks of keys; ``root`` is the partition's
    Merkle root when the key list was taken, to notice writes that came in meanwhile."""

    id: int
    partition: int
    target: NodeId
    keys: list[bytes]
    root: bytes
    next: int = 0
    sent_at: float = -math.inf
    done: bool = False


class Members:
    """The membership part of a node (see the module docstring)."""

    def __init__(
        self,
        out: Outbox,
        config: NodeConfig,
        rng: random.Random,
        *,
        ring: Ring | None,
        seeds: Sequence[NodeId],
        durable: DurableState,
        addresses: Mapping[NodeId, str],
        zone: str | None,
    ) -> None:
        # ``addresses``: where peers reach each node (a real driver's "host:port"); the initial
        # view uses them, and this node's own entry is restated when its address changed.
        me = out.node_id
        self._out = out
        self._config = config
        self._rng = rng
        self._address = addresses.get(me)
        self._zone = zone
        self._seeds = tuple(s for s in seeds if s != me)
        self._target_n = config.n if ring is None else ring.target_n
        saved = durable.meta.get("membership")
        view = Membership()
        if ring is not None:
            view = Membership(
                {
                    n: MemberState(
                        0, Status.UP, addresses.get(n, n), ring.zone(n), ring.partitions_of(n)
                    )
                    for n in ring.nodes
                }
            )
        # Unreadable: the ring and gossip give it back.
        saved_view = Membership()
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            if saved is not None:
                q = MAX_Q if ring is None else ring.q
                saved_view = members_from_wire(_MEMBERS_DECODER.decode(saved), q)
                view = view.merge(saved_view)
        # Where peers last knew this node to be, if it was a member before this start.
        known = saved_view.get(me)
        self._known_address = None if known is None else known.address
        self._view = view
        derived = self._ring_of(view, None if ring is None else ring.q)
        if derived is not None:
            ring = derived
        if ring is None and not self._seeds:
            # Nobody to ask: a cluster of one.
            ring = config.initial_ring([me])
            self._view = self._initial_view(ring, addresses)
        self._ring: Ring | None = ring
        self._detector = PhiAccrualDetector(
            threshold=config.phi_threshold,
            window=max(config.detector_window, 2),
            min_std=config.detector_min_std,
            acceptable_pause=config.detector_pause,
            first_interval=config.gossip_interval,
        )
        self._suspects: set[NodeId] = set()
        self._reported_down: frozenset[NodeId] = frozenset()  # last Suspect/Trust said
        self._heartbeat_gap = config.gossip_interval / 2
        self._last_heard: dict[NodeId, float] = {}
        self._seed_heard = not self._seeds
        self._seed_cursor = 0
        self._last_replicas: tuple[Ring | None, bytes, tuple[NodeId, ...]] = (None, b"", ())
        self._replica: Replica | None = None
        self._transfers: dict[int, TransferOp] = {}

    @staticmethod
    def _initial_view(ring: Ring, addresses: Mapping[NodeId, str]) -> Membership:
        return Membership(
            {
                n: MemberState(
                    0, Status.UP, addresses.get(n, n), ring.zone(n), ring.partitions_of(n)
                )
                for n in ring.nodes
            }
        )

    def attach(self, replica: Replica) -> None:
        """The store whose partitions move when the ring changes."""
        self._replica = replica

    # ---- routing, for the other parts -----------------------------------------------------

    @property
    def joined(self) -> bool:
        """This node knows its ring (it was started with one, or a seed let it join)."""
        return self._ring is not None

    @property
    def ring(self) -> Ring:
        if self._ring is None:
            raise RuntimeError(f"{self._out.node_id} has not joined a ring yet")
        return self._ring

    @property
    def view(self) -> Membership:
        return self._view

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        """The key's preference list of N, remembered for the last key: a client request looks
        it up to route, then again to coordinate."""
        ring, last, replicas = self._last_replicas
        if ring is not self._ring or key != last:
            ring = self.ring
            replicas = ring.preference_list(key, self._config.n)
            self._last_replicas = (ring, key, replicas)
        return replicas

    def fallbacks(self, key: bytes) -> tuple[NodeId, ...]:
        primaries = self.replicas(key)
        return self.ring.extended_preference_list(key, self._config.n)[len(primaries) :]

    # ---- the failure detector -------------------------------------------------------------

    def heard(self, peer: NodeId, now: float) -> None:
        self._suspects.discard(peer)
        self._last_heard[peer] = now
        if peer in self._seeds:
            self._seed_heard = True
        last = self._detector.last_heartbeat(peer)
        # At most one heartbeat per half interval: bursts of requests would teach phi that
        # silence of a second is abnormal.
        if last is None or now - last >= self._heartbeat_gap:
            self._detector.heartbeat(peer, now)

    def held_down(self, peer: NodeId, now: float) -> bool:
        if peer == self._out.node_id:
            return False
        if peer in self._suspects:
            return True
        last = self._detector.last_heartbeat(peer)
        return last is not None and now >= last and not self._detector.is_available(peer, now)

    def suspect(self, peer: NodeId) -> None:
        if peer != self._out.node_id:
            self._suspects.add(peer)

    def suspected(self, now: float) -> frozenset[NodeId]:
        """Peers the failure detector holds down."""
        me = self._out.node_id
        return frozenset(n for n in self._view if n != me and self.held_down(n, now))

    # ---- starting -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """A node with a ring: restate its address if it moved, then gossip. Without one:
        ask a seed to let it join."""
        if self._ring is None:
            self.bootstrap_round(0, now)
            return
        me = self._out.node_id
        own = self._view.get(me)
        # Restarted, perhaps at a new address (its view, or where peers last knew it, says
        # another): a newer incarnation of its own entry spreads it.
        moved = own is not None and self._address not in (own.address, None)
        if own is not None and self._address is not None and self._known_address is not None:
            moved = moved or self._known_address != self._address
        # Without a saved view, peers may still know an older address: restate after any
        # restart. A stale copy of the claims in it is undone by the claimant.
        if own is not None and self._address is not None and (moved or self._out.boot > 1):
            self._view = self._view.update(me, own.successor(address=self._address))
            self._persist_view()
        for peer in self._view.live_members():
            if peer != me:
                self._detector.heartbeat(peer, now)
        # Jitter keeps nodes started together from gossiping in lockstep.
        self._out.set_timer(
            TimerKind.GOSSIP, 0, now + self._config.gossip_interval * self._rng.random()
        )

    def start_transfers(self, now: float) -> None:
        self._out.set_timer(TimerKind.TRANSFER, 0, now + self._config.transfer_interval)

    def bootstrap_round(self, ident: int, now: float) -> None:
        """Ask the next seed to let this node join; again after a gossip interval, until a
        view that gives it partitions arrives."""
        if self._ring is not None or not self._seeds:
            return
        me = self._out.node_id
        seed = self._seeds[self._seed_cursor % len(self._seeds)]
        self._seed_cursor += 1
        self._out.action("JoinRequest", me, seed)
        self._out.send(seed, JoinRequest(me, self._address or me, self._zone))
        self._out.set_timer(TimerKind.BOOTSTRAP, 0, now + self._config.gossip_interval)

    @property
    def claimant(self) -> NodeId:
        """The member that makes every ring change (the lowest id), so that two changes are
        never made at once from the same ring: their claims would overlap."""
        return min(self.ring.nodes)

    def join_request(self, src: NodeId, m: JoinRequest, now: float) -> None:
        """Bootstrap at a seed (passed on to the claimant), or an admin's join at the
        claimant: admit the node, or tell a member again what it missed."""
        me = self._out.node_id
        if self._ring is None:
            return  # not serving yet itself: the joiner asks another seed
        passed_on = src != m.node
        if passed_on and src not in self._view:
            self._out.action("RejectMessage", me, src, f"a join request for {m.node!r}")
            return
        if not passed_on and self.claimant != me:
            # Once, with this node's view: the claimant acts on what it gets.
            self._out.send(
                self.claimant, msgspec.structs.replace(m, view=self._wire_view(self._view))
            )
            return
        self._learn(src, m.view, now)
        if m.node not in self.ring.nodes:
            try:
                self._admit(m.node, m.address or None, m.zone, now)
            except ValueError as e:
                self._out.action("RejectMessage", me, src, f"cannot join {m.node!r}: {e}")
            return
        s = self._view.get(m.node)
        if s is not None and m.address and s.address != m.address:
            self._set_view(self._view.update(m.node, s.successor(address=m.address)), now)
        self._out.send(m.node, Gossip(self._wire_view(self._view), True))

    def leave_request(self, src: NodeId, m: LeaveRequest, now: float) -> None:
        """An admin's leave, passed on by a member to the claimant."""
        me = self._out.node_id
        if self._ring is None or src not in self._view:
            self._out.action("RejectMessage", me, src, f"a leave request for {m.node!r}")
            return
        self._learn(src, m.view, now)
        with contextlib.suppress(ValueError, RuntimeError):
            self._remove(m.node, now)

    def _learn(self, src: NodeId, view: list[WireMember], now: float) -> None:
        """Merge the view a member passed on with its request."""
        if not view or self._ring is None:
            return
        try:
            theirs = members_from_wire(view, self._ring.q)
        except ValueError as e:
            self._out.action("RejectMessage", self._out.node_id, src, str(e))
            return
        self._set_view(self._view.merge(theirs), now)

    # ---- gossip ---------------------------------------------------------------------------

    def gossip_round(self, ident: int, now: float) -> None:
        """Exchange membership with one peer (seeds until one answers); ping quiet peers."""
        cfg = self._config
        self._out.set_timer(
            TimerKind.GOSSIP, 0, now + cfg.gossip_interval * (0.75 + 0.5 * self._rng.random())
        )
        me = self._out.node_id
        peer: NodeId | None
        if self._seeds and not self._seed_heard:
            peer = self._seeds[self._seed_cursor % len(self._seeds)]
            self._seed_cursor += 1
        else:
            peer = self._view.pick_gossip_peer(me, self._rng.random())
        if peer is not None:
            self._out.action("Gossip", me, peer)
            self._out.send(peer, Gossip(self._wire_view(self._view), True))
        for other in self._view.live_members():
            if other in (me, peer):
                continue
            if now - self._last_heard.get(other, -math.inf) >= cfg.gossip_interval:
                self._out.send(other, Ping())
        # What the detector concludes, once per change (node-only steps, for logs and traces).
        down = self.suspected(now)
        for other in sorted(down - self._reported_down):
            self._out.action("Suspect", me, other)
        for other in sorted(self._reported_down - down):
            self._out.action("Trust", me, other)
        self._reported_down = down

    def gossip_received(self, src: NodeId, m: Gossip, now: float) -> None:
        me = self._out.node_id
        try:
            theirs = members_from_wire(m.members, MAX_Q if self._ring is None else self._ring.q)
        except ValueError as e:
            self._out.action("RejectMessage", me, src, str(e))
            return
        self._out.action("GossipMerge", me, src)
        self._seed_heard = True  # in touch with the cluster: gossip with anyone from now on
        self._set_view(self._view.merge(theirs), now)
        if m.reply:
            self._out.send(src, Gossip(self._wire_view(self._view.missing_from(theirs)), False))

    def ping(self, src: NodeId, m: Ping, now: float) -> None:
        self._out.send(src, Pong())

    def pong(self, src: NodeId, m: Pong, now: float) -> None:
        """Nothing to do: hearing from ``src`` (``heard``) was the point."""

    def _set_view(self, view: Membership, now: float, *, change: bool = False) -> None:
        """Adopt ``view``; ``change``: the claimant changes the ring with it."""
        me = self._out.node_id
        if not change and self._ring is not None and me == self.claimant:
            view = self._restate_claims(view)
        if view == self._view:
            return
        old_members = set(self._view.live_members())
        self._view = view
        self._persist_view()
        for peer in set(view.live_members()) - old_members:
            if peer != me and self._detector.last_heartbeat(peer) is None:
                self._detector.heartbeat(peer, now)
        ring = self._ring_of(view, None if self._ring is None else self._ring.q)
        if ring is not None and ring != self._ring:
            old, self._ring = self._ring, ring
            if old is None:
                if me not in ring.nodes:
                    self._ring = None  # a view that does not take this node in yet
                    return
                self._seeds = ()  # joined: the view names every member
                self._seed_heard = True
                self._out.action("Joined", me)
                return
            self._ring_changed(old, now)
        self._check_left()

    def _restate_claims(self, view: Membership) -> Membership:
        """The claimant's answer to a view whose claims differ from its ring: only it changes
        claims, so any other claims are stale (a restarted node restating its own entry, say)
        and it states its own again, each at a newer incarnation."""
        ring = self.ring
        if self._ring_of(view, ring.q) == ring:
            return view
        for n, s in view.items():
            want = claims_of(ring.partitions_of(n)) if n in ring.nodes else ()
            if s.claims != want:
                view = view.update(n, s.successor(claims=want))
        return view

    def _ring_of(self, view: Membership, q: int | None) -> Ring | None:
        """The ring the view's claims describe; None while they overlap or leave gaps."""
        try:
            return ring_from_claims(view_claims(view), q, self._target_n)
        except ValueError:
            return None

    def persist_view(self) -> None:
        """Write the view durably again (a batch that held it failed)."""
        self._persist_view()

    def _persist_view(self) -> None:
        self._out.emit(
            PersistMeta("membership", _MEMBERS_ENCODER.encode(self._wire_view(self._view)))
        )

    def _wire_view(self, view: Membership) -> list[WireMember]:
        return [member_to_wire(n, s) for n, s in view.items()]

    def member_infos(self, now: float) -> list[MemberInfo]:
        down = self.suspected(now)
        return [
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

    # ---- join and leave -------------------------------------------------------------------

    def admin_join(self, origin: Origin, m: Join, now: float) -> None:
        """``m.node`` joins: it claims partitions from the others, and the view spreads.
        Checked here, made by the claimant."""
        try:
            self.ring.join(m.node, m.zone)
        except ValueError as e:
            self._out.error(origin, ErrorCode.INVALID_REQUEST, f"cannot join {m.node!r}: {e}")
            return
        claimant = self.claimant
        if claimant != self._out.node_id:
            view = self._wire_view(self._view)
            self._out.send(claimant, JoinRequest(m.node, m.address or "", m.zone, view))
            self._out.reply(
                origin,
                AdminOk(
                    f"{m.node} joins through the claimant {claimant}, which assigns its "
                    "partitions; `status` shows them",
                    origin.rid,
                ),
            )
            return
        taken = self._admit(m.node, m.address, m.zone, now)
        self._out.reply(
            origin, AdminOk(f"{m.node} joined and claims {taken} partitions", origin.rid)
        )

    def _admit(self, node: NodeId, address: str | None, zone: str | None, now: float) -> int:
        """``node`` claims partitions; returns how many.

        :raises ValueError: the ring cannot take it (already a member, a zone missing).
        """
        ring = self.ring.join(node, zone)
        view = self._view
        for n in ring.nodes:
            claims = claims_of(ring.partitions_of(n))
            s = view.get(n)
            addr = address if n == node and address else None
            if s is None:
                view = view.update(n, MemberState(1, Status.UP, addr or n, zone, claims))
            elif s.claims != claims or s.status is not Status.UP or addr not in (None, s.address):
                view = view.update(n, s.successor(status=Status.UP, address=addr, claims=claims))
        self._out.action("AdminJoin", self._out.node_id, node)
        self._set_view(view, now, change=True)
        self._out.send(node, Gossip(self._wire_view(view), True))
        return len(ring.partitions_of(node))

    def admin_leave(self, origin: Origin, m: Leave, now: float) -> None:
        """``m.node`` leaves: its partitions go to the others, which it hands its data.
        Checked here, made by the claimant."""
        if m.node not in self.ring.nodes:
            self._out.error(origin, ErrorCode.NOT_FOUND, f"{m.node!r} is not in the ring")
            return
        try:
            self.ring.leave(m.node)
        except ValueError as e:
            self._out.error(origin, ErrorCode.INVALID_REQUEST, f"cannot remove {m.node!r}: {e}")
            return
        claimant = self.claimant
        if claimant != self._out.node_id:
            self._out.send(claimant, LeaveRequest(m.node, self._wire_view(self._view)))
            detail = f"{m.node} leaves through the claimant {claimant}; its partitions move"
        else:
            self._remove(m.node, now)
            detail = f"{m.node} is leaving; its partitions move"
        self._out.reply(origin, AdminOk(detail, origin.rid))

    def _remove(self, node: NodeId, now: float) -> None:
        """:raises ValueError: the ring cannot lose ``node`` (not a member, the last one)."""
        ring = self.ring.leave(node)
        view = self._view
        for n, s in view.items():
            if n == node:
                view = view.update(n, s.successor(status=Status.LEAVING, claims=()))
            elif n in ring.nodes:
                claims = claims_of(ring.partitions_of(n))
                if claims != s.claims:
                    view = view.update(n, s.successor(claims=claims))
        self._out.action("AdminLeave", self._out.node_id, node)
        self._set_view(view, now, change=True)
        self._out.send(node, Gossip(self._wire_view(view), True))

    # ---- partition transfer ---------------------------------------------------------------

    def _store(self) -> Replica:
        if self._replica is None:
            raise RuntimeError("no store attached")
        return self._replica

    def _ring_changed(self, old: Ring, now: float) -> None:
        """Hand every partition this node holds but no longer replicates to its new replicas."""
        if self._replica is None:
            return
        n = self._config.n
        me = self._out.node_id
        ring = self.ring
        busy = {(t.partition, t.target) for t in self._transfers.values() if not t.done}
        for p in self._replica.partitions():
            replicas = ring.preference_list_for_partition(p, n)
            if me in replicas:
                continue
            before = old.preference_list_for_partition(p, n)
            for target in [x for x in replicas if x not in before] or list(replicas):
                if (p, target) not in busy:
                    self._start_transfer(p, target, now)

    def _start_transfer(self, p: int, target: NodeId, now: float) -> None:
        store = self._store()
        t = TransferOp(self._out.new_id(), p, target, store.keys(p), store.tree(p).root)
        self._transfers[t.id] = t
        self._send_chunk(t, now)

    def _send_chunk(self, t: TransferOp, now: float) -> None:
        store = self._store()
        chunk = t.keys[t.next : t.next + self._config.transfer_chunk]
        items = [(k, siblings_to_wire(store.get(k))) for k in chunk]
        last = t.next + len(chunk) >= len(t.keys)
        t.sent_at = now
        self._out.action("TransferPartition", self._out.node_id, t.target, str(t.partition))
        self._out.send(t.target, Transfer(t.id, t.partition, items, last))

    def transfer_received(self, src: NodeId, m: Transfer, now: float) -> None:
        store = self._store()
        me = self._out.node_id
        try:
            replicas = self.ring.preference_list_for_partition(m.partition, self._config.n)
        except ValueError as e:
            self._out.action("RejectMessage", me, src, f"a transfer: {e}")
            return
        if me not in replicas:
            # Not a replica on this node's ring yet (it has not learnt the change): an ack would
            # let the sender drop the partition while this node may hand it back and drop it
            # too (spec/Dynamo.tla, mutant 28). No ack: the sender keeps it and sends it again.
            self._out.action("RefuseTransfer", me, src, str(m.partition))
            return
        self._out.action("ReceiveTransfer", me, src, str(m.partition))
        for key, wire in m.items:
            versions = self._out.decode(src, wire)
            if versions is None:
                return  # no ack: the sender retries, and a bad chunk stays visible
            store.merge(key, versions)
        self._out.send(src, TransferAck(m.tid, m.partition))

    def transfer_ack(self, src: NodeId, m: TransferAck, now: float) -> None:
        t = self._transfers.get(m.tid)
        if t is None or t.target != src or t.done:
            return
        t.next += self._config.transfer_chunk
        if t.next < len(t.keys):
            self._send_chunk(t, now)
            return
        store = self._store()
        root = store.tree(t.partition).root
        if root != t.root:
            # Writes arrived while the transfer ran: send the partition again.
            t.keys, t.root, t.next = store.keys(t.partition), root, 0
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
        me = self._out.node_id
        if me in self.ring.preference_list_for_partition(p, self._config.n):
            return  # the ring changed back: keep it
        self._out.action("DropPartition", me, str(p))
        store = self._store()
        for key in store.keys(p):
            store.write(key, ())
        self._check_left()

    def transfer_round(self, ident: int, now: float) -> None:
        """Resend transfer chunks that were not acked within an interval."""
        interval = self._config.transfer_interval
        self._out.set_timer(TimerKind.TRANSFER, 0, now + interval)
        for t in list(self._transfers.values()):
            if not t.done and now - t.sent_at >= interval and not self.held_down(t.target, now):
                self._send_chunk(t, now)

    def _check_left(self) -> None:
        """A leaving node whose data has all moved marks itself as left."""
        me = self._out.node_id
        own = self._view.get(me)
        if own is None or own.status is not Status.LEAVING or own.claims:
            return
        if self._replica is None or self._transfers:
            return
        n = self._config.n
        ring = self.ring
        if any(
            me not in ring.preference_list_for_partition(p, n) for p in self._replica.partitions()
        ):
            return
        self._view = self._view.update(me, own.successor(status=Status.LEFT))
        self._persist_view()
        self._out.action("Left", me)
