"""`dynamo-ref check` through click's CliRunner: every conformance history gets its expected verdict
and exit code, malformed inputs exit 2 naming line and field, JUnit output parses back, and
Dynamo histories (ours) are checked with lost writes and convergence."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner, Result
from dynamo_histories import H
from test_conformance import _files, _verdict_rows, require_conformance

from harness.check_cli import check_command
from harness.history import Op, dumps_jsonl

EXIT = {"valid": 0, "invalid": 1, "unknown": 2}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(check_command, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------------------------------------
# Conformance, through the CLI


@pytest.mark.parametrize("row", _verdict_rows(), ids=lambda r: r["file"])
def test_porcupine_through_cli(row: dict[str, str]) -> None:
    path = require_conformance() / "porcupine" / row["file"]
    model = "etcd" if row["model"] == "etcd-cas-register" else "kv"
    expected = {"true": "valid", "false": "invalid", "": "valid"}[row["expected_linearizable"]]
    out = run(path, "--model", model)
    if row["operations"] == "0":  # Porcupine asserts nothing; an empty file is not a pass
        assert out.exit_code == 2, out.output
        assert "nothing to check" in out.output
        return
    assert out.exit_code == EXIT[expected], out.output
    assert out.output.rstrip().splitlines()[-1].startswith(f"verdict: {expected}")


@pytest.mark.parametrize("rel", _files("knossos", "*.edn"))
def test_knossos_through_cli(rel: str) -> None:
    path = require_conformance() / "knossos" / rel
    if rel.startswith("mutex/"):
        out = run(path, "--model", "mutex")
        assert out.exit_code in (0, 1), out.output  # no asserted verdict; a definite one
        return
    model = "multi-register" if rel.startswith("multi-register/") else "cas-register"
    expected = "valid" if "/good/" in f"/{rel}" else "invalid"
    out = run(path, "--model", model)
    assert out.exit_code == EXIT[expected], out.output


def test_invalid_history_explains_and_writes_timeline_and_junit(tmp_path: Path) -> None:
    path = require_conformance() / "knossos" / "cas-register" / "bad" / "bad-analysis.edn"
    html, xml = tmp_path / "t.html", tmp_path / "j.xml"
    out = run(path, "--model", "cas-register", "--timeline", html, "--junit", xml)
    assert out.exit_code == 1
    assert "cannot linearize: process 21 ok   read -> 2" in out.output
    assert "<html>" in html.read_text()
    suite = ET.parse(xml).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "1", "0")
    (failure,) = suite.iter("failure")
    assert "cannot linearize" in (failure.text or "")


def test_kv_junit_has_a_case_per_key(tmp_path: Path) -> None:
    path = require_conformance() / "porcupine" / "kv" / "c10-ok.txt"
    xml = tmp_path / "j.xml"
    assert run(path, "--model", "kv", "--junit", xml).exit_code == 0
    suite = ET.parse(xml).getroot()
    cases = suite.findall("testcase")
    assert len(cases) == 10
    assert all(c.get("name", "").startswith("key ") for c in cases)
    assert suite.get("failures") == "0"
    assert not list(suite.iter("failure"))


# ---------------------------------------------------------------------------------------------
# Malformed input: exit 2, with line and field


def test_malformed_jsonl_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(
        '{"process": 0, "type": "invoke", "f": "read", "value": null, "time": 0, "index": 0}\n'
        '{"process": 0, "type": "done", "f": "read", "value": 1, "time": 1, "index": 1}\n'
    )
    out = run(path, "--model", "register")
    assert out.exit_code == 2
    assert "line 2" in out.output
    assert "'type'" in out.output


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("h.edn", "[{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok", "line 2"),
        ("h.edn", "[{:process 0 :type :sleep :f :read :value nil}]", "field 'type'"),
        ("h.log", "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nnot a log line\n", "line 2"),
        ("h.txt", '{:process 1.5 :type :invoke :f :get :key "1"}', "field 'process'"),
        ("h.data", "\n\n???", "pass --format"),
    ],
)
def test_malformed_inputs_exit_2(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    out = run(path, "--model", "cas-register")
    assert out.exit_code == 2, out.output
    assert "error: malformed history" in out.output
    assert where in out.output


def test_unpaired_completion_and_unknown_operation_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(dumps_jsonl(H().ok(0, "write", 1).ops))
    out = run(path, "--model", "register")
    assert out.exit_code == 2
    assert "no open invocation" in out.output
    path.write_bytes(dumps_jsonl(H().write(0, 1).invoke(0, "frob").ok(0, "frob").ops))
    out = run(path, "--model", "register")
    assert out.exit_code == 2
    assert "no operation 'frob'" in out.output


def test_format_option_and_content_detection(tmp_path: Path) -> None:
    text = "INFO  jepsen.util - 1\t:invoke\t:write\t1\nINFO  jepsen.util - 1\t:ok\t:write\t1\n"
    (tmp_path / "etcd.data").write_text(text)
    assert run(tmp_path / "etcd.data", "--model", "etcd").exit_code == 0
    (tmp_path / "etcd.edn").write_text(text)
    assert run(tmp_path / "etcd.edn", "--model", "etcd").exit_code == 2
    out = run(tmp_path / "etcd.edn", "--model", "etcd", "--format", "porcupine-etcd")
    assert out.exit_code == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(dumps_jsonl(H().write(0, 1).ops))
    assert run(path, "--model", "nope").exit_code == 2
    assert run(tmp_path / "missing.jsonl", "--model", "register").exit_code == 2
    assert run(path, "--model", "cas-register", "--initial", "{bad").exit_code == 2


# ---------------------------------------------------------------------------------------------
# Dynamo histories


def _write(tmp_path: Path, h: H) -> Path:
    path = tmp_path / "h.jsonl"
    path.write_bytes(dumps_jsonl(h.ops))
    return path


def _good_dynamo() -> H:
    h = H().write(0, "x", clock={"n1": 1}).write(1, "y", clock={"n2": 1})
    h.nemesis("start-partition", "n1|n2").write(2, "z", key="j", clock={"n1": 1})
    h.nemesis("stop-partition")
    h.read(3, ["x", "y"], clocks=[{"n1": 1}, {"n2": 1}], final=True)
    h.read(3, ["z"], key="j", clocks=[{"n1": 1}], final=True)
    for node in ("n1", "n2"):
        h.invoke("c", "replica-read", None, "k", node=node)
        h.ok(
            "c",
            "replica-read",
            [{"value": "x", "clock": {"n1": 1}}, {"value": "y", "clock": {"n2": 1}}],
            "k",
        )
    return h


def test_dynamo_valid_runs_all_three_checks(tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    xml = tmp_path / "j.xml"
    out = run(
        _write(tmp_path, _good_dynamo()),
        "--model",
        "dynamo",
        "--strict-quorum",
        "--json",
        out_json,
        "--junit",
        xml,
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out_json.read_text())
    assert payload["verdict"] == "valid"
    assert [r["checker"] for r in payload["results"]] == [
        "dynamo",
        "lost-writes (siblings)",
        "convergence",
    ]
    suite = ET.parse(xml).getroot()
    names = {c.get("classname") for c in suite.iter("testcase")}
    assert names == {"dynamo", "lost-writes (siblings)", "convergence"}


def test_dynamo_lost_write_exits_1_with_fault_and_timeline(tmp_path: Path) -> None:
    h = H().write(0, "x", clock={"n1": 1}).nemesis("start-partition", "n1|n2")
    h.write(1, "y", clock={"n2": 1}).nemesis("stop-partition")
    h.read(3, ["x"], clocks=[{"n1": 1}], final=True)
    html, xml = tmp_path / "t.html", tmp_path / "j.xml"
    out = run(_write(tmp_path, h), "--model", "dynamo", "--timeline", html, "--junit", xml)
    assert out.exit_code == 1, out.output
    assert "write 'y'" in out.output
    assert "faults active: partition 'n1|n2'" in out.output
    text = html.read_text()
    assert "lost-writes" in text
    assert "class='region'" in text
    failures = list(ET.parse(xml).getroot().iter("failure"))
    assert len(failures) == 1
    assert "1 of 2 acknowledged writes lost" in (failures[0].text or "")


def test_diverged_replicas_exit_1(tmp_path: Path) -> None:
    h = _good_dynamo()
    h.invoke("c", "replica-read", None, "k", node="n3").ok("c", "replica-read", [], "k")
    out = run(_write(tmp_path, h), "--model", "dynamo")
    assert out.exit_code == 1
    assert "replicas of key 'k' differ" in out.output


def test_unknown_exits_2_and_junit_marks_an_error(tmp_path: Path) -> None:
    h = H().invoke(0, "add", 1, key="s").ok(0, "add", 1, key="s")  # no final read
    xml = tmp_path / "j.xml"
    out = run(_write(tmp_path, h), "--model", "set", "--junit", xml)
    assert out.exit_code == 2
    assert "unknown" in out.output
    suite = ET.parse(xml).getroot()
    assert suite.get("errors") == "1"


def test_set_and_register_models(tmp_path: Path) -> None:
    h = H()
    for i in range(3):
        h.invoke(i, "add", i, key="s").ok(i, "add", i, key="s")
    h.read(9, [0, 1, 2], key="s", final=True)
    assert run(_write(tmp_path, h), "--model", "set").exit_code == 0
    lost = H().write(0, "a").write(1, "b").read(2, "a", final=True)
    out = run(_write(tmp_path, lost), "--model", "register")
    assert out.exit_code == 1
    assert "linearizable (register): invalid" in out.output
    assert "lost-writes (register): invalid" in out.output


# ---------------------------------------------------------------------------------------------
# Nothing to check is not a pass; unreadable is not a pass


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("h.jsonl", b""),
        ("h.jsonl", b"\n  \n"),
        ("h.edn", b"[]"),
    ],
)
def test_empty_history_exits_2_saying_there_is_nothing_to_check(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    for args in (["--model", "register"], []):
        out = run(path, *args)
        assert out.exit_code == 2, out.output
        assert "error: nothing to check" in out.output
        assert "valid" not in out.output


def test_only_nemesis_events_are_valid_with_a_model_and_undetectable_without(
    tmp_path: Path,
) -> None:
    # As in Knossos and Porcupine, no client operations are linearizable; but nothing says
    # what they were meant to be, so without --model there is nothing to check.
    path = _write(tmp_path, H().nemesis("start-partition", "n1|n2"))
    assert run(path, "--model", "register").exit_code == 0
    out = run(path)
    assert out.exit_code == 2
    assert "error: nothing to check" in out.output


def test_binary_history_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    out = run(path)
    assert out.exit_code == 2
    assert "not UTF-8" in out.output


# ---------------------------------------------------------------------------------------------
# --initial null is Knossos' (cas-register nil)


def test_initial_null_is_nil_not_the_default(tmp_path: Path) -> None:
    # A first read of 0: legal from (cas-register 0), not from (cas-register nil).
    path = tmp_path / "h.edn"
    path.write_text(
        "[{:process 0 :type :invoke :f :read :value nil}\n"
        " {:process 0 :type :ok :f :read :value 0}]\n"
    )
    assert run(path, "--model", "cas-register").exit_code == 0
    out = run(path, "--model", "cas-register", "--initial", "null")
    assert out.exit_code == 1, out.output
    assert "cas-register(None)" in out.output
    assert run(path, "--model", "cas-register", "--initial", "0").exit_code == 0
    # A nil read matches any value, from any start (Knossos' rule).
    nil = tmp_path / "nil.edn"
    nil.write_text(
        "[{:process 0 :type :invoke :f :write :value 3} {:process 0 :type :ok :f :write :value 3}"
        " {:process 1 :type :invoke :f :read :value nil} {:process 1 :type :ok :f :read}]\n"
    )
    assert run(nil, "--model", "cas-register", "--initial", "null").exit_code == 0


# ---------------------------------------------------------------------------------------------
# The model is detected when --model is not given


def test_our_histories_need_no_model(tmp_path: Path) -> None:
    out = run(_write(tmp_path, _good_dynamo()))
    assert out.exit_code == 0, out.output
    assert out.output.startswith("model: dynamo (detected")
    assert "lost-writes (siblings)" in out.output
    assert "convergence" in out.output

    h = H()
    for i in range(3):
        h.invoke(i, "add", i, key="s").ok(i, "add", i, key="s")
    h.read(9, [0, 2], key="s", final=True)
    out = run(_write(tmp_path, h))
    assert out.exit_code == 1, out.output
    assert "model: set" in out.output
    assert "add 1 by process 1" in out.output

    lost = H().write(0, "a").write(1, "b").read(2, "a", final=True)
    out = run(_write(tmp_path, lost))
    assert out.exit_code == 1
    assert "model: register" in out.output
    assert "linearizable (register): invalid" in out.output


def test_porcupine_and_knossos_models_are_detected() -> None:
    root = require_conformance()
    out = run(root / "porcupine" / "kv" / "c10-ok.txt")
    assert out.exit_code == 0, out.output
    assert "model: kv" in out.output
    bad = root / "knossos" / "cas-register" / "bad" / "bad-analysis.edn"
    out = run(bad)
    assert out.exit_code == 1
    assert "model: cas-register" in out.output
    log = next(iter(sorted((root / "porcupine" / "jepsen").glob("*.log"))))
    assert "model: etcd" in run(log).output


def test_a_history_no_model_explains_asks_for_one(tmp_path: Path) -> None:
    path = _write(tmp_path, H().invoke(0, "frob", 1).ok(0, "frob", 1))
    out = run(path)
    assert out.exit_code == 2
    assert "cannot tell the model" in out.output
    assert "pass --model" in out.output


# ---------------------------------------------------------------------------------------------
# A stale read names the node that served it


def _served(h: H, nodes: dict[int, str]) -> list[Op]:
    """`h`'s ops with each client op's `node` set from its process."""
    return [
        msgspec.structs.replace(op, node=nodes[op.process]) if op.process in nodes else op
        for op in h.ops
    ]


def test_a_stale_read_names_its_node(tmp_path: Path) -> None:
    h = H().write(0, 1).write(0, 2).read(1, 1, final=True)
    path = tmp_path / "h.jsonl"
    path.write_bytes(dumps_jsonl(_served(h, {0: "n1", 1: "n3"})))
    out = run(path, "--model", "register")
    assert out.exit_code == 1, out.output
    assert "cannot linearize: process 1 ok   read -> 1  (index 4..5, node n3)" in out.output
    assert "the final read (index 5, node n3) returned [1]" in out.output
    assert "write 2 by process 0 (index 2..3, node n1," in out.output
