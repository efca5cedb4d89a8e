"""Version modes in isolation (DVV against a ground truth), the ``dot`` field of ``Version``,
and the in-memory engine."""

from __future__ import annotations

import os
import random
import subprocess
import sys

from hypothesis import example, given
from hypothesis import strategies as st

from dynamo_ref.core.node_versions import (
    PruneSettings,
    VersionMode,
    dvv_context,
    dvv_covers,
    read_context,
    reconcile_dvv,
    reconcile_mode,
    write_version,
)
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import (
    Version,
    digest,
    encode,
    is_canonical,
    reconcile,
    reconcile_lww,
    sort_key,
)
from dynamo_ref.storage import MemoryEngine

PRUNE = PruneSettings()

# ---- the dot field ----------------------------------------------------------------------------


def test_dot_free_versions_encode_as_before_and_dots_change_the_encoding() -> None:
    v = Version(b"val", VClock({"a": (1, 2.0)}), 2.0, "a")
    raw = encode((v,))
    # Marker 1 (a value, no dot), the length-prefixed value, then timestamp and writer.
    assert b"\x01" + (3).to_bytes(8, "big") + b"val" in raw
    dotted = Version(b"val", VClock({"a": (1, 2.0)}), 2.0, "a", 5)
    assert encode((dotted,)) != raw
    assert digest((dotted,)) != digest((v,))
    assert sort_key(v) < sort_key(dotted)
    assert Version(None, VClock(), 0.0, "a", 3).is_tombstone


# ---- DVV against the truth --------------------------------------------------------------------

# A run: clients read the one store, or write with what they last read, through a or b.
steps = st.lists(
    st.tuples(st.sampled_from(["x", "y", "z"]), st.booleans(), st.sampled_from(["a", "b"])),
    max_size=14,
)


def run(
    mode: VersionMode, ops: list[tuple[str, bool, str]], learn_own: bool = False
) -> tuple[set[bytes], set[bytes]]:
    """(values the store keeps, values that are truly concurrent at the end).

    A client writes with the context of its last read; with ``learn_own`` it then uses the
    context of its own write (``PutOk.context``), as having seen that write.
    """
    store: tuple[Version, ...] = ()
    history: dict[bytes, set[bytes]] = {}  # write -> the writes it causally follows
    read: dict[str, tuple[VClock, set[bytes]]] = {}
    for i, (client, is_read, node) in enumerate(ops):
        if is_read:
            seen = {s.value for s in store if s.value is not None}
            past = set().union(*(history[s] for s in seen)) if seen else set()
            read[client] = (read_context(mode, store), seen | past)
            continue
        value = f"{client}{i}".encode()
        context, seen = read.get(client, (VClock.empty(), set()))
        v = write_version(mode, node, context, store, value=value, timestamp=float(i), prune=PRUNE)
        history[value] = seen
        store = reconcile_mode(mode, (*store, v))
        if learn_own:
            read[client] = (read_context(mode, (v,)), seen | {value})
    kept = {v.value for v in store if v.value is not None}
    truth = {w for w in history if not any(w in h for h in history.values())}
    return kept, truth


@given(steps)
def test_dvv_keeps_exactly_the_truly_concurrent_writes(ops: list[tuple[str, bool, str]]) -> None:
    kept, truth = run(VersionMode.DVV, ops)
    assert kept == truth


@given(steps)
def test_dvv_never_loses_a_write_when_clients_write_on_with_their_own_write_context(
    ops: list[tuple[str, bool, str]],
) -> None:
    kept, truth = run(VersionMode.DVV, ops, learn_own=True)
    # The context of a write that followed a write it did not see has a gap, which the
    # context leaves out: a false sibling at worst, never a loss.
    assert kept >= truth


@given(steps)
def test_vector_clocks_never_keep_an_obsolete_write(ops: list[tuple[str, bool, str]]) -> None:
    kept, truth = run(VersionMode.VCLOCK, ops)
    assert kept <= truth  # but may lose concurrent ones (the stale-counter limit)


def test_vector_clocks_lose_a_write_that_dvv_keeps() -> None:
    ops = [("x", True, "a"), ("y", True, "a"), ("x", False, "a"), ("y", False, "a")]
    assert run(VersionMode.VCLOCK, ops) == ({b"y3"}, {b"x2", b"y3"})
    assert run(VersionMode.DVV, ops) == ({b"x2", b"y3"}, {b"x2", b"y3"})
    for learn_own in (False, True):
        kept, truth = run(VersionMode.VCLOCK, ops, learn_own)
        assert kept <= truth


dotted = st.builds(
    Version,
    value=st.one_of(st.none(), st.sampled_from([b"p", b"q"])),
    clock=st.dictionaries(st.sampled_from("ab"), st.tuples(st.integers(1, 3), st.just(0.0))).map(
        VClock
    ),
    timestamp=st.just(0.0),
    writer=st.sampled_from("ab"),
    dot=st.integers(1, 4),
)


@given(st.lists(dotted, max_size=6), st.randoms())
def test_reconcile_dvv_is_canonical_idempotent_and_order_free(
    vs: list[Version], rnd: object
) -> None:
    once = reconcile_dvv(vs)
    assert is_canonical(once)
    assert reconcile_dvv(once) == once
    shuffled = list(vs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert reconcile_dvv(shuffled) == once
    # Exactly the versions in no other's history (if any: generated histories can be cyclic).
    uncovered = {v for v in vs if not any(dvv_covers(u, v) and u != v for u in vs)}
    if uncovered:
        assert set(once) == uncovered


# Two versions each in the other's history (no run makes them, generated histories can):
# the full reconcile keeps one, and so must the shortcut.
_CYCLE = [
    Version(b"p", VClock({"b": (1, 0.0)}), 0.0, "a", 1),
    Version(b"q", VClock({"a": (1, 0.0)}), 0.0, "b", 1),
]


@given(st.sampled_from(VersionMode), st.lists(dotted, max_size=4), st.randoms())
@example(VersionMode.DVV, _CYCLE, random.Random(0))
def test_reconcile_mode_takes_its_shortcuts_to_the_full_reconcilers_answer(
    mode: VersionMode, vs: list[Version], rng: random.Random
) -> None:
    # One version, copies of one, and a write over the one it replaces skip the full reconcile.
    full = {
        VersionMode.VCLOCK: reconcile,
        VersionMode.LWW: reconcile_lww,
        VersionMode.DVV: reconcile_dvv,
    }[mode]
    pairs = [vs[:1], vs[:1] * 2, vs[:2], vs[1::-1]]
    if vs:  # a write over the first, with the context of a read of it
        first = vs[0]
        context = read_context(mode, (first,))
        node = rng.choice(["a", "b"])
        over = write_version(
            mode, node, context, (first,), value=b"new", timestamp=2.0, prune=PRUNE
        )
        pairs += [[first, over], [over, first]]
    for case in [*pairs, vs]:
        assert reconcile_mode(mode, case) == full(case), case


def test_dvv_context_folds_only_gapless_dots() -> None:
    x = Version(b"x", VClock(), 1.0, "a", 1)
    y = Version(b"y", VClock(), 2.0, "a", 2)
    assert dvv_context([x, y]).counter("a") == 2
    assert dvv_context([y]).counter("a") == 0  # (a, 1) unseen: not claimed


# ---- the in-memory engine ---------------------------------------------------------------------

RING = Ring.create(["n1", "n2", "n3"], 8)


def version(value: bytes, counter: int = 1) -> tuple[Version, ...]:
    return (Version(value, VClock({"n1": (counter, 1.0)}), 1.0, "n1"),)


def test_engine_stores_reads_and_removes() -> None:
    e = MemoryEngine(RING.partition_of)
    e.put(b"k", version(b"v"))
    assert e.get(b"k") == version(b"v")
    assert b"k" in e
    assert len(e) == 1
    e.put(b"k", version(b"w", 2))
    assert len(e) == 1
    assert e.get(b"k") == version(b"w", 2)
    assert e.keys(RING.partition_of(b"k")) == [b"k"]
    assert list(e) == [b"k"]
    e.put(b"k", ())
    assert e.get(b"k") == ()
    assert len(e) == 0
    assert e.partitions() == []


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=4), st.binary(max_size=3)), max_size=30))
def test_engine_trees_depend_on_content_only(items: list[tuple[bytes, bytes]]) -> None:
    a, b = MemoryEngine(RING.partition_of), MemoryEngine(RING.partition_of)
    final = dict(items)
    for k, v in items:
        a.put(k, version(v))
    for k, v in sorted(final.items(), reverse=True):
        b.put(k, version(v))
    for p in range(RING.q):
        assert a.tree(p).root == b.tree(p).root
        assert sorted(a.keys(p)) == sorted(k for k in final if RING.partition_of(k) == p)
    assert len(a) == len(final)


def test_engine_leaf_digests_are_short_and_tell_values_apart() -> None:
    a, b = MemoryEngine(RING.partition_of), MemoryEngine(RING.partition_of)
    a.put(b"k", version(b"v"))
    b.put(b"k", version(b"w"))
    p = RING.partition_of(b"k")
    leaf = a.tree(p).leaf_of(b"k")
    (da,), (db,) = a.leaf_digests(p, leaf), b.leaf_digests(p, leaf)
    assert da[0] == db[0] == b"k"
    assert len(da[1]) == 16
    assert da[1] != db[1]
    assert a.tree(p).root != b.tree(p).root


def test_engine_hints_are_kept_apart() -> None:
    e = MemoryEngine(RING.partition_of)
    e.put_hint("n2", b"k", version(b"v"))
    assert e.get(b"k") == ()
    assert e.get_hint("n2", b"k") == version(b"v")
    assert e.hints() == [("n2", b"k")]
    assert e.hint_count() == 1
    e.put_hint("n2", b"k", ())
    assert e.hints() == []


MEASURE = """
import gc, tracemalloc
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Version
from dynamo_ref.storage import MemoryEngine
ring = Ring.create([f"n{i}" for i in range(5)], 16)
keys = [b"key-%06d" % i for i in range(20_000)]
sets = [(Version(bytes([i % 251]) * 100, VClock({"n1": (i + 1, 1e9 + i)}), 1e9 + i, "n1"),)
        for i in range(len(keys))]
gc.collect()
tracemalloc.start()
e = MemoryEngine(ring.partition_of)
for k, s in zip(keys, sets):
    e.put(k, s)
used = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
# The keys were allocated before tracing; the engine holds them.
print((used + sum(k.__sizeof__() for k in keys)) / sum(len(k) + 100 for k in keys))
"""


def test_engine_holds_keys_in_under_three_times_their_raw_size() -> None:
    # 1,250 keys a partition, as 100,000 keys over 64 partitions have; contracts off, as in
    # production (they are decided at import, hence the subprocess).
    env = {**os.environ, "DYNAMO_REF_CONTRACTS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], env=env, capture_output=True, text=True, check=True
    )
    ratio = float(out.stdout)
    assert 1.0 < ratio < 3.0, ratio


def test_pruning_never_drops_the_writes_own_event() -> None:
    # Found by CrossHair searching write_version alone: entries stamped ahead of the writer's
    # clock made its new entry the oldest, and pruning to `big` dropped it, so the write did
    # not dominate its context (the node would have failed the put on its own contract).
    ahead = VClock.of({f"w{i}": (1, 100.0 + i) for i in range(3)})
    tight = PruneSettings(small=1, big=3, young=0.0, old=0.0)
    for mode in (VersionMode.VCLOCK, VersionMode.LWW):
        v = write_version(mode, "n1", ahead, (), value=b"x", timestamp=1.0, prune=tight)
        assert v.clock.counter("n1") == 1
        assert v.clock.dominates(ahead)
        assert len(v.clock) <= tight.big + 1
