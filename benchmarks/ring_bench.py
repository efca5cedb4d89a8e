"""The paper's partitioning strategies side by side (DeCandia et al., section 6.2): strategy 1
(``TokenRing``, T random tokens per node) against strategy 3 (``Ring``, Q equal partitions,
the node's), at the same number of ranges per node.

For each cluster size it prints the load balance (the largest node's share of the key space
over the mean, 1.0 is perfect), how many keys change owner when one node joins, and
preference-list lookups per second. Strategy 3 should balance better and move only what the
newcomer takes; strategy 1 is kept in the core for exactly this comparison.

    python benchmarks/ring_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("DYNAMO_REF_CONTRACTS", "0")

from dynamo_ref.core.ring import Partitioner, Ring, TokenRing


def imbalance(ring: Partitioner) -> float:
    shares = ring.key_space_share().values()
    return max(shares) / (sum(shares) / len(shares))


def moved(before: Partitioner, after: Partitioner, keys: list[bytes]) -> float:
    return sum(before.preference_list(k, 1) != after.preference_list(k, 1) for k in keys) / len(
        keys
    )


def lookups_per_second(ring: Partitioner, keys: list[bytes], n: int) -> float:
    ring.preference_list(keys[0], 3)
    t0 = time.perf_counter()
    for i in range(n):
        ring.preference_list(keys[i % len(keys)], 3)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    keys = [f"user:{i}".encode() for i in range(2_000 if args.quick else 20_000)]
    lookups = 20_000 if args.quick else 200_000
    print(f"{'nodes':>5} {'strategy':<24} {'max/mean':>8} {'moved on join':>13} {'lookups/s':>11}")
    for count in (8, 16, 32):
        nodes = [f"n{i:02d}" for i in range(count)]
        per_node = 16
        q = 1 << (count * per_node - 1).bit_length()
        rings: list[tuple[str, Partitioner, Partitioner]] = [
            (
                f"1: {per_node} tokens/node",
                TokenRing.create(nodes, per_node),
                TokenRing.create([*nodes, "new"], per_node),
            ),
            (f"3: Q={q}", Ring.create(nodes, q), Ring.create(nodes, q).join("new")),
        ]
        for name, ring, joined in rings:
            rate = lookups_per_second(ring, keys, lookups)
            print(
                f"{count:>5} {name:<24} {imbalance(ring):>8.3f} "
                f"{moved(ring, joined, keys):>13.3f} {rate:>11,.0f}"
            )


if __name__ == "__main__":
    main()
