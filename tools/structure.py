"""Figures on the node's structure: the largest class, attributes shared across files, import
cycles, and the walk of one put through the files.

    .venv/bin/python tools/structure.py

A put's walk: one client put coordinated by a node of a simulated 3-node cluster, traced with
``sys.settrace``. A stop is a call of a function of ``dynamo_ref`` (contracts switched off, so
icontract's wrappers do not count); a comeback is a call that enters a file the walk had left
before (not the file it is in).
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DYNAMO_REF_CONTRACTS", "0")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def largest_class(package: str) -> tuple[str, int, int]:
    """(name, methods, lines) of the class with the most methods, inherited ones included."""
    classes: dict[str, tuple[list[str], int, list[str]]] = {}
    for path in _python_files(package):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                methods = [n.name for n in node.body if isinstance(n, ast.FunctionDef)]
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                classes[node.name] = (methods, lines, bases)

    def flat(name: str, seen: frozenset[str] = frozenset()) -> tuple[set[str], int]:
        methods, lines, bases = classes[name]
        out, total = set(methods), lines
        for b in bases:
            if b in classes and b not in seen:
                m, n = flat(b, seen | {name})
                out |= m
                total += n
        return out, total

    best = max(classes, key=lambda c: len(flat(c)[0]))
    methods, lines = flat(best)
    return best, len(methods), lines


def shared_attributes(files: list[Path]) -> dict[str, list[str]]:
    """Private attributes (``x._name``) used in more than one of ``files``."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                where[node.attr].add(path.name)
    return {a: sorted(f) for a, f in sorted(where.items()) if len(f) > 1}


def import_cycles(*packages: str) -> list[list[str]]:
    """Strongly connected components of more than one module, function-local imports counted."""
    graph: dict[str, set[str]] = defaultdict(set)
    names = {_module_name(p) for p in _python_files(*packages)}
    for path in _python_files(*packages):
        me = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in names and t != me:
                    graph[me].add(t)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(names):
        if v not in index:
            strong(v)
    return out


def put_walk() -> tuple[int, int, int]:
    """(stops, files, comebacks) of one put through its coordinator."""
    from dynamo_ref.core.effects import ClientRequest
    from dynamo_ref.core.messages import Put
    from dynamo_ref.sim.cluster import Cluster

    sim = Cluster(3, seed=1, q=16)
    sim.run_for(1.0)
    key = b"walk"
    coordinator = sim.replicas(key)[0]
    node = sim.node(coordinator)
    package = str(ROOT / "dynamo_ref")
    files: list[str] = []

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_code.co_filename
            if name.startswith(package):
                files.append(name)

    sys.setprofile(None)
    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        node.handle(ClientRequest(1, Put(key, b"v", b"")), sim.now)
    finally:
        sys.settrace(None)
    comebacks = 0
    left: set[str] = set()
    current = None
    for f in files:
        if f != current:
            if f in left:
                comebacks += 1
            if current is not None:
                left.add(current)
            current = f
    return len(files), len(set(files)), comebacks


def main() -> None:
    name, methods, lines = largest_class("dynamo_ref/core")
    print(f"largest class in dynamo_ref/core: {name}, {methods} methods, {lines} lines")
    node_files = sorted((ROOT / "dynamo_ref/core").glob("node*.py"))
    node_files += [p for p in (ROOT / "dynamo_ref/core/parts").glob("*.py")]
    shared = shared_attributes(node_files)
    print(f"self._attributes used in more than one node file: {len(shared)}")
    for attr, where in shared.items():
        print(f"  {attr}: {', '.join(where)}")
    cycles = import_cycles("dynamo_ref", "harness")
    print(f"import cycles (dynamo_ref, harness): {len(cycles)}")
    for c in cycles:
        print("  " + " <-> ".join(c))
    stops, nfiles, comebacks = put_walk()
    print(f"a put's walk: {stops} stops in {nfiles} files, {comebacks} comebacks")


if __name__ == "__main__":
    main()
