"""The pytest plugin, run as a user's test suite would run it (`pytester`): its fixtures start
an external program under the harness with faults on demand, and whole runs; its assertions
pass on a correct program and fail on a broken one with a readable message naming the HTML
timeline."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "harness" / "examples"


def _program(name: str) -> str:
    return repr(f"{sys.executable} {EXAMPLES / name}")


def test_the_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*external_cluster*", "*dynamo_cluster*", "*harness_run*"])


def test_a_correct_program_passes_and_a_lossy_one_fails_readably(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        f"""
        from harness.pytest_plugin import assert_dynamo_semantics, assert_no_lost_writes

        def test_dvv(harness_run):
            run = harness_run({_program("dynamo_kv_dvv.py")}, nemesis="partition,kill", duration=2)
            assert_no_lost_writes(run)
            assert_dynamo_semantics(run)

        def test_lww(harness_run):
            run = harness_run(
                {_program("dynamo_kv_lww.py")}, nemesis="", clients=6, keys=3, duration=2
            )
            assert_no_lost_writes(run)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "test_lww" in out
    result.stdout.fnmatch_lines(["*lost-writes is invalid: invalid: * lost*"])
    result.stdout.fnmatch_lines(["*dominated by add*"])
    page = re.search(r"timeline: (\S+\.html)", out)
    assert page is not None, out
    assert Path(page.group(1)).stat().st_size > 0


def test_faults_on_demand_and_linearizability(pytester: pytest.Pytester) -> None:
    """A user drives the cluster: a partition, a kill and a restart, then reads the history
    it recorded itself; assert_linearizable fails on a non-linearizable history."""
    pytester.makepyfile(
        f"""
        from harness.checking import models
        from harness.history import Op
        from harness.pytest_plugin import assert_linearizable

        def test_partition_kill_restart(external_cluster):
            cluster = external_cluster({_program("dynamo_kv_dvv.py")}, nodes=3)
            c1 = cluster.client("n1")
            cluster.call(c1.put("k", "a", None))
            cluster.partition(["n1"], ["n2", "n3"])
            c2 = cluster.client("n2")
            cluster.call(c2.put("k", "b", None))  # n2 and n3: a quorum
            cluster.heal()
            cluster.kill("n1")
            cluster.start("n1")
            values, _ = cluster.call(c2.get("k"))
            assert sorted(values) == ["a", "b"]  # blind writes: siblings

        def test_stale_read_is_not_linearizable():
            events = [(0, "invoke", "write", 1), (0, "ok", "write", 1),
                      (1, "invoke", "read", None), (1, "ok", "read", None)]
            ops = [Op(p, t, f, v, time=i, index=i, key="x")
                   for i, (p, t, f, v) in enumerate(events)]
            assert_linearizable(ops, models.register())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*linearizable is invalid*", "*timeline: *.html*"])


def test_dynamo_cluster_fixture_with_a_partition(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_siblings_after_a_partition(dynamo_cluster):
            cluster = dynamo_cluster(nodes=3, mode="dvv", quorum="sloppy", n=3, r=1, w=1)
            c1, c3 = cluster.client("n1"), cluster.client("n3")
            cluster.partition(["n1"], ["n2", "n3"])
            cluster.call(c1.put("k", "left", None))
            cluster.call(c3.put("k", "right", None))
            cluster.heal()
            for _ in range(100):
                values, _ = cluster.call(c1.get("k"))
                if len(values) == 2:
                    break
                cluster.call(__import__("asyncio").sleep(0.1))
            assert sorted(values) == ["left", "right"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
