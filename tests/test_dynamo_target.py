"""The dynamo-ref target: real node processes on loopback, proxied links, PID control, the
client's error mapping, clocks for the checkers, and the node-local replica read."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dynamo_ref.tla.merge import merge_files, merged_line
from harness.checkers.causal import descends
from harness.net.netns import NetnsNetwork
from harness.targets.base import OpFailed, OpUnknown, Target, VersionedClient
from harness.targets.dynamo import DynamoContext, DynamoTarget, Timing, dvv_dominates

pytestmark = pytest.mark.net

FAST = Timing(request_timeout=0.5, fallback_delay=0.2, client_timeout=1.5)


def run(target: DynamoTarget, body: Callable[[DynamoTarget], Awaitable[None]]) -> list[int]:
    """Set up, run `body`, always tear down; the PIDs that ran (checked gone after)."""
    pids: list[int] = []

    async def main() -> None:
        await target.setup()
        try:
            pids.extend(p for p in map(target.pid, target.nodes()) if p is not None)
            await body(target)
        finally:
            await target.teardown()

    asyncio.run(main())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    return pids


async def eventually(op: Callable[[], Awaitable[object]], tries: int = 100) -> None:
    """Retry `op` until it succeeds: restarted or healed nodes need a few gossip rounds
    before their peers stop suspecting them."""
    for _ in range(tries - 1):
        try:
            await op()
            return
        except (OpFailed, OpUnknown):
            await asyncio.sleep(0.1)
    await op()


def as_target(t: DynamoTarget) -> Target[VersionedClient]:
    return t  # mypy checks that DynamoTarget implements the Target protocol


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def stopped(pid: int) -> bool:
    """Whether the process is stopped, once a signal had time to land."""
    for _ in range(100):
        if proc_state(pid) == "T":
            return True
        await asyncio.sleep(0.02)
    return False


def test_lifecycle_by_pid_and_durable_restart(tmp_path: Path) -> None:
    async def body(t: DynamoTarget) -> None:
        c = await t.client("n1")
        assert isinstance(c, VersionedClient)
        values, ctx = await c.get("k")
        assert values == []
        await c.put("k", {"v": 1}, ctx)
        pid = t.pid("n2")
        assert pid is not None
        await t.pause("n2")
        assert await stopped(pid)
        await t.resume("n2")
        assert not await stopped(pid)
        for node in t.nodes():  # every node dies at once: only the disk remembers
            await t.kill(node)
            assert t.pid(node) is None
        with pytest.raises(OpFailed):
            await c.get("k")  # nothing listens: certainly not done
        for node in t.nodes():
            await t.start(node)
        assert t.pid("n2") not in (None, pid)
        c3 = await t.client("n3")
        got: list[object] = []

        async def read() -> None:
            got[:] = (await c3.get("k"))[0]

        await eventually(read)
        assert got == [{"v": 1}]

    pids = run(DynamoTarget(3, tmp_path, timing=FAST), body)
    assert as_target(DynamoTarget(3, tmp_path)).nodes() == ["n1", "n2", "n3"]
    assert len(pids) == 3


def test_every_link_goes_through_the_proxy_even_after_gossip(tmp_path: Path) -> None:
    """n1 cut from both peers cannot gather a strict W=2, also after n2 and n3 restarted (a
    restart re-advertises a node's real address through gossip, which must not be used)."""

    async def body(t: DynamoTarget) -> None:
        c = await t.client("n1")
        await c.put("a", 1, None)  # negative control: healthy, it works
        await t.stop("n2")
        await t.start("n2")
        await t.kill("n3")
        await t.start("n3")
        await asyncio.sleep(1.0)  # several gossip rounds
        await eventually(lambda: c.put("a", 2, None))
        t.network.cut({("n1", "n2"), ("n1", "n3")})  # one way: n1 cannot send
        with pytest.raises(OpUnknown):
            await c.put("b", 3, None)  # sent, no quorum: it may be stored (at n1 it is)
        t.network.heal()
        await eventually(lambda: c.put("b", 4, None))

    run(DynamoTarget(3, tmp_path, quorum="strict", timing=FAST), body)


def test_replica_reads_and_clocks(tmp_path: Path) -> None:
    async def body(t: DynamoTarget) -> None:
        key = "x"
        prefs = t.preference_list(key)
        assert len(prefs) == 3
        c1, c2 = await t.client("n1"), await t.client("n2")
        _, ctx = await c1.get(key)
        await c1.put(key, "a", ctx)
        await c2.put(key, "b", ctx)  # the same context: concurrent with "a"
        values, ctx2 = await c1.get(key)
        assert sorted(map(str, values)) == ["a", "b"]
        assert isinstance(ctx2, DynamoContext)
        assert len(ctx2.clocks) == 2
        ca, cb = ctx2.clocks
        assert not dvv_dominates(tuple(ca.items()), tuple(cb.items()))
        assert not dvv_dominates(tuple(cb.items()), tuple(ca.items()))
        await c1.put(key, "c", ctx2)  # merges both
        deadline = time.monotonic() + 5
        while True:
            held = {n: await t.replica_get(n, key) for n in prefs}
            if all([v["value"] for v in vs] == ["c"] for vs in held.values()):
                break
            assert time.monotonic() < deadline, held
            await asyncio.sleep(0.1)
        (merged,) = held[prefs[0]]
        clock = merged["clock"]
        assert isinstance(clock, dict)
        for old in (ca, cb):
            assert dvv_dominates(tuple(sorted(clock.items())), tuple(sorted(old.items())))
        assert await t.replica_get(prefs[0], "never-written") == []
        await t.set_clock_skew("n2", 30.0)
        assert (await t.status("n2"))["skew"] == 30.0

    run(DynamoTarget(3, tmp_path, mode="dvv", timing=FAST), body)


def test_dvv_order_differs_from_plain_vector_clocks() -> None:
    """Two writes through n1 from one stale context: plain descent would order them (the
    bug DVV fixes), the DVV order keeps them concurrent; a write that read one covers it."""
    a = (("@n1", 5), ("n2", 1))
    b = (("@n1", 6), ("n2", 1))
    assert not dvv_dominates(b, a)
    assert not dvv_dominates(a, b)
    folded_a, folded_b = (("n1", 5), ("n2", 1)), (("n1", 6), ("n2", 1))
    assert descends(folded_b, folded_a)  # what the checker would wrongly conclude
    after = (("@n3", 1), ("n1", 6), ("n2", 1))
    assert dvv_dominates(after, a)
    assert dvv_dominates(after, b)
    assert not dvv_dominates(a, after)
    assert dvv_dominates(a, a)


def test_pick_keys_hit_every_partition(tmp_path: Path) -> None:
    t = DynamoTarget(5, tmp_path, partitions=16)
    keys = t.pick_keys(40)
    assert len(set(keys)) == 40
    assert {t.ring.partition_of(k.encode()) for k in keys} == set(range(16))
    few = t.pick_keys(8)
    assert len({t.ring.partition_of(k.encode()) for k in few}) == 8


@pytest.mark.root
def test_netns_backend_cuts_links_and_clients_get_in(tmp_path: Path) -> None:
    made: list[str] = []

    async def body(t: DynamoTarget) -> None:
        assert isinstance(t.network, NetnsNetwork)
        made.extend(t.network.namespaces())
        c = await t.client("n1")
        await eventually(lambda: c.put("a", 1, None))
        t.network.cut({("n1", "n2"), ("n1", "n3")})
        with pytest.raises(OpUnknown):
            await c.put("b", 2, None)
        t.network.heal()
        await eventually(lambda: c.put("b", 3, None))
        assert [v["value"] for v in await t.replica_get("n2", "a")] == [1]

    run(DynamoTarget(3, tmp_path, net="netns", quorum="strict", timing=FAST), body)
    assert made
    ours = set(made)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not {line.split()[0] for line in listed.stdout.splitlines() if line} & ours


def test_traced_nodes_and_the_faults_injected_merge_into_one_run(tmp_path: Path) -> None:
    async def body(t: DynamoTarget) -> None:
        c = await t.client("n1")
        await c.put("k", {"v": 1}, None)
        await t.pause("n2")
        await t.resume("n2")
        await t.kill("n2")
        await c.put("k2", {"v": 2}, None)
        await t.start("n2")
        c2 = await t.client("n2")

        async def read() -> None:
            await c2.get("k")

        await eventually(read)

    target = DynamoTarget(3, tmp_path, timing=FAST, trace=True)
    run(target, body)
    traces = [tmp_path / n / "trace.jsonl" for n in ("n1", "n2", "n3")]
    result = merge_files(traces)
    assert result.nodes == ["n1", "n2", "n3"]
    assert result.delivered > 0
    restarts = [s for s in result.steps if s.line is None]
    assert [s.node for s in restarts] == ["n2"]
    faults = [json.loads(x) for x in target.fault_log.read_text().splitlines()]
    n2 = [(f["fault"], f["t"]) for f in faults if f["node"] == "n2"]
    # Then the teardown's SIGCONT and SIGTERM.
    assert [what for what, _ in n2][:5] == ["start", "SIGSTOP", "SIGCONT", "SIGKILL", "start"]
    # The kill falls between n2's last step before it and its restart, on the shared clock.
    killed_at = n2[3][1]
    before = [s.t for s in result.steps if s.node == "n2" and s.incarnation == 1]
    assert max(before) <= killed_at <= restarts[0].t
    # With the fault log, the merged behaviour shows the faults where they happened.
    merged = merge_files([tmp_path])
    assert merged.nodes == ["n1", "n2", "n3"]
    kinds = [merged_line(s)["action"] for s in merged.steps if s.fault is not None]
    assert kinds[:5] == ["Start", "Start", "Start", "Pause", "Resume"]
    kill = next(k for k, s in enumerate(merged.steps) if merged_line(s).get("action") == "Kill")
    restart = next(k for k, s in enumerate(merged.steps) if s.line is None and s.fault is None)
    last_n2 = max(k for k, s in enumerate(merged.steps[:restart]) if s.node == "n2")
    assert last_n2 < kill < restart


def test_the_messages_a_cut_drops_are_paired_with_their_sends(tmp_path: Path) -> None:
    async def body(t: DynamoTarget) -> None:
        c = await t.client("n1")
        await eventually(lambda: c.put("warm", 1, None))  # every link open
        t.network.cut({("n1", "n2"), ("n1", "n3")})
        with pytest.raises(OpUnknown):
            await c.put("cut", 2, None)
        t.network.heal()
        await eventually(lambda: c.put("after", 3, None))

    target = DynamoTarget(3, tmp_path, timing=FAST, trace=True, quorum="strict")
    run(target, body)
    faults = [json.loads(x) for x in target.fault_log.read_text().splitlines()]
    assert [f["fault"] for f in faults if f["fault"].startswith("net-")] == ["net-cut", "net-heal"]
    drops = [f for f in faults if f["fault"] == "drop"]
    assert drops
    assert all(f["from"] == "n1" for f in drops)
    merged = merge_files([tmp_path])
    assert merged.dropped >= 1
    lost = [s for s in merged.steps if s.fault is not None and s.fault.fault == "drop"]
    paired = [s for s in lost if s.recv_msg is not None]
    assert len(paired) == merged.dropped
    order = {id(s): k for k, s in enumerate(merged.steps)}
    for drop in paired:
        assert drop.recv_msg is not None
        sender = next(s for s in merged.steps if drop.recv_msg in s.sent_msgs)
        # Sent before the cut dropped it, and never received.
        assert order[id(sender)] < order[id(drop)]
        assert not any(s.recv_msg == drop.recv_msg and s.fault is None for s in merged.steps)
    # The put's stores to both replicas were among them.
    stored = [
        s
        for s in merged.steps
        if s.node == "n1"
        and s.line is not None
        and any(a[0] == "ClientPut" and a[2] == "cut" for a in s.line.actions)
    ]
    assert len(stored) == 1
    assert set(stored[0].sent_msgs) & {s.recv_msg for s in paired}
