"""Trace validation: simulator traces with faults are behaviours of spec/Dynamo.tla, and corrupted
ones are not.

Each scenario runs the real node in the simulator with a fixed seed, records its trace, and has
TLC follow it through spec/DynamoTrace.tla. The negative controls corrupt an accepted trace (a
step moved out of order, a forged ack, one variable changed) and must be rejected at the
corrupted step, with the reason.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dynamo_ref.cli import main
from dynamo_ref.core.messages import GetOk, Read, ReadResp, Store, StoreAck
from dynamo_ref.core.node import NodeConfig, VersionMode
from dynamo_ref.sim import LinkConfig, TraceWriter
from dynamo_ref.sim.cluster import Cluster
from dynamo_ref.sim.network import InFlight
from dynamo_ref.tla.models import default_spec_dir
from dynamo_ref.tla.trace import (
    TraceConstants,
    TraceFormatError,
    TraceVerdict,
    cluster_constants,
    prepare,
    read_trace,
    split_fault_batches,
    validate,
)

TRACES = Path(__file__).parent / "data" / "traces"
SPEC = default_spec_dir()
needs_tlc = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

# Anti-entropy stays off unless a scenario wants it: its rounds only lengthen a trace.
NO_REPAIR = 1e9


def recorded(sim: Cluster, writer: TraceWriter, keys: list[bytes]) -> str:
    return cluster_constants(sim, keys).header() + "\n" + writer.text()


# ---- scenarios ----------------------------------------------------------------------------------


def loss_and_duplication() -> str:
    """Strict quorum, N=2 W=2 R=1, with 15% of messages lost and 15% duplicated: puts time out,
    acks arrive twice, gets carry their context into the next put."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=2, r=1, w=2, sloppy=False, anti_entropy_interval=NO_REPAIR
    )
    link = LinkConfig(delay=0.002, jitter=0.004, loss=0.15, duplicate=0.15)
    sim = Cluster(3, cfg, seed=1, q=8, trace=writer, link=link, notify_unreachable=False)
    keys = [b"a", b"b"]
    context: dict[bytes, bytes] = {}
    for i, (key, op) in enumerate(
        [
            *[(b"a", "put"), (b"b", "put"), (b"a", "get"), (b"a", "put")],
            *[(b"b", "put"), (b"b", "get"), (b"b", "put"), (b"a", "put")],
        ]
    ):
        if op == "put":
            sim.client_put(None, key, f"v{i}".encode(), context.get(key, b""))
        else:
            get = sim.client_get(None, key)
            sim.run_until_done([get], 2.0)
            if isinstance(get.reply, GetOk):
                context[key] = get.reply.context
        sim.run_for(0.3)
    sim.run_for(2.0)
    return recorded(sim, writer, keys)


def crash_and_restart() -> str:
    """Strict quorum, N=3 R=2 W=2: a replica crashes with messages in flight to it and restarts;
    anti-entropy (in the node's two halves) repairs what it missed."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=3, r=2, w=2, sloppy=False, anti_entropy_interval=2.0
    )
    link = LinkConfig(delay=0.002, jitter=0.004)
    sim = Cluster(3, cfg, seed=16, q=8, trace=writer, link=link, notify_unreachable=False)
    key = b"a"
    victim = sim.replicas(key)[2]
    for i in range(3):
        sim.client_put(None, key, f"v{i}".encode())
        sim.run_for(0.2)
    sim.crash(victim)
    for i in range(3, 6):
        sim.client_put(None, key, f"v{i}".encode())
        sim.client_get(None, key)
        sim.run_for(0.3)
    sim.restart(victim)
    sim.run_for(4.0)
    return recorded(sim, writer, [key])


def sloppy_partition_and_handoff() -> str:
    """Sloppy quorum, N=2 R=1 W=2 on three nodes: the second replica is cut off, a put goes to
    the fallback as a hint, the link heals and the fallback hands the hint back."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=2, r=1, w=2, sloppy=True, anti_entropy_interval=NO_REPAIR
    )
    link = LinkConfig(delay=0.002, jitter=0.004)
    sim = Cluster(3, cfg, seed=3, q=8, trace=writer, link=link)
    key = b"a"
    first, second = sim.replicas(key)
    sim.run_until_done([sim.client_put(first, key, b"v1")])
    sim.run_for(0.5)
    sim.isolate(second)
    # Every failure detector holds `second` down before the put: the spec's detector is exact.
    sim.run_for(3.0)
    sim.run_until_done([sim.client_put(first, key, b"v2")])
    sim.run_for(0.5)
    sim.heal()
    sim.run_for(6.0)
    sim.run_until_done([sim.client_get(first, key)])
    sim.run_for(1.0)
    return recorded(sim, writer, [key])


def sloppy_read_from_a_fallback() -> str:
    """Sloppy quorum, N=2 R=2 W=2 on three nodes: with the second replica cut off, a put goes
    to the fallback as a hint and a get reads the fallback in its place, which answers with its
    hint; after the heal the hint is handed off."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=2, r=2, w=2, sloppy=True, anti_entropy_interval=NO_REPAIR
    )
    link = LinkConfig(delay=0.002, jitter=0.004)
    sim = Cluster(3, cfg, seed=3, q=8, trace=writer, link=link)
    key = b"a"
    first, second = sim.replicas(key)
    sim.isolate(second)
    sim.run_for(3.0)
    sim.run_until_done([sim.client_put(first, key, b"v1")])
    sim.run_until_done([sim.client_get(first, key)])
    sim.run_for(0.5)
    sim.heal()
    sim.run_for(6.0)
    return recorded(sim, writer, [key])


def late_read_repair() -> str:
    """Messages delivered by hand: a store is lost, an ack duplicated, the stale replica's late
    read response is repaired after the client has its answer, and a get whose reads are lost
    times out."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=3, r=2, w=2, sloppy=False, anti_entropy_interval=NO_REPAIR
    )
    sim = Cluster(3, cfg, seed=1, q=8, trace=writer, manual=True)
    key = b"a"
    c, x, y = sim.replicas(key)

    def one(kind: type, dst: str) -> InFlight:
        return next(m for m in sim.in_flight() if isinstance(m.msg, kind) and m.dst == dst)

    sim.client_put(c, key, b"v1")
    sim.run_until(sim.now)
    sim.deliver(one(Store, x))
    sim.drop(one(Store, y))
    sim.duplicate(one(StoreAck, c))
    sim.deliver(one(StoreAck, c))
    sim.deliver(one(StoreAck, c))
    sim.client_get(c, key)
    sim.run_until(sim.now)
    for replica in (x, y):
        sim.deliver(one(Read, replica))
        sim.deliver(one(ReadResp, c))
    sim.deliver(one(Store, y))
    sim.client_get(c, key)
    sim.run_until(sim.now)
    for replica in (x, y):
        sim.drop(one(Read, replica))
    sim.run_for(cfg.request_timeout)
    return recorded(sim, writer, [key])


def lww_concurrent_writes() -> str:
    """Last-writer-wins, N=2 R=1 W=1: both replicas take a write for the key at nearly the same
    time; each keeps the later one."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        n=2, r=1, w=1, sloppy=False, mode=VersionMode.LWW, anti_entropy_interval=NO_REPAIR
    )
    link = LinkConfig(delay=0.002, jitter=0.004, duplicate=0.2)
    sim = Cluster(3, cfg, seed=2, q=8, trace=writer, link=link, notify_unreachable=False)
    key = b"a"
    first, second = sim.replicas(key)
    for i in range(3):
        sim.client_put(first, key, f"x{i}".encode())
        sim.run_for(0.0005)
        sim.client_put(second, key, f"y{i}".encode())
        sim.run_for(0.2)
    sim.client_get(first, key)
    sim.run_for(1.0)
    return recorded(sim, writer, [key])


SCENARIOS: dict[str, Callable[[], str]] = {
    "loss_and_duplication": loss_and_duplication,
    "crash_and_restart": crash_and_restart,
    "sloppy_partition_and_handoff": sloppy_partition_and_handoff,
    "sloppy_read_from_a_fallback": sloppy_read_from_a_fallback,
    "late_read_repair": late_read_repair,
    "lww_concurrent_writes": lww_concurrent_writes,
}

# Actions each scenario must show, so that a change in the simulator that stops them from
# happening does not leave the validation vacuous.
EXPECTED_ACTIONS = {
    "loss_and_duplication": {"LoseMessage", "DuplicateMessage", "PutTimeout", "ReadRepair"},
    "crash_and_restart": {"Crash", "Recover", "LoseMessage", "AntiEntropy", "ReadResponse"},
    "sloppy_partition_and_handoff": {"Partition", "Heal", "SloppyFallback", "HandoffHint"},
    "sloppy_read_from_a_fallback": {"Partition", "SloppyFallback", "ReplicaRead", "HandoffHint"},
    "late_read_repair": {"LoseMessage", "DuplicateMessage", "ReadRepair", "GetTimeout"},
    "lww_concurrent_writes": {"ClientPut", "ReplicaStore", "DuplicateMessage", "ClientGet"},
}


def check(text: str, **kwargs: Any) -> TraceVerdict:
    return validate(text, spec_dir=SPEC, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def traces() -> dict[str, str]:
    return {name: make() for name, make in SCENARIOS.items()}


@needs_tlc
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_simulator_traces_with_faults_are_behaviours_of_the_spec(
    traces: dict[str, str], name: str
) -> None:
    verdict = check(traces[name])
    assert verdict.accepted, verdict.describe() + "\n" + "\n".join(verdict.details)
    assert EXPECTED_ACTIONS[name] <= set(verdict.actions), verdict.actions
    assert verdict.steps == len(traces[name].splitlines()) - 1


def test_the_sloppy_read_scenario_reads_a_fallback_for_its_hint(traces: dict[str, str]) -> None:
    _, lines = lines_of(traces["sloppy_read_from_a_fallback"])
    hinted_reads = [
        m
        for x in lines
        if x["state"]
        for m, _ in x["state"]["msgs"]
        if m["mtype"] == "read" and m["mhint"]
    ]
    assert hinted_reads
    stood_in = [
        op["stand"]
        for x in lines
        if x["state"]
        for ops in x["state"]["getOps"].values()
        for op in ops
        if op.get("stand")
    ]
    assert stood_in


# ---- negative controls --------------------------------------------------------------------------


def lines_of(text: str) -> tuple[str, list[dict[str, Any]]]:
    header, *rest = text.splitlines()
    return header, [json.loads(x) for x in rest]


def text_of(header: str, lines: list[dict[str, Any]]) -> str:
    return "\n".join([header, *(json.dumps(x) for x in lines)]) + "\n"


ALL_BUT_CAUSAL = ["SiblingsAntichain", "AckedWritesSurvive", "StrictQuorumRead"]


def vclock_false_domination(mode: VersionMode = VersionMode.VCLOCK) -> str:
    """Strict quorum, N=2 R=1 W=2: two blind puts through one coordinator. With plain vector
    clocks the second's clock dominates the first, acknowledged, write, which every replica then
    drops although its writer never saw it; with dotted version vectors both are kept."""
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(mode=mode, n=2, r=1, w=2, sloppy=False, anti_entropy_interval=NO_REPAIR)
    sim = Cluster(3, cfg, seed=5, q=8, trace=writer, link=LinkConfig(delay=0.002))
    key = b"a"
    first = sim.replicas(key)[0]
    for value in (b"v1", b"v2"):
        put = sim.client_put(first, key, value)
        sim.run_until_done([put], 2.0)
        sim.run_for(0.3)
    return recorded(sim, writer, [key])


@needs_tlc
def test_a_behaviour_that_loses_an_acknowledged_write_is_reported_broken() -> None:
    text = vclock_false_domination()
    # Plain vector clocks do not keep it, so it is checked only when asked for.
    assert check(text).accepted
    verdict = check(text, promised=[*ALL_BUT_CAUSAL, "CausalWritesSurvive"])
    assert not verdict.accepted
    assert not verdict.error
    assert verdict.broken == "CausalWritesSurvive", verdict.describe()
    assert verdict.failed_action is not None
    # The write is gone when its last holder, the other replica, stores the second write.
    assert verdict.failed_action.startswith("ReplicaStore("), verdict.failed_action
    assert "CausalWritesSurvive broken at step" in verdict.describe()


@needs_tlc
def test_control_the_same_puts_in_order_keep_every_promise() -> None:
    # The second put carries the first's context: it supersedes it, nothing is lost.
    writer = TraceWriter(keep=True)
    cfg = NodeConfig(
        mode=VersionMode.VCLOCK, n=2, r=1, w=2, sloppy=False, anti_entropy_interval=NO_REPAIR
    )
    sim = Cluster(3, cfg, seed=5, q=8, trace=writer, link=LinkConfig(delay=0.002))
    key = b"a"
    first = sim.replicas(key)[0]
    put = sim.client_put(first, key, b"v1")
    sim.run_until_done([put], 2.0)
    get = sim.client_get(first, key)
    sim.run_until_done([get], 2.0)
    assert isinstance(get.reply, GetOk)
    put = sim.client_put(first, key, b"v2", get.reply.context)
    sim.run_until_done([put], 2.0)
    sim.run_for(0.3)
    verdict = check(recorded(sim, writer, [key]), promised=["CausalWritesSurvive"])
    assert verdict.accepted, verdict.describe()


@needs_tlc
def test_lww_breaks_acked_writes_survive_when_asked_to_keep_it(traces: dict[str, str]) -> None:
    # LWW keeps no write against a concurrent one: by default that is not checked...
    text = traces["lww_concurrent_writes"]
    assert check(text).accepted
    # ... and asked for, the concurrent write it dropped is found.
    verdict = check(text, promised=["AckedWritesSurvive"])
    assert verdict.broken == "AckedWritesSurvive", verdict.describe()


def test_an_unknown_promise_is_refused(traces: dict[str, str]) -> None:
    with pytest.raises(TraceFormatError, match="no promise named Liveness"):
        check(traces["lww_concurrent_writes"], promised=["Liveness"])


@needs_tlc
def test_a_reordered_step_is_rejected_where_it_was_moved(traces: dict[str, str]) -> None:
    header, lines = lines_of(traces["late_read_repair"])
    # The coordinator takes the ack before the replica has stored the version.
    store = next(k for k, x in enumerate(lines) if x["action"] == "ReplicaStore")
    ack = next(k for k, x in enumerate(lines) if x["action"] == "StoreAck")
    lines.insert(store, lines.pop(ack))
    verdict = check(text_of(header, lines))
    assert not verdict.accepted
    assert not verdict.error
    assert verdict.failed_step == store + 1
    assert verdict.failed_action is not None
    assert verdict.failed_action.startswith("StoreAck(")
    assert verdict.reason == "the action is not enabled: message in flight fails"


@needs_tlc
def test_a_forged_acked_write_is_rejected_where_it_appears(traces: dict[str, str]) -> None:
    header, lines = lines_of(traces["loss_and_duplication"])
    # The put that timed out shows up as acknowledged from its timeout on.
    i = next(k for k, x in enumerate(lines) if x["action"] == "PutTimeout")
    node, op_id = lines[i]["args"]
    before = next(x["state"] for x in reversed(lines[:i]) if x["state"] is not None)
    op = next(o for o in before["putOps"][node] if str(o["id"]) == op_id)
    for line in lines[i:]:
        if line["state"] is not None:
            ack = {"key": op["key"], "ver": op["ver"], "seq": 99, "epoch": 0}
            line["state"]["acked"].append(ack)
    verdict = check(text_of(header, lines))
    assert verdict.failed_step == i + 1
    assert verdict.reason == "the spec's step leaves acked otherwise than recorded"
    assert verdict.details
    assert verdict.details[0].startswith("acked: << {}, {")


@needs_tlc
def test_a_forged_store_ack_is_rejected(traces: dict[str, str]) -> None:
    header, lines = lines_of(traces["crash_and_restart"])
    # An ack for the first put from the replica that is down: it never stored it.
    crash = next(k for k, x in enumerate(lines) if x["action"] == "Crash")
    victim = lines[crash]["args"][0]
    ack = next(x for x in lines if x["action"] == "StoreAck")
    forged = copy.deepcopy(ack)
    forged["args"][1] = victim
    forged["state"] = copy.deepcopy(lines[crash]["state"])
    lines.insert(crash + 1, forged)
    verdict = check(text_of(header, lines))
    assert verdict.failed_step == crash + 2
    assert verdict.failed_action is not None
    assert verdict.failed_action.startswith(f"StoreAck({ack['args'][0]}, {victim}, ")
    assert verdict.reason == "the action is not enabled: message in flight fails"


@needs_tlc
def test_a_handoff_to_an_owner_still_cut_off_is_a_behaviour() -> None:
    # A real simulator run (sloppy quorum, the second replica isolated): the fallback's failure
    # detector had not noticed the partition yet and sent the hint back over the cut link. The
    # spec's detector may be wrong as the node's is, so the copy waits on the cut like any
    # message.
    text = (TRACES / "handoff_to_a_cut_off_owner.jsonl").read_text()
    _, lines = lines_of(text)
    assert lines[42]["action"] == "HandoffHint"
    assert check(text).accepted


@needs_tlc
def test_a_handoff_of_hints_the_node_does_not_hold_is_rejected() -> None:
    header, lines = lines_of((TRACES / "handoff_to_a_cut_off_owner.jsonl").read_text())
    assert lines[42]["args"] == ["n3", "n2", "a"]
    lines[42]["args"] = ["n3", "n1", "a"]  # n3 holds no hint for n1
    verdict = check(text_of(header, lines))
    assert verdict.failed_step == 43
    assert verdict.failed_action == "HandoffHint(n3, n1, a)"
    assert verdict.reason == "the action is not enabled: f holds hints for h and k fails"


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "store": lambda s: s["store"]["n3"].update(a=s["store"]["n1"]["a"]),
    "hints": lambda s: s["hints"]["n2"].append(
        {"key": "a", "owner": "n3", "ver": s["store"]["n1"]["a"][0]}
    ),
    "cut": lambda s: s["cut"].append(["n1", "n3"]),
    "answered": lambda s: s["answered"][0].update(vals=["v2"]),
}


@needs_tlc
@pytest.mark.parametrize("variable", list(MUTATIONS))
def test_a_state_that_differs_in_one_variable_is_rejected(
    traces: dict[str, str], variable: str
) -> None:
    header, lines = lines_of(traces["late_read_repair"])
    # The state after the read is answered and repaired.
    k = next(k for k, x in enumerate(lines) if x["action"] == "ReadRepair")
    MUTATIONS[variable](lines[k]["state"])
    verdict = check(text_of(header, lines), explain=False)
    assert verdict.failed_step == k + 1


@needs_tlc
def test_extensions_can_be_refused(traces: dict[str, str]) -> None:
    text = traces["late_read_repair"]
    verdict = check(text, extensions=False)
    _, lines = lines_of(text)
    late = [k for k, x in enumerate(lines, 1) if x["action"] == "ReadRepair"][-1]
    assert verdict.failed_step == late
    assert verdict.reason == "late ReadRepair is beyond Dynamo.tla (refused by --strict)"


# ---- the command --------------------------------------------------------------------------------


@needs_tlc
def test_cli_accepts_and_rejects_with_exit_codes(traces: dict[str, str], tmp_path: Path) -> None:
    good = TRACES / "late_read_repair.jsonl"
    runner = CliRunner()
    keep = tmp_path / "keep"
    result = runner.invoke(main, ["spec", "validate-trace", str(good), "--keep", str(keep)])
    assert result.exit_code == 0, result.output
    assert "accepted: all 23 steps are a behaviour of Dynamo.tla" in result.output
    assert "extensions: late ReadRepair 1, GetTimeout 1" in result.output
    assert (keep / "TraceData.tla").is_file()
    assert (keep / "tlc-output.txt").is_file()

    header, lines = lines_of(good.read_text())
    del lines[2]  # the replica's store: the next state shows what it never stored
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text_of(header, lines))
    result = runner.invoke(main, ["spec", "validate-trace", str(bad)])
    assert result.exit_code == 1, result.output
    assert "rejected at step 3 of 22 (LoseMessage(store n1->n3 key a op" in result.output
    assert "leaves store, msgs otherwise than recorded" in result.output

    bad.write_text("{}\n")
    result = runner.invoke(main, ["spec", "validate-trace", str(bad)])
    assert result.exit_code == 2
    assert "error:" in result.output


@needs_tlc
def test_cli_checks_the_promises_of_the_mode_and_those_asked_for(tmp_path: Path) -> None:
    trace = tmp_path / "blind.jsonl"
    trace.write_text(vclock_false_domination())
    runner = CliRunner()
    result = runner.invoke(main, ["spec", "validate-trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert (
        "promises checked at every step: SiblingsAntichain, AckedWritesSurvive, "
        "StrictQuorumRead" in result.output
    )
    asked = ["spec", "validate-trace", str(trace), "--promise", "CausalWritesSurvive"]
    result = runner.invoke(main, asked)
    assert result.exit_code == 1, result.output
    assert "CausalWritesSurvive broken at step" in result.output


# ---- reading and mapping, without TLC -----------------------------------------------------------


def test_constants_line_round_trips_first_or_last() -> None:
    constants = TraceConstants(n=2, r=1, w=2, sloppy=True, lww=False, pref={"a": ["n1", "n2"]})
    init = (TRACES / "init.jsonl").read_text()
    for text in (constants.header() + "\n" + init, init + constants.header() + "\n"):
        header, lines = read_trace(text)
        assert header == constants
        assert [x.action for x in lines] == ["Init"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no action lines"),
        ('{"action": "ClientPut", "args": [], "state": null}\n', "must be Init"),
        ('{"action": 3}\n', "Expected `str`"),
        ("not json\n", "line 1"),
    ],
)
def test_malformed_traces_are_refused(text: str, message: str) -> None:
    with pytest.raises(TraceFormatError, match=message):
        read_trace(text)


def test_a_trace_without_constants_is_refused() -> None:
    with pytest.raises(TraceFormatError, match="names no constants"):
        validate((TRACES / "init.jsonl").read_text(), spec_dir=SPEC)


def test_ids_and_versions_are_bound_at_the_request_that_made_them(
    traces: dict[str, str],
) -> None:
    header, lines = read_trace(traces["late_read_repair"])
    assert header is not None
    module = prepare(lines, header).module
    # The node's op ids (incarnation << 32 | counter) become the spec's: put 1, get 1.
    assert "4294967297" not in module
    assert "mop |-> 1" in module
    assert "ts |-> 1," in module
    assert "1000000001" not in module


def test_an_unknown_version_gets_a_number_no_put_makes(traces: dict[str, str]) -> None:
    header, lines = lines_of(traces["late_read_repair"])
    lines[-1]["state"]["store"]["n1"]["a"][0]["val"] = "forged"
    constants, parsed = read_trace(text_of(header, lines))
    assert constants is not None
    assert "ts |-> 1000000001," in prepare(parsed, constants).module


def test_a_batched_partition_gets_the_cut_of_each_pair() -> None:
    _, lines = read_trace((TRACES / "partition_batch.jsonl").read_text())
    split_fault_batches(lines)
    cuts = [x.state.cut if x.state else None for x in lines]
    assert cuts == [
        [],
        [("n1", "n2")],
        [("n1", "n2"), ("n1", "n3")],
        [("n1", "n3")],
        [],
    ]
