"""A hand-driven cluster of sans-I/O nodes, and the basic put/get behaviour it shows.

``Cluster`` is a deliberately tiny driver: messages are delivered in send order at the current
time, timers fire in time order, and a test decides what is lost, held or down. The other
``test_node_*`` files import it from here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pytest

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    ClientRequest,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    Reply,
    Send,
    SetTimer,
    TimerFired,
    TimerId,
)
from dynamo_ref.core.messages import (
    ClientMessage,
    Delete,
    ErrorReply,
    Get,
    GetOk,
    PeerMessage,
    Put,
    PutOk,
    ReplyMessage,
    Store,
)
from dynamo_ref.core.node import DurableState, Node, NodeConfig, VersionMode
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings
from dynamo_ref.storage.memory import MemoryEngine

# Decides the fate of a message: True drops it (the sender is not told).
Filter = Callable[[NodeId, NodeId, PeerMessage], bool]


@dataclass
class Cluster:
    """Nodes, their disks, messages in flight and timers, all under the test's control."""

    names: tuple[NodeId, ...]
    config: NodeConfig
    q: int = 16
    seed: int = 7
    ring: Ring = field(init=False)
    now: float = 0.0
    nodes: dict[NodeId, Node] = field(default_factory=dict)
    disks: dict[NodeId, DurableState] = field(default_factory=dict)
    flight: list[tuple[NodeId, NodeId, PeerMessage]] = field(default_factory=list)
    held: list[tuple[NodeId, NodeId, PeerMessage]] = field(default_factory=list)
    timers: dict[NodeId, dict[TimerId, float]] = field(default_factory=dict)
    replies: dict[int, list[ReplyMessage]] = field(default_factory=dict)
    actions: list[tuple[NodeId, Action]] = field(default_factory=list)
    sent: list[tuple[NodeId, NodeId, PeerMessage]] = field(default_factory=list)
    drop: Filter | None = None
    hold: Filter | None = None
    notify: bool = True
    seeds: tuple[NodeId, ...] = ()
    _clients: int = 0

    def __post_init__(self) -> None:
        self.ring = Ring.create(self.names, self.q)
        for name in self.names:
            self.boot(name)

    # ---- nodes ------------------------------------------------------------------------

    def boot(
        self, name: NodeId, ring: Ring | None = None, config: NodeConfig | None = None
    ) -> Node:
        disk = self.disks.setdefault(name, DurableState())
        rng = random.Random(f"{self.seed}/{name}/{len(self.actions)}")
        node = Node(
            name,
            config or self.config,
            ring or self.ring,
            self.seeds or self.names,
            disk,
            rng,
            self.now,
            engine=MemoryEngine,
        )
        self.nodes[name] = node
        self.timers[name] = {}
        self.apply(name, node.start(self.now))
        return node

    def crash(self, name: NodeId) -> None:
        del self.nodes[name]
        self.timers[name] = {}

    def is_up(self, name: NodeId) -> bool:
        return name in self.nodes

    # ---- effects and events -----------------------------------------------------------

    def apply(self, name: NodeId, effects: Iterable[Effect]) -> None:
        effects = list(effects)
        self.disks[name].apply(effects)
        for e in effects:
            if isinstance(e, Send):
                self.sent.append((name, e.dest, e.msg))
                if self.drop is not None and self.drop(name, e.dest, e.msg):
                    continue
                if self.hold is not None and self.hold(name, e.dest, e.msg):
                    self.held.append((name, e.dest, e.msg))
                    continue
                self.flight.append((name, e.dest, e.msg))
            elif isinstance(e, Reply):
                self.replies.setdefault(e.client, []).append(e.msg)
            elif isinstance(e, SetTimer):
                self.timers[name][e.timer] = e.at
            elif isinstance(e, CancelTimer):
                self.timers[name].pop(e.timer, None)
            elif isinstance(e, Action):
                self.actions.append((name, e))

    def event(self, name: NodeId, event: Event) -> None:
        self.apply(name, self.nodes[name].handle(event, self.now))

    def settle(self, limit: int = 100_000) -> None:
        """Deliver every message in flight (and those they cause) at the current time."""
        for _ in range(limit):
            if not self.flight:
                return
            src, dst, msg = self.flight.pop(0)
            if dst not in self.nodes:
                if self.notify and src in self.nodes:
                    self.event(src, PeerUnreachable(dst))
                continue
            self.event(dst, PeerReceived(src, msg))
        raise AssertionError("messages did not settle")

    def release(self, keep: Filter | None = None) -> None:
        """Put held messages back in flight (all, or those ``keep`` does not match)."""
        back = [m for m in self.held if keep is None or not keep(*m)]
        self.held = [m for m in self.held if m not in back]
        self.flight.extend(back)
        self.settle()

    def advance(self, seconds: float) -> None:
        """Let time pass: timers fire in order, messages settle after each."""
        end = self.now + seconds
        self.settle()
        while True:
            due = [
                (at, name, timer)
                for name, ts in self.timers.items()
                if name in self.nodes
                for timer, at in ts.items()
                if at <= end
            ]
            if not due:
                break
            at, name, timer = min(due)
            del self.timers[name][timer]
            self.now = max(self.now, at)
            self.event(name, TimerFired(timer))
            self.settle()
        self.now = end

    # ---- clients ----------------------------------------------------------------------

    def send(self, name: NodeId, msg: ClientMessage) -> int:
        """A client request to ``name``; returns the client id to read the reply with."""
        self._clients += 1
        client = self._clients
        self.event(name, ClientRequest(client, msg))
        return client

    def call(self, name: NodeId, msg: ClientMessage, wait: float = 0.0) -> ReplyMessage:
        """Send, settle (and wait), and return the single reply."""
        client = self.send(name, msg)
        self.settle()
        if wait:
            self.advance(wait)
        got = self.replies.get(client, [])
        assert len(got) == 1, f"expected one reply, got {got}"
        return got[0]

    def put(
        self, name: NodeId, key: bytes, value: bytes, context: bytes = b"", **kw: int
    ) -> ReplyMessage:
        return self.call(name, Put(key, value, context, **kw))

    def delete(self, name: NodeId, key: bytes, context: bytes = b"") -> ReplyMessage:
        return self.call(name, Delete(key, context))

    def get(self, name: NodeId, key: bytes, **kw: int) -> GetOk:
        reply = self.call(name, Get(key, **kw))
        assert isinstance(reply, GetOk), reply
        return reply

    # ---- looking inside ---------------------------------------------------------------

    def stored(self, name: NodeId, key: bytes) -> Siblings:
        return (
            self.nodes[name].engine.get(key)
            if name in self.nodes
            else self.disks[name].store.get(key, ())
        )

    def values(self, name: NodeId, key: bytes) -> set[bytes | None]:
        return {v.value for v in self.stored(name, key)}

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        return self.ring.preference_list(key, self.config.n)

    def non_replica(self, key: bytes) -> NodeId:
        return next(n for n in self.names if n not in self.replicas(key))

    def action_names(self, name: NodeId | None = None) -> list[str]:
        return [a.name for n, a in self.actions if name is None or n == name]


def ok(reply: ReplyMessage) -> PutOk:
    assert isinstance(reply, PutOk), reply
    return reply


def err(reply: ReplyMessage, code: str) -> ErrorReply:
    assert isinstance(reply, ErrorReply), reply
    assert reply.code == code, reply
    return reply


def key_with(ring: Ring, n: int, pred: Callable[[tuple[NodeId, ...]], bool]) -> bytes:
    """The first key ``k<i>`` whose preference list satisfies ``pred``."""
    for i in range(10_000):
        key = f"k{i}".encode()
        if pred(ring.preference_list(key, n)):
            return key
    raise AssertionError("no such key")


CONFIG = NodeConfig(
    n=3, r=2, w=2, request_timeout=1.0, anti_entropy_interval=3600.0, mode=VersionMode.VCLOCK
)
NAMES = ("a", "b", "c", "d")


def cluster(
    config: NodeConfig = CONFIG, names: tuple[NodeId, ...] = NAMES, **kw: object
) -> Cluster:
    return Cluster(names, config, **kw)  # type: ignore[arg-type]


# ---- put and get ------------------------------------------------------------------------------


def test_put_then_get_returns_the_value_from_every_node() -> None:
    c = cluster()
    key = b"user:42"
    coordinator = c.replicas(key)[0]
    ok(c.put(coordinator, key, b"alice"))
    for name in c.names:
        got = c.get(name, key)
        assert got.siblings == [b"alice"]
    # The write reached all N replicas, and no other node.
    for name in c.names:
        assert c.values(name, key) == ({b"alice"} if name in c.replicas(key) else set())


def test_get_of_a_missing_key_is_empty_with_an_empty_context() -> None:
    c = cluster()
    got = c.get(c.replicas(b"nothing")[0], b"nothing")
    assert got.siblings == []
    assert c.put(c.replicas(b"nothing")[0], b"nothing", b"x", got.context)


def test_concurrent_puts_become_siblings_and_a_put_with_the_merged_context_replaces_them() -> None:
    c = cluster()
    key = b"cart"
    first, second = c.replicas(key)[:2]
    ok(c.put(first, key, b"milk"))
    ok(c.put(second, key, b"eggs"))  # no context: concurrent with "milk"
    got = c.get(first, key)
    assert sorted(got.siblings) == [b"eggs", b"milk"]
    ok(c.put(second, key, b"eggs+milk", got.context))
    assert c.get(first, key).siblings == [b"eggs+milk"]
    for name in c.replicas(key):
        assert c.values(name, key) == {b"eggs+milk"}


def test_a_put_answers_only_after_w_acks() -> None:
    c = cluster(replace(CONFIG, w=3))
    key = b"k"
    coordinator, *others = c.replicas(key)
    c.hold = lambda src, dst, msg: dst == others[1] and isinstance(msg, Store)
    client = c.send(coordinator, Put(key, b"v"))
    c.settle()
    assert client not in c.replies  # two of three acks
    c.hold = None
    c.release()
    assert isinstance(c.replies[client][0], PutOk)


def test_a_put_without_its_quorum_fails_with_a_clear_timeout_error() -> None:
    c = cluster(replace(CONFIG, w=3, sloppy=False))
    key = b"k"
    coordinator, *others = c.replicas(key)
    c.drop = lambda src, dst, msg: dst == others[0] and isinstance(msg, Store)
    client = c.send(coordinator, Put(key, b"v", rid=9))
    c.advance(1.5)
    reply = err(c.replies[client][0], "timeout")
    assert reply.rid == 9
    assert "W=3" in reply.message
    assert others[0] in reply.message
    assert "PutTimeout" in c.action_names(coordinator)
    # The replicas that stored it keep it (the spec's PutTimeout does not undo).
    assert c.values(others[1], key) == {b"v"}
    # And the node still serves.
    c.drop = None
    ok(c.put(coordinator, key, b"w"))


def test_a_get_without_its_quorum_times_out() -> None:
    c = cluster(replace(CONFIG, r=3, sloppy=False))
    key = b"k"
    coordinator, *others = c.replicas(key)
    c.drop = lambda src, dst, msg: src == others[0] and type(msg).__name__ == "ReadResp"
    client = c.send(coordinator, Get(key))
    c.advance(1.5)
    reply = err(c.replies[client][0], "timeout")
    assert "R=3" in reply.message


def test_a_delete_hides_the_value_and_a_later_put_with_its_context_wins() -> None:
    c = cluster(replace(CONFIG, reap_tombstones=False))
    key = b"k"
    node = c.replicas(key)[0]
    ok(c.put(node, key, b"v"))
    ok(c.delete(node, key, c.get(node, key).context))
    got = c.get(node, key)
    assert got.siblings == []
    assert all(v.is_tombstone for v in c.stored(node, key))
    ok(c.put(node, key, b"again", got.context))
    assert c.get(node, key).siblings == [b"again"]


def test_a_non_replica_forwards_to_a_replica_and_relays_the_answer() -> None:
    c = cluster()
    key = b"k"
    outsider = c.non_replica(key)
    reply = ok(c.put(outsider, key, b"v", rid=5))
    assert reply.rid == 5
    assert c.values(outsider, key) == set()  # it coordinated nothing itself
    assert c.get(outsider, key, rid=6).siblings == [b"v"]
    assert "ForwardRequest" in c.action_names(outsider)
    assert "ClientPut" not in c.action_names(outsider)


def test_forwarding_skips_an_unreachable_replica() -> None:
    c = cluster()
    key = b"k"
    outsider = c.non_replica(key)
    c.crash(c.replicas(key)[0])
    ok(c.put(outsider, key, b"v"))
    assert c.get(outsider, key).siblings == [b"v"]


def test_a_forwarded_request_that_gets_no_answer_times_out() -> None:
    c = cluster()
    key = b"k"
    outsider = c.non_replica(key)
    c.drop = lambda src, dst, msg: type(msg).__name__ == "ForwardReply"
    client = c.send(outsider, Put(key, b"v"))
    c.advance(2.5)
    assert "did not answer" in err(c.replies[client][0], "timeout").message


def test_actions_name_spec_steps_in_order() -> None:
    c = cluster()
    key = b"k"
    coordinator = c.replicas(key)[0]
    c.put(coordinator, key, b"v")
    names = c.action_names()
    assert names[:1] == ["ClientPut"]
    assert names.count("ReplicaStore") == 2
    assert names.count("StoreAck") >= 1
    c.actions.clear()
    c.get(coordinator, key)
    assert c.action_names()[0] == "ClientGet"
    assert {"ReplicaRead", "ReadResponse"} <= set(c.action_names())


def test_spec_state_has_the_spec_shapes() -> None:
    c = cluster(replace(CONFIG, w=3))
    key = b"k"
    coordinator, *_others = c.replicas(key)
    c.hold = lambda src, dst, msg: isinstance(msg, Store)
    c.send(coordinator, Put(key, b"v"))
    state = c.nodes[coordinator].spec_state()
    (version,) = state["store"][key]  # type: ignore[index]
    assert version == {"val": b"v", "vc": {coordinator: 1}, "ts": c.now}
    (op,) = state["putOps"]  # type: ignore[misc]
    assert op["acks"] == [coordinator]
    assert op["hinted"] == []
    assert op["ver"] == version
    c.hold = None
    c.release()
    assert c.nodes[coordinator].spec_state()["putOps"] == []


def test_a_restarted_node_keeps_its_data_and_its_new_ops_do_not_collide() -> None:
    c = cluster()
    key = b"k"
    node = c.replicas(key)[0]
    ok(c.put(node, key, b"v"))
    c.crash(node)
    restarted = c.boot(node)
    assert {v.value for v in restarted.engine.get(key)} == {b"v"}
    assert restarted.spec_state()["store"] == {key: c.nodes[node].spec_state()["store"][key]}  # type: ignore[index]
    ok(c.put(node, key, b"w", c.get(node, key).context))
    assert c.get(node, key).siblings == [b"w"]


@pytest.mark.parametrize("w", [1, 2, 3])
def test_every_acked_write_is_on_at_least_w_replicas(w: int) -> None:
    c = cluster(replace(CONFIG, w=w))
    for i in range(20):
        key = f"key{i}".encode()
        ok(c.put(c.replicas(key)[0], key, b"v"))
        assert sum(1 for n in c.replicas(key) if c.values(n, key) == {b"v"}) >= w
