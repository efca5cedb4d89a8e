"""The simulator's machinery, driven by a small echo/ack node that honours the Node interface.

The fake node coordinates a put by storing it, sending it to every other node and answering the
client after ``w`` acks, or failing it on a timer; it keeps the order in which messages reached
it, so reordering, loss and duplication are visible from outside.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamo_ref.core.effects import (
    Action,
    CancelTimer,
    ClientRequest,
    Effect,
    Event,
    PeerReceived,
    PeerUnreachable,
    Persist,
    PersistMeta,
    Reply,
    Send,
    SetTimer,
    TimerFired,
)
from dynamo_ref.core.node import DurableState
from dynamo_ref.sim import LinkConfig, Simulation, TraceWriter, canonical, encode
from dynamo_ref.tla.trace import VARIABLES

NODES = ("a", "b", "c")


@dataclass(frozen=True)
class FPut:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class FStore:
    op: int
    seq: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class FAck:
    op: int


@dataclass(frozen=True)
class FGossip:
    """A message the spec does not know: traces ignore it."""


@dataclass
class FakeNode:
    node_id: str
    peers: tuple[str, ...]
    durable: DurableState
    rng: random.Random
    w: int = 2
    timeout: float = 1.0
    ops: dict[int, tuple[int, bytes, set[str]]] = field(default_factory=dict)
    next_op: int = 0
    sent: int = 0
    received: list[tuple[str, int]] = field(default_factory=list)
    fired: list[tuple[str, int]] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    def start(self, now: float) -> list[Effect]:
        boots = int(self.durable.meta.get("boots", b"0")) + 1
        return [PersistMeta("boots", str(boots).encode())]

    def handle(self, event: Event, now: float) -> list[Effect]:
        msg: Any
        if isinstance(event, ClientRequest):
            msg = event.msg
            if isinstance(msg, FPut):
                return self._put(event.client, msg, now)
            if isinstance(msg, tuple) and msg[0] == "timers":
                # ("timers", count): set that many timers at random times, one reset, one
                # cancelled, to see the order they fire in.
                out: list[Effect] = []
                for i in range(msg[1]):
                    out.append(SetTimer(("t", i), now + self.rng.random()))
                out.append(SetTimer(("t", 0), now + 5.0))
                out.append(CancelTimer(("t", 1)))
                return [*out, Reply(event.client, "ok")]  # type: ignore[arg-type]
            if msg == "gossip":
                return [Send(p, FGossip()) for p in self.peers]  # type: ignore[arg-type]
            raise AssertionError(msg)
        if isinstance(event, PeerReceived):
            msg = event.msg
            if isinstance(msg, FStore):
                self.received.append((event.src, msg.seq))
                return [
                    Persist(msg.key, _sibs(msg.value)),
                    Send(event.src, FAck(msg.op)),  # type: ignore[arg-type]
                    Action("ReplicaStore", (self.node_id, str(msg.op))),
                ]
            if isinstance(msg, FAck):
                op = self.ops.get(msg.op)
                if op is None:
                    return []
                op[2].add(event.src)
                if len(op[2]) + 1 < self.w:
                    return [Action("StoreAck", (self.node_id, str(msg.op)))]
                del self.ops[msg.op]
                return [
                    CancelTimer(("op", msg.op)),
                    Reply(op[0], ("ok", op[1])),  # type: ignore[arg-type]
                    Action("StoreAck", (self.node_id, str(msg.op))),
                ]
            return []
        if isinstance(event, TimerFired):
            name, n = event.timer
            self.fired.append(event.timer)
            if name == "op" and n in self.ops:
                client = self.ops.pop(n)[0]
                return [
                    Reply(client, ("timeout", b"")),  # type: ignore[arg-type]
                    Action("PutTimeout", (self.node_id, str(n))),
                ]
            return []
        assert isinstance(event, PeerUnreachable)
        self.unreachable.append(event.peer)
        return []

    def _put(self, client: int, msg: FPut, now: float) -> list[Effect]:
        self.next_op += 1
        op = self.next_op
        self.ops[op] = (client, msg.value, set())
        out: list[Effect] = [Persist(msg.key, _sibs(msg.value))]
        for p in self.peers:
            self.sent += 1
            out.append(Send(p, FStore(op, self.sent, msg.key, msg.value)))  # type: ignore[arg-type]
        out.append(SetTimer(("op", op), now + self.timeout))
        out.append(Action("ClientPut", (self.node_id, msg.key.decode(), msg.value.decode())))
        return out

    def spec_state(self) -> dict[str, object]:
        return {
            "store": {k: _unsibs(v) for k, v in self.durable.store.items()},
            "hints": frozenset(),
            "putOps": frozenset(self.ops),
            "getOps": frozenset(),
        }


def _sibs(value: bytes) -> Any:
    # The simulator stores whatever the node persists; a tuple stands in for a sibling set.
    return (value,)


def _unsibs(sibs: Any) -> bytes:
    return bytes(sibs[0])


class FakeView:
    def message(self, src: str, dst: str, msg: Any) -> object | None:
        if isinstance(msg, FStore):
            return {"mtype": "store", "msrc": src, "mdest": dst, "mop": msg.op, "mkey": msg.key}
        if isinstance(msg, FAck):
            return {"mtype": "storeAck", "msrc": src, "mdest": dst, "mop": msg.op}
        return None

    def durable_state(self, node: str, durable: DurableState) -> dict[str, object]:
        return {"store": {k: _unsibs(v) for k, v in durable.store.items()}, "hints": frozenset()}

    def reply(self, request: Any, reply: Any) -> tuple[Any, dict[str, object]] | None:
        if isinstance(request, FPut) and reply[0] == "ok":
            return ("acked", {"key": request.key, "ver": reply[1]})
        return None


def make_sim(
    seed: int = 1, *, w: int = 2, trace: Any = None, manual: bool = False, **kw: Any
) -> Simulation:
    def factory(nid: str, durable: DurableState, rng: random.Random, now: float) -> FakeNode:
        return FakeNode(nid, tuple(p for p in NODES if p != nid), durable, rng, w=w)

    view: Any = FakeView()
    return Simulation(NODES, factory, seed=seed, view=view, trace=trace, manual=manual, **kw)


def fake(sim: Simulation, nid: str) -> FakeNode:
    node = sim.nodes[nid]
    assert isinstance(node, FakeNode)
    return node


def put(sim: Simulation, nid: str, key: str, value: str) -> Any:
    return sim.client_request(nid, FPut(key.encode(), value.encode()))  # type: ignore[arg-type]


def faulty_run(seed: int) -> str:
    """A run with every kind of fault; returns its trace."""
    writer = TraceWriter(keep=True)
    sim = make_sim(
        seed,
        trace=writer,
        link=LinkConfig(delay=0.01, jitter=0.05, loss=0.1, duplicate=0.1),
    )
    rng = random.Random(seed)
    for i in range(60):
        put(sim, rng.choice(NODES), f"k{i % 7}", f"v{i}")
        if i == 20:
            sim.crash("b")
        if i == 30:
            sim.partition([("a", "c")])
        if i == 40:
            sim.restart("b")
            sim.heal()
        sim.run_for(rng.random() * 0.05)
    sim.run_until_quiet()
    return writer.text()


# ---- determinism -----------------------------------------------------------------------------


def test_same_seed_same_trace_bytes_with_faults() -> None:
    a = faulty_run(7)
    assert a == faulty_run(7)
    names = {json.loads(line)["action"] for line in a.splitlines()}
    assert {"Init", "Crash", "Recover", "Partition", "Heal", "LoseMessage"} <= names
    assert "DuplicateMessage" in names


def test_different_seed_different_trace() -> None:
    assert faulty_run(7) != faulty_run(8)


def test_trace_does_not_depend_on_the_hash_seed() -> None:
    texts = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "DYNAMO_REF_CONTRACTS": "0"}
        out = subprocess.run(
            [sys.executable, __file__, "11"], env=env, capture_output=True, check=True, text=True
        )
        texts.add(out.stdout)
    assert len(texts) == 1
    assert texts.pop().count("\n") > 50


def test_tracing_does_not_change_the_run() -> None:
    runs = []
    for trace in (None, TraceWriter()):
        sim = make_sim(3, trace=trace, link=LinkConfig(jitter=0.01, loss=0.2, duplicate=0.2))
        handles = [put(sim, NODES[i % 3], f"k{i}", "v") for i in range(30)]
        sim.run_until_quiet()
        runs.append(([h.reply for h in handles], sim.now, sim.stats, sim.rng.random()))
    assert runs[0] == runs[1]


# ---- the trace -------------------------------------------------------------------------------


def test_trace_lines_are_canonical_and_carry_the_spec_variables() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out)
    put(sim, "a", "k", "v")
    sim.run_until_quiet()
    lines = out.getvalue().splitlines()
    first = json.loads(lines[0])
    assert first["action"] == "Init"
    assert set(first["state"]) == set(VARIABLES)
    for line in lines:
        assert encode(json.loads(line)) == line
    actions = [json.loads(line)["action"] for line in lines]
    assert actions[:2] == ["Init", "ClientPut"]
    put_line = json.loads(lines[1])
    assert put_line["node"] == "a"
    assert put_line["args"] == ["a", "k", "v"]
    # Both store messages are in flight after the put, as a bag of [message, copies].
    msgs = put_line["state"]["msgs"]
    assert [m[0]["mdest"] for m in msgs] == ["b", "c"]
    assert all(m[1] == 1 for m in msgs)
    assert put_line["state"]["putOps"] == {"a": [1], "b": [], "c": []}
    last = json.loads(lines[-1])["state"]
    assert last["acked"] == [{"epoch": 0, "key": "k", "seq": 1, "ver": "v"}]
    assert last["store"] == {"a": {"k": "v"}, "b": {"k": "v"}, "c": {"k": "v"}}


def test_trace_state_is_the_encoding_of_spec_state() -> None:
    # The trace keeps parts of the state as text between steps; it must not drift.
    writer = TraceWriter(keep=True)
    sim = make_sim(6, trace=writer, link=LinkConfig(jitter=0.01, loss=0.1, duplicate=0.1))
    checked = 0
    for i in range(40):
        put(sim, NODES[i % 3], f"k{i % 4}", f"v{i}")
        if i == 10:
            sim.crash("c")
        if i == 20:
            sim.partition([("a", "b")])
        if i == 30:
            sim.restart("c")
        deadline = sim.now + 0.01
        while sim.next_time() is not None and sim.next_time() <= deadline:  # type: ignore[operator]
            before = writer.steps
            sim.step()
            if writer.steps > before:
                last = json.loads(writer.lines[-1])["state"]
                assert encode(last) == encode(sim.spec_state())
            checked += writer.steps > before
    assert checked > 100


def test_canonical_encoding() -> None:
    assert encode({"b": 1, "a": {2, 1}}) == '{"a":[1,2],"b":1}'
    assert encode({("x", 1): 2}) == '[[["x",1],2]]'
    assert encode([b"ok", b"\xff", -0.0, 0.1]) == '["ok","0xff",0.0,0.1]'
    assert encode(frozenset({frozenset({"b"}), frozenset({"a"})})) == '[["a"],["b"]]'
    with pytest.raises(ValueError, match="finite"):
        canonical(float("nan"))
    with pytest.raises(TypeError):
        canonical(object())


# ---- the network -----------------------------------------------------------------------------


def test_loss_is_observable() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out)
    sim.configure_link("a", "b", LinkConfig(loss=1.0))
    h = put(sim, "a", "k", "v")
    sim.run_until_quiet()
    assert h.reply == ("ok", b"v")  # c acked
    assert b"k" not in sim.disks["b"].store
    assert sim.stats.lost == 1
    lost = [json.loads(x) for x in out.getvalue().splitlines() if '"LoseMessage"' in x]
    assert [x["args"][0]["mdest"] for x in lost] == ["b"]
    assert lost[0]["state"]["faults"]["loss"] == 1


def test_duplication_is_observable() -> None:
    sim = make_sim()
    sim.configure_link("a", "b", LinkConfig(duplicate=1.0))
    put(sim, "a", "k", "v")
    sim.run_until_quiet()
    assert fake(sim, "b").received == [("a", 1), ("a", 1)]
    assert fake(sim, "c").received == [("a", 2)]
    assert sim.stats.duplicated == 1


def test_reordering_needs_jitter() -> None:
    def order(jitter: float) -> list[tuple[str, int]]:
        sim = make_sim(5, link=LinkConfig(delay=0.01, jitter=jitter))
        for i in range(40):
            put(sim, "a", f"k{i}", "v")
            sim.run_for(0.001)
        sim.run_until_quiet()
        return fake(sim, "b").received

    assert order(0.0) == sorted(order(0.0))
    shuffled = order(0.05)
    assert shuffled != sorted(shuffled)
    assert sorted(shuffled) == order(0.0)


def test_partition_holds_messages_until_it_heals() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out, w=3)
    sim.partition([("a", "b")])  # one way only: b's acks could still reach a
    h = put(sim, "a", "k", "v")
    sim.run_for(0.5)
    assert fake(sim, "b").received == []
    assert fake(sim, "c").received == [("a", 2)]
    assert [m.dst for m in sim.in_flight()] == ["b"]
    assert sim.in_flight()[0].held
    assert fake(sim, "a").unreachable == ["b"]
    assert not h.done
    sim.heal()
    sim.run_until_quiet()
    assert fake(sim, "b").received == [("a", 1)]
    assert h.reply == ("ok", b"v")
    names = [json.loads(x)["action"] for x in out.getvalue().splitlines()]
    assert names.count("Partition") == 1
    assert names.count("Heal") == 1
    cut = [json.loads(x)["state"]["cut"] for x in out.getvalue().splitlines()]
    assert [["a", "b"]] in cut


def test_partition_groups_cut_both_ways() -> None:
    sim = make_sim()
    sim.partition_groups(["a"], ["b", "c"])
    assert sim.network.cut_links() == [("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")]
    h = put(sim, "b", "k", "v")
    sim.run_until_quiet()
    assert h.reply == ("ok", b"v")
    assert fake(sim, "a").received == []
    sim.heal([("b", "a")])
    sim.run_until_quiet()
    assert fake(sim, "a").received == [("b", 1)]
    assert sim.network.cut_links() == [("a", "b"), ("a", "c"), ("c", "a")]


# ---- crashes ---------------------------------------------------------------------------------


def test_crash_keeps_the_disk_and_loses_volatile_state() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out, w=3)
    put(sim, "a", "k1", "v1")
    sim.run_until_quiet()
    h = put(sim, "a", "k2", "v2")
    sim.run_for(0.0)  # a has sent its stores and set its timer
    assert fake(sim, "a").ops
    sim.crash("a")
    assert not sim.is_up("a")
    assert h.error == "connection lost"
    assert sim.run_until_quiet(limit=5.0)
    assert sim.pending_timers() == []
    assert _unsibs(sim.disks["a"].store[b"k2"]) == b"v2"
    sim.restart("a")
    node = fake(sim, "a")
    assert node.ops == {}
    assert node.fired == []
    assert node.durable is sim.disks["a"]
    assert sim.disks["a"].meta["boots"] == b"2"
    names = [json.loads(x)["action"] for x in out.getvalue().splitlines()]
    assert "Crash" in names
    assert "Recover" in names
    crash_state = next(json.loads(x)["state"] for x in out.getvalue().splitlines() if "Crash" in x)
    assert crash_state["up"]["a"] is False
    assert crash_state["putOps"]["a"] == []
    assert crash_state["store"]["a"] == {"k1": "v1", "k2": "v2"}


def test_messages_to_a_down_node_are_lost_and_the_sender_told() -> None:
    sim = make_sim(w=2)
    sim.crash("b")
    h = put(sim, "a", "k", "v")
    sim.run_until_quiet()
    assert h.reply == ("ok", b"v")
    assert fake(sim, "a").unreachable == ["b"]
    assert sim.stats.lost == 1
    assert sim.stats.faults["loss"] == 1


def test_client_request_to_a_down_node_fails() -> None:
    sim = make_sim()
    sim.crash("c")
    h = put(sim, "c", "k", "v")
    sim.run_until_quiet()
    assert h.error == "node down"
    with pytest.raises(ValueError, match="already down"):
        sim.crash("c")
    with pytest.raises(ValueError, match="already up"):
        sim.restart("a")


# ---- timers ----------------------------------------------------------------------------------


def test_timers_fire_in_order_replaced_and_cancelled() -> None:
    sim = make_sim(seed=4)
    sim.client_request("a", ("timers", 20))  # type: ignore[arg-type]
    sim.run_until(0.0)
    due = [(at, t) for at, nid, t in sim.pending_timers() if nid == "a"]
    assert len(due) == 19  # t1 cancelled
    assert due[-1] == (5.0, ("t", 0))  # reset to its new time
    assert [at for at, _ in due] == sorted(at for at, _ in due)
    node = fake(sim, "a")
    sim.run_until(1.0)
    assert node.fired == [t for _, t in due[:-1]]
    sim.run_until(6.0)
    assert node.fired[-1] == ("t", 0)
    assert sim.pending_timers() == []


def test_manual_mode_still_tells_a_sender_its_peer_is_down() -> None:
    sim = make_sim(manual=True)
    sim.crash("c")
    put(sim, "a", "k", "v")
    sim.run_until(0.5)
    assert fake(sim, "a").unreachable == ["c"]
    assert [m.dst for m in sim.in_flight()] == ["b", "c"]
    assert [m.dst for m in sim.deliverable()] == ["b"]


def test_cancelled_timers_are_compacted_without_changing_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run() -> tuple[str, int]:
        writer = TraceWriter(keep=True)
        sim = make_sim(2, trace=writer, link=LinkConfig(jitter=0.001), history=False)
        longest = 0
        for i in range(600):
            put(sim, NODES[i % 3], f"k{i % 5}", f"v{i}")
            sim.run_for(0.0001)  # far less than the timeout: cancelled timers pile up
            longest = max(longest, len(sim._queue))
        sim.run_until_quiet()
        return writer.text(), longest

    monkeypatch.setattr(Simulation, "compact_at", 64)
    compacted, longest = run()
    assert longest < 200
    monkeypatch.setattr(Simulation, "_compact", lambda self: None)
    kept, longest = run()
    assert longest > 550
    assert kept == compacted


def test_put_timeout_fires_when_acks_never_come() -> None:
    sim = make_sim(w=3)
    sim.configure_links(LinkConfig(loss=1.0))
    h = put(sim, "a", "k", "v")
    sim.run_until_quiet()
    assert h.reply == ("timeout", b"")
    assert h.replied == pytest.approx(1.0)


# ---- manual mode -----------------------------------------------------------------------------


def test_manual_mode_delivers_only_what_is_chosen() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out, manual=True)
    h = put(sim, "a", "k", "v")
    sim.run_until(0.5)
    pending = sim.in_flight()
    assert [(m.src, m.dst) for m in pending] == [("a", "b"), ("a", "c")]
    copy = sim.duplicate(pending[0])
    sim.drop(pending[1])
    sim.deliver(pending[0])
    sim.deliver(copy)
    assert fake(sim, "b").received == [("a", 1), ("a", 1)]
    acks = sim.deliverable()
    assert [(m.src, m.dst) for m in acks] == [("b", "a"), ("b", "a")]
    sim.deliver(acks[0])
    assert h.reply == ("ok", b"v")
    sim.crash("a")
    assert sim.deliverable() == []
    with pytest.raises(ValueError, match="cannot be delivered"):
        sim.deliver(acks[1])
    with pytest.raises(KeyError):
        sim.deliver(pending[1])
    names = [json.loads(x)["action"] for x in out.getvalue().splitlines()]
    assert names == [
        "Init",
        "ClientPut",
        "DuplicateMessage",
        "LoseMessage",
        "ReplicaStore",
        "ReplicaStore",
        "StoreAck",
        "Crash",
    ]


def test_messages_outside_the_spec_are_not_traced() -> None:
    out = io.StringIO()
    sim = make_sim(trace=out, link=LinkConfig(loss=1.0))
    sim.client_request("a", "gossip")  # type: ignore[arg-type]
    sim.run_until_quiet()
    assert sim.stats.lost == 2
    assert sim.stats.faults["loss"] == 0
    assert len(out.getvalue().splitlines()) == 1


def test_scheduled_calls_run_on_the_clock() -> None:
    sim = make_sim()
    sim.schedule(2.0, lambda: sim.crash("b"))
    sim.run_until(1.9)
    assert sim.is_up("b")
    sim.run_until(2.0)
    assert not sim.is_up("b")


if __name__ == "__main__":
    sys.stdout.write(faulty_run(int(sys.argv[1])))
