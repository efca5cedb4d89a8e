"""The core is sans-I/O: no module under dynamo_ref/core does I/O, reads a clock, draws
randomness of its own, or reaches past the engine protocol into storage, the runtime, the
simulator or the harness. Checked on every module's source, with a planted module as the
negative control."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "dynamo_ref" / "core"

# Modules that do I/O, keep time, or schedule.
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "selectors",
        "ssl",
        "time",
        "datetime",
        "os",
        "sys",
        "subprocess",
        "threading",
        "multiprocessing",
        "secrets",
        "uuid",
        "logging",
        "sqlite3",
        "io",
        "pathlib",
        "shutil",
        "signal",
        "harness",
    }
)
# Packages of dynamo_ref outside the core, and what of them the core may use.
OUTSIDE = ("dynamo_ref.storage", "dynamo_ref.net", "dynamo_ref.sim", "dynamo_ref.tla")
ALLOWED_OUTSIDE = frozenset({"dynamo_ref.storage.engine"})
OUTSIDE_MODULES = frozenset(
    {"dynamo_ref.cli", "dynamo_ref.client", "dynamo_ref.localcluster", "dynamo_ref.launch"}
)


def _outside(name: str) -> bool:
    allowed = any(name == a or name.startswith(a + ".") for a in ALLOWED_OUTSIDE)
    return (name.startswith(OUTSIDE) or name in OUTSIDE_MODULES) and not allowed


def problems(source: str) -> list[str]:
    """What in ``source`` breaks the core's rules."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out += [f"imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        out += [f"imports {n}" for n in names if _outside(n)]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        # The module ``random`` may name the type of a driver's generator, never draw itself.
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "random"
        ):
            out.append(f"calls random.{func.attr}")
        if isinstance(func, ast.Name) and func.id in ("open", "print", "input"):
            out.append(f"calls {func.id}")
    return out


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_the_modules_the_check_expects() -> None:
    names = {p.relative_to(CORE).as_posix() for p in core_modules()}
    # Every node part is covered, not only the leaf modules.
    assert {
        "node/shell.py",
        "node/coordinator.py",
        "node/replica.py",
        "node/members.py",
        "node/anti_entropy.py",
        "node/outbox.py",
        "ring.py",
        "vclock.py",
        "messages.py",
    } <= names
    assert len(names) >= 20


# The one switch the core reads from its environment, once, at import (DESIGN: contracts can be
# turned off for benchmarks by one documented setting).
# contracts.py reads its switch from the environment; checker.py, the contracts' runtime, looks
# up its caller's frame as icontract does. Neither keeps time, draws or does I/O.
EXCEPTIONS = {"contracts.py": ["imports os"], "checker.py": ["imports sys"]}


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_every_core_module_is_pure(path: Path) -> None:
    assert problems(path.read_text()) == EXCEPTIONS.get(path.relative_to(CORE).as_posix(), [])


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("import asyncio", "imports asyncio"),
        ("import time\nx = time.time()", "imports time"),
        ("from socket import socket", "imports socket"),
        ("from dynamo_ref.storage.memory import MemoryEngine", "imports dynamo_ref.storage.memory"),
        ("from dynamo_ref.storage import MemoryEngine", "imports dynamo_ref.storage"),
        ("import dynamo_ref.net.server", "imports dynamo_ref.net.server"),
        ("from harness.checkers import verdict", "imports harness.checkers"),
        ("import random\nx = random.random()", "calls random.random"),
        ("open('f')", "calls open"),
    ],
)
def test_the_check_rejects_a_planted_impurity(planted: str, expected: str) -> None:
    assert expected in problems(planted)


def test_the_engine_protocol_and_a_generators_type_are_allowed() -> None:
    source = (
        "import random\n"
        "from dynamo_ref.storage.engine import Engine, EngineFactory\n"
        "def f(rng: random.Random) -> float:\n"
        "    return rng.random()\n"
    )
    assert problems(source) == []
