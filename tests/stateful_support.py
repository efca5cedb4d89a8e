"""What the state machines of test_stateful.py check, and how they drive the simulator.

The properties are spec/Dynamo.tla's, judged on the real nodes' durable state (the simulator's
``disks``: what survives a crash, for nodes up or down). Each property that fails raises its own
``PropertyViolation`` subclass, so a negative control can say which property it expects.

``Harness`` is ``sim.cluster.Cluster`` in manual mode with thin helpers over the simulator's
public API: pick messages by kind, deliver until nothing moves, fire a node's timer, run a full
round of anti-entropy, let the cluster quiesce. Its nodes are the real ``Node``, subclassed only
to show an observer the versions their effects carry, so that every version is known the moment
it is made (a version can be made and superseded within one delivery).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from dynamo_ref.core.effects import Effect, Event, Persist, PersistHint, Send
from dynamo_ref.core.messages import (
    Get,
    Gossip,
    MerkleAnswer,
    MerkleQuery,
    Ping,
    Pong,
    Put,
    ReadResp,
    Store,
    StoreAck,
    SyncKeys,
    SyncKeysReply,
    siblings_from_wire,
)
from dynamo_ref.core.node import DurableState, Node, NodeConfig
from dynamo_ref.core.node_versions import VersionMode, dvv_covers, event, spec_clock
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Version, sort_key
from dynamo_ref.sim import ClientHandle, InFlight, LinkConfig, Simulation
from dynamo_ref.sim.spec_view import NodeSpecView
from dynamo_ref.storage.memory import MemoryEngine

# ---- the properties' failures -----------------------------------------------------------------


class PropertyViolation(AssertionError):
    """A spec property (or one of the extra checks) does not hold."""


class SiblingsNotAntichain(PropertyViolation):
    """SiblingsAntichain: a replica keeps a version another of its versions supersedes."""


class LostAckedWrite(PropertyViolation):
    """AckedWritesSurvive: an acknowledged write is gone, and nothing present descends it."""


class StaleStrictRead(PropertyViolation):
    """StrictQuorumRead: a read begun after an ack, with no fault between, missed the write."""


class ClockWentBack(PropertyViolation):
    """ClockMonotone: a replica's merged clock for a key went back."""


class NotConverged(PropertyViolation):
    """Convergence: after healing and quiescing, replicas differ or hints remain."""


class DiskMismatch(PropertyViolation):
    """A running node's memory differs from what its durable effects wrote."""


class SilentSupersession(PropertyViolation):
    """Not a spec property: an acked write is dominated by a write whose client never read it."""


# ---- versions, as the node's mode judges them ------------------------------------------------


def supersedes(mode: VersionMode, u: Version, v: Version) -> bool:
    """The spec's ``Supersedes(u, v)``: ``u`` makes ``v`` obsolete on a replica."""
    if u == v:
        return False
    if mode is VersionMode.LWW:
        # The node breaks timestamp ties by writer (then by the canonical order).
        return (u.timestamp, u.writer, sort_key(u)) > (v.timestamp, v.writer, sort_key(v))
    if mode is VersionMode.DVV:
        return dvv_covers(u, v)
    return u.clock.dominates(v.clock)


def survives_as(mode: VersionMode, u: Version, a: Version) -> bool:
    """``u = a \\/ Descends(u, a)``. LWW carries vector clocks without using them; the spec
    judges survival by them all the same."""
    if u == a:
        return True
    if mode is VersionMode.DVV:
        return dvv_covers(u, a)
    return u.clock.dominates(a.clock)


def context_covers(mode: VersionMode, ctx: VClock, a: Version) -> bool:
    """The client that wrote with context ``ctx`` had read ``a`` (or a descendant of it)."""
    if mode is VersionMode.DVV:
        node, n = event(a)
        return ctx.counter(node) >= n
    return ctx.descends(a.clock)


def joined_clock(siblings: Iterable[Version]) -> dict[NodeId, int]:
    """The spec's ``JoinAll`` of a sibling set's clocks (a DVV dot folded in)."""
    out: dict[NodeId, int] = {}
    for v in siblings:
        for node, n in spec_clock(v).items():
            out[node] = max(out.get(node, 0), n)
    return out


def leq(a: dict[NodeId, int], b: dict[NodeId, int]) -> bool:
    return all(n <= b.get(node, 0) for node, n in a.items())


def present(disks: dict[NodeId, DurableState], key: bytes) -> list[Version]:
    """The spec's ``Present(k)``: every version of ``key`` on a replica or in a hint."""
    out = [v for d in disks.values() for v in d.store.get(key, ())]
    out += [v for d in disks.values() for (_, k), vs in d.hints.items() if k == key for v in vs]
    return out


def show(v: Version) -> str:
    value = "<tombstone>" if v.value is None else v.value.decode()
    clock = ",".join(f"{node}:{n}" for node, n in sorted(spec_clock(v).items()))
    return f"{value}@{v.writer}{{{clock}}}"


def show_all(vs: Iterable[Version]) -> str:
    return "[" + " ".join(show(v) for v in vs) + "]"


# ---- the simulator, driven by hand -----------------------------------------------------------

BACKGROUND = (Gossip, Ping, Pong)
MERKLE = (MerkleQuery, MerkleAnswer, SyncKeys, SyncKeysReply)
REQUEST_TIMERS = ("put", "get", "fallback", "fwd")


def describe(m: InFlight) -> str:
    msg = m.msg
    text = f"{type(msg).__name__} {m.src}->{m.dst}"
    key = getattr(msg, "key", None)
    if isinstance(key, bytes):
        text += f" {key.decode()}"
    if isinstance(msg, Store | StoreAck) and msg.hint:
        text += f" hint={msg.hint}"
    if isinstance(msg, Store | StoreAck | ReadResp):
        text += " " + show_all(siblings_from_wire(msg.versions))
    return text


class ObservedNode(Node):
    """The real node, telling an observer every version its effects store or send."""

    observer: Callable[[Iterable[Version]], None] | None = None

    def handle(self, event: Event, now: float) -> list[Effect]:
        effects = super().handle(event, now)
        if self.observer is not None:
            for e in effects:
                if isinstance(e, Persist | PersistHint):
                    self.observer(e.siblings)
                elif isinstance(e, Send) and isinstance(e.msg, Store):
                    self.observer(siblings_from_wire(e.msg.versions))
        return effects


class Harness(Simulation):
    """Real nodes on one ring in a manual-mode simulation (as ``sim.cluster.Cluster``), with
    the helpers the state machines need. ``observer`` sees every version as it is made."""

    def __init__(
        self,
        nodes: Sequence[NodeId],
        config: NodeConfig,
        observer: Callable[[Iterable[Version]], None],
        *,
        seed: int = 0,
        q: int = 4,
    ) -> None:
        self.config = config
        self.ring = Ring.create(nodes, q, target_n=config.n)
        ring = self.ring

        def factory(nid: NodeId, durable: DurableState, rng: random.Random, now: float) -> Node:
            node = ObservedNode(nid, config, ring, nodes, durable, rng, now, engine=MemoryEngine)
            node.observer = observer
            return node

        # No link delay: a sender hears that a peer is unreachable in the step it sends.
        super().__init__(
            nodes,
            factory,
            seed=seed,
            link=LinkConfig(delay=0.0),
            view=NodeSpecView(),
            manual=True,
        )

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        return self.ring.preference_list(key, self.config.n)

    def node(self, nid: NodeId) -> Node:
        node = self.nodes[nid]
        assert isinstance(node, Node)
        return node

    def client_put(self, node: NodeId, key: bytes, value: bytes, context: bytes) -> ClientHandle:
        return self.client_request(node, Put(key, value, context))

    def client_get(self, node: NodeId, key: bytes) -> ClientHandle:
        return self.client_request(node, Get(key))

    def protocol(self, deliverable: bool) -> list[InFlight]:
        """Messages in flight that are not gossip or pings, in send order."""
        pool = self.deliverable() if deliverable else self.in_flight()
        return [m for m in pool if not isinstance(m.msg, BACKGROUND)]

    def run_now(self) -> None:
        """Let events due now happen (a client request arrives at its node)."""
        self.run_until(self.now)

    def deliver_all(self, kinds: tuple[type, ...] | None = None, limit: int = 10_000) -> int:
        """Deliver deliverable messages (of ``kinds``) until none is left; how many went."""
        count = 0
        while count < limit:
            ready = [m for m in self.deliverable() if kinds is None or isinstance(m.msg, kinds)]
            if not ready:
                break
            for m in ready:
                self.deliver(m)
                count += 1
        return count

    def advance(self, dt: float, slice_: float = 0.25) -> None:
        """Run the clock ``dt`` seconds on, delivering gossip and pings as they are sent."""
        end = self.now + dt
        while self.now < end:
            self.run_until(min(end, self.now + slice_))
            self.deliver_all(BACKGROUND)

    def unreachable(self, nid: NodeId) -> set[NodeId]:
        """The peers ``nid`` cannot reach: down, or across a cut link."""
        return {
            p
            for p in self.node_ids
            if p != nid and (not self.is_up(p) or self.network.is_cut(nid, p))
        }

    def detectors_agree(self) -> bool:
        """No running node suspects a peer it can reach."""
        return all(
            self.node(nid).suspected(self.now) <= self.unreachable(nid) for nid in self.nodes
        )

    def catch_up(self, rounds: int = 8) -> None:
        """Gossip rounds, without the clock moving, until no node suspects a peer it can
        reach again (the spec's failure detector is exact; the node's learns by hearing)."""
        for _ in range(rounds):
            if self.detectors_agree():
                return
            for nid in self.node_ids:
                self.fire(nid, "gossip")
            self.deliver_all(BACKGROUND)

    def has_timer(self, nid: NodeId, kind: str) -> bool:
        return any(n == nid and t == (kind, 0) for _, n, t in self.pending_timers())

    def fire(self, nid: NodeId, kind: str) -> bool:
        """Fire node ``nid``'s periodic timer ``kind`` now (it re-arms itself)."""
        if not self.is_up(nid) or not self.has_timer(nid, kind):
            return False
        self.fire_timer(nid, (kind, 0))
        return True

    def anti_entropy(self, nid: NodeId) -> None:
        """One Merkle exchange of every partition ``nid`` replicates, each to completion
        (exchanges over a cut link wait on it)."""
        parts = self.ring.partitions_replicated_by(nid, self.config.n)
        for _ in parts:
            if not self.fire(nid, "ae"):
                return
            self.deliver_all(MERKLE)

    def converged(self, keys: Sequence[bytes]) -> bool:
        """Every key's replicas hold equal sets and no node holds a hint."""
        disks = self.disks
        if any(d.hints for d in disks.values()):
            return False
        return all(len({disks[n].store.get(k, ()) for n in self.replicas(k)}) == 1 for k in keys)

    def quiesce(self, keys: Sequence[bytes], rounds: int = 20) -> bool:
        """Heal, restart every node that is down, and run until the replicas converge: deliver
        everything, let timers run (gossip, handoff), and run anti-entropy on every node."""
        self.heal()
        for nid in self.node_ids:
            if not self.is_up(nid):
                self.restart(nid)
        for i in range(rounds):
            self.deliver_all()
            self.advance(1.0)
            self.deliver_all()
            if i % 2 == 1:
                for nid in self.node_ids:
                    self.fire(nid, "handoff")
                    self.deliver_all()
                    self.anti_entropy(nid)
                    self.deliver_all()
                if self.converged(keys) and not self.protocol(deliverable=False):
                    return True
        return False


def counters(clock: VClock) -> dict[NodeId, int]:
    return {node: n for node, n, _ in clock.entries()}
