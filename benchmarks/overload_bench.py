"""Overload: clients far faster than the cluster. Memory must stay bounded and the excess fail
at once with `overload`, not queue without limit.

A 3-node cluster (N=3 R=2 W=2, SQLite full, contracts off) with `--max-pending P` takes a
closed loop of C concurrent puts (C well past what the nodes may hold in progress) for S seconds
over a few connections. Printed: how many were stored and how many refused, the latency of each
kind (a refusal should be far faster than a write), and each node's RSS before, at its peak
(sampled every 50 ms), and after.

    python benchmarks/overload_bench.py [--max-pending 200] [--concurrency 3000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamo_ref.client import AsyncClient, ClientError
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.localcluster import LocalCluster, NodeOptions


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def closed_loop(
    clients: list[AsyncClient], concurrency: int, seconds: float
) -> tuple[list[float], list[float], dict[str, int]]:
    ok: list[float] = []
    refused: list[float] = []
    other: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        client = clients[w % len(clients)]
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            t0 = time.perf_counter()
            try:
                await client.put(b"k%d-%d" % (w, i % 50), b"x" * 100)
                ok.append(time.perf_counter() - t0)
            except ClientError as e:
                if e.code == "overload":
                    refused.append(time.perf_counter() - t0)
                else:
                    other[e.code] = other.get(e.code, 0) + 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ok, refused, other


def ms(xs: list[float], q: float) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(q * len(xs)))] * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-pending", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
    env = dict(os.environ, DYNAMO_REF_CONTRACTS="0")
    options = NodeOptions(config=NodeConfig(max_pending=args.max_pending))
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(3, Path(tmp), options=options, env=env) as lc,
    ):
        lc.wait_healthy()
        pids = [p for p in lc.pids if p is not None]
        before = {p: rss_mb(p) for p in pids}
        peak = dict(before)
        stop = False

        async def sample() -> None:
            while not stop:
                for p in pids:
                    peak[p] = max(peak[p], rss_mb(p))
                await asyncio.sleep(0.05)

        async def run() -> tuple[list[float], list[float], dict[str, int], float]:
            nonlocal stop
            clients = [
                await AsyncClient.connect([lc.addresses[i % 3]], timeout=30.0)
                for i in range(args.connections)
            ]
            sampler = asyncio.create_task(sample())
            t0 = time.perf_counter()
            ok, refused, other = await closed_loop(clients, args.concurrency, args.seconds)
            elapsed = time.perf_counter() - t0
            stop = True
            await sampler
            for c in clients:
                await c.close()
            return ok, refused, other, elapsed

        ok, refused, other, elapsed = asyncio.run(run())
        after = {p: rss_mb(p) for p in pids}
    total = len(ok) + len(refused) + sum(other.values())
    print(
        f"{args.concurrency:,} concurrent puts over {args.connections} connections for "
        f"{elapsed:.1f} s; --max-pending {args.max_pending}; {total:,} requests"
    )
    print(
        f"  stored   {len(ok):>7,} ({len(ok) / total:.0%})  p50 {ms(ok, 0.5)}  p99 {ms(ok, 0.99)}"
    )
    print(
        f"  overload {len(refused):>7,} ({len(refused) / total:.0%})  "
        f"p50 {ms(refused, 0.5)}  p99 {ms(refused, 0.99)}"
    )
    if other:
        print(f"  other errors: {other}")
    for i, p in enumerate(pids):
        print(
            f"  n{i + 1} RSS: {before[p]:.0f} MB before, {peak[p]:.0f} MB peak, "
            f"{after[p]:.0f} MB after"
        )
    if ok and refused:
        ratio = statistics.median(ok) / statistics.median(refused)
        print(f"  a refusal is {ratio:.0f}x faster than a write (medians)")


if __name__ == "__main__":
    main()
