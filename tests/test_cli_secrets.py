"""Tokens and secrets from files or the environment, never the command line; a client token
only with a cluster secret; `cluster up` makes a secret unless told not to."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dynamo_ref.cli import main
from dynamo_ref.client import TOKEN_ENV, load_token
from dynamo_ref.localcluster import (
    SECRET_FILE,
    ClusterError,
    is_our_node,
    read_state,
    stop_recorded,
    wait_healthy,
)

NODE = ("node", "--id", "n1", "--listen", "127.0.0.1:0", "--memory")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    "args",
    [(*NODE, "--client-token", "s3cret"), ("get", "k", "--token", "s3cret")],
)
def test_a_token_on_the_command_line_is_refused(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert "shows in `ps`" in result.output
    assert "-file" in result.output


def test_a_client_token_without_a_secret_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    result = run(*NODE, "--client-token-file", str(token), env={"DYNAMO_REF_SECRET": ""})
    assert result.exit_code == 2
    assert "needs a cluster secret" in result.output
    from_env = run(*NODE, env={TOKEN_ENV: "t0ken", "DYNAMO_REF_SECRET": ""})
    assert from_env.exit_code == 2
    assert "needs a cluster secret" in from_env.output


def test_tokens_come_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_token() is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert load_token() == "from-env"
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert load_token(token) == "from-file"  # the file wins
    token.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_token(token)
    empty = run("get", "k", "--token-file", str(token))
    assert empty.exit_code == 2
    assert "is empty" in empty.output


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    launchers: list[subprocess.Popen[bytes]] = []
    d = tmp_path / "up"
    try:
        yield d, launchers
    finally:
        with contextlib.suppress(ClusterError):
            stop_recorded(d, timeout=5)
        for proc in launchers:
            proc.kill()
            proc.wait()


def cluster_up(d: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = (d.parent / "launcher.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dynamo_ref",
            "cluster",
            "up",
            "--nodes",
            "2",
            "--dir",
            str(d),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "DYNAMO_REF_SECRET"},
    )


def running(d: Path, count: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ClusterError):
            state = read_state(d)
            if len(state) == count and all(is_our_node(s) for s in state):
                addresses = [s.address for s in state]
                wait_healthy(addresses)
                return addresses
        time.sleep(0.1)
    raise AssertionError((d.parent / "launcher.log").read_text())


@pytest.mark.net
def test_cluster_up_makes_a_secret_and_admin_commands_find_it(
    cluster_dir: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    d, launchers = cluster_dir
    launchers.append(cluster_up(d))
    addresses = running(d, 2)
    secret = d / SECRET_FILE
    assert len(secret.read_bytes()) == 64
    assert secret.stat().st_mode & 0o077 == 0
    for node in read_state(d):
        assert f"--secret-file={secret}" in node.argv
        assert not any(secret.read_text() in arg for arg in node.argv)  # never the value
    # An admin command finds the secret in --dir: the node takes it (and says what it thinks
    # of the request), while one without the secret is refused.
    took = run("leave", "nowhere", "--dir", str(d), "--node", addresses[0])
    assert "unauthorized" not in took.output, took.output
    assert "not in the ring" in took.output
    other = d.parent / "elsewhere"
    other.mkdir()
    refused = run("leave", "nowhere", "--dir", str(other), "--node", addresses[0])
    assert "unauthorized" in refused.output
    down = run("cluster", "down", "--dir", str(d))
    assert down.exit_code == 0, down.output
    launchers[-1].wait(timeout=30)
    # Up again in the same directory: the same secret, not a new one.
    first = secret.read_bytes()
    launchers.append(cluster_up(d))
    running(d, 2)
    assert secret.read_bytes() == first
    run("cluster", "down", "--dir", str(d))
    launchers[-1].wait(timeout=30)
    # --no-secret: no secret anywhere, and the nodes say anyone can join.
    launchers.append(cluster_up(d, "--no-secret"))
    running(d, 2)
    assert not secret.exists()
    assert not any("--secret-file" in a for s in read_state(d) for a in s.argv)
    logs = [(d / f"{s.node_id}.log").read_text() for s in read_state(d)]
    assert all("anyone who can reach" in text for text in logs), logs
    state = json.loads((d / "cluster.json").read_text())
    assert len(state["nodes"]) == 2
