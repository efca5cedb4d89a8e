"""The replica: what a node stores for itself and holds for others.

It owns the node's engine (sibling sets per key with their Merkle trees, and hinted versions
kept for an owner that was down), the tombstones waiting to be reaped, and every change to
them: each change is made in memory and stated as a durable effect in the same step.

Spec actions here: ``ReplicaStore`` (a Store arrives), ``ReplicaRead`` (a Read arrives),
``HandoffHint`` (hinted versions go back to their owner, dropped when it acks),
``ReapTombstone`` (``reap_timer``: the other replicas are told, the key dropped here) and
``ReplicaReap`` (``reap_received``), each logged when it is taken; the key goes only if it
still holds exactly the tombstones: a sibling written since keeps it. The spec's
``ReapQuiet`` guard is what ``reap_delay`` stands for: the delay must outlast every older message
and request of the key, or a late read repair writes a reaped version back. Node-only:
``ClockAhead`` (a writer's timestamps run ahead) and ``replica_get`` (the fault harness reads
this node's own versions; no action).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial

import icontract

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.effects import DropHint, Persist, PersistHint
from dynamo_ref.core.merkle import MerkleTree
from dynamo_ref.core.messages import (
    ErrorCode,
    Read,
    ReadResp,
    Reap,
    ReplicaGet,
    ReplicaVersions,
    Store,
    StoreAck,
    decode_wire_siblings,
    siblings_to_wire,
)
from dynamo_ref.core.node.config import DurableState, NodeConfig
from dynamo_ref.core.node.outbox import (
    Origin,
    Outbox,
    TimerKind,
    spec_version,
    text,
    trace_version,
)
from dynamo_ref.core.node.routing import Routing
from dynamo_ref.core.node_versions import is_reconciled, reconcile_mode
from dynamo_ref.core.ring import RING_BITS, hash_key
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings, Version, sort_key
from dynamo_ref.storage.engine import Engine, EngineFactory


def canonical(versions: Iterable[Version]) -> Siblings:
    """Distinct versions in canonical order (hints keep every version, as the spec does)."""
    return tuple(sorted(set(versions), key=sort_key))


def _partition(key: bytes, shift: int) -> int:
    return hash_key(key) >> shift


class Replica:
    """The node's store and hints (see the module docstring)."""

    def __init__(
        self,
        out: Outbox,
        config: NodeConfig,
        routing: Routing,
        *,
        engine: EngineFactory,
        q: int,
        durable: DurableState,
    ) -> None:
        self._out = out
        self._config = config
        self._routing = routing
        self._mode = config.mode
        # The partition count never changes, so neither does a key's partition.
        self._engine: Engine = engine(
            partial(_partition, shift=RING_BITS - (q.bit_length() - 1)),
            fanout=config.merkle_fanout,
            depth=config.merkle_depth,
        )
        for key, siblings in durable.store.items():
            if siblings:
                self._engine.put(key, reconcile_mode(self._mode, siblings))
        for (owner, key), siblings in durable.hints.items():
            self._engine.put_hint(owner, key, canonical(siblings))
        self._reaps: dict[int, tuple[bytes, Siblings]] = {}
        self._ahead: dict[NodeId, float] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def start(self, now: float) -> None:
        self._out.set_timer(TimerKind.HANDOFF, 0, now + self._config.handoff_interval)

    # ---- the store, for the other parts ---------------------------------------------------

    def get(self, key: bytes) -> Siblings:
        return self._engine.get(key)

    def get_raw(self, key: bytes) -> bytes | None:
        return self._engine.get_raw(key)

    @icontract.require(
        # ``reconcile_mode(self._mode, siblings) == siblings``, stated without a second
        # reconcile (and its own contracts) per write; one version costs nothing.
        lambda self, siblings: is_reconciled(self._mode, siblings),
        "the store holds an antichain in canonical order: nothing dominated, nothing twice",
        enabled=ENABLED,
    )
    def write(self, key: bytes, siblings: Siblings) -> None:
        """Replace the key's sibling set (empty: remove the key), in memory and durably."""
        self._engine.put(key, siblings)
        self._out.emit(Persist(key, siblings, self._engine.get_raw(key)))

    def merge(
        self, key: bytes, versions: Iterable[Version], held: Siblings | None = None
    ) -> Siblings:
        """Reconcile ``versions`` into the key's sibling set; write it if it changed.

        ``held``: what the engine holds for ``key``, when the caller has just read it.
        """
        if held is None:
            held = self._engine.get(key)
        merged = reconcile_mode(self._mode, (*held, *versions))
        if merged != held:
            self.write(key, merged)
        return merged

    def keys(self, partition: int) -> list[bytes]:
        return self._engine.keys(partition)

    def partitions(self) -> list[int]:
        return self._engine.partitions()

    def tree(self, partition: int) -> MerkleTree:
        return self._engine.tree(partition)

    def leaf_digests(self, partition: int, index: int) -> list[tuple[bytes, bytes]]:
        return self._engine.leaf_digests(partition, index)

    @property
    def shape(self) -> tuple[int, int]:
        return self._engine.shape

    def __len__(self) -> int:
        return len(self._engine)

    # ---- hints ----------------------------------------------------------------------------

    @icontract.require(
        lambda self, owner: owner != self._out.node_id,
        "a node never holds hints for itself",
        enabled=ENABLED,
    )
    def add_hint(self, owner: NodeId, key: bytes, versions: Siblings) -> None:
        held = self._engine.get_hint(owner, key)
        merged = canonical((*held, *versions))
        if merged != held:
            self._engine.put_hint(owner, key, merged)
            self._out.emit(PersistHint(owner, key, merged))

    def _drop_hint_versions(self, owner: NodeId, key: bytes, versions: Siblings) -> None:
        held = self._engine.get_hint(owner, key)
        if not held:
            return
        rest = tuple(v for v in held if v not in versions)
        if rest == held:
            return
        self._engine.put_hint(owner, key, rest)
        self._out.emit(PersistHint(owner, key, rest) if rest else DropHint(owner, key))

    def _watch_clocks(self, versions: Siblings) -> None:
        """Note writers whose timestamps run ahead of this node's wall clock (each new worst
        case once: ``ClockAhead``)."""
        wall = self._out.wall
        limit = self._config.skew_warning
        for v in versions:
            ahead = v.timestamp - wall
            if ahead > limit and ahead > self._ahead.get(v.writer, 0.0) + limit:
                self._ahead[v.writer] = ahead
                self._out.action("ClockAhead", self._out.node_id, v.writer, f"{ahead:.3f}")

    def clocks_ahead(self) -> dict[NodeId, float]:
        """Writer -> the most its timestamps have run ahead of this node's clock (past the
        warning level)."""
        return dict(self._ahead)

    def restore(
        self,
        store: Mapping[bytes, Siblings] | None,
        hints: Mapping[tuple[NodeId, bytes], Siblings] | None,
    ) -> None:
        """A durable batch failed: the working copy goes back to what the disk holds for the
        keys and hints it would have written (read back by the driver)."""
        for key, siblings in (store or {}).items():
            self._engine.put(key, reconcile_mode(self._mode, siblings) if siblings else ())
        for (owner, key), siblings in (hints or {}).items():
            self._engine.put_hint(owner, key, canonical(siblings))

    def pending_hints(self) -> dict[NodeId, int]:
        """Owner -> number of keys this node holds hinted versions of for it."""
        counts: dict[NodeId, int] = {}
        for owner, _ in self._engine.hints():
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    # ---- spec actions ---------------------------------------------------------------------

    def ReplicaStore(self, src: NodeId, m: Store, now: float) -> None:
        """Store the versions, or keep them as a hint for replica ``m.hint``; ack puts and
        handoffs."""
        versions = self._out.decode(src, m.versions)
        if versions is None:
            return
        me = self._out.node_id
        self._watch_clocks(versions)
        self._out.action("ReplicaStore", me, src, text(m.key), str(m.op), m.hint or "")
        if m.hint is None or m.hint == me:
            self.merge(m.key, versions)
        else:
            self.add_hint(m.hint, m.key, versions)
        self._ack_store(src, m)

    def _ack_store(self, src: NodeId, m: Store) -> None:
        """Ack a put's store, or a handoff with its versions echoed for the sender to drop (the
        only ack that drops anything); a read repair is not acked."""
        if m.hint == self._out.node_id:
            self._out.send(src, StoreAck(m.op, m.key, m.versions, m.hint))
        elif m.op != 0:
            self._out.send(src, StoreAck(m.op, m.key, [], m.hint))

    def hint_acked(self, src: NodeId, m: StoreAck, versions: Siblings) -> None:
        """The second half of ``StoreAck``: the owner has the versions handed to it."""
        if m.hint == src:
            self._drop_hint_versions(src, m.key, versions)

    def ReplicaRead(self, src: NodeId, m: Read, now: float) -> None:
        """Answer a read with this node's versions (and, as a fallback, its hinted ones)."""
        me = self._out.node_id
        self._out.action("ReplicaRead", me, src, text(m.key), str(m.op))
        if m.hint is not None and m.hint != me:
            held = self._engine.get(m.key)
            held = reconcile_mode(self._mode, (*held, *self._engine.get_hint(m.hint, m.key)))
            self._out.send(src, ReadResp(m.op, m.key, siblings_to_wire(held)))
        else:
            # The stored bytes are the wire form already: no Version objects in between.
            raw = self._engine.get_raw(m.key)
            wire = [] if raw is None else decode_wire_siblings(raw)
            self._out.send(src, ReadResp(m.op, m.key, wire))

    def handoff_round(self, ident: int, now: float) -> None:
        """Hand hinted versions to owners that are reachable again (a batch per round)."""
        self._out.set_timer(TimerKind.HANDOFF, 0, now + self._config.handoff_interval)
        routing = self._routing
        nodes = routing.ring.nodes
        sent = 0
        for owner, key in self._engine.hints():
            if sent >= self._config.handoff_batch:
                break
            if owner not in nodes:
                self._rehome_hint(owner, key)
            elif not routing.held_down(owner, now):
                self.HandoffHint(owner, key)
                sent += 1

    def HandoffHint(self, owner: NodeId, key: bytes) -> None:
        """Send ``owner`` the versions held for it; they go when it acks (``hint_acked``)."""
        versions = self._engine.get_hint(owner, key)
        if versions:
            self._out.action("HandoffHint", self._out.node_id, owner, text(key))
            self._out.send(owner, Store(0, key, siblings_to_wire(versions), owner))

    def _rehome_hint(self, owner: NodeId, key: bytes) -> None:
        # The owner left the ring: the key's first replica takes the hint's place.
        versions = self._engine.get_hint(owner, key)
        self._engine.put_hint(owner, key, ())
        self._out.emit(DropHint(owner, key))
        heir = self._routing.replicas(key)[0]
        if heir == self._out.node_id:
            self.merge(key, versions)
        else:
            self.add_hint(heir, key, versions)

    # ---- reaping tombstones ---------------------------------------------------------------

    def schedule_reap(self, key: bytes, tombstones: Siblings, now: float) -> None:
        """Every replica is known to hold ``tombstones``: reap them after the reap delay."""
        if any(k == key and t == tombstones for k, t in self._reaps.values()):
            return
        rid = self._out.new_id()
        self._reaps[rid] = (key, tombstones)
        self._out.set_timer(TimerKind.REAP, rid, now + self._config.reap_delay)

    def reap_timer(self, ident: int, now: float) -> None:
        """Tell every replica to drop the key (itself included)."""
        entry = self._reaps.pop(ident, None)
        if entry is None:
            return
        key, tombstones = entry
        wire = siblings_to_wire(tombstones)
        me = self._out.node_id
        self._out.action("ReapTombstone", me, text(key))
        for p in self._routing.replicas(key):
            if p != me:
                self._out.send(p, Reap(key, wire))
        self._reap(key, tombstones)

    def reap_received(self, src: NodeId, m: Reap, now: float) -> None:
        versions = self._out.decode(src, m.versions)
        if versions is not None:
            self._out.action("ReplicaReap", self._out.node_id, src, text(m.key))
            self._reap(m.key, canonical(versions))

    def _reap(self, key: bytes, tombstones: Siblings) -> None:
        """Drop ``key`` only if these tombstones are still all this node holds of it."""
        held = self._engine.get(key)
        if held and held == tombstones and all(v.is_tombstone for v in held):
            self.write(key, ())

    # ---- queries --------------------------------------------------------------------------

    def replica_get(self, origin: Origin, msg: ReplicaGet, now: float) -> None:
        """Node-only query for the fault harness: this node's stored versions, no peer asked.
        No spec action: it reads nothing but the local store and changes nothing."""
        key: object = msg.key
        if not isinstance(key, bytes) or not key or len(key) > self._config.max_key_size:
            self._out.error(
                origin, ErrorCode.INVALID_KEY, "the key must be a non-empty byte string"
            )
            return
        raw = self._engine.get_raw(key)
        wire = [] if raw is None else decode_wire_siblings(raw)
        self._out.reply(origin, ReplicaVersions(wire, origin.rid))

    def spec_state(
        self,
        keys: Iterable[bytes] | None = None,
        hints: Iterable[tuple[NodeId, bytes]] | None = None,
    ) -> dict[str, object]:
        """This node's ``store`` and ``hints`` in the spec's shapes; with ``keys`` and
        ``hints`` (for a per-process trace), of those only, a removed key as an empty set,
        keys and values as text."""
        engine = self._engine
        if keys is None and hints is None:
            store: dict[bytes | str, list[dict[str, object]]] = {
                key: [spec_version(v) for v in engine.get(key)] for key in engine
            }
            held = [
                {"key": key, "owner": owner, "ver": spec_version(v)}
                for owner, key in engine.hints()
                for v in engine.get_hint(owner, key)
            ]
            return {"store": store, "hints": held}
        store = {text(key): [trace_version(v) for v in engine.get(key)] for key in keys or ()}
        held = [
            {"key": text(key), "owner": owner, "ver": trace_version(v)}
            for owner, key in hints or ()
            for v in engine.get_hint(owner, key)
        ]
        return {"store": store, "hints": held}
