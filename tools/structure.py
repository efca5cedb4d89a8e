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
    """Private attributes of one object used in more than one file: ``self._x`` across the
    classes of an inheritance chain, and ``other._x`` reached into from outside its class."""
    classes: dict[str, tuple[str, list[str], set[str]]] = {}
    outside: dict[str, set[str]] = defaultdict(set)
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                attrs = {
                    n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name)
                    and n.value.id == "self"
                    and n.attr.startswith("_")
                    and not n.attr.startswith("__")
                }
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                classes[node.name] = (path.name, bases, attrs)
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"
            ):
                outside[node.attr].add(path.name)  # self._part._x: into another object
    where: dict[str, set[str]] = defaultdict(set)
    for name in classes:
        chain, todo = [], [name]
        while todo:
            c = todo.pop()
            if c in classes and c not in chain:
                chain.append(c)
                todo += classes[c][1]
        if len(chain) < 2:
            continue
        for c in chain:
            for attr in classes[c][2]:
                where[f"{name}.{attr}"].add(classes[c][0])
    shared = {a: sorted(f) for a, f in where.items() if len(f) > 1}
    # Keep the widest chain's view of each attribute only.
    by_attr: dict[str, list[str]] = {}
    for key, files_ in sorted(shared.items(), key=lambda kv: -len(kv[1])):
        attr = key.split(".", 1)[1]
        by_attr.setdefault(attr, files_)
    for attr, files_ in outside.items():
        by_attr.setdefault(attr + " (reached into)", sorted(files_))
    return dict(sorted(by_attr.items()))


def calls_elsewhere(files: list[Path]) -> int:
    """Call sites ``self.m(...)`` whose method is defined in another file of the class's
    inheritance chain: where a reader has to search for what a call does."""
    defined: dict[str, dict[str, str]] = {}  # class -> method -> file
    bases: dict[str, list[str]] = {}
    calls: list[tuple[str, str, str]] = []  # (class, method called, file)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
                defined[node.name] = {
                    n.name: path.name for n in node.body if isinstance(n, ast.FunctionDef)
                }
                for n in ast.walk(node):
                    if (
                        isinstance(n, ast.Call)
                        and isinstance(n.func, ast.Attribute)
                        and isinstance(n.func.value, ast.Name)
                        and n.func.value.id == "self"
                    ):
                        calls.append((node.name, n.func.attr, path.name))

    def where(cls: str, method: str, seen: frozenset[str] = frozenset()) -> str | None:
        found = defined.get(cls, {}).get(method)
        if found is not None:
            return found
        for b in bases.get(cls, []):
            if b not in seen:
                hit = where(b, method, seen | {cls})
                if hit is not None:
                    return hit
        return None

    subclasses = {c for bs in bases.values() for c in bs}
    count = 0
    for cls, method, file in calls:
        # A method may be overridden below: judge the call from the most derived class.
        leaf = next((c for c, bs in bases.items() if cls in bs and c not in subclasses), cls)
        target = where(leaf, method)
        if target is not None and target != file:
            count += 1
    return count


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


def put_walk(node_only: bool) -> tuple[int, int, int]:
    """(stops, files, comebacks) of one put through its coordinator; ``node_only``: calls of
    the node's own files (``core/node*``) only, what a reader of the node follows."""
    from dynamo_ref.core.effects import ClientRequest
    from dynamo_ref.core.messages import Put
    from dynamo_ref.sim.cluster import Cluster

    sim = Cluster(3, seed=1, q=16)
    sim.run_for(1.0)
    key = b"walk"
    coordinator = sim.replicas(key)[0]
    node = sim.node(coordinator)
    package = str(ROOT / ("dynamo_ref/core/node" if node_only else "dynamo_ref"))
    files: list[str] = []

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_code.co_filename
            if name.startswith(package) and not name.endswith("node_versions.py"):
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
    node_files += sorted((ROOT / "dynamo_ref/core/node").glob("*.py"))
    shared = shared_attributes(node_files)
    print(f"attributes of one object used in more than one file: {len(shared)}")
    for attr, where in shared.items():
        print(f"  {attr}: {', '.join(where)}")
    print(f"calls to a method of self defined in another file: {calls_elsewhere(node_files)}")
    cycles = import_cycles("dynamo_ref", "harness")
    print(f"import cycles (dynamo_ref, harness): {len(cycles)}")
    for c in cycles:
        print("  " + " <-> ".join(c))
    for node_only, what in ((True, "the node's files"), (False, "all of dynamo_ref")):
        stops, nfiles, comebacks = put_walk(node_only)
        print(f"a put's walk ({what}): {stops} stops in {nfiles} files, {comebacks} comebacks")


if __name__ == "__main__":
    main()
