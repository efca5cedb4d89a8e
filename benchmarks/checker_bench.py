"""Linearizability checker speed on Porcupine's histories, beside Porcupine's own Go timings.

    .venv/bin/python benchmarks/checker_bench.py [--repeat 3] [--filter etcd_00] [--knossos]
        [--cli] [--synthetic 100000]

Per file: our check time (best of --repeat runs, parsing excluded as in Go's benchmark), the Go
time from `verdicts.csv`, their ratio, and whether the verdict matches. Then the totals against
the issue's targets: all 102 etcd histories in under 3 s (at most 5x Porcupine) and kv/c50-ok in
under 1 s. `--cli` times `dynamo-ref check` end to end (parsing, checking, output) on every
conformance history; `--synthetic N` times the lost-writes, convergence and Dynamo checkers on a
generated history of N operations. Wall-clock time: on a busy machine, figures grow with the
load.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner

from harness.check_cli import check_command
from harness.checkers import models as M
from harness.checkers.convergence import check_convergence_history
from harness.checkers.dynamo_semantics import check_dynamo
from harness.checkers.linearizable import CheckResult, check
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.models import Model
from harness.checkers.verdict import Result as VResult
from harness.history import (
    Op,
    Operation,
    OpType,
    pair,
    read_edn_history,
    read_porcupine_etcd_log,
    read_porcupine_kv,
)

ETCD_TARGET_S = 3.0
C50_TARGET_S = 1.0


def default_conformance() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "conformance"


def timed(
    model: Model[Any, Any, Any], ops: list[Operation], repeat: int, limit: float
) -> tuple[float, CheckResult]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = check(model, ops, time_limit=limit)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def cli_suite(conformance: Path) -> int:
    """`check` on every conformance history, in process; returns the number of mismatches."""
    runner = CliRunner()
    jobs: list[tuple[Path, str, set[int]]] = []
    with (conformance / "porcupine" / "verdicts.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            model = "etcd" if row["model"] == "etcd-cas-register" else "kv"
            code = 1 if row["expected_linearizable"] == "false" else 0
            jobs.append((conformance / "porcupine" / row["file"], model, {code}))
    for path in sorted((conformance / "knossos").rglob("*.edn")):
        rel = str(path.relative_to(conformance / "knossos"))
        if rel.startswith("mutex/"):
            jobs.append((path, "mutex", {0, 1}))
        else:
            model = "multi-register" if rel.startswith("multi-register/") else "cas-register"
            jobs.append((path, model, {0 if "/good/" in f"/{rel}" else 1}))
    bad = 0
    start = time.perf_counter()
    for path, model, codes in jobs:
        result = runner.invoke(check_command, [str(path), "--model", model])
        if result.exit_code not in codes:
            bad += 1
            print(f"  MISMATCH {path.name}: exit {result.exit_code}")
    spent = time.perf_counter() - start
    print(f"cli: dynamo-ref check on {len(jobs)} conformance histories: {fmt_s(spent)} in all")
    return bad


def synthetic(n_ops: int, keys: int = 1000, processes: int = 10, seed: int = 7) -> list[Op]:
    """`n_ops` register writes and reads with vector clocks, `processes` at a time, then a
    final read and three replica reads of every key."""
    rng = random.Random(seed)
    ops: list[Op] = []
    clocks: dict[str, dict[str, int]] = {}
    values: dict[str, str] = {}

    def emit(
        process: int | str, typ: OpType, f: str, value: object, key: str, **extra: object
    ) -> None:
        ops.append(
            Op(
                process=process,
                type=typ,
                f=f,
                value=value,
                time=len(ops),
                index=len(ops),
                key=key,
                extra=extra,
            )
        )

    done = 0
    while done < n_ops:
        batch: list[tuple[int, str, object, str]] = []
        for p in range(min(processes, n_ops - done)):
            key = f"k{rng.randrange(keys)}"
            if rng.random() < 0.5:
                value = f"v{done + p}"
                emit(p, "invoke", "write", value, key, context=dict(clocks.get(key, {})))
                batch.append((p, "write", value, key))
            else:
                emit(p, "invoke", "read", None, key)
                batch.append((p, "read", None, key))
        for p, fn, written, key in batch:
            if fn == "write":
                clock = dict(clocks.get(key, {}))
                node = f"n{rng.randrange(3)}"
                clock[node] = clock.get(node, 0) + 1
                clocks[key], values[key] = clock, str(written)
                emit(p, "ok", "write", written, key, clock=clock)
            else:
                current = [values[key]] if key in values else []
                ctx = clocks.get(key, {})
                emit(p, "ok", "read", current, key, clocks=[ctx] if current else [], context=ctx)
        done += len(batch)
    for key in sorted(clocks):
        emit("final", "invoke", "read", None, key, final=True)
        emit("final", "ok", "read", [values[key]], key, clocks=[clocks[key]])
        versions = [{"value": values[key], "clock": clocks[key]}]
        for node in ("n0", "n1", "n2"):
            emit("final", "invoke", "replica-read", None, key, node=node)
            emit("final", "ok", "replica-read", versions, key)
    return ops


def synthetic_bench(n_ops: int) -> int:
    ops = synthetic(n_ops)
    client = [op for op in ops if op.f != "replica-read"]
    bad = 0
    checks: list[tuple[str, Callable[[], VResult]]] = [
        ("lost-writes", lambda: check_lost_writes(client)),
        ("convergence", lambda: check_convergence_history(ops)),
        ("dynamo --strict-quorum", lambda: check_dynamo(client, strict_quorum=True)),
    ]
    for name, run in checks:
        start = time.perf_counter()
        result = run()
        spent = time.perf_counter() - start
        bad += result.verdict != "valid"
        print(
            f"synthetic {n_ops} ops ({len(ops)} events): {name:22} {fmt_s(spent):>9}  "
            f"{result.verdict}"
        )
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conformance", type=Path, default=default_conformance())
    parser.add_argument("--repeat", type=int, default=3, help="runs per file; the best counts")
    parser.add_argument("--filter", default="", help="only files whose name contains this")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per check")
    parser.add_argument("--knossos", action="store_true", help="also time the Knossos suite")
    parser.add_argument("--cli", action="store_true", help="also time `check` on the suite")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="also time the other checkers on an N-operation history",
    )
    args = parser.parse_args()

    root = args.conformance / "porcupine"
    verdicts = root / "verdicts.csv"
    if not verdicts.is_file():
        print(f"conformance data not found: {verdicts}", file=sys.stderr)
        return 2
    with verdicts.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if args.filter in r["file"]]

    print(f"{'file':26} {'ops':>5} {'expected':>9} {'got':>8} {'ours':>10} {'Go':>10} {'ratio':>7}")
    totals: dict[str, list[float]] = {"jepsen": [0.0, 0.0], "kv": [0.0, 0.0]}
    c50: float | None = None
    mismatches = []
    for row in rows:
        name = row["file"]
        path = root / name
        model: Model[Any, Any, Any]
        if name.startswith("jepsen/"):
            group, model = "jepsen", M.etcd_register()
            ops = pair(read_porcupine_etcd_log(path))
        else:
            group, model = "kv", M.kv()
            ops = pair(read_porcupine_kv(path))
        ours, result = timed(model, ops, args.repeat, args.time_limit)
        go = float(row["go_ns_per_check"]) / 1e9 if row["go_ns_per_check"] else None
        expected = {"true": "valid", "false": "invalid", "": "valid"}[row["expected_linearizable"]]
        if result.verdict != expected:
            mismatches.append(name)
        totals[group][0] += ours
        totals[group][1] += go or 0.0
        if name == "kv/c50-ok.txt":
            c50 = ours
        ratio = f"{ours / go:.1f}x" if go else "-"
        flag = "" if result.verdict == expected else "  MISMATCH"
        print(
            f"{name:26} {len(ops):5} {expected:>9} {result.verdict:>8} {fmt_s(ours):>10} "
            f"{fmt_s(go):>10} {ratio:>7}{flag}"
        )

    print()
    for group, (ours, go) in totals.items():
        n = sum(1 for r in rows if r["file"].startswith(group + "/"))
        if n:
            ratio = f"{ours / go:.1f}x" if go else "-"
            print(
                f"total {group:7} {n:3} files: ours {fmt_s(ours):>9}   Go {fmt_s(go):>9}   {ratio}"
            )
    etcd_files = sum(1 for r in rows if r["file"].startswith("jepsen/"))
    if etcd_files == 103:
        ok = totals["jepsen"][0] < ETCD_TARGET_S
        print(f"target: etcd histories under {ETCD_TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    if c50 is not None:
        verdict = "met" if c50 < C50_TARGET_S else "MISSED"
        print(f"target: kv/c50-ok under {C50_TARGET_S:.0f} s: {fmt_s(c50)}, {verdict}")

    if args.knossos:
        kroot = args.conformance / "knossos"
        spent = 0.0
        files = sorted(p for p in kroot.rglob("*.edn") if args.filter in str(p))
        for path in files:
            rel = str(path.relative_to(kroot))
            kmodel: Model[Any, Any, Any]
            if rel.startswith("mutex/"):
                kmodel = M.mutex()
            elif rel.startswith("multi-register/"):
                kmodel = M.multi_register({"x": 0, "y": 0})
            else:
                kmodel = M.cas_register(0)
            seconds, result = timed(kmodel, pair(read_edn_history(path)), args.repeat, 60.0)
            spent += seconds
            expected = "invalid" if "/bad/" in f"/{rel}" else "valid"
            if result.verdict != expected and not rel.startswith("mutex/"):
                mismatches.append(rel)
        print(f"total knossos {len(files):3} files: ours {fmt_s(spent):>9}")

    if args.cli and cli_suite(args.conformance):
        mismatches.append("cli")
    if args.synthetic and synthetic_bench(args.synthetic):
        mismatches.append("synthetic")

    if mismatches:
        print(f"verdict mismatches: {', '.join(mismatches)}")
        return 1
    print("all verdicts as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
