"""Trace validation of real runs: node processes on loopback log their own steps, the merge
orders them, and TLC checks the run against spec/Dynamo.tla (spec/DynamoProcessTrace.tla).

The negative controls: a node process with a protocol bug planted in it (through
``DYNAMO_REF_PLANT``, read by the node's test hook), and a run whose log was edited, must be
rejected, at the step that shows it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dynamo_ref.tla.models import default_spec_dir
from dynamo_ref.tla.process_trace import validate_run
from dynamo_ref.tla.trace import TraceFormatError
from harness.targets.base import OpFailed, OpUnknown
from harness.targets.dynamo import DynamoTarget, Timing

pytestmark = [
    pytest.mark.net,
    pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed"),
]

SPEC = default_spec_dir()
FAST = Timing(request_timeout=0.5, fallback_delay=0.2, client_timeout=1.5)


def traced(
    tmp_path: Path, body: Callable[[DynamoTarget], Awaitable[None]], **options: object
) -> Path:
    settings: dict[str, object] = {"mode": "vclock", **options}
    target = DynamoTarget(3, tmp_path, timing=FAST, trace=True, **settings)  # type: ignore[arg-type]

    async def main() -> None:
        await target.setup()
        try:
            await body(target)
        finally:
            await target.teardown()

    asyncio.run(main())
    return tmp_path


async def retried(op: Callable[[], Awaitable[object]], tries: int = 100) -> object:
    for _ in range(tries - 1):
        try:
            return await op()
        except (OpFailed, OpUnknown):
            await asyncio.sleep(0.1)
    return await op()


async def workload(t: DynamoTarget) -> None:
    """Puts with and without contexts, reads through two nodes, a kill and a restart."""
    c1, c2 = await t.client("n1"), await t.client("n2")
    await c1.put("a", 1, None)
    await c2.put("b", 2, None)
    values, ctx = await c2.get("a")
    assert values == [1]
    await c2.put("a", 3, ctx)
    await t.kill("n3")
    await retried(lambda: c1.put("b", 4, None))
    await t.start("n3")
    c3 = await t.client("n3")
    await retried(lambda: c3.get("a"))
    await c1.get("b")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return traced(tmp_path_factory.mktemp("run"), workload)


def test_a_real_run_with_a_kill_is_a_behaviour_of_the_spec(run_dir: Path) -> None:
    verdict = validate_run([run_dir], spec_dir=SPEC, timeout=300)
    assert verdict.accepted, verdict.describe()
    assert {"ClientPut", "ReplicaStore", "StoreAck", "ClientGet", "ReadResponse"} <= set(
        verdict.actions
    )
    assert verdict.actions["Crash"] == verdict.actions["Recover"] == 1


def _edited(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(run_dir, copy)
    return copy


def test_control_a_store_the_replica_never_made_is_rejected(run_dir: Path, tmp_path: Path) -> None:
    copy = _edited(run_dir, tmp_path)
    # A replica's log says it stored a value no put ever wrote.
    path = next(p for p in sorted(copy.glob("n*/trace.jsonl")) if "ReplicaStore" in p.read_text())
    lines = path.read_text().splitlines()
    k = next(i for i, x in enumerate(lines) if '"ReplicaStore"' in x)
    step = json.loads(lines[k])
    for versions in step["state"]["store"].values():
        for v in versions:
            v["val"] = "999"
    lines[k] = json.dumps(step)
    path.write_text("\n".join(lines) + "\n")
    verdict = validate_run([copy], spec_dir=SPEC, timeout=300)
    assert not verdict.accepted
    assert verdict.failed is not None
    assert verdict.failed_action is not None
    assert verdict.failed_action.startswith("ReplicaStore")
    assert verdict.failed_at == f"{path}:{k + 1}"


def test_a_run_the_spec_does_not_cover_is_refused(tmp_path: Path) -> None:
    async def body(t: DynamoTarget) -> None:
        c = await t.client("n1")
        await c.put("a", 1, None)

    # Dotted version vectors are beyond the spec.
    run_dir = traced(tmp_path, body, mode="dvv")
    with pytest.raises(TraceFormatError, match="dotted version vectors"):
        validate_run([run_dir], spec_dir=SPEC, timeout=60)


def test_the_cli_validates_a_run(run_dir: Path) -> None:
    from click.testing import CliRunner

    from dynamo_ref.cli import main

    result = CliRunner().invoke(main, ["spec", "validate-run", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "accepted: all" in result.output
    bad = CliRunner().invoke(main, ["spec", "validate-run", str(run_dir / "nowhere")])
    assert bad.exit_code == 2
