"""The dynamo-kv protocol for external node programs: campaigns under partitions and kills
judge the DVV example valid and catch the two that lose writes, each lost add explained by the
write that dominated it; a workload the program does not declare is refused at once; a
program's protocol breaches are its fault, shown with their lines, and never pass."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.verdict import Finding
from harness.run import RunConfig, RunResult, run_once
from harness.targets.base import OpUnknown
from harness.targets.maelstrom import DynamoKvClient, MaelstromError, MaelstromTarget

EXAMPLES = Path(__file__).resolve().parent.parent / "harness" / "examples"


def campaign(program: str, tmp_path: Path, **changes: object) -> RunResult:
    fields: dict[str, object] = {
        "target": "external",
        "program": (sys.executable, str(EXAMPLES / program)),
        "workload": "set-add",
        "nodes": 3,
        "duration": 3.0,
        "nemesis": ("partition", "kill"),
        "fault_time": (0.5, 1.0),
        "heal_time": (0.3, 0.6),
        "clients": 6,
        "keys": 4,
        "settle": 1.5,
        "quiesce": 5.0,
        "seed": 1,
        "out": tmp_path / "run",
        **changes,
    }
    return asyncio.run(run_once(RunConfig(**fields)))  # type: ignore[arg-type]


def lost(result: RunResult) -> list[Finding]:
    return [f for f in result.checks["lost_writes"].findings if f.kind == "lost"]


def test_dvv_program_is_valid_under_partitions_and_kills(tmp_path: Path) -> None:
    result = campaign("dynamo_kv_dvv.py", tmp_path)
    # Once in a full-suite run the program check said invalid: say which line it blamed.
    assert result.checks["program"].verdict == "valid", result.checks["program"].findings
    assert {name: r.verdict for name, r in result.checks.items()} == {
        "lost_writes": "valid",
        "dynamo": "valid",
        "convergence": "valid",
        "program": "valid",
    }
    kinds = {f["fault"] for f in result.faults}
    assert kinds == {"partition", "kill"}, kinds
    replica_reads = [op for op in result.history if op.f == "replica-read" and op.type == "ok"]
    assert len(replica_reads) == 3 * 4  # every node, every key


@pytest.mark.parametrize("workload", ["counter", "register"])
def test_dvv_program_runs_the_other_workloads(workload: str, tmp_path: Path) -> None:
    result = campaign("dynamo_kv_dvv.py", tmp_path, workload=workload, duration=2.0)
    for name in ("lost_writes", "dynamo", "convergence", "program"):
        assert result.checks[name].verdict == "valid", result.checks[name].explanation
    # Registers over dynamo-kv: writes carry the context of the client's last read.
    writes = [op for op in result.history if op.type == "invoke" and op.f in ("write", "add")]
    assert writes
    assert any("context" in op.extra for op in writes)


def test_lww_program_loses_concurrent_adds(tmp_path: Path) -> None:
    result = campaign("dynamo_kv_lww.py", tmp_path)
    assert result.verdict == "invalid"
    findings = lost(result)
    assert findings
    # Each lost add names the add whose whole-set write replaced it.
    explained = [f for f in findings if f.details.get("overwritten_by")]
    assert explained
    first = explained[0]
    assert "dominated by add" in first.message
    assert "which wrote a set without" in first.message
    over = first.details["overwritten_by"]
    element = first.details["write"]["value"]  # type: ignore[index]
    written = next(
        op.extra["written"]
        for op in result.history
        if op.type == "invoke" and op.index == over["invoke_index"]  # type: ignore[index]
    )
    assert element not in written  # type: ignore[operator]


def test_vclock_program_loses_concurrent_adds_through_one_coordinator(tmp_path: Path) -> None:
    result = campaign("dynamo_kv_vclock.py", tmp_path)
    assert result.checks["lost_writes"].verdict == "invalid"
    # The max+1 rule's signature: the add and the one that dominated it were concurrent and
    # coordinated by the same node.
    same_node = [
        f
        for f in lost(result)
        if f.details.get("overwritten_by")
        and f.details["overwritten_by"]["node"] == f.details["write"]["node"]  # type: ignore[index]
        and "concurrent with it" in f.message
    ]
    assert same_node, [f.message for f in lost(result)][:3]


def test_a_workload_the_program_does_not_declare_is_refused_at_once(tmp_path: Path) -> None:
    # The lin-kv leader declares no workloads: it is a lin-kv program, with no contexts.
    with pytest.raises(MaelstromError, match=r"set-add workload needs a program that declares"):
        campaign("lin_kv_leader.py", tmp_path, duration=60.0)
    assert not (tmp_path / "run" / "history.jsonl").read_text().strip()


def test_a_lin_kv_program_still_runs_the_register_workload(tmp_path: Path) -> None:
    result = campaign("lin_kv_leader.py", tmp_path, workload="register", nemesis=(), duration=1.0)
    assert result.checks["linearizable"].verdict == "valid"
    assert result.checks["program"].verdict == "valid"


BAD_PROGRAM = """
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    def send(b):
        print(json.dumps({"src": msg["dest"], "dest": msg["src"], "body": b}), flush=True)
    if body["type"] == "init":
        send({"type": "init_ok", "in_reply_to": body["msg_id"], "workloads": ["dynamo-kv"]})
    elif body["type"] == "get":
        print("{not json", flush=True)
        send({"type": "get_ok", "in_reply_to": body["msg_id"], "values": "oops"})
    elif body["type"] == "put":
        send({"type": "put_ok", "in_reply_to": 99999})
        send({"type": "put_ok", "in_reply_to": body["msg_id"], "context": "c"})
"""


def test_a_programs_bad_lines_are_its_fault_and_never_valid(tmp_path: Path) -> None:
    program = tmp_path / "bad.py"
    program.write_text(BAD_PROGRAM)

    async def main() -> tuple[MaelstromTarget, list[str]]:
        target = MaelstromTarget([sys.executable, str(program)], 1, workload="set-add")
        errors = []
        try:
            await target.setup()
            client = await target.client("n1")
            assert isinstance(client, DynamoKvClient)
            try:
                await client.get("k")
            except Exception as exc:  # the wrong-typed reply: outcome unknown
                errors.append(type(exc).__name__)
            await client.put("k", [1], None)
            await asyncio.sleep(0.2)  # the reply to an unknown msg_id is routed
        finally:
            await target.teardown()
        return target, errors

    target, errors = asyncio.run(main())
    assert errors == ["OpUnknown"]
    reasons = {f.reason: f.line for f in target.program_faults}
    assert reasons["not JSON"] == "{not json"
    assert '"oops"' in reasons["get_ok without a values list"]
    unknown = next(r for r in reasons if "msg_id 99999" in r)
    assert "99999" in reasons[unknown]

    # In a run the same breaches make the program check invalid, with the lines.
    result = campaign(str(program), tmp_path, nemesis=(), duration=1.0, clients=2)
    check = result.checks["program"]
    assert check.verdict == "invalid"
    assert result.verdict == "invalid"
    assert "{not json" in check.explanation
    assert any(f.details["line"] == "{not json" for f in check.findings)


def test_a_program_crashing_at_start_shows_its_stderr(tmp_path: Path) -> None:
    program = tmp_path / "crash.py"
    program.write_text("import sys\nsys.stderr.write('boom: no config file\\n')\nsys.exit(3)\n")
    with pytest.raises(MaelstromError, match="boom: no config file"):
        campaign(str(program), tmp_path, duration=60.0)


def test_the_campaign_shows_the_stderr_of_a_program_crashing_at_start(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.campaign_cli import campaign_command

    program = tmp_path / "crash.py"
    program.write_text(
        "import sys\nsys.stderr.write('Traceback: boom\\nValueError: no config file\\n')\n"
        "sys.exit(3)\n"
    )
    res = CliRunner().invoke(
        campaign_command,
        [
            "--program",
            f"{sys.executable} {program}",
            "--workload",
            "set-add",
            "--nodes",
            "3",
            "--time",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2, res.output
    crashed = res.output.split("crashed: ", 1)[1].splitlines()
    assert "exited with status 3 before init_ok" in crashed[0]
    assert crashed[1:3] == ["Traceback: boom", "ValueError: no config file"]


def test_dynamo_kv_client_get_put_delete_and_replica_get() -> None:
    async def main() -> None:
        command = [sys.executable, str(EXAMPLES / "dynamo_kv_dvv.py")]
        target = MaelstromTarget(command, 3, workload="register")
        try:
            await target.setup()
            assert target.versioned
            assert target.replica_get is not None
            c1, c2 = await target.client("n1"), await target.client("n2")
            assert isinstance(c1, DynamoKvClient)
            assert isinstance(c2, DynamoKvClient)
            await c1.put("k", "a", None)
            await c2.put("k", "b", None)  # blind: a sibling of "a"
            values, ctx = await c1.get("k")
            assert sorted(values) == ["a", "b"]  # type: ignore[type-var]
            await c1.put("k", "c", ctx)  # with the context: replaces both
            values, ctx = await c2.get("k")
            assert values == ["c"]
            await c2.delete("k", ctx)
            assert (await c1.get("k"))[0] == []
            for _ in range(50):  # anti-entropy brings every node to the same siblings
                seen = [await target.replica_get(n, "k") for n in target.nodes()]
                if seen == [[], [], []]:
                    break
                await asyncio.sleep(0.1)
            assert seen == [[], [], []]
        finally:
            await target.teardown()

    asyncio.run(main())


def test_a_lin_kv_reply_of_the_wrong_type_is_the_programs_fault(tmp_path: Path) -> None:
    program = tmp_path / "wrong.py"
    program.write_text(
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    msg = json.loads(line)\n"
        "    body = msg['body']\n"
        "    kind = 'init_ok' if body['type'] == 'init' else 'write_ok'\n"
        "    reply = {'type': kind, 'in_reply_to': body['msg_id']}\n"
        "    print(json.dumps({'src': msg['dest'], 'dest': msg['src'], 'body': reply}), "
        "flush=True)\n"
    )

    async def main() -> MaelstromTarget:
        target = MaelstromTarget([sys.executable, str(program)], 1, workload="register")
        try:
            await target.setup()
            client = await target.client("n1")
            assert not isinstance(client, DynamoKvClient)
            with pytest.raises(OpUnknown):
                await client.read("k")
        finally:
            await target.teardown()
        return target

    target = asyncio.run(main())
    assert [f.reason for f in target.program_faults] == ["expected a read_ok reply"]
    assert '"write_ok"' in target.program_faults[0].line


def _load_dvv() -> Any:
    spec = importlib.util.spec_from_file_location("dynamo_kv_dvv", EXAMPLES / "dynamo_kv_dvv.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Net:
    """The DVV example's nodes in one process: each message is delivered by hand."""

    def __init__(self, module: Any, ids: list[str]) -> None:
        self.module = module
        self.ids = ids
        self.nodes: dict[str, Any] = {}
        self.client_ids = 0
        for node in ids:
            self.start(node)

    def start(self, node: str) -> None:
        """A fresh process for `node`: an empty store and a new dot id, as after a kill."""
        self.nodes[node] = self.module.Node()
        self.call(node, {"type": "init", "node_id": node, "node_ids": self.ids})

    def call(self, node: str, body: dict[str, Any], src: str = "c1") -> list[dict[str, Any]]:
        if "msg_id" not in body:
            self.client_ids += 1
            body = {**body, "msg_id": self.client_ids}
        out = io.StringIO()
        saved, sys.stdout = sys.stdout, out
        try:
            self.nodes[node].handle({"src": src, "dest": node, "body": body})
        finally:
            sys.stdout = saved
        return [json.loads(line) for line in out.getvalue().splitlines()]

    def deliver(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call(msg["dest"], msg["body"], src=msg["src"])


def test_dvv_program_keeps_an_acknowledged_write_that_a_reader_missed() -> None:
    """A replica holding a coordinator's later dot holds its earlier ones: a read's context
    (the most recent dot seen of each writer) covers only what the reader was shown."""
    net = _Net(_load_dvv(), ["n1", "n2", "n3"])

    def put(value: int, replica: str) -> None:
        sent = net.call("n1", {"type": "put", "key": "k", "value": value})
        reps = [m for m in sent if m["body"]["type"] == "replicate" and m["dest"] == replica]
        (ack,) = net.deliver(reps[0])
        replies = net.deliver(ack)
        assert [r["body"]["type"] for r in replies] == ["put_ok"]

    put(1, "n3")  # acknowledged by n1 and n3; n2 never hears of it directly
    put(2, "n2")  # concurrent with 1 (no context), acknowledged by n1 and n2
    net.start("n1")  # n1 killed and restarted empty
    reads = net.call("n1", {"type": "get", "key": "k"})
    (from_n2,) = [m for m in reads if m["dest"] == "n2"]
    (reply,) = net.deliver(from_n2)
    (get_ok,) = [m["body"] for m in net.deliver(reply) if m["body"]["type"] == "get_ok"]
    # The client writes over what it read, through n3 (which holds 1).
    sent = net.call("n3", {"type": "put", "key": "k", "value": 3, "context": get_ok["context"]})
    assert any(m["body"]["type"] == "replicate" for m in sent)
    stored = {s["value"] for node in net.nodes.values() for s in node.store.get("k", [])}
    # 1 may go only if the read that gave the context returned it.
    assert 1 in stored or 1 in get_ok["values"], (get_ok, stored)


def _put(net: _Net, value: int, context: str | None = None, key: str = "k") -> dict[str, Any]:
    """A put through n3, acknowledged by n1: its put_ok."""
    body: dict[str, Any] = {"type": "put", "key": key, "value": value}
    if context is not None:
        body["context"] = context
    sent = net.call("n3", body)
    (to_n1,) = [m for m in sent if m["body"]["type"] == "replicate" and m["dest"] == "n1"]
    (ack,) = net.deliver(to_n1)
    (put_ok,) = [dict(r["body"]) for r in net.deliver(ack)]
    assert put_ok["type"] == "put_ok"
    return put_ok


def test_dvv_program_keeps_a_write_that_a_put_context_did_not_show() -> None:
    """A put's reply covers the put and what its client had read, not the writes of other
    clients through the same coordinator in between (a register client writes next with it).
    Found by a register campaign: a chain of acknowledged writes dropped that way."""
    net = _Net(_load_dvv(), ["n1", "n2", "n3"])
    _put(net, 1)  # one client's blind write through n3
    mine = _put(net, 2)  # another's, concurrent with it, through n3 too
    _put(net, 3, mine["context"])  # the second client writes over its own write
    stored = {s["value"] for s in net.nodes["n3"].store["k"]}
    assert {1, 3} <= stored, stored


def test_dvv_program_a_put_context_covers_its_put() -> None:
    """Writes of other keys through the coordinator leave no gap in a key's dots: a client
    that writes over its own put replaces it, without a false sibling."""
    net = _Net(_load_dvv(), ["n1", "n2", "n3"])
    _put(net, 7, key="other")
    first = _put(net, 1)
    _put(net, 8, key="other")
    _put(net, 2, first["context"])
    assert [s["value"] for s in net.nodes["n3"].store["k"]] == [2]
