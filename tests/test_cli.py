"""The command line: argument errors (in process, CliRunner) and output formatting.

Commands that talk to a live cluster are tested against real node processes in
test_localcluster.py.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from dynamo_ref.cli import (
    decode_context,
    encode_context,
    main,
    parse_address,
    show_value,
    target_addresses,
)
from dynamo_ref.localcluster import STATE_FILE


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


NODE = ("node", "--id", "n1", "--listen", "127.0.0.1:0", "--memory")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("node", "--listen", "127.0.0.1:0", "--memory"), "Missing option '--id'"),
        (("node", "--id", "n1", "--memory"), "Missing option '--listen'"),
        (("node", "--id", "n1", "--listen", "localhost", "--memory"), "is not HOST:PORT"),
        (("node", "--id", "n1", "--listen", "127.0.0.1:99999", "--memory"), "0..65535"),
        (("node", "--id", "n1", "--listen", "127.0.0.1:x", "--memory"), "is not a number"),
        (("node", "--id", "n1", "--listen", "127.0.0.1:0"), "give --data-dir, or --memory"),
        ((*NODE, "--member", "n1"), "is not ID=HOST:PORT"),
        ((*NODE, "--member", "n1=127.0.0.1:0"), "1..65535"),
        ((*NODE, "--member", "n2=127.0.0.1:7002"), "it must include n1"),
        ((*NODE, "--member", "n1=127.0.0.1:7001", "--member", "n1=127.0.0.1:7002"), "twice"),
        ((*NODE, "--seeds", "127.0.0.1:7002,nohost"), "is not HOST:PORT"),
        ((*NODE, "--partitions", "48"), "48 is not a power of 2"),
        ((*NODE, "--n", "3", "--r", "4"), "invalid settings"),
        ((*NODE, "--n", "0"), "0 is not in the range"),
        ((*NODE, "--mode", "crdt"), "'crdt' is not one of"),
        ((*NODE, "--sync", "sometimes"), "'sometimes' is not one of"),
        ((*NODE, "--request-timeout", "0"), "--request-timeout"),
        (("node", "--id", " ", "--listen", "127.0.0.1:0", "--memory"), "the node id is empty"),
        (("put", "k", "v", "--context", "not base64!"), "not base64"),
        (("put", "k"), "give VALUE (or - for standard input) or --file FILE"),
        (("get", "k", "--r", "0"), "0 is not in the range"),
        (("get", "k", "--node", "127.0.0.1"), "is not HOST:PORT"),
        (("join", "n4", "nowhere"), "is not HOST:PORT"),
        (("cluster", "up", "--nodes", "0"), "0 is not in the range"),
        (("cluster", "up", "--partitions", "3"), "3 is not a power of 2"),
    ],
)
def test_argument_errors(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_an_empty_secret_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\n")
    result = run(*NODE, "--secret-file", str(secret))
    assert result.exit_code == 2
    assert "secret" in result.output
    assert "is empty" in result.output
    missing = run(*NODE, "--secret-file", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "does not exist" in missing.output


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("node", "--id", "n1", "--listen", "127.0.0.1:0", "--data-dir", str(blocker / "d"))
    assert result.exit_code == 1
    assert "cannot open the store" in result.output


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("node", "--id", "n1", "--listen", f"127.0.0.1:{port}", "--memory")
    assert result.exit_code == 1
    assert f"n1 cannot listen on 127.0.0.1:{port}" in result.output


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:80") == ("[::1]", 80)
    assert parse_address("h:0", allow_port_zero=True) == ("h", 0)
    for bad in ("h:0", ":80", "h", "h:-1", "h:65536", "h:8o"):
        with pytest.raises(ValueError, match=r"HOST:PORT|port"):
            parse_address(bad)


def test_contexts_round_trip_as_pasteable_text() -> None:
    for raw in (b"", b"\x00\xff\xfe", bytes(range(256))):
        text = encode_context(raw)
        assert text.isascii()
        assert not set(text) & set(" +/\n'\"")
        assert decode_context(text) == raw
        # the standard alphabet and missing padding are accepted too
        assert decode_context(base64.b64encode(raw).decode().rstrip("=")) == raw
    with pytest.raises(ValueError, match="not base64"):
        decode_context("a")


def test_values_show_as_text_or_base64() -> None:
    assert show_value(b"alice") == "alice"
    assert show_value("größe".encode()) == "größe"
    # text that would read as base64 is shown as base64, so the output is never ambiguous
    assert show_value(b"base64:x") == "base64:" + base64.b64encode(b"base64:x").decode()
    assert show_value(b"\xff\x00") == "base64:/wA="
    assert show_value(b"line\nbreak") == "base64:" + base64.b64encode(b"line\nbreak").decode()


def test_client_commands_find_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNAMO_REF_CLUSTER_DIR", raising=False)
    assert target_addresses(("a:1",), None) == ["a:1"]
    assert target_addresses((), None) == ["127.0.0.1:7001"]
    d = tmp_path / "c"
    d.mkdir()
    (d / STATE_FILE).write_text(
        '{"nodes": [{"id": "n1", "address": "127.0.0.1:5", "pid": null, "argv": []},'
        ' {"id": "n2", "address": "127.0.0.1:6", "pid": null, "argv": []}]}'
    )
    assert target_addresses((), d) == ["127.0.0.1:5", "127.0.0.1:6"]
    monkeypatch.setenv("DYNAMO_REF_CLUSTER_DIR", str(d))
    assert target_addresses((), None) == ["127.0.0.1:5", "127.0.0.1:6"]
    result = run("status", "--dir", str(tmp_path / "none"))
    assert result.exit_code == 2
    assert "no cluster state" in result.output


@pytest.fixture
def dead_port() -> Iterator[int]:
    # Bound and not listening: connecting to it is refused at once.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_an_unreachable_node_is_a_clear_error(dead_port: int) -> None:
    result = run("get", "k", "--node", f"127.0.0.1:{dead_port}", "--timeout", "2")
    assert result.exit_code == 1
    assert f"127.0.0.1:{dead_port}" in result.output


def test_ring_sample() -> None:
    result = run("ring", "--sample", "--nodes", "4", "--partitions", "16", "--key", "user:42")
    assert result.exit_code == 0
    assert "sample ring: Q=16, 4 nodes, N=3" in result.output
    assert "preference list" in result.output
    bad = run("ring", "--sample", "--partitions", "12")
    assert bad.exit_code == 2


def test_ring_asks_the_cluster_and_says_when_none_answers(dead_port: int) -> None:
    result = run("ring", "--node", f"127.0.0.1:{dead_port}", "--timeout", "2")
    assert result.exit_code == 1
    assert f"cannot reach 127.0.0.1:{dead_port}" in result.output or "unavailable" in result.output


def test_a_value_over_the_limit_is_refused_before_sending(tmp_path: Path, dead_port: int) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    result = run("put", "k", "--file", str(big), "--node", f"127.0.0.1:{dead_port}")
    assert result.exit_code == 2
    assert "over 1048576 bytes" in result.output
    both = run("put", "k", "v", "--file", str(big))
    assert both.exit_code == 2
    assert "not both" in both.output


def _commands(
    group: click.Group, ctx: click.Context, path: str
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        yield f"{path} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(
                cmd, click.Context(cmd, info_name=name, parent=ctx), f"{path} {name}"
            )


def test_every_option_of_every_command_says_what_it_does() -> None:
    from harness.cli import main as full

    ctx = click.Context(full, info_name="dynamo-ref")
    silent = [
        f"{path} {param.opts[0]}"
        for path, cmd in _commands(full, ctx, "dynamo-ref")
        for param in cmd.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert silent == []
