"""Hypothesis state machines over the real nodes in the deterministic simulator.

The rules are spec/Dynamo.tla's actions and faults, taken by hand in the simulator's manual
mode: a client put or get at any node, a node taking a message off the network, a message lost
or duplicated, time passing (timers fire), a request timing out, crash and recovery, partition
and heal, anti-entropy and hinted handoff. After every step the invariants check the spec's
properties on the nodes' durable state; at teardown the cluster heals and quiesces, and the
replicas must have converged with every acknowledged write present or descended in a read.

Negative controls run the same machine where a property must fail (LWW loses acknowledged
writes; a sloppy quorum under a partition serves stale reads; per-node vector clocks let a
write dominate one its client never read) and assert that Hypothesis finds a small example.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from stateful_support import (
    REQUEST_TIMERS,
    ClockWentBack,
    DiskMismatch,
    Harness,
    LostAckedWrite,
    NotConverged,
    PropertyViolation,
    SiblingsNotAntichain,
    SilentSupersession,
    StaleStrictRead,
    context_covers,
    counters,
    describe,
    joined_clock,
    leq,
    present,
    show,
    show_all,
    supersedes,
    survives_as,
)

from dynamo_ref.core.messages import Get, GetOk, decode_context
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.core.node_versions import VersionMode, spec_clock
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Version
from dynamo_ref.sim import ClientHandle
from dynamo_ref.sim.cluster import node_names

NODES = node_names(4)
# On a ring of 4 partitions these have different replicas: a on n1 n2 n3 (fallback n4), b on
# n3 n4 n1 (fallback n2).
KEYS = (b"a", b"b")
# The ways to split the nodes in two, named by the side with n1: halves first, where a
# coordinator and a fallback can ack a write that the other two replicas never see.
SPLITS = sorted(
    (
        (NODES[0], *rest)
        for size in range(len(NODES) - 1)
        for rest in itertools.combinations(NODES[1:], size)
    ),
    key=lambda side: abs(len(NODES) - 2 * len(side)),
)
THOROUGH = settings.get_current_profile_name() == "thorough"
STEPS = 100 if THOROUGH else 50
# A thorough machine runs for minutes, past the suite's 300 s per test.
pytestmark = pytest.mark.timeout(3600 if THOROUGH else 300)

# Checks each machine runs (the spec's properties, then extra ones).
ANTICHAIN = "SiblingsAntichain"
SURVIVE = "AckedWritesSurvive"
STRICT_READ = "StrictQuorumRead"
CLOCK = "ClockMonotone"
CONVERGE = "Convergence"
DISK = "DurableMatchesMemory"
SILENT = "NoSilentSupersession"


def step(fn: Callable[..., None]) -> Callable[..., None]:
    """A rule's body: ``busy`` stays set if it raises, so teardown does not mask the error."""

    @functools.wraps(fn)
    def run(self: DynamoMachine, **kwargs: Any) -> None:
        self.busy = True
        fn(self, **kwargs)
        # A sender hears at once that a peer is down or cut off (links have no delay).
        self.sim.run_now()
        self.observe()
        self.busy = False

    return run


class DynamoMachine(RuleBasedStateMachine):
    """Four real nodes, N=3 R=2 W=2, two keys; subclasses choose the mode and the checks."""

    MODE: ClassVar[VersionMode] = VersionMode.VCLOCK
    SLOPPY: ClassVar[bool] = False
    QUORUM: ClassVar[tuple[int, int, int]] = (3, 2, 2)  # N, R, W
    # Heal and quiesce at teardown, then check convergence and a final read.
    QUIESCE: ClassVar[bool] = True
    CHECKS: ClassVar[frozenset[str]] = frozenset({ANTICHAIN, SURVIVE, CLOCK, CONVERGE, DISK})
    # What the environment may do besides client requests and deliveries: faults, time
    # (timers, timeouts) and background repair. A negative control may leave some out.
    FAULTS: ClassVar[frozenset[str]] = frozenset(
        {"crash", "partition", "lose", "duplicate", "time", "repair"}
    )
    # The log and step count of the last run that failed a property: after shrinking, the
    # minimal one (Hypothesis runs it last, to report it).
    last_failure: ClassVar[tuple[int, list[str]]] = (0, [])

    def __init__(self) -> None:
        super().__init__()
        n, r, w = self.QUORUM
        config = NodeConfig(n=n, r=r, w=w, sloppy=self.SLOPPY, mode=self.MODE)
        self.sim = Harness(NODES, config, self.learn)
        self.log: list[str] = []
        self.steps = 0
        self.busy = False
        self.failed = False
        # Every value is one client put's, with the context it was written with. A put that
        # a non-replica forwards twice (it retries when the first replica seems unreachable)
        # is coordinated twice, so a value may name more than one version.
        self.versions: dict[bytes, list[Version]] = {}
        self.contexts: dict[bytes, VClock] = {}
        self.acked_versions: list[tuple[dict[str, Any], list[Version]]] = []
        self.written = 0
        self.gets: list[ClientHandle] = []
        self.read_contexts: dict[bytes, list[bytes]] = {k: [] for k in KEYS}
        self.clocks: dict[tuple[NodeId, bytes], dict[NodeId, int]] = {}
        self.answers_checked = 0
        self.down: list[NodeId] = []

    # ---- bookkeeping -------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """Log a step."""
        self.steps += 1
        self.log.append(f"{self.steps:2}. t={self.sim.now:.3f} {text}")

    def detail(self, text: str) -> None:
        """Log part of a step."""
        self.log.append(f"      {text}")

    def learn(self, versions: Iterable[Version]) -> None:
        for v in versions:
            if v.value is None:
                continue
            known = self.versions.setdefault(v.value, [])
            if v not in known:
                known.append(v)

    def observe(self) -> None:
        """After a step: the contexts of answered reads, for later puts."""
        for h in [h for h in self.gets if h.done]:
            self.gets.remove(h)
            if isinstance(h.reply, GetOk) and isinstance(h.request, Get):
                self.read_contexts[h.request.key].append(h.reply.context)

    def fail(self, error: type[PropertyViolation], detail: str) -> None:
        self.failed = True
        steps = "\n".join(self.log) or "(no steps)"
        type(self).last_failure = (self.steps, list(self.log))
        raise error(f"{error.__doc__}\n{detail}\nafter these steps:\n{steps}")

    def acked(self) -> list[tuple[dict[str, Any], list[Version]]]:
        """The acked writes, each with the versions its ack may name (one, but for a put
        coordinated twice at one instant in DVV mode, whose ack context may leave out the dot)."""
        for a in self.sim.acked[len(self.acked_versions) :]:
            ver = a["ver"]
            assert isinstance(ver, dict)
            val, ts, vc = ver["val"], ver["ts"], ver["vc"]
            assert isinstance(val, bytes), a
            named = [
                v
                for v in self.versions.get(val, [])
                if v.timestamp == ts and vc in (counters(v.clock), spec_clock(v))
            ]
            assert named, f"the ack {a} names no version seen: {self.versions.get(val)}"
            self.acked_versions.append((a, named))
        return self.acked_versions

    def covered(self, here: list[Version], named: list[Version]) -> bool:
        """Some version here is the acked write or descends it."""
        return any(survives_as(self.MODE, u, a) for u in here for a in named)

    def other_writes(self, ver: Version) -> list[Version]:
        """The versions of every other client put."""
        return [u for us in self.versions.values() for u in us if u.value != ver.value]

    def read_versions(self, values: list[bytes]) -> list[Version]:
        """The versions a read's values name (every copy of a put coordinated twice)."""
        return [u for v in values for u in self.versions[v]]

    # ---- client requests ---------------------------------------------------------------------

    @rule(
        node=st.sampled_from(NODES),
        key=st.sampled_from(KEYS),
        ctx=st.integers(0, 2),
        wait=st.booleans(),
    )
    @step
    def client_put(self, node: NodeId, key: bytes, ctx: int, wait: bool) -> None:
        """ClientPut: a new value, with no context (0) or the context of a recent read. A client
        that waits lets the network deliver until it has its answer."""
        reads = self.read_contexts[key]
        context = reads[-ctx] if 0 < ctx <= len(reads) else b""
        self.written += 1
        value = f"v{self.written}".encode()
        self.contexts[value] = decode_context(context)
        shown = ",".join(f"{n}:{c}" for n, c, _ in decode_context(context).entries())
        self.note(
            f"client_put({node}, {key.decode()}, {value.decode()}, ctx={{{shown}}}"
            + (", wait)" if wait else ")")
        )
        handle = self.sim.client_put(node, key, value, context)
        self.sim.run_now()
        if wait:
            self.deliver_until(lambda: handle.done, newest_first=True)

    @rule(node=st.sampled_from(NODES), key=st.sampled_from(KEYS), wait=st.booleans())
    @step
    def client_get(self, node: NodeId, key: bytes, wait: bool) -> None:
        """ClientGet."""
        self.note(f"client_get({node}, {key.decode()}" + (", wait)" if wait else ")"))
        handle = self.sim.client_get(node, key)
        self.gets.append(handle)
        self.sim.run_now()
        if wait:
            self.deliver_until(lambda: handle.done, newest_first=True)

    def deliver_until(self, done: Callable[[], bool], newest_first: bool) -> None:
        """Receive steps until ``done`` or nothing can be delivered; the properties are checked
        after each. Newest first, a waiting client's request completes once a quorum answers
        and the other replicas' messages stay in flight, as on a real network."""
        while not done() and (ready := self.sim.protocol(deliverable=True)):
            m = ready[-1] if newest_first else ready[0]
            self.detail(describe(m))
            self.sim.deliver(m)
            self.sim.run_now()
            self.check_properties()

    # ---- the network -------------------------------------------------------------------------

    @precondition(lambda self: bool(self.sim.protocol(deliverable=True)))
    @rule(nth=st.integers(0, 7))
    @step
    def receive(self, nth: int) -> None:
        """Receive: a node takes a message off the network (nth=0: the oldest deliverable) and
        handles it: ReplicaStore, StoreAck, ReplicaRead or ReadResponse for the spec's kinds;
        forwarded requests and Merkle exchanges for the kinds the spec abstracts."""
        ready = self.sim.protocol(deliverable=True)
        m = ready[nth % len(ready)]
        self.note(f"receive {describe(m)}")
        self.sim.deliver(m)

    @precondition(lambda self: bool(self.sim.protocol(deliverable=True)))
    @rule()
    @step
    def receive_all(self) -> None:
        """Receive, again and again: every deliverable message in send order, and what they
        send in turn, until the network is quiet (the properties are checked after each)."""
        self.note("receive_all:")
        self.deliver_until(lambda: False, newest_first=False)

    @precondition(lambda self: "lose" in self.FAULTS and bool(self.sim.protocol(False)))
    @rule(nth=st.integers(0, 7))
    @step
    def lose_message(self, nth: int) -> None:
        """LoseMessage (gossip and pings are never lost: the failure detector is exact)."""
        msgs = self.sim.protocol(deliverable=False)
        m = msgs[nth % len(msgs)]
        self.note(f"lose {describe(m)}")
        self.sim.drop(m)

    @precondition(lambda self: "duplicate" in self.FAULTS and bool(self.sim.protocol(False)))
    @rule(nth=st.integers(0, 7))
    @step
    def duplicate_message(self, nth: int) -> None:
        """DuplicateMessage."""
        msgs = self.sim.protocol(deliverable=False)
        m = msgs[nth % len(msgs)]
        self.note(f"duplicate {describe(m)}")
        self.sim.duplicate(m)

    # ---- time --------------------------------------------------------------------------------

    @precondition(lambda self: "time" in self.FAULTS)
    @rule(dt=st.sampled_from([0.01, 0.3, 1.0]))
    @step
    def advance_time(self, dt: float) -> None:
        """Time passes: due timers fire (gossip, handoff, anti-entropy, timeouts, fallbacks),
        senders hear that a peer is unreachable, and gossip and pings get through wherever
        a link is up, so failure detectors suspect exactly the nodes down or cut off."""
        self.sim.advance(dt)
        self.note(f"advance_time({dt})")

    @precondition(
        lambda self: (
            "time" in self.FAULTS
            and any(t[0] in REQUEST_TIMERS for _, _, t in self.sim.pending_timers())
        )
    )
    @rule(nth=st.integers(0, 3))
    @step
    def timeout(self, nth: int) -> None:
        """A request's timer fires early: PutTimeout, SloppyFallback (a put's fallback timer),
        a get's or a forwarded request's timeout."""
        timers = [(n, t) for _, n, t in self.sim.pending_timers() if t[0] in REQUEST_TIMERS]
        nid, timer = timers[nth % len(timers)]
        self.note(f"timeout {timer[0]} timer at {nid}")
        self.sim.fire_timer(nid, timer)

    # ---- faults (at most two nodes down and one partition at a time) -------------------------

    @precondition(lambda self: "crash" in self.FAULTS and len(self.down) < 2)
    @rule(node=st.sampled_from(NODES))
    @step
    def crash(self, node: NodeId) -> None:
        """Crash: the node's volatile state goes, its disk stays."""
        if self.sim.is_up(node):
            self.sim.crash(node)
            self.down.append(node)
            self.note(f"crash({node})")
        else:
            self.note(f"crash({node}): already down")

    @precondition(lambda self: bool(self.down))
    @rule()
    @step
    def recover(self) -> None:
        """Recover: the node down longest restarts from its disk, and its peers learn it is
        back."""
        node = self.down.pop(0)
        self.sim.restart(node)
        self.sim.catch_up()
        self.note(f"recover({node})")

    @precondition(lambda self: "partition" in self.FAULTS and not self.sim.network.cut_links())
    @rule(side=st.sampled_from(SPLITS))
    @step
    def partition(self, side: tuple[NodeId, ...]) -> None:
        """Partition: every link between ``side`` and the other nodes is cut."""
        rest = [n for n in NODES if n not in side]
        self.sim.partition_groups(side, rest)
        self.note(f"partition({' '.join(side)} | {' '.join(rest)})")

    @precondition(lambda self: bool(self.sim.network.cut_links()))
    @rule()
    @step
    def heal(self) -> None:
        """Heal: every cut link is restored, held messages can be delivered again, and the
        failure detectors learn it."""
        self.sim.heal()
        self.sim.catch_up()
        self.note("heal")

    # ---- background repair -------------------------------------------------------------------

    @precondition(lambda self: "repair" in self.FAULTS)
    @rule(node=st.sampled_from(NODES))
    @step
    def anti_entropy(self, node: NodeId) -> None:
        """AntiEntropy: a Merkle exchange of every partition the node replicates."""
        self.sim.anti_entropy(node)
        self.note(f"anti_entropy({node})")

    @precondition(
        lambda self: "repair" in self.FAULTS and any(d.hints for d in self.sim.disks.values())
    )
    @rule(node=st.sampled_from(NODES))
    @step
    def handoff_hint(self, node: NodeId) -> None:
        """HandoffHint: the node sends its hinted versions to owners it can reach."""
        self.sim.fire(node, "handoff")
        self.note(f"handoff_hint({node})")

    # ---- the spec's properties ---------------------------------------------------------------

    @invariant()
    def siblings_antichain(self) -> None:
        """No replica keeps a version another of its versions supersedes."""
        if ANTICHAIN not in self.CHECKS:
            return
        for nid, disk in self.sim.disks.items():
            for key, siblings in disk.store.items():
                for u in siblings:
                    for v in siblings:
                        if supersedes(self.MODE, u, v):
                            self.fail(
                                SiblingsNotAntichain,
                                f"{nid} keeps {show_all(siblings)} for {key!r}: "
                                f"{show(u)} supersedes {show(v)}",
                            )

    @invariant()
    def acked_writes_survive(self) -> None:
        """Every acked write, or a version descending it, is on a disk or in a hint."""
        if SURVIVE not in self.CHECKS:
            return
        for a, named in self.acked():
            key = a["key"]
            here = present(self.sim.disks, key)
            if not self.covered(here, named):
                self.fail(
                    LostAckedWrite,
                    f"acked write {show_all(named)} of {key!r} is gone; present: {show_all(here)}",
                )

    @invariant()
    def strict_quorum_read(self) -> None:
        """A read begun after a write's ack, with no crash or partition since, sees it."""
        if STRICT_READ not in self.CHECKS:
            return
        answered = self.sim.answered
        acked = self.acked()
        for rd in answered[self.answers_checked :]:
            vals = rd["vals"]
            assert isinstance(vals, list)
            vers = self.read_versions(vals)
            for a, named in acked:
                if a["key"] != rd["key"] or a["seq"] > rd["after"] or a["epoch"] != rd["epoch"]:
                    continue
                if not self.covered(vers, named):
                    self.fail(
                        StaleStrictRead,
                        f"a read of {rd['key']!r} answered {show_all(vers)}, missing "
                        f"{show_all(named)} acked before it began with no fault since",
                    )
        self.answers_checked = len(answered)

    @invariant()
    def clock_monotone(self) -> None:
        """A replica's merged clock of a key never goes back (LWW breaks it: not checked)."""
        if CLOCK not in self.CHECKS:
            return
        for nid, disk in self.sim.disks.items():
            for key in KEYS:
                now = joined_clock(disk.store.get(key, ()))
                before = self.clocks.get((nid, key), {})
                if not leq(before, now):
                    self.fail(
                        ClockWentBack,
                        f"{nid}'s clock of {key!r} went from {before} to {now}",
                    )
                self.clocks[(nid, key)] = now

    # ---- extra checks ------------------------------------------------------------------------

    @invariant()
    def durable_matches_memory(self) -> None:
        """What a running node holds is what its durable effects wrote (a crash loses none)."""
        if DISK not in self.CHECKS:
            return
        for nid in NODES:
            if not self.sim.is_up(nid):
                continue
            engine, disk = self.sim.node(nid).engine, self.sim.disks[nid]
            store = {k: vs for k in KEYS if (vs := engine.get(k))}
            assert set(engine) <= set(KEYS), set(engine)
            hints = {(o, k): engine.get_hint(o, k) for o, k in engine.hints()}
            hints = {x: vs for x, vs in hints.items() if vs}
            if store != disk.store or hints != disk.hints:
                self.fail(DiskMismatch, f"{nid}: memory {store} {hints}, disk {disk}")

    @invariant()
    def no_silent_supersession(self) -> None:
        """Every version that dominates an acked write was written by a client that had read
        that write (with per-node vector clocks this fails: see test below)."""
        if SILENT not in self.CHECKS:
            return
        for a, named in self.acked():
            for ver in named:
                for u in self.other_writes(ver):
                    if not supersedes(self.MODE, u, ver):
                        continue
                    assert u.value is not None
                    if context_covers(self.MODE, self.contexts[u.value], ver):
                        continue
                    self.fail(
                        SilentSupersession,
                        f"{show(u)} dominates acked {show(ver)} of {a['key']!r}, but its "
                        f"client's context {counters(self.contexts[u.value])} had not seen it",
                    )

    def check_properties(self) -> None:
        self.siblings_antichain()
        self.acked_writes_survive()
        self.strict_quorum_read()
        self.clock_monotone()
        self.durable_matches_memory()
        self.no_silent_supersession()

    # ---- teardown ----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Heal, quiesce, then Convergence and a final read of every key."""
        if self.busy or self.failed or not self.QUIESCE:
            return  # a step already failed: leave its error as it is
        self.busy = True
        quiet = self.sim.quiesce(KEYS)
        self.note("heal, recover every node, quiesce")
        self.observe()
        self.check_properties()
        if CONVERGE in self.CHECKS and not quiet:
            stores = {
                k: {n: show_all(self.sim.disks[n].store.get(k, ())) for n in self.sim.replicas(k)}
                for k in KEYS
            }
            hints = {n: d.hints for n, d in self.sim.disks.items() if d.hints}
            self.fail(NotConverged, f"replicas {stores}, hints {hints}")
        for key in KEYS:
            self.final_read(key)
        self.busy = False

    def final_read(self, key: bytes) -> None:
        handle = self.sim.client_get(self.sim.replicas(key)[0], key)
        self.sim.run_now()
        self.sim.deliver_all()
        self.note(f"final read of {key.decode()}")
        if SURVIVE not in self.CHECKS:
            return
        reply = handle.reply
        if not isinstance(reply, GetOk):
            self.fail(NotConverged, f"the final read of {key!r} after quiescing failed: {reply}")
            return
        vers = self.read_versions(reply.siblings)
        for a, named in self.acked():
            if a["key"] == key and not self.covered(vers, named):
                self.fail(
                    LostAckedWrite,
                    f"the final read of {key!r} answered {show_all(vers)}, "
                    f"missing acked {show_all(named)}",
                )


# ---- the machines that must pass ----------------------------------------------------------------

STRICT_CHECKS = frozenset({ANTICHAIN, SURVIVE, STRICT_READ, CLOCK, CONVERGE, DISK})
SLOPPY_CHECKS = STRICT_CHECKS - {STRICT_READ}


class VClockStrict(DynamoMachine):
    """Per-node vector clocks, strict quorum: every spec property holds."""

    CHECKS = STRICT_CHECKS


class DVVStrict(DynamoMachine):
    """Dotted version vectors, strict quorum: the spec's properties, and no write is dominated
    by one whose client had not read it."""

    MODE = VersionMode.DVV
    CHECKS = STRICT_CHECKS | {SILENT}


class VClockSloppy(DynamoMachine):
    """Sloppy quorum with hinted handoff: hints count as present; reads may be stale."""

    SLOPPY = True
    CHECKS = SLOPPY_CHECKS


class DVVSloppy(DynamoMachine):
    MODE = VersionMode.DVV
    SLOPPY = True
    CHECKS = SLOPPY_CHECKS | {SILENT}


MACHINE_SETTINGS = settings(stateful_step_count=STEPS)

TestVClockStrict = VClockStrict.TestCase
TestVClockStrict.settings = MACHINE_SETTINGS
TestDVVStrict = DVVStrict.TestCase
TestDVVStrict.settings = MACHINE_SETTINGS
TestVClockSloppy = VClockSloppy.TestCase
TestVClockSloppy.settings = MACHINE_SETTINGS
TestDVVSloppy = DVVSloppy.TestCase
TestDVVSloppy.settings = MACHINE_SETTINGS


# ---- negative controls: the properties can fail ---------------------------------------------


class LWWLostWrite(DynamoMachine):
    """Last write wins: a replica keeps one of two concurrent writes, both acknowledged."""

    MODE = VersionMode.LWW
    CHECKS = frozenset({ANTICHAIN, SURVIVE, DISK})
    QUIESCE = False


# A fixed seed rather than derandomize, so that editing this class does not change the search:
# each of seeds 0 to 9 finds a stale read within 400 examples; this one does it fast.
@seed(7)
class SloppyStaleRead(DynamoMachine):
    """The quorums of spec/models/sloppy_stale_read.cfg (N=2, R=1, W=2: R + W > N) with a
    sloppy quorum: a coordinator and a fallback ack a write the other replica never got, and
    a read there misses it. Partitions are the only fault, so that the search stays short."""

    SLOPPY = True
    QUORUM = (2, 1, 2)
    FAULTS = frozenset({"partition"})
    CHECKS = frozenset({ANTICHAIN, SURVIVE, STRICT_READ, CLOCK, DISK})
    QUIESCE = False


class VClockSilent(DynamoMachine):
    """Per-node vector clocks: a write through a coordinator gets a counter above every clock
    it holds, so it dominates an earlier write its client never read."""

    CHECKS = STRICT_CHECKS | {SILENT}
    QUIESCE = False


# Fixed and independent of the profile: deterministic, so a control finds the same example on
# every run. About 1 in 300 programs of the sloppy machine shows a stale read, hence 1000.
CONTROL_SETTINGS = settings(
    max_examples=1000,
    stateful_step_count=15,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)
MAX_SHRUNK_STEPS = 15


def find_violation(machine: type[DynamoMachine]) -> tuple[PropertyViolation, int, list[str]]:
    """Run the machine until a property fails; the error and the shrunk example's steps."""
    machine.last_failure = (0, [])
    with pytest.raises(PropertyViolation) as info:
        run_state_machine_as_test(machine, settings=CONTROL_SETTINGS)
    steps, log = machine.last_failure
    return info.value, steps, log


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (LWWLostWrite, LostAckedWrite),
        (SloppyStaleRead, StaleStrictRead),
        (VClockSilent, SilentSupersession),
    ],
    ids=["lww-lost-write", "sloppy-stale-read", "vclock-silent-supersession"],
)
def test_negative_control_finds_a_small_counterexample(
    machine: type[DynamoMachine], expected: type[PropertyViolation]
) -> None:
    error, steps, log = find_violation(machine)
    assert isinstance(error, expected), error
    print(f"{machine.__name__}: {expected.__name__} in {steps} steps:\n" + "\n".join(log))
    assert 0 < steps <= MAX_SHRUNK_STEPS, log


def test_relations_follow_the_mode() -> None:
    """The helpers judge domination as the node does in each mode."""
    from dynamo_ref.core.node_versions import PruneSettings, write_version

    empty = VClock.empty()
    a = write_version(
        VersionMode.VCLOCK, "n1", empty, (), value=b"a", timestamp=1.0, prune=PruneSettings()
    )
    b = write_version(
        VersionMode.VCLOCK, "n1", empty, (a,), value=b"b", timestamp=2.0, prune=PruneSettings()
    )
    assert supersedes(VersionMode.VCLOCK, b, a)
    assert not context_covers(VersionMode.VCLOCK, empty, a)
    da = write_version(
        VersionMode.DVV, "n1", empty, (), value=b"a", timestamp=1.0, prune=PruneSettings()
    )
    db = write_version(
        VersionMode.DVV, "n1", empty, (da,), value=b"b", timestamp=2.0, prune=PruneSettings()
    )
    assert not supersedes(VersionMode.DVV, db, da)
    assert not supersedes(VersionMode.DVV, da, db)
    assert supersedes(VersionMode.LWW, b, a)
