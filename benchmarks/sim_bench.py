"""Simulator benchmarks: client operations per second end to end, and memory per node.

Throughput: a 5-node cluster, N=3 R=2 W=2, 10,000 keys of 10 bytes, 100-byte values, half puts
and half gets, 100 requests in flight at a time, each sent to a replica of its key. Measured
without faults, then with faults: 1% loss and 1% duplication on every link, 0-2 ms of jitter
(reordering), a node crashed and restarted, and another isolated and healed, every 1,000 ops.
Every measurement runs in a fresh process twice, contracts off (DYNAMO_REF_CONTRACTS=0) and
on, since icontract decides at import time. Rates are ops per second of wall time and, because
other work may share the machine, per second of this process's CPU time as well.

Garbage collection is set up as a long-running server would: after the warm-up, what exists
(cluster, ring, stored data) is frozen out of collections (``gc.freeze``) and young
collections run every 50,000 allocations instead of 700. The output says so; ``--default-gc``
measures with CPython's defaults instead.

Memory: one node (N=R=W=1) is sent 100,000 puts of 10-byte keys and 100-byte values through
the simulator; the node's in-memory engine is then measured object by object (every object
reachable from it, counted once), against the raw 11 MB of keys and values.

    python benchmarks/sim_bench.py [--quick] [--default-gc]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
import types
from collections.abc import Iterable

OPS_TARGET = 5_000.0
MEMORY_TARGET = 3.0
KEYS = 10_000
VALUE = b"x" * 100
BATCH = 100
GC_GEN0 = 50_000


def _server_gc() -> None:
    """Collect, freeze what survives, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, *gc.get_threshold()[1:])


def _default_gc(thresholds: tuple[int, int, int]) -> None:
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.collect()


def _key(i: int) -> bytes:
    return b"key%07d" % i  # 10 bytes


def _throughput(ops: int, faults: bool, server_gc: bool = True) -> dict[str, float]:
    from dynamo_ref.core.messages import GetOk, PutOk
    from dynamo_ref.core.node import NodeConfig
    from dynamo_ref.sim import LinkConfig
    from dynamo_ref.sim.cluster import Cluster
    from dynamo_ref.sim.simulation import ClientHandle

    link = LinkConfig(delay=0.001, jitter=0.002, loss=0.01, duplicate=0.01) if faults else None
    sim = Cluster(5, NodeConfig(n=3, r=2, w=2), seed=1, link=link, history=False)
    rng = random.Random(1)

    def target(key: bytes) -> str:
        # A client that knows the ring, and which nodes answer, picks a live replica.
        replicas = sim.replicas(key)
        for n in replicas:
            if n in sim.nodes:
                return n
        return replicas[0]

    def batch(count: int) -> list[ClientHandle]:
        handles = []
        for _ in range(count):
            key = _key(rng.randrange(KEYS))
            if rng.random() < 0.5:
                handles.append(sim.client_put(target(key), key, VALUE))
            else:
                handles.append(sim.client_get(target(key), key))
        sim.run_until_done(handles, limit=5.0)
        return handles

    batch(1_000)  # warm-up: the first puts, gossip settled
    thresholds = gc.get_threshold()
    if server_gc:
        _server_gc()
    done = ok = 0
    events = sim.stats.events
    wall, cpu = time.perf_counter(), time.process_time()
    sim_start = sim.now
    while done < ops:
        if faults and done % 1_000 == 0:
            victim = rng.choice(sim.node_ids)
            if sim.is_up(victim):
                sim.crash(victim)
                sim.schedule(sim.now + 0.5, lambda v=victim: sim.restart(v))  # type: ignore[misc]
        if faults and done % 1_000 == 500:
            cut = rng.choice(sim.node_ids)
            sim.isolate(cut)
            sim.schedule(sim.now + 0.5, sim.heal)
        handles = batch(BATCH)
        done += len(handles)
        ok += sum(1 for h in handles if isinstance(h.reply, PutOk | GetOk))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    if server_gc:
        _default_gc(thresholds)
    return {
        "ops": float(done),
        "ok": ok / done,
        "ops_per_s_wall": done / wall,
        "ops_per_s_cpu": done / cpu,
        "events_per_op": (sim.stats.events - events) / done,
        "sim_seconds": sim.now - sim_start,
    }


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root``, each once; code and types excluded."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen: set[int] = set()
    stack: list[object] = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _memory(keys: int) -> dict[str, float]:
    from dynamo_ref.core.node import NodeConfig
    from dynamo_ref.sim.cluster import Cluster

    sim = Cluster(["n1"], NodeConfig(n=1, r=1, w=1), seed=1, history=False)
    raw = 0
    for start in range(0, keys, 1_000):
        handles = []
        for i in range(start, min(start + 1_000, keys)):
            key = _key(i)
            raw += len(key) + len(VALUE)
            handles.append(sim.client_put("n1", key, VALUE))
        sim.run_until_done(handles)
    engine = sim.node("n1").engine
    assert len(engine) == keys
    gc.collect()
    size = deep_size(engine)
    disk = deep_size(sim.disks["n1"])
    return {
        "keys": float(keys),
        "raw_bytes": float(raw),
        "engine_bytes": float(size),
        "ratio": size / raw,
        "sim_disk_bytes": float(disk),
    }


def _worker(kind: str, quick: bool, server_gc: bool) -> dict[str, dict[str, float]]:
    ops = 3_000 if quick else 20_000
    if kind == "throughput":
        return {
            "no_faults": _throughput(ops, faults=False, server_gc=server_gc),
            "faults": _throughput(ops, faults=True, server_gc=server_gc),
        }
    return {"memory": _memory(20_000 if quick else 100_000)}


def _run(kind: str, contracts: str, quick: bool, server_gc: bool) -> dict[str, dict[str, float]]:
    env = {**os.environ, "DYNAMO_REF_CONTRACTS": contracts}
    cmd = [sys.executable, __file__, "--worker", kind]
    cmd += (["--quick"] if quick else []) + ([] if server_gc else ["--default-gc"])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    result: dict[str, dict[str, float]] = json.loads(out.stdout)
    return result


def _rows(
    off: dict[str, dict[str, float]], on: dict[str, dict[str, float]], names: Iterable[str]
) -> None:
    print(f"{'5 nodes, N=3 R=2 W=2':<14} {'contracts off':>26} {'contracts on':>26} {'off/on':>7}")
    for name in names:
        a, b = off[name], on[name]
        print(
            f"{name:<14} {a['ops_per_s_wall']:>9,.0f} wall {a['ops_per_s_cpu']:>9,.0f} cpu"
            f" {b['ops_per_s_wall']:>9,.0f} wall {b['ops_per_s_cpu']:>9,.0f} cpu"
            f" {a['ops_per_s_cpu'] / b['ops_per_s_cpu']:>6.1f}x"
        )
        print(
            f"{'':<14} {a['ok']:>8.1%} answered ok, {a['events_per_op']:.1f} events/op,"
            f" {a['sim_seconds']:.1f} simulated s for {a['ops']:,.0f} ops"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and keys")
    parser.add_argument(
        "--default-gc", action="store_true", help="CPython's GC settings, nothing frozen"
    )
    parser.add_argument("--worker", choices=["throughput", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    server_gc = not args.default_gc
    if args.worker:
        print(json.dumps(_worker(args.worker, args.quick, server_gc)))
        return

    off = _run("throughput", "0", args.quick, server_gc)
    on = _run("throughput", "1", args.quick, server_gc)
    if server_gc:
        print(
            f"GC as a server sets it: gc.freeze() after the warm-up, gen0 threshold"
            f" {GC_GEN0:,} (--default-gc: CPython's defaults)"
        )
    else:
        print("GC: CPython's defaults (700, 10, 10), nothing frozen")
    _rows(off, on, ["no_faults", "faults"])
    rate = off["no_faults"]["ops_per_s_wall"]
    cpu_rate = off["no_faults"]["ops_per_s_cpu"]
    verdict = "met" if rate >= OPS_TARGET else "NOT met"
    print(
        f"target >= {OPS_TARGET:,.0f} ops/s of wall time, no faults, contracts off: {verdict}"
        f" ({rate:,.0f} wall, {cpu_rate:,.0f} per CPU second;"
        f" load average {os.getloadavg()[0]:.1f})"
    )

    mem = _run("memory", "0", args.quick, server_gc)["memory"]
    verdict = "met" if mem["ratio"] < MEMORY_TARGET else "NOT met"
    per_key = mem["engine_bytes"] / mem["keys"]
    print(
        f"memory, one node, {mem['keys']:,.0f} keys of 10 bytes with 100-byte values:"
        f" engine {mem['engine_bytes'] / 1e6:,.1f} MB ({per_key:,.0f} B/key) for"
        f" {mem['raw_bytes'] / 1e6:,.1f} MB raw = {mem['ratio']:.2f}x"
        f" (target < {MEMORY_TARGET:g}x: {verdict});"
        f" the simulator's disk copy: {mem['sim_disk_bytes'] / 1e6:,.1f} MB"
    )


if __name__ == "__main__":
    main()
