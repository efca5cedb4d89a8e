"""Anti-entropy: replicas compare their Merkle trees partition by partition and exchange the
keys that differ.

One exchange (a session) walks the peer's tree of one partition from the root down, one level
per round trip (``MerkleQuery``/``MerkleAnswer``), compares leaf digests, then sends its
versions of exactly the differing keys (``SyncKeys``); the peer merges them and answers with
its merged versions (``SyncKeysReply``), which the initiator merges in turn.

Which partitions. Each round queues, per peer, the partitions that may differ: those whose
local root changed since this node last found it equal to that peer's (or that it never
compared). ``BATCH`` exchanges per peer run at a time, and each one that ends starts the next
in the queue at once, so a replica that missed writes catches up at the speed of the network,
one sweep of its partitions after a restart; replicas in sync cost one root comparison per
round (the next partition in turn).

Spec action here: ``AntiEntropy`` (one key reconciled, in two halves: at the peer on SyncKeys,
at the initiator on the reply). Node-only step: ``MerkleExchange`` (a session begins).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from dynamo_ref.core.merkle import TreeWalk, item_digest
from dynamo_ref.core.messages import (
    MerkleAnswer,
    MerkleQuery,
    SyncKeys,
    SyncKeysReply,
    WireVersion,
    siblings_to_wire,
)
from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.core.node.outbox import Outbox, TimerKind, text
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.node.routing import Routing
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings

# Sessions that have not finished after this many request timeouts are dropped.
SESSION_LIFETIME = 10
# Partitions that may differ, compared per round (each costs a root query per peer).
BATCH = 8


@dataclass(slots=True)
class SyncSession:
    """One exchange this node started with ``peer`` over ``partition``."""

    id: int
    peer: NodeId
    partition: int
    started: float
    walk: TreeWalk | None = None  # once the peer's root is known
    keys: int = 0
    differed: bool = False  # the roots differed


@dataclass(frozen=True, slots=True)
class AntiEntropyRecord:
    """The last completed exchange with a peer, for ``status`` (``time``: wall clock)."""

    time: float
    partition: int
    keys: int


class AntiEntropy:
    """Merkle exchanges this node starts and answers (see the module docstring)."""

    def __init__(
        self,
        out: Outbox,
        config: NodeConfig,
        replica: Replica,
        routing: Routing,
        rng: random.Random,
    ) -> None:
        self._out = out
        self._config = config
        self._replica = replica
        self._routing = routing
        self._rng = rng
        self._sessions: dict[int, SyncSession] = {}
        self._cursor = 0
        self._last: dict[NodeId, AntiEntropyRecord] = {}
        # (peer, partition) -> this node's root when the two last agreed on it.
        self._agreed: dict[tuple[NodeId, int], bytes] = {}
        # Peer -> partitions to compare with it next, in order.
        self._queue: dict[NodeId, list[int]] = {}

    def start(self, now: float) -> None:
        # The first round soon, once gossip has said who is up: after a restart everything may
        # differ. Jitter keeps nodes started together from comparing in lockstep.
        cfg = self._config
        first = min(cfg.anti_entropy_interval, 2 * cfg.gossip_interval)
        self._out.set_timer(TimerKind.ANTI_ENTROPY, 0, now + first * (0.5 + self._rng.random()))

    def last(self) -> dict[NodeId, AntiEntropyRecord]:
        """Peer -> the last completed exchange with it (either side started it)."""
        return dict(self._last)

    def peer_unreachable(self, peer: NodeId, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.peer == peer]:
            del self._sessions[sid]

    def round(self, ident: int, now: float) -> None:
        """Compare, with each peer, the partitions that may differ; else the next one."""
        cfg = self._config
        self._out.set_timer(TimerKind.ANTI_ENTROPY, 0, now + cfg.anti_entropy_interval)
        stale = now - SESSION_LIFETIME * cfg.request_timeout
        for sid in [s.id for s in self._sessions.values() if s.started < stale]:
            del self._sessions[sid]
        parts = self._replicated()
        if not parts:
            return
        me = self._out.node_id
        ring = self._routing.ring
        queued = False
        for p in parts:
            root = self._replica.tree(p).root
            for peer in ring.preference_list_for_partition(p, cfg.n):
                if peer == me or self._agreed.get((peer, p)) == root:
                    continue
                queue = self._queue.setdefault(peer, [])
                if p not in queue:
                    queue.append(p)
                queued = True
        if not queued:
            p = parts[self._cursor % len(parts)]
            self._cursor += 1
            for peer in ring.preference_list_for_partition(p, cfg.n):
                if peer != me:
                    self._start(peer, p, now)
            return
        for peer in list(self._queue):
            for _ in range(BATCH):
                if not self._next(peer, now):
                    break

    def _replicated(self) -> tuple[int, ...]:
        ring = self._routing.ring
        me = self._out.node_id
        if me not in ring.nodes:
            return ()
        return ring.partitions_replicated_by(me, self._config.n)

    def _next(self, peer: NodeId, now: float) -> bool:
        """Start the next queued exchange with ``peer``; False when there is none to start."""
        queue = self._queue.get(peer)
        if not queue or self._routing.held_down(peer, now):
            return False
        while queue:
            p = queue.pop(0)
            if self._start(peer, p, now):
                return True
        return False

    def _start(self, peer: NodeId, p: int, now: float) -> bool:
        """Begin a Merkle exchange of partition ``p`` with ``peer``, unless one runs or the
        peer is held down."""
        if self._routing.held_down(peer, now) or any(
            s.peer == peer and s.partition == p for s in self._sessions.values()
        ):
            return False
        fanout, depth = self._replica.shape
        root = self._replica.tree(p).root
        s = SyncSession(self._out.new_id(), peer, p, now)
        self._sessions[s.id] = s
        self._out.action("MerkleExchange", self._out.node_id, peer, str(p))
        self._out.send(peer, MerkleQuery(s.id, p, 0, [0], root, fanout, depth))
        return True

    def merkle_query(self, src: NodeId, m: MerkleQuery, now: float) -> None:
        """Answer a peer's walk of our tree of ``m.partition``: children hashes or leaf items."""
        fanout, depth = self._replica.shape
        tree = self._replica.tree(m.partition)
        answer = MerkleAnswer(m.session, m.partition, m.level, tree.root)
        if (m.fanout, m.depth) != (fanout, depth):
            refused = f"tree shape {(fanout, depth)} differs from {(m.fanout, m.depth)}"
            answer = msgspec.structs.replace(answer, refused=refused)
        elif not 0 <= m.partition < self._routing.ring.q or not 0 <= m.level <= depth:
            answer = msgspec.structs.replace(answer, refused="no such partition or level")
        elif not all(0 <= i < fanout**m.level for i in m.indexes):
            answer = msgspec.structs.replace(answer, refused="no such tree nodes")
        elif m.level == 0 and m.root == tree.root:
            self._last[src] = AntiEntropyRecord(self._out.wall, m.partition, 0)
            answer = msgspec.structs.replace(answer, in_sync=True)
        elif m.level < depth:
            children = [list(tree.children_hashes(m.level, i)) for i in m.indexes]
            answer = msgspec.structs.replace(answer, children=children)
        else:
            leaves = [self._replica.leaf_digests(m.partition, i) for i in m.indexes]
            answer = msgspec.structs.replace(answer, leaves=leaves)
        self._out.send(src, answer)

    def merkle_answer(self, src: NodeId, m: MerkleAnswer, now: float) -> None:
        s = self._sessions.get(m.session)
        if s is None or s.peer != src or s.partition != m.partition:
            return
        if m.refused:
            self._sessions.pop(s.id, None)  # neither agreed nor worth asking again
            self._queue.pop(s.peer, None)
            return
        if m.in_sync:
            self._finish(s, now)
            return
        s.differed = True
        tree = self._replica.tree(s.partition)
        walk = s.walk
        if walk is None:
            walk = s.walk = TreeWalk(tree, m.root)
            if walk.done:
                self._finish(s, now)
                return
        fanout, depth = self._replica.shape
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
                self._finish(s, now)
                return
            s.keys = len(keys)
            items = [(k, siblings_to_wire(self._replica.get(k))) for k in sorted(keys)]
            self._out.send(src, SyncKeys(s.id, s.partition, items))
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
            self._finish(s, now)
            return
        level = depth if walk.wants_leaves else walk.level
        root = tree.root
        self._out.send(
            src, MerkleQuery(s.id, s.partition, level, list(walk.wanted), root, fanout, depth)
        )

    def sync_keys(self, src: NodeId, m: SyncKeys, now: float) -> None:
        """The peer's versions of the differing keys: merge each, answer with the result."""
        me = self._out.node_id
        out: list[tuple[bytes, list[WireVersion]]] = []
        for key, wire in m.items:
            theirs = self._out.decode(src, wire)
            if theirs is None:
                return
            merged = self.AntiEntropy(src, me, key, theirs)
            out.append((key, siblings_to_wire(merged)))
        self._last[src] = AntiEntropyRecord(self._out.wall, m.partition, len(out))
        self._out.send(src, SyncKeysReply(m.session, m.partition, out))

    def sync_keys_reply(self, src: NodeId, m: SyncKeysReply, now: float) -> None:
        s = self._sessions.get(m.session)
        if s is None or s.peer != src:
            return
        me = self._out.node_id
        for key, wire in m.items:
            theirs = self._out.decode(src, wire)
            if theirs is not None:
                self.AntiEntropy(me, src, key, theirs)
        self._finish(s, now)

    def AntiEntropy(self, i: NodeId, j: NodeId, key: bytes, theirs: Siblings) -> Siblings:
        """Replicas ``i`` (initiator) and ``j`` reconcile ``key``: this node's half."""
        held = self._replica.get(key)
        if held == theirs:
            return held
        self._out.action("AntiEntropy", i, j, text(key))
        return self._replica.merge(key, theirs)

    def _finish(self, s: SyncSession, now: float) -> None:
        self._sessions.pop(s.id, None)
        self._last[s.peer] = AntiEntropyRecord(self._out.wall, s.partition, s.keys)
        if s.differed:
            self._agreed.pop((s.peer, s.partition), None)  # merged; the next round confirms
        else:
            self._agreed[(s.peer, s.partition)] = self._replica.tree(s.partition).root
        # Go on with the next partition queued for this peer at once.
        self._next(s.peer, now)
