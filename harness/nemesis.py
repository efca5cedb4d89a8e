"""Nemeses: partitions as sets of cut directed links, kill -9 and restart, pause and resume,
clock skew, and a seeded schedule that alternates faults with heal periods: each family in turn,
and every third step two families at once.

Partition patterns are pure functions of the node list and a seeded `random.Random`:

- `halves`: a random split into two halves, cut both ways;
- `isolate`: one node cut off from all others, both ways;
- `majorities-ring`: nodes on a shuffled ring, each receives only from the majority window
  around it, so every node sees a majority and no two see the same one (Jepsen's);
- `bridge`: two halves cut apart, except one node that both halves still reach;
- `one-way`: one node's outgoing links cut; it still hears everyone (asymmetric).

Every fault is recorded in the history before it is applied and after it is removed, as
`process: "nemesis"` events `start-<family>` / `stop-<family>` (families `partition`, `kill`,
`pause`, `clock-skew`, the names `harness.checkers.causal.fault_windows` reads), with the
pattern, links or nodes as `value`. `heal_all` ends whatever is still active.

A target on hosts may lose one for good (a host that dies mid-run): when the target has
`check_hosts(probe)` (node -> why its host was lost), the nemesis asks it after every heal and
records each newly lost host once, as `start-host-down` with the node and the reason, never
stopped (every host is probed at the final heal only, so the schedule's pace does not hang on
SSH round trips); lost nodes are left out of later kills, pauses and skews. A fault step that
fails (a host that stopped answering) is recorded as an `error` event and the run goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.net.network import Link, Network
from harness.recorder import Recorder

__all__ = [
    "FAULTS",
    "PATTERNS",
    "Nemesis",
    "NemesisConfig",
    "bridge",
    "cut_between",
    "halves",
    "isolate",
    "majorities_ring",
    "one_way",
    "pattern_links",
    "sees",
]

Pattern = Callable[[Sequence[str], random.Random], set[Link]]


def cut_between(a: Sequence[str], b: Sequence[str]) -> set[Link]:
    """Every link between groups `a` and `b`, both directions."""
    return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}


def halves(nodes: Sequence[str], rng: random.Random) -> set[Link]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    mid = len(shuffled) // 2
    return cut_between(shuffled[:mid], shuffled[mid:])


def isolate(nodes: Sequence[str], rng: random.Random, node: str | None = None) -> set[Link]:
    victim = node if node is not None else rng.choice(list(nodes))
    return cut_between([victim], [n for n in nodes if n != victim])


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> set[Link]:
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    m = n // 2 + 1  # a majority, counting the node itself
    cut: set[Link] = set()
    for i, dst in enumerate(ring):
        view = {ring[(i + off) % n] for off in range(-((m - 1) // 2), m // 2 + 1)}
        cut |= {(src, dst) for src in ring if src not in view}
    return cut


def bridge(nodes: Sequence[str], rng: random.Random) -> set[Link]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    mid = len(shuffled) // 2
    return cut_between(shuffled[:mid], shuffled[mid + 1 :])


def one_way(nodes: Sequence[str], rng: random.Random) -> set[Link]:
    victim = rng.choice(list(nodes))
    return {(victim, n) for n in nodes if n != victim}


PATTERNS: dict[str, Pattern] = {
    "halves": halves,
    "isolate": isolate,
    "majorities-ring": majorities_ring,
    "bridge": bridge,
    "one-way": one_way,
}
FAULTS = ("partition", "kill", "pause", "skew")


def pattern_links(name: str, nodes: Sequence[str], rng: random.Random) -> set[Link]:
    if name not in PATTERNS:
        raise ValueError(f"unknown partition pattern {name!r}; known: {', '.join(PATTERNS)}")
    return PATTERNS[name](nodes, rng)


def sees(node: str, nodes: Sequence[str], cut: set[Link]) -> set[str]:
    """The nodes `node` receives from (itself included) under `cut`."""
    return {src for src in nodes if src == node or (src, node) not in cut}


class FaultTarget(Protocol):
    @property
    def network(self) -> Network: ...

    def nodes(self) -> list[str]: ...

    async def start(self, node: str) -> None: ...

    async def kill(self, node: str) -> None: ...

    async def pause(self, node: str) -> None: ...

    async def resume(self, node: str) -> None: ...


@dataclass(frozen=True)
class NemesisConfig:
    """`faults`: the families to draw from (`partition`, `kill`, `pause`, `skew`);
    `skew_nodes`: pin clock skews to these nodes (else a random node each time)."""

    faults: tuple[str, ...] = ("partition",)
    patterns: tuple[str, ...] = tuple(PATTERNS)
    fault_time: tuple[float, float] = (1.0, 3.0)
    heal_time: tuple[float, float] = (0.5, 1.5)
    skew: float = 60.0
    skew_nodes: tuple[str, ...] = ()
    start_delay: float = 0.5
    seed: int = 0
    # Every `combine_every`-th fault step applies two families at once (a partition during a
    # kill, say); 0: one at a time.
    combine_every: int = 3

    def __post_init__(self) -> None:
        bad = [f for f in self.faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown fault(s) {bad}; known: {', '.join(FAULTS)}")
        for p in self.patterns:
            if p not in PATTERNS:
                raise ValueError(f"unknown partition pattern {p!r}")


class Nemesis:
    """Runs a `NemesisConfig` schedule against a target, recording into a `Recorder`."""

    def __init__(self, target: FaultTarget, recorder: Recorder, config: NemesisConfig) -> None:
        self.target = target
        self.recorder = recorder
        self.config = config
        self.rng = random.Random(config.seed)
        self.faults: list[dict[str, object]] = []  # every fault applied, with its nodes/links
        self._cut = False
        self._killed: set[str] = set()
        self._paused: set[str] = set()
        self._skewed: set[str] = set()
        self._lost: set[str] = set()
        self._bag: list[str] = []

    async def run(self, deadline: float) -> None:
        """Faults and heal periods until `time.monotonic()` reaches `deadline`."""
        cfg = self.config
        if not cfg.faults:
            return
        await self._sleep_until(min(deadline, time.monotonic() + cfg.start_delay))
        step = 0
        while time.monotonic() < deadline:
            step += 1
            kinds = [self._next_kind()]
            if cfg.combine_every and len(set(cfg.faults)) > 1 and step % cfg.combine_every == 0:
                kinds.append(self.rng.choice([k for k in cfg.faults if k != kinds[0]]))
            for kind in kinds:
                await self.begin(kind)
            await self._sleep_until(
                min(deadline, time.monotonic() + self.rng.uniform(*cfg.fault_time))
            )
            await self.heal_all(probe_hosts=False)
            await self._sleep_until(
                min(deadline, time.monotonic() + self.rng.uniform(*cfg.heal_time))
            )

    def _next_kind(self) -> str:
        # Each family in turn, in a shuffled order each round, so that a short run still
        # sees every family it was asked for.
        if not self._bag:
            self._bag = list(self.config.faults)
            self.rng.shuffle(self._bag)
        return self._bag.pop()

    @staticmethod
    async def _sleep_until(when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def begin(self, kind: str) -> None:
        nodes = self.target.nodes()
        live = [n for n in nodes if n not in self._lost] or nodes
        if kind == "partition":
            pattern = self.rng.choice(self.config.patterns)
            links = pattern_links(pattern, nodes, self.rng)
            value: dict[str, Any] = {"pattern": pattern, "links": sorted(map(list, links))}
            self.recorder.nemesis_start("partition", value)
            self._cut = True
            try:
                self.target.network.cut(links)
            except Exception as e:
                self.recorder.nemesis("error", {"fault": kind, "error": str(e)})
        elif kind in ("kill", "pause"):
            # A node already killed or paused in this step is left alone.
            free = [n for n in live if n not in self._killed | self._paused]
            node = self.rng.choice(free or live)
            value = {"nodes": [node]}
            self.recorder.nemesis_start(kind, value)
            try:
                if kind == "kill":
                    self._killed.add(node)
                    await self.target.kill(node)
                else:
                    self._paused.add(node)
                    await self.target.pause(node)
            except Exception as e:
                self.recorder.nemesis("error", {"fault": kind, "error": str(e)})
        else:
            skew = self.config.skew * self.rng.choice((1.0, -1.0))
            node = self.rng.choice(list(self.config.skew_nodes or live))
            value = {"nodes": [node], "seconds": skew}
            self.recorder.nemesis_start("clock-skew", value)
            self._skewed.add(node)
            await self._set_skew(node, skew)
        self.faults.append({"fault": kind, **value})

    async def _set_skew(self, node: str, seconds: float) -> None:
        setter = getattr(self.target, "set_clock_skew", None)
        if setter is None:
            self.recorder.nemesis("error", {"fault": "skew", "error": "target has no clock skew"})
            return
        try:
            await setter(node, seconds)
        except Exception as e:
            self.recorder.nemesis("error", {"fault": "skew", "node": node, "error": str(e)})

    async def heal_all(self, *, probe_hosts: bool = True) -> None:
        """End every active fault: heal the network, resume, restart, clear skews; then
        record hosts lost meanwhile (``probe_hosts``: after asking each host)."""
        if self._cut:
            try:
                self.target.network.heal()
            except Exception as e:
                self.recorder.nemesis("error", {"fault": "heal", "error": str(e)})
            self._cut = False
            self.recorder.nemesis_stop("partition")
        if self._paused:
            nodes = sorted(self._paused)
            for node in nodes:
                try:
                    await self.target.resume(node)
                except Exception as e:
                    self.recorder.nemesis(
                        "error", {"fault": "resume", "node": node, "error": str(e)}
                    )
            self._paused.clear()
            self.recorder.nemesis_stop("pause", {"nodes": nodes})
        if self._killed:
            nodes = sorted(self._killed)
            for node in nodes:
                try:
                    await self.target.start(node)
                except Exception as e:
                    self.recorder.nemesis(
                        "error", {"fault": "restart", "node": node, "error": str(e)}
                    )
            self._killed.clear()
            self.recorder.nemesis_stop("kill", {"nodes": nodes})
        if self._skewed:
            nodes = sorted(self._skewed)
            for node in nodes:
                await self._set_skew(node, 0.0)
            self._skewed.clear()
            self.recorder.nemesis_stop("clock-skew", {"nodes": nodes})
        await self.note_lost_hosts(probe=probe_hosts)

    async def note_lost_hosts(self, *, probe: bool = True) -> None:
        """Record each host the target has lost since the last call, once."""
        check = getattr(self.target, "check_hosts", None)
        if check is None:
            return
        lost: dict[str, str] = await check(probe)
        for node, why in sorted(lost.items()):
            if node not in self._lost:
                self._lost.add(node)
                value = {"nodes": [node], "error": why}
                self.recorder.nemesis_start("host-down", value)
                self.faults.append({"fault": "host-down", **value})
