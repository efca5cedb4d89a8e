"""Durable-store benchmark: batches/s and puts/s of MemoryStore and SqliteStore (full, normal).

Each batch is ``Persist`` effects of 100-byte values over 10,000 keys, batch sizes 1 and 64,
applied one after another (what a node's persist worker does). The ratio columns compare each
store with MemoryStore and with SqliteStore "full" at the same batch size. "full" fsyncs every
batch, so it measures the disk under the data directory (--dir, default a temporary directory).

    python benchmarks/storage_bench.py [--quick] [--seconds S] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DYNAMO_REF_CONTRACTS", "0")

from dynamo_ref.core.effects import Effect, Persist
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Version
from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.sqlite import SqliteStore

KEYS = 10_000
BATCH_SIZES = (1, 64)


def _batches(size: int, count: int) -> list[list[Effect]]:
    out: list[list[Effect]] = []
    n = 0
    for b in range(count):
        batch: list[Effect] = []
        for _ in range(size):
            clock = VClock.from_counters({"n1": b + 1}, float(b))
            value = (b"%06d" % n) * 17  # 102 bytes
            batch.append(
                Persist(b"key-%05d" % (n % KEYS), (Version(value[:100], clock, 1.0, "n1"),))
            )
            n += 1
        out.append(batch)
    return out


def _measure(store: DurableStore, batches: list[list[Effect]], seconds: float) -> float:
    """Batches per second, applying ``batches`` cyclically for about ``seconds``."""
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for batch in batches:
            store.apply(batch)
        done += len(batches)
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (demo)")
    parser.add_argument("--seconds", type=float, default=None, help="time per measurement")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 3.0)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        stores: dict[str, Callable[[str], DurableStore]] = {
            "memory": lambda name: MemoryStore(),
            "sqlite full": lambda name: SqliteStore(Path(tmp) / name, "full"),
            "sqlite normal": lambda name: SqliteStore(Path(tmp) / name, "normal"),
        }
        print(
            f"{'store':<15}{'batch':>6}{'batches/s':>13}{'puts/s':>13}{'vs memory':>11}"
            f"{'vs full':>9}"
        )
        for size in BATCH_SIZES:
            batches = _batches(size, max(1, 2048 // size))
            rates: dict[str, float] = {}
            for label, make in stores.items():
                store = make(f"{label.replace(' ', '-')}-{size}.db")
                try:
                    _measure(store, batches[:8], 0.0)  # warm-up: tables, caches, WAL file
                    rate = _measure(store, batches, seconds)
                finally:
                    store.close()
                rates[label] = rate
            for label, rate in rates.items():
                print(
                    f"{label:<15}{size:>6}{rate:>13,.0f}{rate * size:>13,.0f}"
                    f"{rate / rates['memory']:>11.4f}{rate / rates['sqlite full']:>9.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
