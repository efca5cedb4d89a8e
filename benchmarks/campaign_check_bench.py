"""How long a campaign's history takes to check, against the issue's target: a campaign of 60 s
with 5 nodes and 10 clients checks its history in under 10 s.

    .venv/bin/python benchmarks/campaign_check_bench.py [--seconds 60] [--rate 1000]
        [--clients 10] [--keys 40] [--workload set-add|register|both] [--report]
    .venv/bin/python benchmarks/campaign_check_bench.py --run [--seconds 60] [--workload W]

Synthetic mode generates the history such a campaign records, in `harness.workload`'s shapes
(closed-loop clients making `--rate` invocations/s in all; set-add: a read, then an `add` that
writes the union of the read's siblings plus one element back with the read's context;
register: reads and writes), faults 1-3 s long with 0.5-1.5 s heals as `harness.nemesis`
schedules them, then a final read and a read of each of the 3 replicas of every key. Each op
takes effect at a random instant between its call and its return on a vector-clock store that
keeps concurrent writes as siblings, so the history is correct by construction and every check
must say valid. It times reading the history back from JSON lines and `harness.run.check_run`
(the checks a real run makes). `--report` also times the HTML page. `--run` times a real
`harness.run.run_once` (5 nodes, partition+kill+pause, sloppy quorum) and prints its timings.
Wall-clock time: on a busy machine, figures grow with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.checkers.verdict import combine
from harness.history import Op, dumps_jsonl, loads_jsonl
from harness.report import RunPage, write_run_report
from harness.run import check_run

TARGET_S = 10.0
MS = 1_000_000
NODES = ("n1", "n2", "n3", "n4", "n5")

Clock = dict[str, int]
Siblings = list[tuple[object, Clock]]


def _faults(rng: random.Random, horizon: int) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    t = 500 * MS
    while t < horizon:
        kind = rng.choice(["partition", "kill", "pause"])
        value = {"nodes": [rng.choice(NODES)]}
        end = min(horizon, t + int(rng.uniform(1.0, 3.0) * 1000 * MS))
        out.append((t, {"f": f"start-{kind}", "value": value}))
        out.append((end, {"f": f"stop-{kind}", "value": value}))
        t = end + int(rng.uniform(0.5, 1.5) * 1000 * MS)
    return out


def _merge(clocks: Sequence[Clock]) -> Clock:
    out: Clock = {}
    for c in clocks:
        for n, k in c.items():
            out[n] = max(out.get(n, 0), k)
    return out


def _put(
    siblings: Siblings, value: object, context: Clock, actor: str, n: int
) -> tuple[Clock, Siblings]:
    """A write with `context` by `actor`'s `n`th write: its clock, and the siblings after it.
    The actor is the client (its writes are sequential, so `n` is above every entry of its
    anyone has seen): the clock then dominates exactly the siblings the context has seen."""
    clock = {**context, actor: n}
    kept = [(v, c) for v, c in siblings if not all(clock.get(n, 0) >= k for n, k in c.items())]
    return clock, [*kept, (value, clock)]


def _union(siblings: Siblings) -> list[int]:
    return sorted({e for v, _ in siblings if isinstance(v, list) for e in v})


def _read_extra(siblings: Siblings) -> dict[str, Any]:
    if not siblings:
        return {}
    return {"context": _merge([c for _, c in siblings]), "clocks": [c for _, c in siblings]}


def generate(
    workload: str, *, seconds: float, rate: float, clients: int, keys: int, seed: int = 1
) -> tuple[list[Op], dict[str, list[str]]]:
    """(history, each key's replicas) for `workload` ("set-add" or "register")."""
    rng = random.Random(seed)
    horizon = int(seconds * 1000 * MS)
    mean_latency = clients / rate * 1000 * MS  # closed loop: invocations/s = clients / latency
    # Each op: call, ret, process, f, key, value, status, effect instant (-1: none), and for an
    # add the op index of the read it follows.
    ops: list[tuple[int, int, int, str, str, object, str, int, int]] = []
    unique = 0
    for p in range(clients):
        t = rng.randrange(int(mean_latency))
        while t < horizon:
            key = f"k{rng.randrange(keys)}"
            steps = ["read", "add"] if workload == "set-add" else [rng.choice(["read", "write"])]
            prev = -1
            for f in steps:
                latency = int(rng.uniform(0.3, 1.7) * mean_latency)
                status = "ok"
                if f != "read":
                    status = rng.choices(["ok", "fail", "info"], [96, 2, 2])[0]
                unique += 1
                value = None if f == "read" else unique if f == "add" else f"v{unique}"
                effect = rng.randrange(t, t + latency + 1)
                if status == "fail" or (status == "info" and rng.random() < 0.5):
                    effect = -1
                ops.append((t, t + latency, p, f, key, value, status, effect, prev))
                prev = len(ops) - 1
                t += latency
    store: dict[str, Siblings] = {}
    seen: dict[int, Siblings] = {}
    clocks: dict[int, Clock] = {}
    writes: dict[int, int] = {}
    for i in sorted((i for i, op in enumerate(ops) if op[7] >= 0), key=lambda i: ops[i][7]):
        p, f, key, value, prev = ops[i][2], ops[i][3], ops[i][4], ops[i][5], ops[i][8]
        if f == "read":
            seen[i] = list(store.get(key, []))
            continue
        read = seen.get(prev, []) if f == "add" else list(store.get(key, []))
        written = sorted({*_union(read), value}) if f == "add" else value
        writes[p] = writes.get(p, 0) + 1
        context = _merge([c for _, c in read])
        clocks[i], store[key] = _put(store.get(key, []), written, context, f"c{p}", writes[p])
    events: list[tuple[int, int, dict[str, Any]]] = []
    for i, (call, ret, p, f, key, value, status, _, prev) in enumerate(ops):
        base = {"process": p, "f": f, "key": key, "value": value}
        inv: dict[str, Any] = {**base, "type": "invoke"}
        comp: dict[str, Any] = {**base, "type": status}
        if f == "read":
            got = seen.get(i, [])
            comp["value"] = [v for v, _ in got]
            comp["extra"] = _read_extra(got)
        else:
            # A register write goes with the context of the store when it was called.
            read = seen.get(prev, []) if f == "add" else []
            extra: dict[str, Any] = {}
            if read:
                extra["context"] = _merge([c for _, c in read])
            if f == "add":
                extra["written"] = sorted({*_union(read), value})
            inv["extra"] = extra
            comp["extra"] = dict(extra)
            if status == "ok":
                comp["extra"]["clock"] = clocks[i]
            else:
                comp["value"] = None
        events.append((call, 2 * i, inv))
        events.append((ret, 2 * i + 1, comp))
    for t, fields in _faults(rng, horizon):
        events.append((t, -1, {"process": "nemesis", "type": "info", "key": None, **fields}))
    t = horizon + 2000 * MS  # after heal and quiescence
    replicas: dict[str, list[str]] = {}
    for n in range(keys):
        key = f"k{n}"
        siblings = store.get(key, [])
        final: object = [v for v, _ in siblings]
        extra = {**_read_extra(siblings), "final": True}
        if workload == "set-add":
            extra["siblings"] = final
            final = _union(siblings)
        rd = {"process": "final", "f": "read", "key": key}
        events.append((t, 0, {**rd, "type": "invoke", "extra": {"final": True}}))
        events.append((t + MS, 0, {**rd, "type": "ok", "value": final, "extra": extra}))
        versions = [{"value": v, "clock": c} for v, c in siblings]
        replicas[key] = rng.sample(NODES, 3)
        for node in replicas[key]:
            rr = {"process": "final", "f": "replica-read", "key": key, "extra": {"node": node}}
            events.append((t + 2 * MS, 0, {**rr, "type": "invoke"}))
            events.append((t + 3 * MS, 0, {**rr, "type": "ok", "value": versions}))
            t += 4 * MS
    events.sort(key=lambda e: (e[0], e[1]))
    history = [
        Op(
            process=e["process"],
            type=e["type"],
            f=e["f"],
            value=e.get("value"),
            time=t,
            index=i,
            key=e.get("key"),
            extra=e.get("extra", {}),
        )
        for i, (t, _, e) in enumerate(events)
    ]
    return history, replicas


def bench(workload: str, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    history, replicas = generate(
        workload, seconds=args.seconds, rate=args.rate, clients=args.clients, keys=args.keys
    )
    client_ops = sum(1 for op in history if op.type == "invoke" and isinstance(op.process, int))
    print(
        f"\n{workload}: {len(history)} events, {client_ops} client invocations "
        f"({client_ops / args.seconds:.0f}/s), {args.keys} keys "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )
    data = dumps_jsonl(history)
    start = time.perf_counter()
    history = loads_jsonl(data)
    total = time.perf_counter() - start
    print(f"  {'read history.jsonl':26} {total:6.2f} s  ({len(data) / 1e6:.1f} MB)")
    start = time.perf_counter()
    checks = check_run(history, workload, replicas=dict[Hashable, Sequence[str]](replicas.items()))
    spent = time.perf_counter() - start
    total += spent
    for name, r in checks.items():
        print(f"  {name:26} {r.elapsed:6.2f} s  {r.verdict}")
    print(f"  {'check_run (all checks)':26} {spent:6.2f} s")
    print(f"  {'total with the reading':26} {total:6.2f} s  (target < {TARGET_S:.0f} s)")
    verdict = combine(r.verdict for r in checks.values())
    if args.report:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            page = RunPage(workload, {"workload": workload}, history, checks, verdict)
            write_run_report(page, Path(tmp))
            print(f"  {'HTML report (not a check)':26} {time.perf_counter() - start:6.2f} s")
    if verdict != "valid":
        print("  a correct-by-construction history was not judged valid:", file=sys.stderr)
        for name, r in checks.items():
            print(f"  {name}: {r.explanation[:800]}", file=sys.stderr)
        return float("inf")
    return total


def real_run(args: argparse.Namespace) -> int:
    from harness.run import RunConfig, run_once

    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(
            nodes=5,
            duration=args.seconds,
            nemesis=("partition", "kill", "pause"),
            workload="set-add" if args.workload == "both" else args.workload,
            mode="vclock",
            quorum="sloppy",
            clients=args.clients,
            out=Path(tmp),
        )
        start = time.perf_counter()
        result = asyncio.run(run_once(cfg))
        wall = time.perf_counter() - start
        ops = sum(1 for op in result.history if op.type == "invoke")
        rate = ops / args.seconds
        print(f"real run: {len(result.history)} events, {ops} invocations ({rate:.0f}/s)")
        for name, spent in result.timings.items():
            print(f"  {name:10} {spent:7.2f} s")
        for name, r in result.checks.items():
            print(f"  check {name:14} {r.verdict:8} {r.elapsed:6.2f} s")
        check_s = result.timings.get("check", float("nan"))
        print(f"  wall {wall:.1f} s; verdict {result.verdict}")
        print(f"  check time {check_s:.2f} s (target < {TARGET_S:.0f} s)")
        return 0 if check_s < TARGET_S else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="invocations/s in all")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--workload", choices=("set-add", "register", "both"), default="both")
    parser.add_argument("--report", action="store_true", help="also time the HTML page")
    parser.add_argument("--run", action="store_true", help="time a real run instead")
    args = parser.parse_args()
    if args.run:
        return real_run(args)
    workloads = ("set-add", "register") if args.workload == "both" else (args.workload,)
    totals = {w: bench(w, args) for w in workloads}
    worst = max(totals.values())
    print(f"\nworst total {worst:.2f} s: {'meets' if worst < TARGET_S else 'MISSES'} the target")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
