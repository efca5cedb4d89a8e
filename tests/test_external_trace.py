"""Traces from another implementation: `harness/examples/trace_node.py`, a small Dynamo-style
store written without dynamo_ref, logs the documented trace format (docs/trace-format.md), and
`dynamo-ref spec validate-trace` accepts its run; the same program with a deliberate bug gives a
trace rejected at the line where the bug shows, with the reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynamo_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "harness" / "examples" / "trace_node.py"
TRACES = Path(__file__).parent / "data" / "traces"
STORED = {
    None: TRACES / "external_ok.jsonl",
    "ack-before-store": TRACES / "external_ack_before_store.jsonl",
    "dominated-read": TRACES / "external_dominated_read.jsonl",
}


def run_program(tmp_path: Path, bug: str | None) -> str:
    """The program's trace. `-I -S`: no site-packages, so it can only use the standard library."""
    out = tmp_path / f"{bug or 'ok'}.jsonl"
    argv = [sys.executable, "-I", "-S", str(PROGRAM), "--out", str(out)]
    subprocess.run([*argv, *(["--bug", bug] if bug else [])], check=True, timeout=60)
    return out.read_text()


def validate(path: Path) -> tuple[int, str]:
    assert shutil.which("java"), "Java 17 is needed for TLC"
    result = CliRunner().invoke(main, ["spec", "validate-trace", str(path)])
    return result.exit_code, result.output


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_program_uses_no_dynamo_ref_and_writes_the_stored_traces(tmp_path: Path) -> None:
    imports = [
        line
        for line in PROGRAM.read_text().splitlines()
        if line.startswith(("import ", "from ")) and "__future__" not in line
    ]
    assert imports
    assert not [line for line in imports if "dynamo_ref" in line or "harness" in line]
    for bug, stored in STORED.items():
        assert run_program(tmp_path, bug) == stored.read_text(), f"regenerate {stored.name}"


def test_the_trace_shows_a_lost_message_siblings_and_repair() -> None:
    trace = lines(STORED[None].read_text())
    assert "constants" in trace[0]
    actions = [str(line["action"]) for line in trace[1:]]
    assert actions[0] == "Init"
    assert "LoseMessage" in actions
    assert "ReadRepair" in actions
    last = trace[-1]["state"]
    assert isinstance(last, dict)
    vals = [sorted(a["vals"]) for a in last["answered"]]
    assert ["x", "y"] in vals  # concurrent writes come back as siblings
    assert ["v2"] in vals  # a dominated version does not
    assert len(last["acked"]) == 4


def test_the_external_trace_is_a_behaviour_of_the_spec() -> None:
    code, output = validate(STORED[None])
    assert code == 0, output
    assert "accepted: all 38 steps are a behaviour of Dynamo.tla" in output
    assert "LoseMessage 1" in output
    assert "extensions" not in output  # nothing beyond Dynamo.tla was needed


@pytest.mark.parametrize(
    ("bug", "reason"),
    [
        ("ack-before-store", "the spec's step leaves store otherwise than recorded"),
        ("dominated-read", "the spec's step leaves answered otherwise than recorded"),
    ],
)
def test_a_buggy_run_is_rejected_where_the_bug_shows(bug: str, reason: str) -> None:
    good = lines(STORED[None].read_text())
    bad = lines(STORED[bug].read_text())
    # The first line where the buggy run differs is where the bug shows. Step numbers count
    # the lines after the constants line, Init being step 1.
    first = next(i for i, (g, b) in enumerate(zip(good, bad, strict=True)) if g != b)
    step = first
    code, output = validate(STORED[bug])
    assert code == 1, output
    action = bad[first]["action"]
    assert f"rejected at step {step} of 38 ({action}(" in output, output
    assert reason in output
