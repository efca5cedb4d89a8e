"""The HTML report: a run's page shows the verdicts, the faults, decodable plots and links that
resolve; a lost write shows its key with a timeline; everything from the run is escaped."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import numpy as np
import pytest
from campaign_support import check_set, set_history
from dynamo_histories import H
from PIL import Image

from harness.checkers import models
from harness.checkers.causal import fault_windows
from harness.checkers.linearizable import as_result, check
from harness.checkers.verdict import combine
from harness.history import Op, pair, read_jsonl
from harness.report import IndexRow, RunPage, write_index, write_run_report
from harness.report.page import latency_by_f
from harness.report.plots import latency_figure, latency_png, throughput_png


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img" and a.get("src"):
            self.imgs.append(str(a["src"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def _page(tmp_path: Path, history: list[Op], name: str = "run-1") -> Path:
    checks = check_set(history)
    verdict = combine(r.verdict for r in checks.values())
    run = RunPage(
        name,
        {"mode": "vclock", "nemesis": ("partition", "kill"), "seed": 3},
        history,
        checks,
        verdict,
        {"run": 2.0, "check": 0.1},
    )
    return write_run_report(run, tmp_path / name)


def _png_sizes(srcs: list[str]) -> list[tuple[int, int]]:
    sizes = []
    for src in srcs:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        img = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))
        img.load()
        assert img.format == "PNG"
        sizes.append(img.size)
    return sizes


def test_valid_run_page(tmp_path: Path) -> None:
    history = set_history(seed=1)
    page = _page(tmp_path, history)
    html = page.read_text(encoding="utf-8")
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert "Run run-1: valid" in text
    # Each checker's verdict and explanation.
    assert "lost-writes (set)" in text
    assert "all replicas agree on 3 keys" in text
    assert re.search(r"valid: \d+ acknowledged adds", text)
    # The fault table: both faults with start and end in seconds since the start.
    faults = fault_windows(history)
    assert [f.name for f in faults] == ["partition", "kill"]
    origin = min(op.time for op in history)
    for f in faults:
        assert f.end_time is not None
        assert f"<td>{f.name}</td>" in html
        assert f"<td>{(f.start_time - origin) / 1e9:.3f}</td>" in html
        assert f"<td>{(f.end_time - origin) / 1e9:.3f}</td>" in html
    # Two plots, decodable, of the size they were drawn at.
    assert _png_sizes(parsed.imgs) == [(1000, 400), (1000, 300)]
    # Nothing failed: no timeline, and the page says so.
    assert "No checker found a failing key." in text
    assert not (page.parent / "timelines").exists()
    # Every link resolves, and the raw history is the run's history.
    assert parsed.hrefs == ["history.jsonl"]
    assert read_jsonl(page.parent / "history.jsonl") == history


def test_lost_write_shows_the_failing_key(tmp_path: Path) -> None:
    history = set_history(seed=2, keys=("alpha", "beta", "gamma"), lose=2)
    page = _page(tmp_path, history)
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert "Run run-1: invalid" in text
    assert "lost_writes: 1 failing key(s)" in text
    # The key that lost writes is named, the others are not listed as failing.
    section = text.split("Failing keys", 1)[1].split("Faults", 1)[0]
    assert "'alpha'" in section
    assert "'beta'" not in section
    assert section.count("was acknowledged but is not in the final read") == 2
    timelines = [h for h in parsed.hrefs if h.startswith("timelines/")]
    assert len(timelines) == 1
    for href in parsed.hrefs:
        assert (page.parent / href.split("#")[0]).is_file(), href  # a fragment picks the key
    timeline = (page.parent / timelines[0].split("#")[0]).read_text(encoding="utf-8")
    assert "key alpha: lost-writes (set): add" in timeline
    assert "lost-writes (set): INVALID" in timeline


def test_everything_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    history = set_history(seed=4, keys=(evil, "k1"), lose=1)
    page = _page(tmp_path, history, name="run-<b>")
    html = page.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;" in html
    for href in _parse(page).hrefs:
        assert (page.parent / href.split("#")[0]).is_file()


def _pixels_near(png: bytes, rgb: tuple[int, int, int], tol: int = 6) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)) <= tol).all(axis=-1).sum())


# A partition window: #d32f2f at alpha 0.12 over white.
_PARTITION_SHADE = (249, 230, 230)


@pytest.mark.parametrize("plot", [latency_png, throughput_png])
def test_plots_shade_fault_windows(plot: Callable[..., bytes]) -> None:
    history = set_history(seed=5)
    ops = pair(history)
    faults = fault_windows(history)
    with_faults = plot(ops, faults)
    without = plot(ops, [])
    assert _pixels_near(with_faults, _PARTITION_SHADE) > 5000
    assert _pixels_near(without, _PARTITION_SHADE) == 0


def test_latency_colors_by_outcome() -> None:
    history = set_history(seed=6, faults=False)
    ops = pair(history)
    orange = (0xE5, 0x9A, 0x3A)  # info
    only_ok = [op for op in ops if op.status == "ok"]
    assert _pixels_near(latency_png(ops, []), orange, tol=10) > 0
    assert _pixels_near(latency_png(only_ok, []), orange, tol=10) == 0


def test_empty_history_still_renders(tmp_path: Path) -> None:
    run = RunPage("empty", {}, [], {}, "unknown", error="cluster did not start")
    page = write_run_report(run, tmp_path / "empty")
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert "The run did not complete" in text
    assert "cluster did not start" in text
    assert "No checker ran." in text
    assert "No faults were injected." in text
    assert len(_png_sizes(parsed.imgs)) == 2


def test_index_links_runs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.html").write_text("x")
    rows = [
        IndexRow(
            "a", {"mode": "vclock", "nodes": 5}, "valid", {"lost_writes": "valid"}, "a/report.html"
        ),
        IndexRow("b<i>", {"mode": "lww", "nodes": 5}, "invalid", {"lost_writes": "invalid"}, None),
    ]
    page = write_index(tmp_path / "index.html", rows, title="T")
    html = page.read_text(encoding="utf-8")
    parsed = _parse(page)
    assert parsed.hrefs == ["a/report.html"]
    assert "b&lt;i&gt;" in html
    assert "<i>" not in html
    # The axis that varies gets a column; the shared one goes below the table.
    header = html.split("</tr>", 1)[0]
    assert "<th>mode</th>" in header
    assert "<th>nodes</th>" not in header
    assert "1 <span class='valid'>valid</span>, 1 <span class='invalid'>invalid</span>" in html


# ---------------------------------------------------------------------------------------------
# The page opens with the verdicts; the index shows the verdict early


def test_run_page_opens_with_the_verdicts(tmp_path: Path) -> None:
    history = set_history(seed=2, keys=("alpha", "beta"), lose=1)
    html = _page(tmp_path, history).read_text(encoding="utf-8")
    verdicts, config = html.index("id='verdicts'"), html.index("id='configuration'")
    assert verdicts < config
    # The failing checker's explanation comes before any configuration row.
    assert html.index("was acknowledged but is not in the final read") < config
    assert html.index("<th>mode</th>") > config


def test_index_verdict_is_the_second_column(tmp_path: Path) -> None:
    rows = [
        IndexRow(f"r{i}", {f"axis{j}": i * j for j in range(30)}, v, {"c": v}, None)
        for i, v in enumerate(("valid", "invalid"))
    ]
    html = write_index(tmp_path / "index.html", rows).read_text(encoding="utf-8")
    header = re.findall(r"<th>([^<]*)</th>", html.split("</tr>", 1)[0])
    assert header[:3] == ["run", "verdict", "c"]
    first_row = html.split("</tr>", 2)[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", first_row)
    assert "valid" in cells[1]


# ---------------------------------------------------------------------------------------------
# Fault windows: labelled, and overlapping ones stay apart

_STRIP = {"partition": (0xD3, 0x2F, 0x2F), "kill": (0x6A, 0x1B, 0x9A)}


def _overlapping_faults(overlap: bool) -> list[Op]:
    history = set_history(seed=5, faults=False)
    end = max(op.time for op in history)
    start = history[0].time
    cut = (start + end) // 4
    kill_at = cut + (end - start) // 8 if overlap else cut + (end - start) // 3
    events = [
        (cut, "start-partition", [["n1"], ["n2"]]),
        (kill_at, "start-kill", {"nodes": ["n3"]}),
        (cut + (end - start) // 4, "stop-partition", None),
        (kill_at + (end - start) // 4, "stop-kill", None),
    ]
    merged = sorted(
        [(op.time, 1, op) for op in history]
        + [
            (t, 0, Op(process="nemesis", type="info", f=f, value=v, time=t, index=0))
            for t, f, v in events
        ],
        key=lambda e: (e[0], e[1]),
    )
    return [msgspec.structs.replace(op, index=i) for i, (_, _, op) in enumerate(merged)]


def _columns_with(png: bytes, rgb: tuple[int, int, int]) -> set[int]:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    hit = (np.abs(pixels - np.array(rgb)) <= 4).all(axis=-1)
    return set(np.nonzero(hit.any(axis=0))[0].tolist())


@pytest.mark.parametrize("plot", [latency_png, throughput_png])
def test_overlapping_faults_are_drawn_apart_and_labelled(plot: Callable[..., bytes]) -> None:
    for overlap in (True, False):
        history = _overlapping_faults(overlap)
        faults = fault_windows(history)
        assert [f.name for f in faults] == ["partition", "kill"]
        png = plot(pair(history), faults)
        both = _columns_with(png, _STRIP["partition"]) & _columns_with(png, _STRIP["kill"])
        # Where the windows overlap, both colours show in the same columns (one row each).
        assert bool(both) == overlap
    figure = latency_figure(pair(history), faults)
    strip = figure.axes[0]
    assert [t.get_text() for t in strip.get_yticklabels()] == ["kill", "partition"]


# ---------------------------------------------------------------------------------------------
# Latency by operation type


def test_latency_is_split_by_operation_type(tmp_path: Path) -> None:
    history = set_history(seed=7)
    ops = pair(history)
    stats = latency_by_f(ops)
    assert set(stats) == {"add", "read", "replica-read"}
    adds = sorted(
        (op.return_time - op.call_time) / 1e6
        for op in ops
        if op.f == "add" and op.status == "ok" and op.return_time is not None
    )
    assert stats["add"]["ok"] == len(adds)
    assert stats["add"]["max"] == adds[-1]
    assert stats["add"]["p50"] == adds[(len(adds) + 1) // 2 - 1]
    assert stats["add"]["fail"] == sum(1 for op in ops if op.f == "add" and op.status == "fail")
    # The plot draws a panel per type under the fault strip; the page tabulates each type.
    figure = latency_figure(ops, fault_windows(history))
    assert len(figure.axes) == 1 + 3
    html = _page(tmp_path, history).read_text(encoding="utf-8")
    table = html.split("class='latency'", 1)[1].split("</table>", 1)[0]
    assert [re.sub("<[^>]+>", "", c) for c in re.findall(r"<tr><td>(\w[\w-]*)</td>", table)] == [
        "add",
        "read",
        "replica-read",
    ]
    assert f"<td>{stats['add']['p95']:.1f}</td>" in table


def test_a_linearizability_failure_gets_its_timeline_with_states(tmp_path: Path) -> None:
    h = H().write(0, 1).write(1, 2).read(2, 1)
    h.nemesis("start-partition", {"pattern": "halves"}).write(0, 3, key="j").read(2, 3, key="j")
    result = as_result(check(models.register(), pair(h.ops)))
    assert result.verdict == "invalid"
    run = RunPage("lin", {}, h.ops, {"linearizable": result}, "invalid")
    page = write_run_report(run, tmp_path / "lin")
    (href,) = [x for x in _parse(page).hrefs if x.startswith("timelines/")]
    text = (page.parent / href).read_text(encoding="utf-8")
    data = json.loads(text.split("id='data'>", 1)[1].split("</script>", 1)[0])
    first, second = data["views"]
    assert first["key"] == "key k"
    assert [op.get("m") for op in first["ops"]] == [None, None, "failed"]
    assert [op.get("st") for op in first["ops"]] == ["1", "2", None]  # the state after each
    assert second["key"] == "key j"
    assert second["verdict"] == "valid"  # checked before: keys go smallest first
    assert [op.get("st") for op in second["ops"]] == ["3", "3"]
    assert [f["name"] for f in second["faults"]] == ["partition"]
