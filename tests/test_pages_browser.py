"""The report and the timelines in a real browser (headless Chromium, see `browser_support`):
each opens on the failure, requests nothing, cuts no label, and the timeline's hover shows each
operation's node and the state after it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from browser_support import Browser
from campaign_support import check_set, set_history
from click.testing import CliRunner
from dynamo_histories import H

from harness.check_cli import check_command
from harness.checkers.verdict import combine
from harness.history import Op, dumps_jsonl
from harness.report import RunPage, write_run_report

NODES = ("n1", "n2", "n3")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("profile"))
    try:
        yield b
    finally:
        b.close()


def _register_history(keys: int = 20, per_key: int = 150, stale_key: int = 13) -> list[Op]:
    """Sequential reads and writes of unique values on many keys, by 6 processes each served by
    one node; near the end one read of `k<stale_key>` returns an overwritten value."""
    rng = random.Random(7)
    h = H()
    current: dict[str, int | None] = {f"k{k}": None for k in range(keys)}
    values = iter(range(1, 10**6))
    for i in range(keys * per_key):
        key, process = f"k{rng.randrange(keys)}", i % 6
        if rng.random() < 0.5:
            value = next(values)
            h.invoke(process, "write", value, key).ok(process, "write", value, key)
            current[key] = value
        else:
            h.invoke(process, "read", None, key).ok(process, "read", current[key], key)
    stale = f"k{stale_key}"
    for _ in range(2):
        h.invoke(1, "write", next(values), stale).ok(1, "write", h.ops[-1].value, stale)
    h.invoke(4, "read", None, stale).ok(4, "read", h.ops[-4].value, stale)  # the one before
    return [
        msgspec.structs.replace(op, node=NODES[op.process % 3])
        if isinstance(op.process, int)
        else op
        for op in h.ops
    ]


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("timeline")
    path = folder / "h.jsonl"
    path.write_bytes(dumps_jsonl(_register_history()))
    page = folder / "timeline.html"
    out = CliRunner().invoke(check_command, [str(path), "--timeline", str(page)])
    assert out.exit_code == 1, out.output
    assert "node n2" in out.output  # process 4 talks to n2
    return page


def _rect(browser: Browser, selector: str) -> dict[str, Any]:
    rect: dict[str, Any] = browser.evaluate(
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,"
        " w: innerWidth, h: innerHeight}; })()"
    )
    return rect


def _in_viewport(rect: dict[str, Any]) -> bool:
    return (
        0 <= rect["left"] < rect["right"] <= rect["w"]
        and 0 <= rect["top"] < rect["bottom"] <= rect["h"]
    )


def _only_the_page(browser: Browser, page: Path) -> None:
    requested = [u for u in browser.requests() if not u.startswith("data:")]
    assert requested == [page.resolve().as_uri()]
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    assert browser.errors() == []


# ---------------------------------------------------------------------------------------------
# The timeline


def test_timeline_opens_on_the_failing_operation(browser: Browser, timeline: Path) -> None:
    browser.open(timeline)
    _only_the_page(browser, timeline)
    rect = _rect(browser, "#inner .op.failed")
    assert _in_viewport(rect), rect
    label = browser.evaluate("document.querySelector('#inner .op.failed').textContent")
    assert label == "n2: read -> " + label.rsplit(" ", 1)[1]
    # Its label fits at the opening zoom; no process label is cut off either.
    assert browser.evaluate(
        "(() => { const e = document.querySelector('#inner .op.failed');"
        " return e.scrollWidth <= e.clientWidth; })()"
    )
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('.pname')).every(e => e.scrollWidth <= e.clientWidth)"
    )
    # The failing operation's process is named beside it, however far the chart scrolled.
    names = browser.evaluate(
        "Array.from(document.querySelectorAll('.pname'), e => {"
        " const r = e.getBoundingClientRect(); return [e.textContent, r.left, r.top, r.bottom]; })"
    )
    (row,) = [n for n in names if n[0] == "process 4 @ n2"]
    assert row[1] >= 0
    assert row[2] <= (rect["top"] + rect["bottom"]) / 2 <= row[3]
    # The failing key first, with a view for every key; a key is as wide as its own operations.
    options = browser.evaluate("Array.from(document.querySelectorAll('#view option'), o => o.text)")
    assert len(options) == 20
    assert options[0].startswith("key k13 (invalid)")
    # Its axis is its own calls and returns, not the whole history's 6,000 events.
    ops, slots = browser.evaluate("[timeline.view().ops.length, timeline.slots()]")
    assert slots == 2 * ops
    width = browser.evaluate("document.getElementById('inner').offsetWidth")
    assert width < 30_000, width


def test_timeline_hover_shows_node_and_state_after(browser: Browser, timeline: Path) -> None:
    browser.open(timeline)
    rect = _rect(browser, "#inner .op.failed")
    browser.move_mouse((rect["left"] + rect["right"]) / 2, (rect["top"] + rect["bottom"]) / 2)
    tip = browser.evaluate("document.getElementById('tip').innerText")
    assert browser.evaluate("getComputedStyle(document.getElementById('tip')).display") == "block"
    assert "node\tn2" in tip
    assert "process\t4" in tip
    assert "no linearization gets past its return" in tip
    # The last linearized operation before it: its place and the state after it.
    rect = browser.evaluate(
        "(() => { const v = timeline.view(); let best = -1, at = -1;"
        " v.ops.forEach((o, i) => { if (o.o !== undefined && o.o > best) {"
        " best = o.o; at = i; } });"
        " const e = document.querySelector(`.op[data-i='${at}']`); e.scrollIntoView();"
        " const r = e.getBoundingClientRect();"
        " return {x: r.left + 2, y: (r.top + r.bottom) / 2}; })()"
    )
    browser.move_mouse(rect["x"], rect["y"])
    tip = browser.evaluate("document.getElementById('tip').innerText")
    assert "linearized\t#" in tip
    assert "state after\t" in tip
    assert "'" not in tip  # values as JSON, never a Python repr


def test_timeline_zooms_and_switches_keys(browser: Browser, timeline: Path) -> None:
    browser.open(timeline)
    assert browser.evaluate("timeline.zoom()") == 1
    browser.evaluate("document.getElementById('zoom-in').click()")
    assert browser.evaluate("timeline.zoom()") == 2
    browser.evaluate("document.getElementById('to-failure').click()")
    assert _in_viewport(_rect(browser, "#inner .op.failed"))
    assert browser.evaluate("timeline.zoom()") == 2  # back to the failure at the same zoom
    browser.evaluate("document.getElementById('zoom-fit').click()")
    fit_width = browser.evaluate("document.getElementById('inner').offsetWidth")
    assert fit_width <= browser.evaluate("document.getElementById('chart').clientWidth") + 1
    browser.evaluate("document.getElementById('to-failure').click()")
    assert _in_viewport(_rect(browser, "#inner .op.failed"))
    browser.evaluate(
        "(() => { const s = document.getElementById('view'); s.value = '1';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    keys = browser.evaluate("Array.from(new Set(timeline.view().ops.map(o => o.k)))")
    assert len(keys) == 1
    assert keys[0] != "k13"
    assert browser.evaluate("document.querySelectorAll('#inner .op.failed').length") == 0


# ---------------------------------------------------------------------------------------------
# A run's page and its findings timeline


@pytest.fixture(scope="module")
def run_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    history = set_history(seed=2, keys=("alpha", "beta", "gamma"), lose=2, seconds=6.0)
    checks = check_set(history)
    config = {f"setting_{i}": i for i in range(25)}
    run = RunPage("run-1", config, history, checks, combine(r.verdict for r in checks.values()))
    return write_run_report(run, tmp_path_factory.mktemp("run") / "run-1")


def test_run_page_opens_on_the_verdicts(browser: Browser, run_page: Path) -> None:
    browser.open(run_page)
    _only_the_page(browser, run_page)
    assert _in_viewport(_rect(browser, "h1"))
    assert browser.evaluate("document.querySelector('h1').innerText") == "Run run-1: invalid"
    # The failing checker's verdict and explanation are on the first screen.
    rect = browser.evaluate(
        "(() => { const c = Array.from(document.querySelectorAll('td span.invalid'))[0];"
        " const r = c.closest('tr').getBoundingClientRect();"
        " return {left: r.left, right: r.right, top: r.top, bottom: Math.min(r.bottom, r.top + 60),"
        " w: innerWidth, h: innerHeight}; })()"
    )
    assert _in_viewport(rect), rect


def test_findings_timeline_opens_on_the_lost_write(browser: Browser, run_page: Path) -> None:
    (page,) = (run_page.parent / "timelines").glob("*.html")
    browser.open(page)
    _only_the_page(browser, page)
    assert _in_viewport(_rect(browser, "#inner .op.failed"))
    assert browser.evaluate("document.getElementById('note').innerText").startswith("key alpha")
    # The fault windows are drawn, each labelled.
    bands = browser.evaluate("Array.from(document.querySelectorAll('.fband'), e => e.textContent)")
    assert any(b.startswith("partition") for b in bands)
