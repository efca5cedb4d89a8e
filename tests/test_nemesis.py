"""Partition patterns as sets of cut directed links, and the nemesis schedule's records."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from harness.checkers.causal import fault_windows
from harness.nemesis import (
    Nemesis,
    NemesisConfig,
    bridge,
    halves,
    isolate,
    majorities_ring,
    one_way,
    pattern_links,
    sees,
)
from harness.net.memory import MemoryNetwork
from harness.net.network import Link
from harness.recorder import Recorder

SIZES = (3, 4, 5, 7)


def names(n: int) -> list[str]:
    return [f"n{i + 1}" for i in range(n)]


def views(nodes: list[str], cut: set[Link]) -> dict[str, set[str]]:
    return {n: sees(n, nodes, cut) for n in nodes}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("seed", range(5))
def test_halves_split_in_two_groups_cut_both_ways(size: int, seed: int) -> None:
    nodes = names(size)
    cut = halves(nodes, random.Random(seed))
    assert all((b, a) in cut for a, b in cut)  # symmetric
    groups = {frozenset(v) for v in views(nodes, cut).values()}
    assert len(groups) == 2
    a, b = groups
    assert a | b == set(nodes)
    assert not a & b
    assert abs(len(a) - len(b)) <= 1


@pytest.mark.parametrize("size", SIZES)
def test_isolate_cuts_one_node_off(size: int) -> None:
    nodes = names(size)
    cut = isolate(nodes, random.Random(1), node="n2")
    v = views(nodes, cut)
    assert v["n2"] == {"n2"}
    assert all(v[n] == set(nodes) - {"n2"} for n in nodes if n != "n2")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("seed", range(5))
def test_majorities_ring_every_node_sees_its_own_majority(size: int, seed: int) -> None:
    nodes = names(size)
    cut = majorities_ring(nodes, random.Random(seed))
    v = views(nodes, cut)
    assert all(len(seen) > size / 2 for seen in v.values())
    assert all(len(seen) < size for seen in v.values())  # nobody sees everyone
    assert len({frozenset(seen) for seen in v.values()}) == size  # no two the same


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("seed", range(5))
def test_bridge_one_node_sees_both_halves(size: int, seed: int) -> None:
    nodes = names(size)
    cut = bridge(nodes, random.Random(seed))
    v = views(nodes, cut)
    bridges = [n for n in nodes if v[n] == set(nodes)]
    assert len(bridges) == 1
    others = [n for n in nodes if n not in bridges]
    sides = {frozenset(v[n] - set(bridges)) for n in others}
    assert len(sides) == 2  # the two halves do not see each other
    assert all(bridges[0] in v[n] for n in others)  # but both see the bridge


@pytest.mark.parametrize("size", SIZES)
def test_one_way_is_asymmetric(size: int) -> None:
    nodes = names(size)
    cut = one_way(nodes, random.Random(3))
    (victim,) = {a for a, _ in cut}
    assert cut == {(victim, n) for n in nodes if n != victim}
    assert all((b, a) not in cut for a, b in cut)
    assert sees(victim, nodes, cut) == set(nodes)  # it still hears everyone


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown partition pattern"):
        pattern_links("zigzag", names(3), random.Random(0))
    with pytest.raises(ValueError, match="unknown fault"):
        NemesisConfig(faults=("flood",))


class FakeTarget:
    """Processes as flags; the network is the in-memory backend."""

    def __init__(self, nodes: list[str]) -> None:
        self._nodes = nodes
        self._network = MemoryNetwork(nodes)
        self.up = set(nodes)
        self.paused: set[str] = set()
        self.skew: dict[str, float] = {}
        self.calls: list[tuple[str, str]] = []

    @property
    def network(self) -> MemoryNetwork:
        return self._network

    def nodes(self) -> list[str]:
        return list(self._nodes)

    async def start(self, node: str) -> None:
        self.calls.append(("start", node))
        self.up.add(node)

    async def kill(self, node: str) -> None:
        self.calls.append(("kill", node))
        self.up.discard(node)

    async def pause(self, node: str) -> None:
        self.calls.append(("pause", node))
        self.paused.add(node)

    async def resume(self, node: str) -> None:
        self.calls.append(("resume", node))
        self.paused.discard(node)

    async def set_clock_skew(self, node: str, seconds: float) -> None:
        self.calls.append(("skew", node))
        self.skew[node] = seconds


def run_schedule(seed: int) -> tuple[FakeTarget, Recorder, Nemesis]:
    target = FakeTarget(names(5))
    rec = Recorder()
    cfg = NemesisConfig(
        faults=("partition", "kill", "pause", "skew"),
        fault_time=(0.01, 0.03),
        heal_time=(0.01, 0.02),
        start_delay=0.0,
        seed=seed,
    )
    nemesis = Nemesis(target, rec, cfg)

    async def go() -> None:
        await nemesis.run(time.monotonic() + 1.0)
        await nemesis.heal_all()

    asyncio.run(go())
    return target, rec, nemesis


def test_schedule_records_every_fault_with_its_end_and_heals_all() -> None:
    target, rec, nemesis = run_schedule(seed=4)
    kinds = {f["fault"] for f in nemesis.faults}
    assert kinds == {"partition", "kill", "pause", "skew"}
    windows = fault_windows(rec.ops)
    assert len(windows) == len(nemesis.faults)
    assert all(w.end is not None and w.end > w.start for w in windows)
    assert {w.name for w in windows} == {"partition", "kill", "pause", "clock-skew"}
    # After the last heal nothing is left faulty.
    assert not target.network.cut_links()
    assert target.up == set(target.nodes())
    assert not target.paused
    assert all(s == 0.0 for s in target.skew.values())


def test_schedule_is_seeded() -> None:
    _, _, a = run_schedule(seed=9)
    _, _, b = run_schedule(seed=9)
    _, _, c = run_schedule(seed=10)
    n = min(len(a.faults), len(b.faults), len(c.faults), 5)
    assert a.faults[:n] == b.faults[:n]
    assert a.faults[:n] != c.faults[:n]


def test_schedule_takes_every_family_in_turn_and_combines_some() -> None:
    target, rec, nemesis = run_schedule(seed=2)
    # Each family once before any repeats (the third step adds a second fault).
    singles = [f["fault"] for f in nemesis.faults]
    assert set(singles[:5]) == {"partition", "kill", "pause", "skew"}
    windows = sorted(fault_windows(rec.ops), key=lambda w: w.start)
    overlapping = [
        (a.name, b.name)
        for a, b in itertools.pairwise(windows)
        if a.end is not None and b.start < a.end
    ]
    assert overlapping, "no two faults were ever active together"
    assert all(a != b for a, b in overlapping)
    assert not target.network.cut_links()
    assert target.up == set(target.nodes())


def test_one_fault_at_a_time_when_combining_is_off() -> None:
    target = FakeTarget(names(5))
    rec = Recorder()
    cfg = NemesisConfig(
        faults=("partition", "kill", "pause"),
        fault_time=(0.01, 0.02),
        heal_time=(0.01, 0.02),
        start_delay=0.0,
        combine_every=0,
    )

    async def go() -> None:
        nemesis = Nemesis(target, rec, cfg)
        await nemesis.run(time.monotonic() + 0.5)
        await nemesis.heal_all()

    asyncio.run(go())
    windows = sorted(fault_windows(rec.ops), key=lambda w: w.start)
    assert len(windows) > 3
    assert all(a.end is not None and a.end <= b.start for a, b in itertools.pairwise(windows))
