"""In-process closed-loop benchmark of the TCP runtime: a 3-node cluster on loopback in one
event loop, 64 concurrent requests, puts then gets; prints ops/s and p50/p99 latency.

    .venv/bin/python benchmarks/net_bench.py [--ops 5000] [--concurrency 64] [--partition-aware]

Every node, the client and the load share one core here, so the figures are a floor for a
real cluster of separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

from dynamo_ref.client import AsyncClient
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.net.server import NodeServer, ServerOptions


async def phase(
    name: str, client: AsyncClient, ops: int, concurrency: int, *, value: bytes, put: bool
) -> None:
    latencies: list[float] = []
    counter = iter(range(ops))

    async def worker() -> None:
        for i in counter:
            key = b"key-%d" % (i % 10_000)
            start = time.perf_counter()
            if put:
                await client.put(key, value)
            else:
                await client.get(key)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:4} {ops / elapsed:8.0f} ops/s   p50 {q[49] * 1e3:6.2f} ms   "
        f"p99 {q[98] * 1e3:6.2f} ms"
    )


async def main(ops: int, concurrency: int, partition_aware: bool) -> None:
    config = NodeConfig(max_pending=100_000)
    # Bind first, so that every node knows where the others are.
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    members = [(f"n{i}", f"127.0.0.1:{s.getsockname()[1]}") for i, s in enumerate(socks, 1)]
    servers = [
        NodeServer(
            ServerOptions(node_id=node, sock=sock, members=members, config=config, secret=b"b")
        )
        for (node, _), sock in zip(members, socks, strict=True)
    ]
    for server in servers:
        await server.start()
    await asyncio.sleep(1.5)  # gossip and first contact
    client = await AsyncClient.connect(
        [m[1] for m in members], timeout=30.0, partition_aware=partition_aware
    )
    try:
        await phase("put", client, ops, concurrency, value=b"x" * 100, put=True)
        await phase("get", client, ops, concurrency, value=b"", put=False)
    finally:
        await client.close()
        for server in servers:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--partition-aware", action="store_true")
    args = parser.parse_args()
    coro = main(args.ops, args.concurrency, args.partition_aware)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
