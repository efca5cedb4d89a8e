"""What a node does in the background: gossip and membership changes, partition transfer
after a join or leave, Merkle anti-entropy and hinted handoff. ``HandoffHint`` and
``AntiEntropy`` are spec actions; the rest refines to stuttering (see ``node``'s docstring).
"""

from __future__ import annotations

import math

import msgspec

from dynamo_ref.core.effects import DropHint
from dynamo_ref.core.membership import Membership, MemberState, Status, claims_of
from dynamo_ref.core.merkle import TreeWalk
from dynamo_ref.core.messages import (
    AdminOk,
    ErrorCode,
    Gossip,
    Join,
    Leave,
    MerkleAnswer,
    MerkleQuery,
    Ping,
    SetClockSkew,
    Store,
    SyncKeys,
    SyncKeysReply,
    Transfer,
    TransferAck,
    WireVersion,
    siblings_to_wire,
)
from dynamo_ref.core.node_base import SESSION_LIFETIME, NodeCore, members_from_wire, text
from dynamo_ref.core.node_state import AntiEntropyRecord, Origin, SyncSession, TransferOp
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings
from dynamo_ref.storage.memory import item_digest


class NodeSync(NodeCore):
    """Gossip, membership, transfer, anti-entropy and handoff (see the module docstring)."""

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

    def _set_view(self, view: Membership, now: float) -> None:
        if view == self._view:
            return
        old_members = set(self._view.live_members())
        self._view = view
        self._persist_view()
        for peer in set(view.live_members()) - old_members:
            if peer != self._id and self._detector.last_heartbeat(peer) is None:
                self._detector.heartbeat(peer, now)
        ring = self._ring_of(view)
        if ring is not None and ring != self._ring:
            old, self._ring = self._ring, ring
            self._ring_changed(old, now)
        self._check_left()

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
            address = m.address if node == m.node and m.address else None
            if s is None:
                view = view.update(node, MemberState(1, Status.UP, address or node, m.zone, claims))
            elif (
                s.claims != claims or s.status is not Status.UP or address not in (None, s.address)
            ):
                view = view.update(
                    node, s.successor(status=Status.UP, address=address, claims=claims)
                )
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
        self._persist_view()
        self._action("Left", self._id)

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
