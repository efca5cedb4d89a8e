"""Python calls per client operation on a real cluster: every node under cProfile.

cluster_bench's 3-node cluster (N=3 R=2 W=2, SQLite full) runs each node under cProfile while
the same closed-loop generator drives one phase (puts, gets or 50/50). At the end each node
dumps its profile on SIGUSR1 and the counts of all three are summed and divided by the
operations answered. cProfile slows every call several times, so its times are not a node's;
its call counts are exact, and on this code a node's CPU per operation follows them (issue
15's round 7, benchmarks/README.md).

    python benchmarks/node_calls.py [--phase get|put|50-50] [--contracts] [--seconds S] [--top N]
        [--store full|normal|off|memory] [--callers NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster_bench as cb

from dynamo_ref.localcluster import LocalCluster

SHARES = {"get": 0.0, "put": 1.0, "50-50": 0.5}

# The node's own entry point under a profiler that writes its figures on SIGUSR1 and exits.
_PROFILED = """
import cProfile, os, runpy, signal, sys
out = sys.argv.pop(1)
profile = cProfile.Profile()
def dump(*_):
    profile.disable()
    profile.dump_stats(os.path.join(out, str(os.getpid())))
    os._exit(0)
signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, lambda *_: profile.enable())
sys.argv[0] = "dynamo_ref"
runpy.run_module("dynamo_ref", run_name="__main__")
"""


def _signal(lc: LocalCluster, sig: signal.Signals) -> None:
    for pid in lc.pids:
        if pid is not None:
            os.kill(pid, sig)


async def _drive(lc: LocalCluster, phase: str, seconds: float, out: Path) -> int:
    store = await cb.DynamoStore.connect(lc.addresses)
    try:
        await cb.load_keys(store, 2_000)
        _signal(lc, signal.SIGUSR2)
        result = await cb.run_phase(
            store, phase, SHARES[phase], seconds=seconds, warmup=0.0, seed=1
        )
    finally:
        await store.close()
    # No warm-up: every operation the profiles saw is counted (bar the few cut off at the end).
    _signal(lc, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while len(list(out.iterdir())) < len(lc.pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return result.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=sorted(SHARES), default="get")
    ap.add_argument("--contracts", action="store_true", help="contracts on in the nodes")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--store", choices=cb.STORES, default="full", help="as cluster_bench's")
    ap.add_argument("--top", type=int, default=40, help="functions listed, by calls")
    ap.add_argument(
        "--callers", metavar="NAME", help="also list who calls the functions named NAME"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profiles"
        out.mkdir()
        options = cb.cluster_options(store=args.store)
        command = [sys.executable, "-c", _PROFILED, str(out)]
        env = cb.node_env(args.contracts, "uvloop")
        with LocalCluster(
            3, Path(tmp) / "cluster", options=options, command=command, env=env
        ) as lc:
            ops = asyncio.run(_drive(lc, args.phase, args.seconds, out))
        files = [str(p) for p in out.iterdir()]
        if len(files) < 3 or ops == 0:
            raise SystemExit(f"{len(files)} profiles and {ops} operations: nothing to report")
        stats = pstats.Stats(*files)
    entries = stats.stats  # type: ignore[attr-defined]
    calls = sum(v[1] for v in entries.values())
    print(
        f"{args.phase}, contracts {'on' if args.contracts else 'off'}: {ops:,} operations "
        f"answered, {calls / ops:,.0f} Python calls per operation over the 3 nodes"
    )
    print("calls/op  function")
    for (path, line, name), v in sorted(entries.items(), key=lambda kv: -kv[1][1])[: args.top]:
        where = name if path == "~" else f"{Path(path).name}:{line}({name})"
        print(f"{v[1] / ops:8.2f}  {where}")
    if args.callers:
        for (path, line, name), v in entries.items():
            if args.callers not in name:
                continue
            print(f"\ncallers of {name} ({Path(path).name}:{line}), calls/op")
            for (cp, cl, cn), c in sorted(v[4].items(), key=lambda kv: -kv[1][1])[: args.top]:
                print(f"{c[1] / ops:8.2f}  {Path(cp).name}:{cl}({cn})")


if __name__ == "__main__":
    main()
