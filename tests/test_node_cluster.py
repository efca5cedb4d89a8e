"""A hand-driven cluster of sans-I/O nodes, and the basic put/get behaviour it shows.

``Cluster`` is the simulator (``dynamo_ref.sim.Simulation``) in manual mode, with helpers a
test reads like a script: messages are delivered in send order at the current time
(``settle``), timers fire in time order with the messages they cause delivered after each
(``advance``), a message that reaches a node that is down is lost, and a test decides what is
dropped or held (``drop``, ``hold``, ``release``). The other ``test_node_*`` files import it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import pytest

from dynamo_ref.core.effects import Event
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
from dynamo_ref.sim import ClientHandle, LinkConfig, Simulation
from dynamo_ref.storage.memory import MemoryEngine

# Decides the fate of a message: True drops it (the sender is not told), or holds it.
Filter = Callable[[NodeId, NodeId, PeerMessage], bool]


class Cluster(Simulation):
    """Nodes, their disks, messages in flight and timers, all under the test's control."""

    def __init__(
        self,
        names: tuple[NodeId, ...],
        config: NodeConfig,
        *,
        q: int = 16,
        seed: int = 7,
        notify: bool = True,
        seeds: tuple[NodeId, ...] = (),
    ) -> None:
        self.names = names
        self.config = replace(config, partitions=q)
        self.q = q
        self.ring = self.config.initial_ring(names)
        self.seeds = seeds
        self.drop: Filter | None = None
        self.hold: Filter | None = None
        self._handles: dict[int, ClientHandle] = {}
        self._strays = 0
        super().__init__(
            names,
            self._factory_for(self.ring, self.config),
            seed=seed,
            link=LinkConfig(delay=0.0),
            manual=True,
            notify_unreachable=notify,
        )
        self.sent = []
        self.actions = []
        self.intercept = self._fate

    def _factory_for(
        self, ring: Ring, config: NodeConfig
    ) -> Callable[[NodeId, DurableState, random.Random, float], Node]:
        seeds = self.seeds or self.names

        def factory(name: NodeId, durable: DurableState, rng: random.Random, now: float) -> Node:
            return Node(name, config, ring, seeds, durable, rng, now, engine=MemoryEngine)

        return factory

    def _fate(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> Literal["drop", "hold"] | None:
        if self.drop is not None and self.drop(src, dst, msg):
            return "drop"
        if self.hold is not None and self.hold(src, dst, msg):
            return "hold"
        return None

    # ---- nodes ------------------------------------------------------------------------

    @property
    def notify(self) -> bool:
        """Senders hear of a peer they cannot reach (a refused connection)."""
        return self.notify_unreachable

    @notify.setter
    def notify(self, value: bool) -> None:
        self.notify_unreachable = value

    def boot(
        self, name: NodeId, ring: Ring | None = None, config: NodeConfig | None = None
    ) -> Node:
        """(Re)start ``name`` from its disk, a new node if it has none; ``ring``/``config``:
        what it starts with instead of the cluster's."""
        factory = None
        if ring is not None or config is not None:
            factory = self._factory_for(ring or self.ring, config or self.config)
        if name in self.disks:
            self.restart(name, factory)
        else:
            self.add_node(name, factory)
        self.run_until(self.now)
        node = self.nodes[name]
        assert isinstance(node, Node)
        return node

    # ---- effects and events -----------------------------------------------------------

    def event(self, name: NodeId, event: Event) -> None:
        self.inject(name, event)

    def settle(self, limit: int = 100_000) -> None:
        """Deliver every message in flight (and those they cause) at the current time."""
        for _ in range(limit):
            self.run_until(self.now)  # client requests and unreachable notices due now
            lost = [m for m in self.in_flight() if m.dst not in self.nodes]
            for m in lost:
                self.drop_message(m)
            ready = self.deliverable()
            if not ready and not lost:
                return
            if ready:
                self.deliver(ready[0])
        raise AssertionError("messages did not settle")

    def drop_message(self, m: object) -> None:
        Simulation.drop(self, m)  # type: ignore[arg-type]

    def release(self, keep: Filter | None = None) -> None:  # type: ignore[override]
        """Put held messages back in flight (all, or those ``keep`` does not match)."""
        super().release(keep)
        self.settle()

    def advance(self, seconds: float) -> None:
        """Let time pass: timers fire in order, messages settle after each."""
        end = self.now + seconds
        self.settle()
        while True:
            due = self.next_time()
            if due is None or due > end:
                break
            self.step()
            self.settle()
        self.clock.advance(end)

    # ---- clients ----------------------------------------------------------------------

    def send(self, name: NodeId, msg: ClientMessage) -> int:
        """A client request to ``name``; returns the client id to read the reply with."""
        handle = self.client_request(name, msg)
        self._handles[handle.client] = handle
        self.run_until(self.now)
        return handle.client

    @property
    def replies(self) -> dict[int, list[ReplyMessage]]:
        """Client id -> its replies (one, or none yet); a second reply fails the test."""
        assert self.stray_replies == 0, "a client got a second reply"
        return {c: [h.reply] for c, h in self._handles.items() if h.reply is not None}

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
        node = self.nodes.get(name)
        if isinstance(node, Node):
            return node.engine.get(key)
        return self.disks[name].store.get(key, ())

    def values(self, name: NodeId, key: bytes) -> set[bytes | None]:
        return {v.value for v in self.stored(name, key)}

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        return self.ring.preference_list(key, self.config.n)

    def non_replica(self, key: bytes) -> NodeId:
        return next(n for n in self.names if n not in self.replicas(key))

    def action_names(self, name: NodeId | None = None) -> list[str]:
        assert self.actions is not None
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
