"""Random runs with crashes, lost messages and cut links, checked against the spec's properties:
no acknowledged write is lost (AckedWritesSurvive), replicas converge and hints drain once the
faults stop (Convergence, HintsDrained)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from test_node_cluster import CONFIG, Cluster, cluster

from dynamo_ref.core.messages import Delete, Get, Put, PutOk, decode_context
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Version

NAMES = ("a", "b", "c", "d", "e")
KEYS = [f"key{i}".encode() for i in range(6)]


def history(v: Version) -> VClock:
    """The clock of everything ``v`` has seen, itself included (its dot, in DVV mode)."""
    if not v.dot:
        return v.clock
    return v.clock.merge(VClock({v.writer: (v.dot, v.timestamp)}))


def present(c: Cluster, key: bytes) -> list[VClock]:
    """Histories of every version of ``key`` anywhere: stores (up or down) and hints."""
    clocks = [history(v) for n in NAMES for v in c.stored(n, key)]
    for n in NAMES:
        for (_, k), versions in c.disks[n].hints.items():
            if k == key:
                clocks.extend(history(v) for v in versions)
    return clocks


def run(seed: int, mode: VersionMode, sloppy: bool, reap: bool = False) -> None:
    rnd = random.Random(seed)
    config = replace(
        CONFIG,
        mode=mode,
        sloppy=sloppy,
        reap_tombstones=reap,  # reaping removes what AckedWritesSurvive looks for
        anti_entropy_interval=0.3,
        handoff_interval=0.3,
    )
    c = cluster(config, names=NAMES, q=8, seed=seed)
    cut: set[frozenset[str]] = set()
    c.drop = lambda src, dst, msg: frozenset((src, dst)) in cut or rnd.random() < 0.05
    contexts: dict[bytes, bytes] = {}
    sent: dict[int, tuple[bytes, bytes | None]] = {}
    for _ in range(120):
        roll = rnd.random()
        up = [n for n in NAMES if c.is_up(n)]
        if roll < 0.45:
            key = rnd.choice(KEYS)
            value = None if rnd.random() < 0.15 else bytes([rnd.randrange(256)])
            context = contexts.get(key, b"") if rnd.random() < 0.7 else b""
            msg = Put(key, value, context) if value is not None else Delete(key, context)
            sent[c.send(rnd.choice(up), msg)] = (key, value)
        elif roll < 0.7:
            key = rnd.choice(KEYS)
            client = c.send(rnd.choice(up), Get(key))
            c.settle()
            for reply in c.replies.get(client, []):
                if hasattr(reply, "context"):
                    contexts[key] = reply.context  # type: ignore[union-attr]
        elif roll < 0.78 and len(up) > 3:
            c.crash(rnd.choice(up))
        elif roll < 0.86:
            down = [n for n in NAMES if not c.is_up(n)]
            if down:
                c.boot(rnd.choice(down))
        elif roll < 0.92:
            cut.add(frozenset(rnd.sample(NAMES, 2)))
        else:
            cut.clear()
        c.settle()
        c.advance(rnd.choice([0.0, 0.1, 0.6, 1.2]))
        # AckedWritesSurvive, at every step (LWW drops concurrent writes by design).
        checked = mode is not VersionMode.LWW and not reap
        for client, replies in c.replies.items() if checked else ():
            if client in sent and isinstance(replies[0], PutOk):
                key, _ = sent[client]
                written = decode_context(replies[0].context)
                clocks = present(c, key)
                assert any(u.descends(written) for u in clocks), (seed, key)

    # The faults stop: every node up, every link whole, no loss.
    cut.clear()
    c.drop = None
    for n in NAMES:
        if not c.is_up(n):
            c.boot(n)
    c.advance(30.0)
    for key in KEYS:
        replicas = c.nodes["a"].ring.preference_list(key, config.n)
        sets = {c.stored(n, key) for n in replicas}
        assert len(sets) == 1, (seed, key, sets)
    assert all(not c.disks[n].hints for n in NAMES), seed
    assert all(not c.nodes[n].spec_state()["putOps"] for n in NAMES)


@pytest.mark.parametrize("seed", range(4))
def test_random_faults_sloppy_vclock(seed: int) -> None:
    run(seed, VersionMode.VCLOCK, sloppy=True)


@pytest.mark.parametrize("seed", range(2))
def test_random_faults_strict_dvv(seed: int) -> None:
    run(100 + seed, VersionMode.DVV, sloppy=False)


@pytest.mark.parametrize("seed", range(2))
def test_random_faults_sloppy_lww(seed: int) -> None:
    run(200 + seed, VersionMode.LWW, sloppy=True)


def test_random_faults_with_tombstone_reaping_still_converge() -> None:
    run(300, VersionMode.VCLOCK, sloppy=True, reap=True)
