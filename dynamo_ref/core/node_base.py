"""The node's state and the plumbing every part of it uses.

``NodeCore`` holds what a node knows (its engine, membership view, ring, failure detector and
the requests and exchanges in progress) and the small steps every handler takes: emit an
effect, persist a sibling set, suspect a peer. The protocol lives in its subclasses:
``node_sync.NodeSync`` (gossip, membership changes, partition transfer, anti-entropy, hinted
handoff) and ``node.Node`` (the driver's interface and client requests).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Mapping, Sequence
from functools import partial

import msgspec

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    DropHint,
    Effect,
    Persist,
    PersistHint,
    PersistMeta,
    Reply,
    Send,
    SetTimer,
)
from dynamo_ref.core.membership import (
    Membership,
    MemberState,
    PhiAccrualDetector,
    Status,
    claims_of,
)
from dynamo_ref.core.messages import (
    ErrorCode,
    ErrorReply,
    ForwardReply,
    PeerMessage,
    ReplyMessage,
    WireMember,
    WireVersion,
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
    PutOp,
    SyncSession,
    TransferOp,
)
from dynamo_ref.core.node_versions import reconcile_mode, spec_clock
from dynamo_ref.core.quorum import QuorumConfig, Target
from dynamo_ref.core.ring import RING_BITS, Ring, hash_key
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings, Version, sort_key
from dynamo_ref.storage.memory import MemoryEngine

# A request may be forwarded once more by a node whose ring view disagrees, never in a loop.
MAX_HOPS = 2
# Anti-entropy sessions that have not finished after this many request timeouts are dropped.
SESSION_LIFETIME = 10
TOMBSTONE = "<tombstone>"
# Distinct per-request quorum overrides whose checks (and read quorums) a node remembers.
QUORUM_CACHE = 64

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


class NodeCore:
    """A node's state and effect plumbing (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (the drivers' fixed interface)
        self,
        node_id: NodeId,
        config: NodeConfig,
        ring: Ring,
        seeds: Sequence[NodeId],
        durable: DurableState,
        rng: random.Random,
        now: float,
        *,
        addresses: Mapping[NodeId, str] | None = None,
    ) -> None:
        # ``addresses``: where peers reach each node (a real driver's "host:port"); the initial
        # view uses them, and this node's own entry is restated when its address changed.
        addresses = addresses or {}
        self._address = addresses.get(node_id)
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
            self._engine.put_hint(owner, key, canonical(siblings))

        view = Membership(
            {
                n: MemberState(
                    0, Status.UP, addresses.get(n, n), ring.zone(n), ring.partitions_of(n)
                )
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
        self._heartbeat_gap = config.gossip_interval / 2
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
        self._quorum_checks: dict[tuple[int, int, int, int], tuple[str, ...]] = {}
        self._read_quorums: dict[tuple[int, int], QuorumConfig] = {}
        self._targets: dict[NodeId, Target] = {}
        self._last_replicas: tuple[Ring | None, bytes, tuple[NodeId, ...]] = (None, b"", ())

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

    @property
    def membership(self) -> Membership:
        """Membership as this node sees it."""
        return self._view

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

    def _merge_store(
        self, key: bytes, versions: Iterable[Version], held: Siblings | None = None
    ) -> Siblings:
        """Reconcile ``versions`` into the key's sibling set; persist if it changed.

        ``held``: what the engine holds for ``key``, when the caller has just read it.
        """
        if held is None:
            held = self._engine.get(key)
        merged = reconcile_mode(self._mode, (*held, *versions))
        if merged != held:
            self._persist(key, merged)
        return merged

    def _replicas(self, key: bytes) -> tuple[NodeId, ...]:
        """The key's preference list of N, remembered for the last key: a client request looks
        it up to route, then again to coordinate."""
        ring, last, replicas = self._last_replicas
        if ring is not self._ring or key != last:
            ring = self._ring
            replicas = ring.preference_list(key, self._config.n)
            self._last_replicas = (ring, key, replicas)
        return replicas

    def _new_id(self) -> int:
        self._seq += 1
        return (self._boot << 32) | self._seq

    def _timestamp(self, now: float) -> float:
        return now + self._skew

    def _pending(self) -> int:
        return len(self._puts) + len(self._gets) + len(self._forwards)

    def _heard(self, peer: NodeId, now: float) -> None:
        self._suspects.discard(peer)
        self._last_heard[peer] = now
        if peer in self._seeds:
            self._seed_heard = True
        last = self._detector.last_heartbeat(peer)
        # At most one heartbeat per half interval: bursts of requests would teach phi that
        # silence of a second is abnormal.
        if last is None or now - last >= self._heartbeat_gap:
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

    def _boot_timers(self, now: float) -> None:
        cfg = self._config
        self._fx.append(PersistMeta("boot", self._boot.to_bytes(8, "big")))
        own = self._view.get(self._id)
        moved = own is not None and own.address != self._address
        # A restart may be at a new address that the initial view cannot show (it was built
        # from that address): restate the own entry then too, so peers stop using the old one.
        if own is not None and self._address is not None and (moved or self._boot > 1):
            # Started at a new address: a newer incarnation of its own entry spreads it.
            self._view = self._view.update(self._id, own.successor(address=self._address))
            self._persist_view()
        for peer in self._view.live_members():
            if peer != self._id:
                self._detector.heartbeat(peer, now)
        # Jitter keeps nodes started together from gossiping in lockstep.
        self._set_timer("gossip", 0, now + cfg.gossip_interval * self._rng.random())
        self._set_timer("ae", 0, now + cfg.anti_entropy_interval * (0.5 + self._rng.random()))
        self._set_timer("handoff", 0, now + cfg.handoff_interval)
        self._set_timer("transfer", 0, now + cfg.transfer_interval)

    def _add_hint(self, owner: NodeId, key: bytes, versions: Siblings) -> None:
        held = self._engine.get_hint(owner, key)
        merged = canonical((*held, *versions))
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

    def _decode(self, src: NodeId, wire: list[WireVersion]) -> Siblings | None:
        try:
            return siblings_from_wire(wire)
        except ValueError as e:
            self._action("RejectMessage", self._id, src, str(e))
            return None

    def _wire_view(self, view: Membership) -> list[WireMember]:
        return [member_to_wire(n, s) for n, s in view.items()]

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

    def _persist_view(self) -> None:
        self._fx.append(
            PersistMeta("membership", _MEMBERS_ENCODER.encode(self._wire_view(self._view)))
        )


# ---- helpers --------------------------------------------------------------------------------


def or_default(value: int | None, default: int) -> int:
    return default if value is None else value


def wire_version(v: Version) -> WireVersion:
    return siblings_to_wire((v,))[0]


def canonical(versions: Iterable[Version]) -> Siblings:
    """Distinct versions in canonical order (hints keep every version, as the spec does)."""
    return tuple(sorted(set(versions), key=sort_key))


def _partition(key: bytes, shift: int) -> int:
    return hash_key(key) >> shift
