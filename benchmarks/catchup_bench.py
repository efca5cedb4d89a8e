"""Catch-up: how long a replica that missed many writes takes to hold them all after a restart.

Three nodes, N=3 R=2 W=2 (so there is no spare node to take hints: only anti-entropy can bring
the missed writes back). One node is killed, ``--writes`` puts of new keys are acknowledged by
the other two, the node is started again, and from the moment it listens the bench polls it
with replica reads (its own store, no coordinator, no read repair) until it holds every key.
It prints the time to converge and how many keys it held at each second.

With ``PYTHONPATH`` naming another checkout (and run from outside this one), the nodes are
that checkout's: how the bench measures a node before a change. The target (issue 17): 10,000
missed writes converge within 30 s of the restart. The exit code is 0 when that holds.

    python benchmarks/catchup_bench.py [--writes 10000] [--limit 120] [--ae-interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamo_ref.client import AsyncClient
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.localcluster import LocalCluster, NodeOptions

TARGET = 30.0
CONCURRENCY = 64


async def write_all(addresses: list[str], keys: list[bytes]) -> int:
    client = await AsyncClient.connect(addresses, timeout=10.0)
    acked = 0
    queue = list(reversed(keys))

    async def worker() -> None:
        nonlocal acked
        while queue:
            key = queue.pop()
            await client.put(key, b"v" * 100)
            acked += 1

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        await client.close()
    return acked


async def held(address: str, keys: list[bytes]) -> set[bytes]:
    """The keys of ``keys`` the node at ``address`` stores itself."""
    client = await AsyncClient.connect([address], timeout=10.0)
    found: set[bytes] = set()
    try:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            answers = await asyncio.gather(*(client.replica_get(k, address) for k in chunk))
            found.update(k for k, versions in zip(chunk, answers, strict=True) if versions)
    finally:
        await client.close()
    return found


def run(writes: int, limit: float, ae_interval: float, base: Path) -> float | None:
    config = NodeConfig(n=3, r=2, w=2, anti_entropy_interval=ae_interval)
    env = dict(os.environ, DYNAMO_REF_CONTRACTS="0")
    with LocalCluster(3, base, options=NodeOptions(config=config), env=env) as lc:
        lc.wait_healthy()
        lc.kill(2)
        keys = [f"catchup-{i:06d}".encode() for i in range(writes)]
        t0 = time.monotonic()
        acked = asyncio.run(write_all(lc.addresses[:2], keys))
        print(f"{acked} writes acknowledged by two nodes in {time.monotonic() - t0:.1f} s")
        lc.start(2)
        started = time.monotonic()
        missing = keys
        last_report = -1
        while missing:
            elapsed = time.monotonic() - started
            if elapsed > limit:
                print(f"not converged after {limit:.0f} s: {len(missing)} keys missing")
                return None
            found = asyncio.run(held(lc.addresses[2], missing))
            missing = [k for k in missing if k not in found]
            second = int(time.monotonic() - started)
            if second != last_report:
                print(f"  {second:4d} s: {writes - len(missing):6d} of {writes} held")
                last_report = second
            if missing:
                time.sleep(0.2)
        took = time.monotonic() - started
        print(f"converged {took:.1f} s after the restart (anti-entropy every {ae_interval} s)")
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--writes", type=int, default=10_000)
    ap.add_argument("--limit", type=float, default=120.0, help="give up after this many seconds")
    ap.add_argument("--ae-interval", type=float, default=NodeConfig().anti_entropy_interval)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="catchup-") as tmp:
        took = run(args.writes, args.limit, args.ae_interval, Path(tmp))
    ok = took is not None and took <= TARGET
    print(f"target: converged within {TARGET:.0f} s of the restart: {'met' if ok else 'missed'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
