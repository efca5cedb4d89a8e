"""Core micro-benchmarks: preference-list lookups and vector-clock compares.

Each measurement runs in a fresh process twice, contracts off (DYNAMO_REF_CONTRACTS=0) and on,
because icontract decides at import time. Prints ops/s, the issue's target and the on/off ratio.

    python benchmarks/core_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

TARGETS = {"preference_list": 400_000.0, "vclock_compare": 500_000.0}


def _rate(fn: Callable[[int], None], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return n / best


def _worker(quick: bool) -> dict[str, float]:
    from dynamo_ref.core.ring import Ring
    from dynamo_ref.core.vclock import VClock

    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 5
    ring = Ring.create([f"node{i:02d}" for i in range(64)], q=1024)
    keys = [f"user:{i}".encode() for i in range(4096)]
    ring.preference_list(keys[0], 3)  # builds the per-partition cache outside the timing

    def lookups(count: int) -> None:
        pl = ring.preference_list
        ks = keys
        m = len(ks)
        for i in range(count):
            pl(ks[i % m], 3)

    a = VClock.empty()
    b = VClock.empty()
    for i in range(10):
        a = a.increment(f"node{i}", float(i))
        b = b.increment(f"node{i}", float(i))
    b = b.increment("node3", 20.0)  # b strictly after a: compare must look at every entry

    def compares(count: int) -> None:
        cmp = a.compare
        for _ in range(count):
            cmp(b)

    return {
        "preference_list": _rate(lookups, n, repeats),
        "vclock_compare": _rate(compares, n, repeats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (demo)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.quick)))
        return 0

    results: dict[str, dict[str, float]] = {}
    for label, flag in (("off", "0"), ("on", "1")):
        env = dict(os.environ, DYNAMO_REF_CONTRACTS=flag)
        cmd = [sys.executable, __file__, "--worker"] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[label] = json.loads(out)

    ok = True
    print(f"{'benchmark':<18}{'contracts off':>16}{'contracts on':>16}{'on/off':>9}{'target':>12}")
    for name, target in TARGETS.items():
        off, on = results["off"][name], results["on"][name]
        met = off >= target
        ok = ok and met
        print(
            f"{name:<18}{off:>14,.0f}/s{on:>14,.0f}/s{on / off:>9.3f}"
            f"{target:>11,.0f} {'met' if met else 'MISSED'}"
        )
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
