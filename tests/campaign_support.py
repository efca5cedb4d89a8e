"""Synthetic set-add histories for the campaign and report tests, shaped like a real run's:
concurrent clients adding unique elements with times in ns, a partition window, then final
reads and replica reads of every key. `lose` drops acknowledged adds from the final reads."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import datatypes as D
from harness.checkers.convergence import check_convergence_history
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.verdict import Result, combine
from harness.history import Op, write_jsonl
from harness.run import RunConfig

MS = 1_000_000


def set_history(
    *,
    seed: int = 0,
    clients: int = 4,
    keys: Sequence[str] = ("k0", "k1", "k2"),
    seconds: float = 2.0,
    lose: int = 0,
    faults: bool = True,
) -> list[Op]:
    rng = random.Random(seed)
    events: list[tuple[int, int, dict[str, Any]]] = []  # (time, tiebreak, fields)
    acked: dict[str, list[int]] = {k: [] for k in keys}
    element = 0
    horizon = int(seconds * 1000 * MS)
    for p in range(clients):
        t = rng.randrange(5 * MS)
        while t < horizon:
            key = rng.choice(list(keys))
            element += 1
            latency = rng.randrange(1 * MS, 30 * MS)
            outcome = rng.choices(["ok", "fail", "info"], weights=[90, 5, 5])[0]
            base = {"process": p, "f": "add", "key": key, "value": element}
            events.append((t, len(events), {**base, "type": "invoke"}))
            events.append((t + latency, len(events), {**base, "type": outcome}))
            if outcome == "ok":
                acked[key].append(element)
            t += latency + rng.randrange(1 * MS, 20 * MS)
    if faults:
        start, end = horizon // 3, 2 * horizon // 3
        cut = {"process": "nemesis", "type": "info", "key": None}
        events.append((start, -1, {**cut, "f": "start-partition", "value": [["n1", "n2"]]}))
        events.append((end, -1, {**cut, "f": "stop-partition", "value": None}))
        events.append((end + 10 * MS, -1, {**cut, "f": "kill", "value": "n3"}))
        events.append((end + 200 * MS, -1, {**cut, "f": "restart", "value": "n3"}))
    events.sort(key=lambda e: (e[0], e[1]))
    lost = {k: set(v[:lose]) if k == keys[0] else set() for k, v in acked.items()}
    t = horizon + 500 * MS
    for key in keys:
        final = sorted(e for e in acked[key] if e not in lost[key])
        base = {"process": "final", "f": "read", "key": key}
        events.append((t, 0, {**base, "type": "invoke", "value": None, "extra": {"final": True}}))
        events.append((t + MS, 0, {**base, "type": "ok", "value": final}))
        t += 2 * MS
        for node in ("n1", "n2", "n3"):
            rr = {"process": "final", "f": "replica-read", "key": key}
            versions = [{"value": final, "clock": {"n1": 1}}]
            events.append((t, 0, {**rr, "type": "invoke", "value": None, "extra": {"node": node}}))
            events.append((t + MS, 0, {**rr, "type": "ok", "value": versions}))
            t += 2 * MS
    return [
        Op(
            process=fields["process"],
            type=fields["type"],
            f=fields["f"],
            value=fields.get("value"),
            time=time,
            index=i,
            key=fields.get("key"),
            extra=fields.get("extra", {}),
        )
        for i, (time, _, fields) in enumerate(events)
    ]


def check_set(history: Sequence[Op]) -> dict[str, Result]:
    client = [op for op in history if op.f != "replica-read"]
    return {
        "lost_writes": check_lost_writes(client, D.set_add()),
        "convergence": check_convergence_history(history),
    }


def fake_config(**changes: Any) -> RunConfig:
    """The real `RunConfig` for the fake runner: 3 keys, plain vclock unless told otherwise."""
    fields: dict[str, Any] = {"keys": 3, "mode": "vclock", "out": Path("unused")}
    return RunConfig(**{**fields, **changes})


@dataclass
class FakeResult:
    config: RunConfig
    history: list[Op]
    checks: dict[str, Result]
    verdict: str
    timings: dict[str, float] = field(default_factory=dict)


async def fake_run_once(cfg: RunConfig, progress: Any = None) -> FakeResult:
    """LWW mode loses a write (the negative control); seed 13 crashes mid-run."""
    if progress is not None:
        progress("running", 0.5)
    history = set_history(
        seed=cfg.seed,
        clients=min(cfg.clients, 4),
        keys=[f"k{i}" for i in range(cfg.keys)],
        seconds=1.0,
        lose=1 if cfg.mode == "lww" else 0,
        faults=bool(cfg.nemesis),
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(cfg.out / "history.jsonl", history[: len(history) // 2])
    if cfg.seed == 13:
        raise RuntimeError("cluster failed to start")
    write_jsonl(cfg.out / "history.jsonl", history)
    checks = check_set(history)
    if progress is not None:
        progress("checking", 0.97)
    verdict = combine(r.verdict for r in checks.values())
    return FakeResult(cfg, history, checks, verdict, {"run": 1.0, "quiesce": 0.1, "check": 0.01})
