"""The simulator driving the real node: end to end requests, faults, and byte-stable traces."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable

import pytest

from dynamo_ref.core.messages import ErrorReply, GetOk, PutOk, Store
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.sim import LinkConfig, TraceWriter, encode
from dynamo_ref.sim.cluster import Cluster, node_names
from dynamo_ref.tla.trace import VARIABLES

SPEC_VARIABLES = set(VARIABLES)

CONFIG = NodeConfig(n=3, r=2, w=2)


def lines_of(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_put_then_get_end_to_end() -> None:
    out = io.StringIO()
    sim = Cluster(5, CONFIG, seed=1, trace=out)
    put = sim.client_put(None, b"k", b"v")
    assert sim.run_until_done([put])
    assert isinstance(put.reply, PutOk)
    get = sim.client_get(None, b"k")
    assert sim.run_until_done([get])
    assert isinstance(get.reply, GetOk)
    assert get.reply.siblings == [b"v"]
    # A write with the read's context replaces the value instead of adding a sibling.
    put2 = sim.client_put(None, b"k", b"w", get.reply.context)
    sim.run_until_done([put2])
    get2 = sim.client_get(None, b"k")
    assert sim.run_until_done([get2])
    assert isinstance(get2.reply, GetOk)
    assert get2.reply.siblings == [b"w"]
    sim.run_for(2.0)
    for nid in sim.replicas(b"k"):
        assert [v.value for v in sim.disks[nid].store[b"k"]] == [b"w"]
    state = sim.spec_state()
    acked, answered = state["acked"], state["answered"]
    assert isinstance(acked, list)
    assert isinstance(answered, list)
    assert [a["ver"]["val"] for a in acked] == [b"v", b"w"]
    assert answered[0]["vals"] == [b"v"]
    assert answered[0]["after"] == 1
    assert state["clock"] == 2
    assert state["gets"] == 2
    names = [line["action"] for line in lines_of(out.getvalue())]
    for name in ("Init", "ClientPut", "ReplicaStore", "StoreAck", "ClientGet", "ReplicaRead"):
        assert name in names
    assert "ReadResponse" in names


def test_requests_to_a_non_replica_are_forwarded() -> None:
    sim = Cluster(5, CONFIG, seed=2)
    other = next(n for n in sim.node_ids if n not in sim.replicas(b"k"))
    put = sim.client_put(other, b"k", b"v")
    get = sim.client_get(other, b"k")
    assert sim.run_until_done([put, get])
    assert isinstance(put.reply, PutOk)
    assert isinstance(get.reply, GetOk)


def test_trace_lines_carry_every_spec_variable() -> None:
    out = io.StringIO()
    sim = Cluster(4, CONFIG, seed=3, trace=out)
    handles = [sim.client_put(None, f"k{i}".encode(), b"v") for i in range(5)]
    sim.run_until_done(handles)
    sim.run_for(3.0)
    lines = out.getvalue().splitlines()
    assert len(lines) > 10
    for line in lines:
        data = json.loads(line)
        assert encode(data) == line
        assert set(data) == {"action", "args", "node", "state", "step", "time"}
        if data["state"] is not None:
            assert set(data["state"]) == SPEC_VARIABLES
    first = json.loads(lines[0])
    assert first["state"]["store"] == {n: {} for n in sim.node_ids}
    assert first["state"]["up"] == dict.fromkeys(sim.node_ids, True)


def faulty_run(seed: int) -> str:
    """A run of the real node with loss, duplication, reordering, a crash and a partition."""
    writer = TraceWriter(keep=True)
    sim = Cluster(
        5,
        CONFIG,
        seed=seed,
        q=16,
        trace=writer,
        link=LinkConfig(delay=0.002, jitter=0.01, loss=0.05, duplicate=0.05),
    )
    rng = random.Random(seed)
    handles = []
    for i in range(40):
        key = f"k{rng.randrange(6)}".encode()
        if rng.random() < 0.6:
            handles.append(sim.client_put(None, key, f"v{i}".encode()))
        else:
            handles.append(sim.client_get(None, key))
        if i == 10:
            sim.crash("n2")
        if i == 20:
            sim.isolate("n4")
        if i == 30:
            sim.restart("n2")
            sim.heal()
        sim.run_for(rng.random() * 0.2)
    sim.run_for(5.0)
    assert all(h.done for h in handles)
    return writer.text()


def test_same_seed_same_trace_bytes_with_faults() -> None:
    a = faulty_run(5)
    assert a == faulty_run(5)
    assert a != faulty_run(6)
    names = {line["action"] for line in lines_of(a)}
    for name in ("Crash", "Recover", "Partition", "Heal", "LoseMessage", "DuplicateMessage"):
        assert name in names


def test_trace_does_not_depend_on_the_hash_seed() -> None:
    texts = set()
    for hash_seed in ("0", "123"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, __file__, "9"], env=env, capture_output=True, check=True, text=True
        )
        texts.add(out.stdout)
    assert len(texts) == 1


def test_trace_state_is_the_encoding_of_spec_state() -> None:
    writer = TraceWriter(keep=True)
    sim = Cluster(4, CONFIG, seed=8, q=16, trace=writer, link=LinkConfig(jitter=0.005))
    faults: dict[int, Callable[[], None]] = {
        3: lambda: sim.crash("n2"),
        6: lambda: sim.isolate("n3"),
        9: sim.heal,
        12: lambda: sim.restart("n2"),
    }
    checked = 0
    for i in range(16):
        key = f"k{i % 3}".encode()
        if i % 2:
            sim.client_put(None, key, b"v")
        else:
            sim.client_get(None, key)
        if i in faults:
            faults[i]()
        deadline = sim.now + 0.3
        while sim.next_time() is not None and sim.next_time() <= deadline:  # type: ignore[operator]
            before = writer.steps
            sim.step()
            if writer.steps > before and json.loads(writer.lines[-1])["state"] is not None:
                assert json.loads(writer.lines[-1])["state"] == json.loads(encode(sim.spec_state()))
                checked += 1
    assert checked > 50


def test_crash_keeps_the_disk_and_restart_reads_it() -> None:
    sim = Cluster(3, NodeConfig(n=3, r=2, w=3), seed=4)
    put = sim.client_put("n1", b"k", b"v")
    sim.run_until_done([put])
    put2 = sim.client_put("n1", b"k2", b"v2")
    sim.run_for(0.0)
    assert sim.node("n1").spec_state()["putOps"]
    sim.crash("n1")
    state = sim.spec_state()
    assert state["putOps"]["n1"] == frozenset()  # type: ignore[index]
    assert b"k" in state["store"]["n1"]  # type: ignore[index]
    assert state["up"]["n1"] is False  # type: ignore[index]
    assert put2.error == "connection lost"
    sim.run_for(3.0)
    sim.restart("n1")
    node = sim.node("n1")
    assert [v.value for v in node.engine.get(b"k")] == [b"v"]
    assert [v.value for v in node.engine.get(b"k2")] == [b"v2"]
    assert node.spec_state()["putOps"] == []
    get = sim.client_get("n1", b"k")
    sim.run_until_done([get])
    assert isinstance(get.reply, GetOk)
    assert get.reply.siblings == [b"v"]


def test_sloppy_quorum_hints_and_handoff() -> None:
    sim = Cluster(5, CONFIG, seed=5)
    key = b"k"
    replicas = sim.replicas(key)
    down = replicas[1]
    sim.crash(down)
    put = sim.client_put(replicas[0], key, b"v")
    sim.run_until_done([put])
    assert isinstance(put.reply, PutOk)
    sim.run_for(1.0)
    hints = sim.spec_state()["hints"]
    assert isinstance(hints, dict)
    holders = [n for n, hs in hints.items() if hs]
    assert len(holders) == 1
    assert holders[0] not in replicas
    assert hints[holders[0]][0]["owner"] == down
    sim.restart(down)
    sim.run_for(10.0)
    assert [v.value for v in sim.disks[down].store[key]] == [b"v"]
    assert not any(sim.spec_state()["hints"].values())  # type: ignore[attr-defined]


def test_partitioned_minority_cannot_write_strictly() -> None:
    sim = Cluster(3, NodeConfig(n=3, r=2, w=2, sloppy=False), seed=6)
    sim.isolate("n1")
    put = sim.client_put("n1", b"k", b"v")
    sim.run_until_done([put])
    assert isinstance(put.reply, ErrorReply)
    sim.heal()
    sim.run_for(3.0)  # n1 hears from its peers again (gossip, pings) and stops suspecting them
    put = sim.client_put("n1", b"k", b"v")
    sim.run_until_done([put])
    assert isinstance(put.reply, PutOk)


def test_manual_mode_with_the_real_node() -> None:
    out = io.StringIO()
    sim = Cluster(3, CONFIG, seed=7, manual=True, trace=out)
    put = sim.client_put("n1", b"k", b"v")
    sim.run_until(0.0)
    stores = [m for m in sim.in_flight() if isinstance(m.msg, Store)]
    assert sorted(m.dst for m in stores) == ["n2", "n3"]
    sim.drop(stores[0])
    sim.duplicate(stores[1])
    for m in [m for m in sim.in_flight() if isinstance(m.msg, Store)]:
        sim.deliver(m)
    for m in sim.deliverable():
        if m.dst == "n1":
            sim.deliver(m)
    assert isinstance(put.reply, PutOk)
    names = [line["action"] for line in lines_of(out.getvalue())]
    assert names.count("ReplicaStore") == 2
    assert names.count("LoseMessage") == 1
    assert names.count("DuplicateMessage") == 1


def test_node_names_sort_numerically() -> None:
    assert node_names(12)[:3] == ("n01", "n02", "n03")
    assert list(node_names(12)) == sorted(node_names(12))


@pytest.mark.parametrize("seed", [1, 2])
def test_random_workload_with_faults_answers_every_client(seed: int) -> None:
    sim = Cluster(5, CONFIG, seed=seed, link=LinkConfig(jitter=0.005, loss=0.02, duplicate=0.02))
    rng = random.Random(seed)
    handles = []
    for step in range(200):
        key = f"k{rng.randrange(20)}".encode()
        handles.append(sim.client_put(None, key, b"v") if step % 2 else sim.client_get(None, key))
        if step % 50 == 25:
            victim = rng.choice(sim.node_ids)
            sim.crash(victim)
            sim.schedule(sim.now + 0.5, lambda v=victim: sim.restart(v))  # type: ignore[misc]
        sim.run_for(0.01)
    sim.run_for(5.0)
    assert all(h.done for h in handles)
    lost = [h for h in handles if h.error is not None]
    assert all(h.error in ("connection lost", "node down") for h in lost)
    ok = [h for h in handles if isinstance(h.reply, PutOk | GetOk)]
    assert len(ok) >= 150


if __name__ == "__main__":
    sys.stdout.write(faulty_run(int(sys.argv[1])))
