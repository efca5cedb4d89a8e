"""The runtime drives the node's timers and failure detector on the monotonic clock: a wall
clock that jumps back an hour does not stop a node from suspecting a peer that went silent.
The negative control runs the node on the wall clock, as the runtime once did. Both clocks
are injected (``ServerOptions.monotonic``, ``.wall``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from net_support import LocalCluster

pytestmark = pytest.mark.net


class Wall:
    """The wall clock, with a jump to apply."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _silenced_and_suspected(cluster: LocalCluster, victim: str, within: float) -> bool:
    """Make ``victim`` silent (its connections stay open, as under SIGSTOP); True when both
    others suspect it within ``within`` seconds."""
    cluster.servers[victim].handle = lambda event: None  # type: ignore[method-assign]
    others = [s for n, s in cluster.servers.items() if n != victim]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(victim in s.node.suspected(s.options.monotonic()) for s in others):
            return True
        await asyncio.sleep(0.05)
    return False


def _run(*, node_on_wall_clock: bool) -> bool:
    wall = Wall()
    clocks = {"wall": wall, "monotonic": wall if node_on_wall_clock else time.monotonic}

    async def main() -> bool:
        async with LocalCluster(3, clocks=clocks) as cluster:
            wall.offset = -3600.0  # the wall clock jumps back an hour
            return await _silenced_and_suspected(cluster, "n3", within=5.0)

    return asyncio.run(main())


def test_a_wall_clock_an_hour_back_does_not_blind_the_failure_detector() -> None:
    assert _run(node_on_wall_clock=False)


def test_negative_control_on_the_wall_clock_the_detector_is_blind() -> None:
    assert not _run(node_on_wall_clock=True)
