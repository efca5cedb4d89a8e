"""History records: EDN reader, Jepsen/Knossos and Porcupine importers, JSON lines, pairing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.history import (
    NO_TIME,
    HistoryError,
    Keyword,
    Op,
    Symbol,
    dumps_jsonl,
    loads_jsonl,
    pair,
    parse_edn,
    read_edn_history,
    read_history,
    read_jsonl,
    read_porcupine_etcd_log,
    read_porcupine_kv,
    write_jsonl,
)
from harness.recorder import Recorder

# ---------------------------------------------------------------------------------------------
# EDN reader


def test_edn_scalars() -> None:
    assert parse_edn('nil true false 42 -7 +3 1.5 "a\\"b\\n" :ok :a/b foo') == [
        None,
        True,
        False,
        42,
        -7,
        3,
        1.5,
        'a"b\n',
        "ok",
        "a/b",
        "foo",
    ]
    kw, sym = parse_edn(":invoke bar")
    assert isinstance(kw, Keyword)
    assert repr(kw) == ":invoke"
    assert isinstance(sym, Symbol)


def test_edn_collections_comments_and_commas() -> None:
    text = """
    ; a comment
    [1, 2 ,3]  (:a "b")  ; trailing comment
    {:process 1, :value [1 2], [1 2] :vector-key}
    #{:x :y}  #_ :discarded  \"\\u00e9\"
    #inst "2017-01-01"  #jepsen.history.Op{:index 3}
    """
    vec, lst, mapping, st_, s, inst, record = parse_edn(text)
    assert inst == "2017-01-01"
    assert record == {"index": 3}
    assert vec == [1, 2, 3]
    assert lst == ["a", "b"]
    assert mapping == {"process": 1, "value": [1, 2], (1, 2): "vector-key"}
    assert st_ == frozenset({"x", "y"})
    assert s == "\u00e9"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[1 2\n 3", 1, "never closed"),
        ("[1 2]\n\n)", 3, "unexpected ')'"),
        ("{:a 1\n :b}", 1, "odd number"),
        ('\n"abc', 2, "unterminated string"),
        ("[1 2\n (3 4]]", 2, "expected ')'"),
        ("\n\n [1 @]", 3, "unexpected character '@'"),
        ('"bad \\q escape"', 1, "unknown string escape"),
    ],
)
def test_edn_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryError, match=re.escape(message)) as info:
        parse_edn(text, source="x.edn")
    assert info.value.line == line
    assert f"x.edn, line {line}" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Jepsen/Knossos EDN histories

KNOSSOS = """[{:process 0, :type :invoke, :f :write, :value 3, :time 10}
 ; a comment between ops
 {:process 0, :type :ok, :f :write, :value 3, :time 20}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 1, :type :invoke, :f :cas, :value [3 4], :index 9}
 {:process 1, :type :fail, :f :cas, :value [3 4], :error [:timeout nil], :node "n1"}
 {:process 2, :type :invoke, :f :txn, :value [[:read :x nil]]}]
"""


def test_read_knossos_history() -> None:
    ops = read_edn_history(KNOSSOS)
    assert [op.index for op in ops] == [0, 1, 2, 9, 4, 5]
    assert ops[0] == Op(process=0, type="invoke", f="write", value=3, time=10, index=0)
    assert ops[2].process == "nemesis"
    assert ops[3].value == [3, 4]
    assert ops[3].time == NO_TIME
    assert ops[4].error == ["timeout", None]
    assert ops[4].extra == {"node": "n1"}
    assert ops[5].value == [["read", "x", None]]
    assert type(ops[5].value[0][0]) is str
    assert read_edn_history(KNOSSOS.replace("[{", "({").replace("}]", "})")) == ops


def test_read_porcupine_kv_lines() -> None:
    text = (
        '{:process 3, :type :invoke, :f :append, :key "4", :value "x 3 17 y"}\n'
        '{:process 3, :type :ok, :f :append, :key "4", :value "x 3 17 y"}\n'
    )
    a, b = read_porcupine_kv(text)
    assert (a.key, a.value, b.type, b.index) == ("4", "x 3 17 y", "ok", 1)
    with pytest.raises(HistoryError, match="string key") as info:
        read_porcupine_kv(text.replace(':key "4", ', "", 1))
    assert (info.value.index, info.value.field) == (0, "key")


def test_read_edn_history_from_path(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text(KNOSSOS)
    assert read_history(path) == read_edn_history(KNOSSOS)


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("[{:process 0, :type :invoke, :f :read}\n {:process 0, :f :read}]", 2, "type", "missing"),
        ("[{:process 0, :type :invoke, :f :read}\n\n {:process 0, :type :done, :f :read}]", 3,
         "type", "one of"),
        ("[{:process 1.5, :type :invoke, :f :read}]", 1, "process", "integer or keyword"),
        ("[{:process 1, :type :invoke, :f 3}]", 1, "f", "keyword"),
        ("[{:process 1, :type :invoke, :f :read, :time \"x\"}]", 1, "time", "integer"),
        ("[{:process 1, :type :invoke, :f :read}\n 7]", 2, None, "op map"),
        ("[{:process 1, :type :invoke, :f :read}] [2]", 1, None, "after the history"),
    ],
)  # fmt: skip
def test_edn_history_errors(text: str, line: int, field: str | None, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        read_edn_history(text, source="h.edn")
    assert info.value.line == line
    assert info.value.field == field


# ---------------------------------------------------------------------------------------------
# Porcupine etcd logs

ETCD = (
    "INFO  jepsen.util - 4\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 4\t:ok\t:read\tnil\n"
    "INFO  jepsen.util - 1   :invoke  :cas  [2 4]\n"
    "INFO  jepsen.util - 1\t:fail\t:cas\t[2 4]\n"
    "INFO  jepsen.util - 2\t:invoke\t:write\t3\n"
    "INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n"
    "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n"
)


def test_read_porcupine_etcd_log() -> None:
    ops = read_porcupine_etcd_log(ETCD)
    assert len(ops) == 8
    assert ops[0] == Op(process=4, type="invoke", f="read", value=None, time=NO_TIME, index=0)
    assert ops[2].value == [2, 4]
    assert ops[3].type == "fail"
    assert (ops[5].type, ops[5].value, ops[5].error) == ("info", None, "timed-out")
    assert (ops[7].type, ops[7].error) == ("fail", "timed-out")
    assert read_porcupine_etcd_log("") == []


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("INFO jepsen.util - 1 :invoke :read nil\nWARN something else\n", None, "log line"),
        ("INFO jepsen.util - 1 :invoke :read nil\nINFO jepsen.util - x :ok :read 1\n", "process",
         "process number"),
        ("INFO jepsen.util - 1 :invoke :read nil\nINFO jepsen.util - 1 :done :read 1\n", "type",
         "one of"),
        ("INFO jepsen.util - 1 :invoke :read nil\nINFO jepsen.util - 1 :ok :read \"s\"\n", "value",
         "nil, an integer"),
        ("INFO jepsen.util - 1 :invoke :read nil\nINFO jepsen.util - 1 :ok :read [1\n", "value",
         "never closed"),
    ],
)  # fmt: skip
def test_etcd_log_errors(text: str, field: str | None, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        read_porcupine_etcd_log(text, source="etcd.log")
    assert info.value.line == 2
    assert info.value.field == field


# ---------------------------------------------------------------------------------------------
# JSON lines


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ops = [
        Op(process=0, type="invoke", f="write", value=3, time=100, index=0, key="k"),
        Op(
            process=0,
            type="info",
            f="write",
            value=None,
            time=250,
            index=1,
            key="k",
            error="timeout",
            extra={"context": {"vclock": [["n1", 2]]}},
        ),
        Op(process="nemesis", type="info", f="partition", value=["n1"], time=300, index=2),
    ]
    path = tmp_path / "h.jsonl"
    write_jsonl(path, ops)
    assert read_jsonl(path) == ops
    assert read_history(path) == ops
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first)[:6] == ["process", "type", "f", "value", "time", "index"]
    # Required fields are written even when empty.
    nemesis = json.loads(path.read_text().splitlines()[2])
    assert {"process", "type", "f", "value", "time", "index"} <= set(nemesis)


def _jsonl(*objects: Any) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"


GOOD = {"process": 0, "type": "invoke", "f": "read", "value": None, "time": 1, "index": 0}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (_jsonl(GOOD, "{not json"), 2, None, "malformed JSON"),
        (_jsonl(GOOD, "", {**GOOD, "time": "soon"}), 3, "time", "Expected `int`"),
        (_jsonl(GOOD, {**GOOD, "type": "done"}), 2, "type", "Invalid enum value"),
        (_jsonl({k: v for k, v in GOOD.items() if k != "f"}), 1, None, "missing required field"),
        (_jsonl({**GOOD, "process": 1.5}), 1, "process", "Expected `int | str`"),
    ],
)
def test_jsonl_errors(text: str, line: int, field: str | None, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        loads_jsonl(text, source="h.jsonl")
    assert info.value.line == line
    assert info.value.field == field
    assert "h.jsonl, line" in str(info.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
op_strategy = st.builds(
    Op,
    process=st.integers(0, 100) | st.sampled_from(["nemesis", "client-a"]),
    type=st.sampled_from(["invoke", "ok", "fail", "info"]),
    f=st.sampled_from(["read", "write", "cas", "txn"]),
    value=json_values,
    time=st.integers(0, 2**62),
    index=st.integers(0, 10**6),
    key=json_values,
    error=json_values,
    extra=st.dictionaries(st.text(max_size=4), json_values, max_size=2),
)


@given(st.lists(op_strategy, max_size=10))
def test_jsonl_round_trip_property(ops: list[Op]) -> None:
    assert loads_jsonl(dumps_jsonl(ops)) == ops


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text("")
    with pytest.raises(HistoryError, match="unknown history format"):
        read_history(path)


# ---------------------------------------------------------------------------------------------
# Pairing


def _ops(*events: tuple[Any, str, str, Any]) -> list[Op]:
    return [
        Op(process=p, type=t, f=f, value=v, time=i * 10, index=i)  # type: ignore[arg-type]
        for i, (p, t, f, v) in enumerate(events)
    ]


def test_pair() -> None:
    ops = _ops(
        (0, "invoke", "write", 1),
        ("nemesis", "info", "start", None),
        (1, "invoke", "read", None),
        (0, "ok", "write", 1),
        (2, "invoke", "cas", [1, 2]),
        (1, "ok", "read", 1),
        (2, "info", "cas", None),
        (3, "invoke", "write", 5),
        (0, "invoke", "read", None),
        (0, "fail", "read", None),
    )
    w, r, cas, never, failed = pair(ops)
    assert (w.process, w.status, w.call, w.ret, w.input, w.output) == (0, "ok", 0, 3, 1, 1)
    assert (r.status, r.output, r.call_time, r.return_time) == ("ok", 1, 20, 50)
    assert (cas.status, cas.unknown, cas.ret, cas.output) == ("info", True, 6, None)
    assert (never.status, never.ret, never.completion, never.return_time) == (
        "info",
        None,
        None,
        None,
    )
    assert (failed.status, failed.unknown) == ("fail", False)
    assert [op.id for op in (w, r, cas, never, failed)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("events", "index", "field", "message"),
    [
        (((0, "ok", "read", 1),), 0, "process", "no open invocation"),
        (((0, "invoke", "read", None), (0, "invoke", "write", 2)), 1, "type", "still open"),
        (((0, "invoke", "read", None), (0, "ok", "write", 2)), 1, "f", "does not match"),
    ],
)
def test_pair_errors(
    events: tuple[tuple[Any, str, str, Any], ...], index: int, field: str, message: str
) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        pair(_ops(*events))
    assert info.value.index == index
    assert info.value.field == field


def test_node_is_recorded_and_read_back() -> None:
    rec = Recorder()
    h = rec.invoke(0, "read", "k", node="n2")
    rec.complete(h, "ok", 1)
    rec.nemesis("start-partition")
    (op,) = pair(loads_jsonl(dumps_jsonl(rec.ops)))
    assert (op.invoke.node, op.completion.node if op.completion else None) == ("n2", "n2")
    assert op.node == "n2"
    assert op.at_node() == ", node n2"
    # Histories of other tools may name it in extra; unnamed is None.
    other = Op(process=1, type="invoke", f="read", value=None, time=0, index=0, extra={"node": 3})
    (theirs,) = pair([other])
    assert theirs.node == 3
    (none,) = pair([msgspec.structs.replace(other, extra={})])
    assert none.node is None
    assert none.at_node() == ""
    assert b"node" not in dumps_jsonl([msgspec.structs.replace(other, extra={})])
