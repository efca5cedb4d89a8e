"""`dynamo-ref serve DIR`: the campaigns in DIR, newest first, each campaign's and run's pages
behind it, nothing outside DIR, and loopback unless told otherwise."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from campaign_support import fake_config, fake_run_once

from harness.campaign import new_campaign_dir, run_campaign
from harness.serve import make_server, serve_command

pytestmark = pytest.mark.net


def _campaigns(root: Path) -> list[Path]:
    folders = []
    for i, mode in enumerate(("vclock", "lww")):
        folder = new_campaign_dir(root, now=1_700_000_000.0 + i)
        asyncio.run(run_campaign([fake_config(mode=mode, seed=i)], folder, fake_run_once))
        folders.append(folder)
    return folders


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    folders = _campaigns(tmp_path / "runs")
    server = make_server(tmp_path / "runs", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}", folders
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, res.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_index_lists_campaigns_newest_first_and_links_resolve(
    served: tuple[str, list[Path]],
) -> None:
    base, folders = served
    assert base.startswith("http://127.0.0.1:")
    status, page = _get(base + "/")
    assert status == 200
    links = re.findall(r"href='([^']+)'", page)
    campaign_links = [link for link in links if link.endswith("/index.html")]
    assert campaign_links == [f"{folders[1].name}/index.html", f"{folders[0].name}/index.html"]
    assert page.index("invalid") < page.index(">valid<")  # the newer lww run lost a write
    for link in links:
        assert _get(f"{base}/{link}")[0] == 200, link
    status, run_page = _get(f"{base}/latest/index.html")
    assert status == 200
    assert "lww" in run_page


def test_a_new_campaign_shows_without_a_restart(
    served: tuple[str, list[Path]], tmp_path: Path
) -> None:
    base, _ = served
    folder = new_campaign_dir(tmp_path / "runs", now=1_800_000_000.0)
    asyncio.run(run_campaign([fake_config(seed=5)], folder, fake_run_once))
    assert f"{folder.name}/index.html" in _get(base + "/")[1]


def test_nothing_outside_the_directory_is_served(served: tuple[str, list[Path]]) -> None:
    base, _ = served
    for path in ("/../test_serve.py", "/%2e%2e/%2e%2e/etc/passwd", "/nope.html"):
        assert _get(base + path)[0] == 404, path


def test_serve_listens_on_loopback_by_default(tmp_path: Path) -> None:
    defaults = {p.name: p.default for p in serve_command.params}
    assert defaults["host"] == "127.0.0.1"
    _campaigns(tmp_path)
    code = "from harness.serve import serve_command; serve_command()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        status, page = _get(match.group(1))
        assert status == 200
        assert "Campaigns in" in page
    finally:
        proc.terminate()
        proc.wait(10)
