"""Summarise py-spy's raw stacks: where the time goes, by part and by function.

    py-spy record --rate 200 --format raw --output sim.txt -- \\
        python benchmarks/sim_bench.py --worker throughput --quick
    python benchmarks/cluster_bench.py --no-etcd --profile prof/   # py-spy on node n1
    python benchmarks/profile_stacks.py sim.txt [--top 25]

Each sample is charged to one part, decided from its stack:

- contracts: evaluating a condition, snapshot or invariant (a lambda the checker calls), or
  the checker's own wrapper code (icontract's, dynamo_ref/core/checker.py's, or a checker it
  wrote); the checked function's body is not;
- then by the innermost frame of ours or of the standard library: sqlite (storage/sqlite.py,
  durable.py, sqlite3), encoding (core/messages.py: msgspec encode/decode, wire conversions),
  framing (net/framing.py), runtime (the rest of dynamo_ref/net), event loop (asyncio, uvloop,
  selectors), core (the rest of dynamo_ref/core and storage), simulator (dynamo_ref/sim),
  other.

Then the contracts' share by what they check, and the top functions by self samples
(innermost frame) and by inclusive samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
CONDITION_FRAMES = {"<lambda>", "check", "<dictcomp>", "_violation"}
GENERATED = "<contract checker of "  # the file name of a checker dynamo_ref/core/checker.py wrote

PARTS = (
    ("sqlite", ("dynamo_ref/storage/sqlite.py", "dynamo_ref/storage/durable.py", "sqlite3/")),
    ("encoding", ("dynamo_ref/core/messages.py", "msgspec")),
    ("framing", ("dynamo_ref/net/framing.py",)),
    ("runtime", ("dynamo_ref/net/",)),
    ("event loop", ("asyncio/", "uvloop", "selectors.py")),
    ("core", ("dynamo_ref/core/", "dynamo_ref/storage/")),
    ("simulator", ("dynamo_ref/sim/",)),
)


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) pairs, outermost first."""
    out = []
    for text in stack.split(";"):
        m = FRAME.match(text.strip())
        out.append((m["func"], m["file"]) if m else (text, ""))
    return out


def in_contracts(stack: list[tuple[str, str]]) -> bool:
    for i, (func, file) in enumerate(stack):
        if file.startswith(GENERATED):
            # A written checker calls its conditions, and the function under its own name.
            callee = stack[i + 1][0] if i + 1 < len(stack) else ""
            if callee != func and not callee.endswith("." + func):
                return True
            continue
        if file.endswith("dynamo_ref/core/checker.py"):
            if func in CONDITION_FRAMES:
                return True
            # An invariant's condition (a lambda) is called by the wrapper itself.
            if i + 1 < len(stack) and stack[i + 1][0] == "<lambda>":
                return True
        if "icontract/" in file and func != "wrapper":
            return True
    func, file = stack[-1]
    return file.endswith("dynamo_ref/core/checker.py") or "icontract/" in file


def checked(stack: list[tuple[str, str]]) -> str:
    """Which contracts a contracts sample was checking: the function, or a class's invariants."""
    for i, (func, file) in enumerate(stack):
        callee = stack[i + 1][0] if i + 1 < len(stack) else ""
        if file.startswith(GENERATED) and callee != func and not callee.endswith("." + func):
            return file[len(GENERATED) :].rstrip(">").removeprefix("dynamo_ref.")
        if file.endswith("dynamo_ref/core/checker.py") and callee.endswith("<lambda>"):
            where = stack[i + 1][1].rsplit("dynamo_ref/", 1)[-1]
            return f"invariants ({where})"
    return "(checker code; with icontract's checkers, all of it)"


def part(stack: list[tuple[str, str]]) -> str:
    if in_contracts(stack):
        return "contracts"
    for _, file in reversed(stack):
        for name, markers in PARTS:
            if any(m in file for m in markers):
                return name
    return "other"


def short(func: str, file: str) -> str:
    for root in ("site-packages/", "python3.11/", "wt-speed/", "/work/"):
        if root in file:
            file = file.split(root, 1)[1]
            break
    return f"{func} ({file})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", type=Path, help="py-spy --format raw output")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()

    parts: Counter[str] = Counter()
    contracts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        stack = frames(stack_text)
        total += count
        where = part(stack)
        parts[where] += count
        if where == "contracts":
            contracts[checked(stack)] += count
        own[short(*stack[-1])] += count
        for name in {short(*f) for f in stack}:
            inclusive[name] += count
    print(f"{total:,} samples")
    print(f"\n{'part':<12} {'share':>7}")
    for name, n in parts.most_common():
        print(f"{name:<12} {n / total:>7.1%}")
    if parts["contracts"]:
        print(f"\n{'share':>7}  contracts of (a checker the runtime wrote; or invariants)")
        for name, n in contracts.most_common(args.top // 2):
            print(f"{n / total:>7.1%}  {name}")
    print(f"\n{'self':>7}  function (innermost frame)")
    for name, n in own.most_common(args.top):
        print(f"{n / total:>7.1%}  {name}")
    print(f"\n{'total':>7}  function (anywhere on the stack)")
    for name, n in inclusive.most_common(args.top):
        print(f"{n / total:>7.1%}  {name}")


if __name__ == "__main__":
    main()
