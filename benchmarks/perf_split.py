"""Split a node's perf samples by thread and by library: where its CPU goes below Python.

    python benchmarks/cluster_bench.py --no-etcd --rss-keys 0 --profile prof --perf
    python benchmarks/perf_split.py prof/off-put.data [prof/off-get.data ...]

perf samples a thread only while it runs on a CPU, with native frames, so the split is of CPU
time: the interpreter running Python (the protocol, the runtime, the contracts), the kernel
(socket I/O, wake-ups, fsync), SQLite, uvloop, msgspec. The thread of the lowest id (the
process's own, started first) is the event loop's; the others are the store's
(``asyncio.to_thread``).
"""

from __future__ import annotations

import argparse
import subprocess
from collections import defaultdict
from pathlib import Path

LIBRARIES = (
    ("interpreter", ("libpython", "python3")),
    ("kernel", ("[kernel",)),
    ("sqlite", ("libsqlite3", "_sqlite3.")),
    ("uvloop", ("loop.cpython",)),
    ("msgspec", ("_core.cpython",)),
    ("hashing", ("_md5.", "_blake2.", "_hashlib.", "libcrypto")),
    ("libc", ("libc.so", "libm.so", "[vdso]")),
)


def library(dso: str) -> str:
    for name, marks in LIBRARIES:
        if any(m in dso for m in marks):
            return name
    return "other"


def split(data: Path) -> dict[tuple[str, str], float]:
    """Share of samples per (thread, library)."""
    out = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "pid,dso", "--stdio", "--no-children",
         "-g", "none", "-q"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    tids = [int(r[1].split(":", 1)[0]) for r in rows]
    main = min(tids) if tids else 0  # the process id: the first thread
    shares: dict[tuple[str, str], float] = defaultdict(float)
    for (pct, _task, dso), tid in zip(rows, tids, strict=True):
        thread = "event loop" if tid == main else "store"
        shares[(thread, library(dso.strip()))] += float(pct.rstrip("%")) / 100
    return shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="+", help="perf.data files")
    args = ap.parse_args()
    for data in args.data:
        shares = split(data)
        print(f"{data}:")
        for thread in ("event loop", "store"):
            total = sum(v for (t, _), v in shares.items() if t == thread)
            parts = sorted(((v, lib) for (t, lib), v in shares.items() if t == thread))[::-1]
            detail = ", ".join(f"{lib} {v:.0%}" for v, lib in parts if v >= 0.005)
            print(f"  {thread:<10} {total:>5.0%}  {detail}")


if __name__ == "__main__":
    main()
