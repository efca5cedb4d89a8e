"""The Python checking API (`harness.checking`) and docs/checking.md: every code block of the
document runs and says what it claims; the functions check what the CLI checks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from campaign_support import set_history
from dynamo_histories import H
from test_workload import run_fake

from harness.checking import (
    check_file,
    check_operations,
    models,
    read_history,
    visualize,
)
from harness.history import EmptyHistoryError, HistoryError, Op, pair, write_jsonl

DOC = Path(__file__).resolve().parents[1] / "docs" / "checking.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def test_the_documents_examples_run(tmp_path: Path) -> None:
    blocks = _blocks()
    assert len(blocks) == 4
    write_jsonl(tmp_path / "history.jsonl", _set_add_run_losing_an_add())
    printed = io.StringIO()
    with _in(tmp_path), contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), {})  # the document's own code
    lines = printed.getvalue().splitlines()
    assert lines[0] == "invalid"  # what the first example's comment says
    assert "  cannot linearize: process 2 ok   read -> 0  (index 4..5, node n3)" in lines
    # Lost writes finds the add missing from the final read; the fake store records no clocks
    # (Dynamo semantics cannot order siblings) and no replica reads (convergence cannot tell).
    assert "invalid unknown unknown" in lines
    assert "lost-writes (set) invalid" in lines
    for page in ("timeline.html", "lost-writes.html", "check.html"):
        text = (tmp_path / page).read_text(encoding="utf-8")
        assert "<script type='application/json' id='data'>" in text


def _set_add_run_losing_an_add() -> list[Op]:
    """A set-add run of the workload (on the fake store of the workload tests) whose final read
    of one key misses an acknowledged add."""
    ops = run_fake("set-add")
    final = next(o for o in ops if o.f == "read" and o.type == "ok" and o.extra.get("final"))
    assert isinstance(final.value, list)
    return [msgspec.structs.replace(o, value=final.value[1:]) if o is final else o for o in ops]


def test_check_operations_takes_events_or_operations() -> None:
    h = H().write(0, 1).read(1, 0)  # the read after the write returned saw the old value
    for history in (h.ops, pair(h.ops)):
        result = check_operations(models.cas_register(0), history)
        assert result.verdict == "invalid"
    assert check_operations(models.cas_register(0), H().write(0, 1).read(1, 1).ops).valid


def test_visualize_draws_either_kind_of_result(tmp_path: Path) -> None:
    h = H().write(0, 1).read(1, 0)
    page = visualize(check_operations(models.cas_register(0), h.ops), tmp_path / "a.html")
    data = _data(page)
    assert data["views"][0]["ops"][1]["m"] == "failed"
    history = set_history(seed=3, lose=1)
    (lost,) = [r for r in check_file(_file(tmp_path, history)) if r.verdict == "invalid"]
    data = _data(visualize(lost, tmp_path / "b.html", history=history))
    assert data["views"][0]["key"] == "key k0"
    assert any(op.get("m") == "failed" for op in data["views"][0]["ops"])


def test_check_file_detects_the_model_and_refuses_empty_files(tmp_path: Path) -> None:
    results = check_file(_file(tmp_path, set_history(seed=1)))
    assert [r.checker for r in results] == ["lost-writes (set)", "convergence"]
    assert all(r.verdict == "valid" for r in results)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(EmptyHistoryError):
        check_file(empty)
    with pytest.raises(EmptyHistoryError):
        read_history(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"process": 0}\n')
    with pytest.raises(HistoryError, match="line 1"):
        read_history(bad)


def _file(folder: Path, history: list[object]) -> Path:
    path = folder / "h.jsonl"
    write_jsonl(path, history)  # type: ignore[arg-type]
    return path


def _data(page: Path) -> dict[str, object]:
    text = page.read_text(encoding="utf-8")
    raw = text.split("<script type='application/json' id='data'>", 1)[1].split("</script>", 1)[0]
    data: dict[str, object] = json.loads(raw)
    return data
