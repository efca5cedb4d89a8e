"""Per-process traces of real node processes, and their merge into one behaviour.

A real cluster (three node processes over TCP, one killed with SIGKILL and restarted) writes
one trace per process; the merger pairs every received message with its send and orders the
steps by happens-before. Bad input is refused by file and line, never merged: each kind of
damage is planted in a copy of a real trace.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dynamo_ref.client import AsyncClient
from dynamo_ref.core.effects import Effect
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.core.node.config import DurableState
from dynamo_ref.localcluster import LocalCluster, NodeOptions
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore
from dynamo_ref.tla.merge import (
    MergeResult,
    TraceInputError,
    merge,
    merge_files,
    merged_line,
    read_process_trace,
    trace_files,
)

pytestmark = pytest.mark.net

Writer = Callable[[bytes], None]


async def _workload(addresses: list[str], keys: range, tag: str) -> None:
    client = await AsyncClient.connect(addresses, timeout=5.0)
    try:
        for k in keys:
            key = f"k{k}".encode()
            first = await client.put(key, f"{tag}1".encode())
            await client.put(key, f"{tag}2".encode(), context=first.context)
            await client.get(key)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("traced")
    trace_dir = base / "traces"
    trace_dir.mkdir()
    config = NodeConfig(anti_entropy_interval=0.5, gossip_interval=0.2)
    options = NodeOptions(config=config, trace_dir=trace_dir)
    with LocalCluster(3, base / "cluster", options=options) as lc:
        lc.wait_healthy()
        asyncio.run(_workload(lc.addresses, range(5), "a"))
        lc.kill(2)
        asyncio.run(_workload(lc.addresses[:2], range(5, 10), "b"))
        lc.start(2)
        lc.wait_healthy()
        asyncio.run(_workload(lc.addresses, range(10, 12), "c"))
        asyncio.run(asyncio.sleep(1.5))  # anti-entropy brings n3 what it missed
    return trace_dir


def _merged(traces: Path) -> tuple[MergeResult, list[dict[str, object]]]:
    result = merge_files([traces])
    return result, [merged_line(s) for s in result.steps]


def test_a_real_run_with_a_kill_merges_into_one_behaviour(traces: Path) -> None:
    result, lines = _merged(traces)
    assert result.nodes == ["n1", "n2", "n3"]
    assert result.delivered > 100
    assert result.duplicates == 0
    # n3 was killed and started again: a second incarnation behind a Restart step.
    restarts = [x for x in lines if x.get("action") == "Restart"]
    assert [x["node"] for x in restarts] == ["n3"]
    names = {a[0] for x in lines for a in x.get("actions", [])}  # type: ignore[attr-defined]
    assert {"ClientPut", "ReplicaStore", "StoreAck", "ClientGet", "ReadResponse"} <= names
    # Messages n1 and n2 sent to n3 while it was down were never received.
    assert result.lost > 0


def test_the_merged_order_keeps_happens_before(traces: Path) -> None:
    _result, lines = _merged(traces)
    position: dict[str, int] = {}  # message id -> the merged step that sent it
    lamport: dict[str, int] = {}
    last: dict[tuple[object, object], tuple[int, int]] = {}  # (node, inc) -> (i, lc)
    for n, x in enumerate(lines):
        lc = x["lc"]
        assert isinstance(lc, int)
        if "i" in x:
            key = (x["node"], x["inc"])
            i = x["i"]
            assert isinstance(i, int)
            if key in last:
                prev_i, prev_lc = last[key]
                assert i == prev_i + 1
                assert lc > prev_lc
            last[key] = (i, lc)
        for sent in x.get("sent", []):  # type: ignore[attr-defined]
            position[sent["msg"]], lamport[sent["msg"]] = n, lc
        recv = x.get("recv")
        if isinstance(recv, dict):
            msg = recv["msg"]
            assert position[msg] < n
            assert lamport[msg] < lc
    assert len(lines) == sum(len(read_process_trace(p)) for p in traces.glob("*.jsonl"))


def test_every_step_logs_the_nodes_own_variables(traces: Path) -> None:
    steps = read_process_trace(traces / "n1.jsonl")
    puts = [s for s in steps if s.line and any(a[0] == "ClientPut" for a in s.line.actions)]
    assert puts
    for s in puts:
        assert s.line is not None
        key = s.line.actions[0][2]
        # The coordinator stored its own version in the step: the key's new siblings.
        assert s.line.state["store"][key], s.line
        assert {"store", "hints", "putOps", "getOps"} <= set(s.line.state)
        # The put the step made, in progress (not yet W acks: only the coordinator's own).
        (op,) = s.line.state["putOps"]
        assert op["key"] == key
        assert op["acks"] == ["n1"]
    # A step logs only the requests it touched: a get's first step, no put.
    gets = [s for s in steps if s.line and any(a[0] == "ClientGet" for a in s.line.actions)]
    assert gets
    for s in gets:
        assert s.line is not None
        assert s.line.state["putOps"] == []
        assert [op["key"] for op in s.line.state["getOps"]] == [s.line.actions[0][2]]


# ---- bad input -------------------------------------------------------------------------------


def _copy(traces: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(traces, out)
    return out


def _edit_line(path: Path, pick: str, edit: object) -> int:
    """Apply ``edit`` (a function of the JSON object) to the first line containing ``pick``;
    the 1-based line number."""
    lines = path.read_text().splitlines()
    for n, text in enumerate(lines):
        if pick in text and '"trace"' not in text:
            obj = json.loads(text)
            edit(obj)  # type: ignore[operator]
            lines[n] = json.dumps(obj)
            path.write_text("\n".join(lines) + "\n")
            return n + 1
    raise AssertionError(f"no line with {pick}")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynamo_ref", "spec", "merge-traces", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_merges_and_writes_the_behaviour(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.jsonl"
    done = _cli(traces, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "3 nodes" in done.stdout
    assert len(out.read_text().splitlines()) == len(merge_files([traces]).steps)


def test_a_truncated_line_is_refused_with_its_file_and_line(traces: Path, tmp_path: Path) -> None:
    d = _copy(traces, tmp_path)
    f = d / "n2.jsonl"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 20])
    lines = data[: len(data) - 20].count(b"\n") + 1
    done = _cli(d)
    assert done.returncode == 2
    assert f"{f}:{lines}: truncated" in done.stderr


def test_a_message_never_sent_is_refused(traces: Path, tmp_path: Path) -> None:
    d = _copy(traces, tmp_path)
    f = d / "n2.jsonl"

    def forge(obj: dict[str, dict[str, str]]) -> None:
        obj["recv"]["h"] = "00" * 10

    line = _edit_line(f, '"recv":{"from"', forge)
    with pytest.raises(TraceInputError, match=f"{f}:{line}: .*never sent"):
        merge_files([d])
    assert _cli(d).returncode == 2


def test_a_clock_that_goes_backwards_is_refused(traces: Path, tmp_path: Path) -> None:
    d = _copy(traces, tmp_path)
    f = d / "n1.jsonl"

    def rewind(obj: dict[str, float]) -> None:
        obj["t"] -= 3600.0

    line = _edit_line(f, '"i":5,', rewind)
    with pytest.raises(TraceInputError, match=f"{f}:{line}: the clock goes backwards"):
        merge_files([d])


def test_a_missing_step_and_a_malformed_line_are_refused(traces: Path, tmp_path: Path) -> None:
    d = _copy(traces, tmp_path)
    f = d / "n1.jsonl"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    with pytest.raises(TraceInputError, match=f"{f}:5: step 5 after step 3"):
        merge_files([d])
    f.write_text("\n".join([*lines[:3], '{"node": "n1", "i": "four"}', *lines[4:]]) + "\n")
    with pytest.raises(TraceInputError, match=f"{f}:4: malformed"):
        merge_files([d])
    f.write_text("\n".join([*lines[:3], "{not json", *lines[4:]]) + "\n")
    with pytest.raises(TraceInputError, match=f"{f}:4: not JSON"):
        merge_files([d])


# ---- the merge on hand-made traces ----------------------------------------------------------


def _trace(tmp_path: Path, node: str, steps: list[tuple[float, object, list[object]]]) -> Path:
    f = tmp_path / f"{node}.jsonl"
    lines = [{"trace": "dynamo-ref process", "v": 2, "node": node, "t": 0.0}]
    for i, (t, recv, sent) in enumerate(steps, 1):
        lines.append(
            {
                "node": node,
                "i": i,
                "t": t,
                "event": "peer" if recv else "timer",
                "recv": recv,
                "actions": [],
                "sent": sent,
                "state": {},
            }
        )
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return f


def test_duplicates_and_losses_are_counted(tmp_path: Path) -> None:
    a = _trace(
        tmp_path,
        "a",
        [(1.0, None, [{"to": "b", "h": "x"}, {"to": "b", "h": "y"}, {"to": "b", "h": "z"}])],
    )
    b = _trace(
        tmp_path,
        "b",
        [
            (2.0, {"from": "a", "h": "x"}, []),
            (3.0, {"from": "a", "h": "z"}, []),  # y was lost
            (4.0, {"from": "a", "h": "z"}, []),  # z again: a duplicate
        ],
    )
    result = merge([read_process_trace(a), read_process_trace(b)])
    assert (result.messages, result.delivered, result.lost, result.duplicates) == (3, 2, 1, 1)


def test_pairs_that_contradict_each_nodes_order_are_refused(tmp_path: Path) -> None:
    # a's first step receives what b sends in its second, and b's first receives what a sends
    # in its second: neither can go first.
    a = _trace(
        tmp_path, "a", [(1.0, {"from": "b", "h": "q"}, []), (2.0, None, [{"to": "b", "h": "p"}])]
    )
    b = _trace(
        tmp_path, "b", [(1.0, {"from": "a", "h": "p"}, []), (2.0, None, [{"to": "a", "h": "q"}])]
    )
    with pytest.raises(TraceInputError, match="contradict"):
        merge([read_process_trace(a), read_process_trace(b)])


def _faults(tmp_path: Path, lines: list[dict[str, object]]) -> Path:
    f = tmp_path / "faults.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return f


def test_drops_in_a_fault_log_are_paired_with_their_sends(tmp_path: Path) -> None:
    _trace(
        tmp_path,
        "a",
        [(1.0, None, [{"to": "b", "h": "x"}, {"to": "b", "h": "y"}, {"to": "b", "h": "y"}])],
    )
    _trace(tmp_path, "b", [(2.0, {"from": "a", "h": "x"}, [])])
    log = _faults(
        tmp_path,
        [
            {"fault": "net-cut", "links": [["a", "b"]], "t": 0.5},
            {"fault": "drop", "from": "a", "to": "b", "h": "y", "t": 1.5},
            {"fault": "drop", "from": "a", "to": "b", "h": "hello", "t": 1.6},  # a handshake
            {"fault": "net-heal", "links": [], "t": 3.0},
        ],
    )
    result = merge_files([tmp_path])
    assert {p.name for p in trace_files([tmp_path])} == {"a.jsonl", "b.jsonl", log.name}
    # One y was dropped; the other y was neither received nor dropped: lost.
    assert (result.delivered, result.dropped, result.lost) == (1, 1, 1)
    assert (result.faults, result.unmatched_drops) == (4, 1)
    lines = [merged_line(s) for s in result.steps]
    actions = [x.get("action") for x in lines if x["node"] == "environment"]
    assert actions == ["Partition", "LoseMessage", "LoseMessage", "Heal"]
    drop = next(x for x in lines if x.get("action") == "LoseMessage" and x["msg"])
    assert drop["msg"] == "a>b#2"  # the first y, after the step that sent it
    assert lines.index(drop) > next(k for k, x in enumerate(lines) if x["node"] == "a")


def test_control_a_drop_before_its_send_pairs_with_nothing(tmp_path: Path) -> None:
    _trace(tmp_path, "a", [(2.0, None, [{"to": "b", "h": "y"}])])
    _trace(tmp_path, "b", [(3.0, None, [])])
    _faults(tmp_path, [{"fault": "drop", "from": "a", "to": "b", "h": "y", "t": 1.0}])
    result = merge_files([tmp_path])
    assert (result.dropped, result.unmatched_drops, result.lost) == (0, 1, 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"fault": "drop", "t": 1.0}, "names its link"),
        ({"fault": "net-cut"}, "not a fault"),
        ({"fault": "net-cut", "t": "soon"}, "not a fault"),
    ],
)
def test_a_bad_fault_line_is_refused_with_its_place(
    tmp_path: Path, line: dict[str, object], message: str
) -> None:
    _trace(tmp_path, "a", [(1.0, None, [])])
    log = _faults(tmp_path, [{"fault": "start", "node": "a", "t": 0.1}, line])
    with pytest.raises(TraceInputError, match=f"{log}:2: .*{message}"):
        merge_files([tmp_path])


def test_a_run_the_validator_does_not_map_is_refused_where_it_shows(tmp_path: Path) -> None:
    from dynamo_ref.tla.models import default_spec_dir
    from dynamo_ref.tla.process_trace import validate_run
    from dynamo_ref.tla.trace import TraceFormatError

    path = _trace(tmp_path, "n1", [(1.0, None, [])])
    lines = path.read_text().splitlines()
    step = json.loads(lines[1])
    step["actions"] = [["AdminJoin", "n1", "n4"]]  # a ring change
    path.write_text(lines[0] + "\n" + json.dumps(step) + "\n")
    with pytest.raises(TraceFormatError, match=rf"{path}:2: AdminJoin: the ring changes"):
        validate_run([path], spec_dir=default_spec_dir(), timeout=60)


def test_node_only_steps_become_lines_only_when_they_change_the_node(traces: Path) -> None:
    """Gossip and Merkle exchanges that leave the node's variables as they were give TLC
    nothing to check: they are left out of the generated trace (a long run had a third of
    its lines such), while one that changes the node stays, as a Stutter the spec checks."""
    from dynamo_ref.tla.process_trace import prepare_run, run_constants
    from dynamo_ref.tla.trace import STUTTER_ACTIONS

    config, names = run_constants([traces])
    merged = merge_files([traces])
    prepared = prepare_run(merged, config, names)
    node_only = [
        s
        for s in merged.steps
        if s.line is not None
        and s.line.actions
        and all(a[0] in STUTTER_ACTIONS for a in s.line.actions)
    ]
    assert len(node_only) > 10  # the run gossiped and compared Merkle trees
    kept = {id(line.step) for line in prepared.lines}

    def touched(step: object) -> bool:
        line = step.line  # type: ignore[attr-defined]
        fields = ("store", "hints", "putOps", "getOps", "putsDone", "getsDone")
        return any(line.state.get(v) for v in fields) or bool(line.hintKeys)

    for step in node_only:
        assert (id(step) in kept) == touched(step)
    stutters = [line.step for line in prepared.lines if line.action == "Stutter"]
    assert all(step is not None and touched(step) for step in stutters)


class _GatedStore(MemoryStore):
    """A store whose batches wait at a gate, as a slow fsync does: a kill can land there."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def apply(self, effects: Sequence[Effect]) -> None:
        if effects and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(10)
        super().apply(effects)


def _stored_keys(path: Path) -> list[set[str]]:
    """The keys each step line of a trace stored, in file order (after the header)."""
    lines = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    assert [x["i"] for x in lines] == list(range(1, len(lines) + 1))
    return [_keys_stored(x) for x in lines]


def _keys_stored(line: dict[str, Any]) -> set[str]:
    return set(line["state"].get("store", {}))


async def _put_held_at_the_gate(
    client: AsyncClient, store: _GatedStore, key: bytes
) -> asyncio.Future[object]:
    """After a first put (so that the start's batch is not the one held): a put of ``key``,
    whose batch then waits at the closed gate."""
    await client.put(b"before", b"1")
    store.gate.clear()
    put: asyncio.Future[object] = asyncio.ensure_future(client.put(key, b"2"))
    while not store.waiting.is_set():
        await asyncio.sleep(0.01)
    return put


def test_a_step_is_logged_only_once_what_it_stored_is_durable(tmp_path: Path) -> None:
    """A process killed while its batch is being written has lost that batch's stores: its
    trace must not claim them (the spec's crash keeps the store, and a run with a kill there
    was rejected). The line comes when the batch is written, in its place."""
    store = _GatedStore()
    path = tmp_path / "solo.jsonl"
    config = NodeConfig(n=1, r=1, w=1, gossip_interval=0.1)

    async def main() -> tuple[list[set[str]], list[set[str]]]:
        server = NodeServer(ServerOptions(node_id="solo", config=config, store=store, trace=path))
        await server.start()
        client = await AsyncClient.connect([server.address], timeout=5.0)
        try:
            put = await _put_held_at_the_gate(client, store, b"held")
            await asyncio.sleep(0.1)  # what the loop would write meanwhile, it has
            during = _stored_keys(path)
            store.gate.set()
            await put
            return during, _stored_keys(path)
        finally:
            store.gate.set()
            await client.close()
            await server.stop()

    during, after = asyncio.run(main())
    assert {"before"} in during
    assert not any("held" in keys for keys in during), during
    assert any("held" in keys for keys in after), after


def _batch_behind_the_gate(
    store: _GatedStore, path: Path, keys: list[bytes], write: Callable[[bytes, Writer], None]
) -> None:
    """A traced solo node: a put held at the closed gate, ``keys`` put behind it (they make
    the next batch together), then the gate opened. Every write to the trace goes through
    ``write(lines, the trace's own write)``."""
    config = NodeConfig(n=1, r=1, w=1, gossip_interval=0.1)

    async def main() -> None:
        server = NodeServer(ServerOptions(node_id="solo", config=config, store=store, trace=path))
        await server.start()
        trace = server._trace
        assert trace is not None
        own = trace.write
        trace.write = lambda lines: write(lines, own)  # type: ignore[method-assign]
        client = await AsyncClient.connect([server.address], timeout=5.0)
        try:
            first = await _put_held_at_the_gate(client, store, b"gated")
            puts = [asyncio.ensure_future(client.put(key, b"3")) for key in keys]
            await asyncio.sleep(0.2)  # they wait behind the gated batch
            store.gate.set()
            await asyncio.gather(first, *puts)
        finally:
            store.gate.set()
            await client.close()
            await server.stop()

    asyncio.run(main())


def test_a_batchs_lines_are_written_in_one_call(tmp_path: Path) -> None:
    """Between a batch and its lines a kill leaves stores without their steps. Each write
    call gives the GIL up and may wait to take it back, so the lines of a batch go at once."""
    calls: list[bytes] = []

    def counted(lines: bytes, write: Writer) -> None:
        calls.append(lines)
        write(lines)

    four = [b"k%d" % i for i in range(4)]
    _batch_behind_the_gate(_GatedStore(), tmp_path / "solo.jsonl", four, counted)
    stored = [[_keys_stored(json.loads(x)) for x in c.splitlines()] for c in calls]
    together = [keys for keys in stored if {"k0", "k1", "k2", "k3"} <= set().union(*keys)]
    assert together, stored
    assert len(together[0]) >= 4  # four steps' lines, one call


class _FailingAfterGate(_GatedStore):
    """Once a batch has waited at the gate, every later batch fails, as on a disk that filled
    meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = False

    def apply(self, effects: Sequence[Effect]) -> None:
        if effects and self.waited:
            raise OSError("disk full")
        gated = bool(effects) and not self.gate.is_set()
        super().apply(effects)
        self.waited = self.waited or gated


def test_a_batch_that_fails_at_stop_leaves_no_line_for_its_steps(tmp_path: Path) -> None:
    """The last batch, written by stop, follows the same rule: no line unless it is written."""
    store = _FailingAfterGate()
    path = tmp_path / "solo.jsonl"
    config = NodeConfig(n=1, r=1, w=1, gossip_interval=0.1)

    async def main() -> None:
        server = NodeServer(ServerOptions(node_id="solo", config=config, store=store, trace=path))
        await server.start()
        client = await AsyncClient.connect([server.address], timeout=5.0)
        try:
            await client.put(b"before", b"0")  # answered once the start's batch is written too
            store.gate.clear()
            first = asyncio.ensure_future(client.put(b"first", b"1"))
            while not store.waiting.is_set():
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(client.put(b"second", b"2"))
            await asyncio.sleep(0.1)  # the second put's step is held behind the first batch
            stopping = asyncio.ensure_future(server.stop())
            await asyncio.sleep(0.05)
            store.gate.set()
            await stopping
            for put in (first, second):
                put.cancel()
        finally:
            store.gate.set()
            await client.close()

    asyncio.run(main())
    stored = _stored_keys(path)
    assert any("first" in keys for keys in stored), stored
    assert not any("second" in keys for keys in stored), stored


class _Killable(_GatedStore):
    """A store that a kill stops: once ``dead``, nothing more is written."""

    def __init__(self, state: DurableState | None = None) -> None:
        super().__init__()
        if state is not None:
            self.state = state
        self.dead = False

    def apply(self, effects: Sequence[Effect]) -> None:
        if self.dead:
            raise OSError("killed")
        super().apply(effects)


@pytest.mark.parametrize("cut", ["none", "mid-line", "a-line-and-a-half"])
def test_a_kill_between_a_batch_and_its_lines_leaves_them_to_the_next_start(
    tmp_path: Path, cut: str
) -> None:
    """The one window left in the rule above: a batch is durable, and the process is killed
    before its lines are written (or while). The store keeps the lines with the batch, and
    the next start ends the file with them: the trace has every step whose store is durable
    (a real run was rejected at a step whose store held a version no line had made)."""
    store = _Killable()
    path = tmp_path / "solo.jsonl"
    config = NodeConfig(n=1, r=1, w=1, gossip_interval=0.1)
    lost: list[bytes] = []

    def killed_at_the_cut(lines: bytes, write: Writer) -> None:
        if b'"cut0"' in lines:
            store.dead = True  # the batch is written; the kill comes before its lines
        if store.dead:
            lost.append(lines)
        else:
            write(lines)

    _batch_behind_the_gate(store, path, [b"cut%d" % i for i in range(3)], killed_at_the_cut)
    missing = lost[0]
    assert missing.count(b"\n") >= 3, missing
    with path.open("ab") as f:  # what a write the kill cut short left
        f.write(
            {"none": b"", "mid-line": missing[:40]}.get(cut, missing[: missing.index(b"\n") + 40])
        )
    before = path.read_bytes()

    async def second_life(trace: Path, state: DurableState) -> None:
        server = NodeServer(
            ServerOptions(node_id="solo", config=config, store=_Killable(state), trace=trace)
        )
        await server.start()
        await server.stop()

    # Control: a trace file the lost batch's process never wrote gets none of its lines.
    other = tmp_path / "other.jsonl"
    asyncio.run(second_life(other, copy.deepcopy(store.state)))
    assert [s.line.i for s in read_process_trace(other) if s.line] == [1]
    asyncio.run(second_life(path, store.state))
    after = path.read_bytes()
    assert after.startswith(before[: before.rfind(b"\n") + 1])
    steps = read_process_trace(path)  # whole lines, numbered without a gap
    stored = set().union(
        *(set(s.line.state.get("store", {})) for s in steps if s.line and s.incarnation == 1)
    )
    assert {"cut0", "cut1", "cut2"} <= stored, stored
    assert after.count(b'{"trace"') == 2


def test_a_step_that_stores_nothing_is_logged_before_its_messages_go(tmp_path: Path) -> None:
    """A kill between a step's reply and its line would leave an answer no line gave."""
    store = MemoryStore()
    path = tmp_path / "solo.jsonl"
    config = NodeConfig(n=1, r=1, w=1, gossip_interval=0.1)
    order: list[str] = []

    async def main() -> None:
        server = NodeServer(ServerOptions(node_id="solo", config=config, store=store, trace=path))
        await server.start()
        trace = server._trace
        assert trace is not None
        write, out = trace.write, server._out

        def logged(lines: bytes) -> None:
            order.append("line")
            write(lines)

        def sent(e: Effect) -> None:
            order.append(type(e).__name__)
            out(e)

        client = await AsyncClient.connect([server.address], timeout=5.0)
        try:
            await client.put(b"k", b"1")
            await asyncio.sleep(0.1)  # its batch is written
            trace.write = logged  # type: ignore[method-assign]
            server._out = sent  # type: ignore[method-assign]
            await client.get(b"k")
        finally:
            await client.close()
            await server.stop()

    asyncio.run(main())
    assert order[:2] == ["line", "Reply"], order
