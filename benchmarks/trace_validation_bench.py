"""How long validating a real campaign's traces against the spec takes, and where the time goes.

Runs a dynamo-target campaign with every node tracing (the harness's own run, partitions,
kills and pauses), then validates the traces as `campaign --validate-trace` does, timing each
part: merging the per-process logs, mapping them onto the spec (the TraceData module), and TLC
(parsing the module, then following the run). Prints one row per run size.

    python benchmarks/trace_validation_bench.py                    # 5 nodes: 10 s and 30 s
    python benchmarks/trace_validation_bench.py --time 60 --rate 40 --time-limit 1800
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

from dynamo_ref.tla.merge import merge_files
from dynamo_ref.tla.models import default_spec_dir
from dynamo_ref.tla.process_trace import prepare_run, run_constants, validate_run
from harness.run import RunConfig, run_once

_STARTED = re.compile(r"^Starting\.\.\.", re.M)


def measure(duration: float, rate: float, nodes: int, out: Path, limit: float) -> dict[str, object]:
    cfg = RunConfig(
        nodes=nodes,
        duration=duration,
        nemesis=("partition", "kill", "pause"),
        clients=8,
        rate=rate / 8 if rate > 0 else None,
        keys=40,
        seed=1,
        out=out,
        quiesce=10.0,
        validate_trace=True,
        validate_time_limit=1.0,  # the campaign's own validation is not what is timed
    )
    result = asyncio.run(run_once(cfg))
    ops = len([op for op in result.history if op.type == "invoke"])
    paths = [out / "cluster"]
    t0 = time.monotonic()
    config, names = run_constants(paths)
    merged = merge_files(paths)
    t1 = time.monotonic()
    prepared = prepare_run(merged, config, names)
    t2 = time.monotonic()
    verdict = validate_run(paths, spec_dir=default_spec_dir(), timeout=limit, explain=False)
    output = verdict.result.output
    # TLC prints "Starting..." once the modules are parsed: the time before it is parsing.
    parse = None
    if _STARTED.search(output):
        parse = verdict.result.seconds - _tlc_search_seconds(output)
    return {
        "time": duration,
        "history_ops": ops,  # the workload's and the final reads
        "actions": len(prepared.lines),
        "module_mb": round(len(prepared.module) / 1e6, 1),
        "merge_s": round(t1 - t0, 1),
        "map_s": round(t2 - t1, 1),
        "tlc_parse_s": None if parse is None else round(parse, 1),
        "tlc_s": round(verdict.result.seconds, 1),
        "verdict": "accepted" if verdict.accepted else verdict.describe()[:120],
    }


def _tlc_search_seconds(output: str) -> float:
    """TLC's own account of its search: 'Finished in 01min 09s' less the parse it excludes is
    not printed, so the search is timed from its start and end stamps."""
    stamps = re.findall(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\)", output)
    if len(stamps) < 2:
        return 0.0
    fmt = "%Y-%m-%d %H:%M:%S"
    start, end = (time.mktime(time.strptime(s, fmt)) for s in (stamps[0], stamps[-1]))
    return max(0.0, end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument(
        "--rate",
        type=float,
        default=80.0,
        help="client ops/s in all; 0: closed loop, as fast as the cluster answers",
    )
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=900.0, help="TLC's budget")
    parser.add_argument(
        "--keep", type=Path, help="keep each run's directory under this one (to profile TLC on it)"
    )
    args = parser.parse_args()
    rows = []
    for duration in args.time or [10.0, 30.0]:
        scratch = Path(tempfile.mkdtemp(prefix="trace-bench-", dir=args.keep))
        try:
            rows.append(measure(duration, args.rate, args.nodes, scratch, args.time_limit))
        finally:
            if args.keep is None:
                shutil.rmtree(scratch, ignore_errors=True)
        print(rows[-1], flush=True)
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r[h]) for h in head) + " |")


if __name__ == "__main__":
    main()
