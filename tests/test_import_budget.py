"""The commands start fast: importing the entry point or a command's module loads click and the
standard library, not matplotlib, rich, asyncio, the checkers or the campaign machinery, which
load when a command runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMMANDS = (
    "dynamo_ref.cli",
    "harness.cli",
    "harness.check_cli",
    "harness.campaign_cli",
    "harness.serve",
)
# Heavy, or only needed once a command runs.
LATER = (
    "matplotlib",
    "numpy",
    "PIL",
    "rich",
    "asyncio",
    "http.server",
    "harness.checkers",
    "dynamo_ref.core",
    "msgspec",
    "icontract",
)

# The campaign checks its options against the node's own settings (NodeConfig, VersionMode).
ALLOWED = {"harness.campaign_cli": ("dynamo_ref.core", "msgspec", "icontract")}


def _loaded(module: str) -> list[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    names: list[str] = json.loads(out.stdout)
    return names


@pytest.mark.parametrize("module", COMMANDS)
def test_importing_a_command_loads_nothing_heavy(module: str) -> None:
    loaded = _loaded(module)
    later = [h for h in LATER if h not in ALLOWED.get(module, ())]
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in later)]
    assert heavy == [], f"{module} imports {heavy[:10]} at import time"


def test_the_control_sees_matplotlib_where_it_is_used() -> None:
    # The check above can fail: the report's plots module does load matplotlib.
    assert "matplotlib" in _loaded("harness.report.plots")
