"""LocalCluster's process management, against a stand-in node script (no runtime needed).

The stand-in speaks the launcher's contract: it takes `node --id --listen --data-dir ...`,
listens on the port, prints "listening on HOST:PORT", and on SIGTERM leaves a marker and
exits 0. Environment switches make it fail, stay silent or ignore SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dynamo_ref.cli import main
from dynamo_ref.client import AsyncClient, Client, ClientError
from dynamo_ref.core.membership import ring_from_claims
from dynamo_ref.core.node import NodeConfig, VersionMode
from dynamo_ref.core.ring import Ring
from dynamo_ref.localcluster import (
    STATE_FILE,
    ClusterError,
    LocalCluster,
    NodeOptions,
    cmdline_of,
    read_state,
    stop_recorded,
    wait_healthy,
)

FAKE_NODE = textwrap.dedent(
    """
    import json, os, signal, socket, sys, time
    from pathlib import Path

    args = dict(a.split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
    data = Path(args["--data-dir"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "argv.json").write_text(json.dumps(sys.argv[1:]))
    (data / "pid").write_text(str(os.getpid()))
    once = os.environ.get("FAKE_PORT_TAKEN_ONCE")
    if once and not os.path.exists(once):
        open(once, "w").close()
        print("cannot bind: address already in use", file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("FAKE_FAIL"):
        print("boom: cannot open the store", file=sys.stderr, flush=True)
        sys.exit(3)
    host, port = args["--listen"].rsplit(":", 1)
    sock = socket.socket()
    sock.bind((host, int(port)))
    sock.listen()

    def on_term(signum, frame):
        (data / "terminated").write_text("yes")
        sys.exit(0)

    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    if not os.environ.get("FAKE_SILENT"):
        print("listening on %s:%d" % sock.getsockname(), flush=True)
    while True:
        time.sleep(0.05)
    """
)


@pytest.fixture
def fake(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE)
    return [sys.executable, str(script)]


def make(
    fake: list[str], base: Path, count: int = 3, env: dict[str, str] | None = None, **kw: object
) -> LocalCluster:
    environ = dict(os.environ)
    environ.update(env or {})
    return LocalCluster(count, base, command=fake, env=environ, **kw)  # type: ignore[arg-type]


def alive(pid: int | None) -> bool:
    return pid is not None and cmdline_of(pid) is not None


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def eventually_state(pid: int, stopped: bool) -> bool:
    """Signals arrive asynchronously: wait (bounded) for the process to be (not) stopped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (proc_state(pid) == "T") == stopped:
            return True
        time.sleep(0.01)
    return False


def test_start_gives_each_node_a_port_a_dir_and_the_ring(fake: list[str], tmp_path: Path) -> None:
    with make(fake, tmp_path / "c") as lc:
        assert lc.ids == ["n1", "n2", "n3"]
        assert len(set(lc.addresses)) == 3
        assert all(a.startswith("127.0.0.1:") for a in lc.addresses)
        for i, pid in enumerate(lc.pids):
            assert alive(pid)
            assert pid is not None
            argv = json.loads((lc.nodes[i].data_dir / "argv.json").read_text())
            assert argv[0] == "node"
            assert f"--id=n{i + 1}" in argv
            assert f"--listen={lc.addresses[i]}" in argv
            members = {a for a in argv if a.startswith("--member=")}
            assert members == {f"--member=n{j + 1}={lc.addresses[j]}" for j in range(3)}
            seeds = next(a for a in argv if a.startswith("--seeds="))
            assert set(seeds.split("=", 1)[1].split(",")) == set(lc.addresses) - {lc.addresses[i]}
            # it listens where the cluster says
            with socket.create_connection(tuple(lc.addresses[i].split(":")), timeout=5):  # type: ignore[arg-type]
                pass
        assert len({n.data_dir for n in lc.nodes}) == 3
        state = read_state(lc.base_dir)
        assert [s.pid for s in state] == lc.pids
        assert [s.address for s in state] == lc.addresses
        pids = lc.pids
    assert not any(alive(p) for p in pids)


def test_node_options_reach_the_command_line(fake: list[str], tmp_path: Path) -> None:
    options = NodeOptions(
        config=NodeConfig(n=2, r=1, w=2, sloppy=False, mode=VersionMode.LWW, partitions=16),
        memory=True,
    )
    with make(fake, tmp_path / "c", count=2, options=options, secret=b"s3cret") as lc:
        argv = json.loads((lc.nodes[0].data_dir / "argv.json").read_text())
        for arg in ("--n=2", "--r=1", "--w=2", "--strict", "--mode=lww", "--partitions=16"):
            assert arg in argv
        assert "--memory" in argv
        assert not any(a.startswith("--sync") for a in argv)
        secret_arg = next(a for a in argv if a.startswith("--secret-file="))
        secret_path = Path(secret_arg.split("=", 1)[1])
        assert secret_path.read_bytes() == b"s3cret"
        assert secret_path.stat().st_mode & 0o077 == 0


def test_stop_is_graceful_then_forced(fake: list[str], tmp_path: Path) -> None:
    with make(fake, tmp_path / "a", count=1) as lc:
        assert lc.stop(0) == 0
        assert (lc.nodes[0].data_dir / "terminated").exists()
    # negative control: a node that ignores SIGTERM is SIGKILLed after the timeout
    with make(fake, tmp_path / "b", count=1, env={"FAKE_IGNORE_TERM": "1"}) as lc:
        assert lc.stop(0, timeout=0.5) == -signal.SIGKILL
        assert not (lc.nodes[0].data_dir / "terminated").exists()


def test_kill_and_restart_same_dir_then_new_port(fake: list[str], tmp_path: Path) -> None:
    with make(fake, tmp_path / "c") as lc:
        old_pid, old_addr, old_dir = lc.pids[1], lc.addresses[1], lc.nodes[1].data_dir
        lc.kill(1)
        assert lc.nodes[1].process is not None
        assert lc.nodes[1].process.returncode == -signal.SIGKILL
        assert not (old_dir / "terminated").exists()
        assert read_state(lc.base_dir)[1].pid is None
        with pytest.raises(ClusterError, match="not running"):
            lc.pause(1)

        lc.start(1)
        assert lc.pids[1] != old_pid
        assert alive(lc.pids[1])
        assert lc.addresses[1] == old_addr
        assert lc.nodes[1].data_dir == old_dir
        with pytest.raises(ClusterError, match="already running"):
            lc.start(1)

        lc.stop(1)
        lc.start(1, new_port=True)
        assert lc.addresses[1] != old_addr
        assert lc.nodes[1].data_dir == old_dir
        argv = json.loads((old_dir / "argv.json").read_text())
        assert f"--listen={lc.addresses[1]}" in argv
        assert f"--member=n2={lc.addresses[1]}" in argv
        assert read_state(lc.base_dir)[1].address == lc.addresses[1]


def test_pause_and_resume(fake: list[str], tmp_path: Path) -> None:
    with make(fake, tmp_path / "c", count=1) as lc:
        pid = lc.pids[0]
        assert pid is not None
        assert proc_state(pid) != "T"
        lc.pause(0)
        assert eventually_state(pid, stopped=True)
        lc.resume(0)
        assert eventually_state(pid, stopped=False)
        lc.pause(0)
        # a paused node still stops cleanly: it is woken to handle SIGTERM
        assert lc.stop(0) == 0


def test_a_node_that_fails_to_start_reports_its_stderr(fake: list[str], tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="boom: cannot open the store") as info:
        make(fake, tmp_path / "c", env={"FAKE_FAIL": "1"})
    assert "exited with status 3" in str(info.value)
    assert not any(alive(int(p.read_text())) for p in (tmp_path / "c").glob("n*/pid"))


def test_a_port_taken_before_the_node_binds_it_is_chosen_again(
    fake: list[str], tmp_path: Path
) -> None:
    marker = tmp_path / "taken-once"
    with make(fake, tmp_path / "c", env={"FAKE_PORT_TAKEN_ONCE": str(marker)}) as lc:
        assert marker.exists()  # the first attempt did fail
        assert all(alive(p) for p in lc.pids)
        argv = json.loads((lc.nodes[0].data_dir / "argv.json").read_text())
        members = {a for a in argv if a.startswith("--member=")}
        assert members == {f"--member=n{j + 1}={lc.addresses[j]}" for j in range(3)}


def test_a_silent_node_times_out_and_is_killed(fake: list[str], tmp_path: Path) -> None:
    base = tmp_path / "c"
    with pytest.raises(ClusterError, match="timed out"):
        make(fake, base, count=2, env={"FAKE_SILENT": "1"}, start_timeout=1.0)
    # nothing is left running: every started pid is gone
    started = [int(p.read_text()) for p in base.glob("n*/pid")]
    assert len(started) == 2
    assert not any(alive(p) for p in started)
    state = json.loads((base / STATE_FILE).read_text())
    assert all(n["pid"] is None for n in state["nodes"])


def test_close_on_error_stops_everything(fake: list[str], tmp_path: Path) -> None:
    pids: list[int | None] = []

    def fail_inside() -> None:
        with make(fake, tmp_path / "c") as lc:
            pids.extend(lc.pids)
            raise RuntimeError("test failure")

    with pytest.raises(RuntimeError, match="test failure"):
        fail_inside()
    assert len(pids) == 3
    assert not any(alive(p) for p in pids)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_cluster_down_from_another_process(
    fake: list[str], tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    with make(fake, tmp_path / "c") as lc:
        pids = lc.pids
        # a reused pid: the state file names a process that is not our node
        state = json.loads((lc.base_dir / STATE_FILE).read_text())
        state["nodes"].append(
            {"id": "n9", "address": "127.0.0.1:1", "pid": stranger.pid, "argv": ["x"]}
        )
        state["nodes"][0]["data_dir"] = str(lc.nodes[0].data_dir)
        (lc.base_dir / STATE_FILE).write_text(json.dumps(state))

        out = subprocess.run(
            [sys.executable, "-m", "dynamo_ref", "cluster", "down", f"--dir={lc.base_dir}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert not any(alive(p) for p in pids)
        for i, pid in enumerate(pids):
            assert f"stopped n{i + 1} (pid {pid})" in out.stdout
        assert stranger.poll() is None
        assert "n9" not in out.stdout
        # graceful: each got SIGTERM and left its marker
        assert all((n.data_dir / "terminated").exists() for n in lc.nodes)

        again = subprocess.run(
            [sys.executable, "-m", "dynamo_ref", "cluster", "down", f"--dir={lc.base_dir}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "no running nodes" in again.stdout


def test_stop_recorded_without_a_state_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="no cluster state file"):
        stop_recorded(tmp_path)
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ClusterError, match="unreadable"):
        stop_recorded(tmp_path)


# ---- real node processes ------------------------------------------------------------------

# Fast failure detection; anti-entropy off so that what a node holds is what it was sent.
FAST = NodeConfig(
    sloppy=False,
    partitions=16,
    gossip_interval=0.2,
    request_timeout=2.0,
    anti_entropy_interval=3600.0,
)


def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Wait (bounded) for a property the cluster reaches asynchronously (gossip, transfer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout:g}s: {what}")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def suspected_by(lc: LocalCluster, i: int) -> set[str]:
    """Whom node i suspects (per its status), or a marker when it does not answer."""
    result = cli("status", "--node", lc.addresses[i], "--timeout", "2", "--json")
    (entry,) = json.loads(result.output)
    if "error" in entry:
        assert result.exit_code == 1, "a node that does not answer fails the status"
        return {"<unreachable>"}
    assert result.exit_code == 0, result.output
    return set(entry["suspected"])


@pytest.fixture
def net_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    options = NodeOptions(config=FAST)
    with LocalCluster(3, tmp_path / "cluster", options=options) as lc:
        lc.wait_healthy()
        yield lc


@pytest.mark.net
def test_put_via_one_node_get_via_another_with_siblings(net_cluster: LocalCluster) -> None:
    a0, a1, a2 = net_cluster.addresses
    assert cli_json("get", "cart", "--node", a2)["siblings"] == []
    with Client([a0]) as c0, Client([a1]) as c1:
        c0.put(b"cart", b"milk", w=3)
        assert c1.get(b"cart", r=3).siblings == [b"milk"]
        # two writes from the same (empty) context, through two coordinators: siblings
        c1.put(b"cart", b"eggs", w=3)
    got = cli_json("get", "cart", "--node", a2, "--r", "3")
    assert sorted(got["siblings"]) == ["eggs", "milk"]
    shown = cli("get", "cart", "--node", a2, "--r", "3")
    assert "2 siblings" in shown.output
    assert "  [1] eggs\n  [2] milk\n" in shown.output
    assert f"context: {got['context']}" in shown.output
    # the context as printed resolves them
    assert cli("put", "cart", "milk+eggs", "--context", got["context"], "--node", a0).exit_code == 0
    assert cli_json("get", "cart", "--node", a1, "--r", "3")["siblings"] == ["milk+eggs"]
    deleted = cli_json("get", "cart", "--node", a1)
    assert cli("delete", "cart", "--context", deleted["context"], "--node", a2).exit_code == 0
    assert cli_json("get", "cart", "--node", a0, "--r", "3")["siblings"] == []
    # the cluster's state file is what the client commands default to
    assert cli_json("get", "nothing", "--dir", str(net_cluster.base_dir))["siblings"] == []


@pytest.mark.net
def test_data_commands_say_what_they_did(net_cluster: LocalCluster, tmp_path: Path) -> None:
    a0, a1, _ = net_cluster.addresses
    assert cli("put", "k", "v1", "--node", a0).exit_code == 0
    blind = cli("put", "k", "v2", "--node", a1)
    # a blind write is kept beside the value, and the put says so and shows both
    assert "stored k (no --context: a blind write)" in blind.output
    assert "2 siblings" in blind.output
    stored = cli_json("put", "k", "v3", "--node", a1)
    assert sorted(stored["siblings"]) == ["v1", "v2", "v3"]
    # the put's context covers what is stored: writing with it resolves the siblings
    assert cli("put", "k", "one", "--context", stored["context"], "--node", a0).exit_code == 0
    assert cli_json("get", "k", "--node", a1, "--r", "3")["siblings"] == ["one"]
    # a delete without a context deletes what a read returns, and says so
    gone = cli("delete", "k", "--node", a1)
    assert gone.exit_code == 0, gone.output
    assert "deleted k: read it first (no --context) and deleted one" in gone.output
    assert cli_json("get", "k", "--node", a0, "--r", "3")["siblings"] == []
    missing = cli("delete", "k", "--node", a1)
    assert "k: not found, nothing to delete" in missing.output
    # values from standard input and from a file, past what a command line argument holds
    big = bytes(range(256)) * 800
    (tmp_path / "big").write_bytes(big)
    assert cli("put", "f", "--file", str(tmp_path / "big"), "--node", a0).exit_code == 0
    raw = CliRunner().invoke(main, ["get", "f", "--raw", "--node", a1])
    assert raw.stdout_bytes == big + b"\n"
    piped = CliRunner().invoke(main, ["put", "s", "-", "--node", a0], input=b"from\nstdin")
    assert piped.exit_code == 0, piped.output
    printed = CliRunner().invoke(main, ["get", "s", "--print-value-only", "--node", a1])
    assert printed.stdout_bytes == b"from\nstdin\n"
    assert "s: base64:" in cli("get", "s", "--node", a1).output


@pytest.mark.net
def test_ring_shows_the_running_cluster(net_cluster: LocalCluster) -> None:
    shown = cli("ring", "--dir", str(net_cluster.base_dir), "--key", "user:42")
    assert shown.exit_code == 0, shown.output
    assert "ring of the cluster, as n1 routes by it: Q=16, N=3" in shown.output
    rows = {line.split("│")[1].strip() for line in shown.output.splitlines() if "│" in line}
    assert rows - {"node"} == {"n1", "n2", "n3"}
    (a0, *_) = net_cluster.addresses
    with Client(a0) as c:
        st = c.status()
    members = [(m.node, m.status, m.zone, m.claims) for m in st.members]
    prefs = ring_from_claims(members, st.q, st.n).preference_list(b"user:42", 3)
    assert f"preference list {list(prefs)}" in shown.output
    data = cli_json("ring", "--dir", str(net_cluster.base_dir), "--key", "user:42")
    assert data["keys"]["user:42"]["preference_list"] == list(prefs)
    assert sum(v["partitions"] for v in data["nodes"].values()) == data["q"] == 16


@pytest.mark.net
def test_the_python_client_takes_what_users_hand_it(net_cluster: LocalCluster) -> None:
    a0, a1, a2 = net_cluster.addresses
    with Client(f"{a0},{a1}") as c:
        assert c._client.addresses == [a0, a1]
        put = c.put("user", "alice", w=3)
        assert c.get("user", r=3).siblings == [b"alice"]
        assert [v.value for v in c.replica_get("user", a2)] == [b"alice"]
        resolved = c.put("user", "bob", context=put.context, return_body=True)
        assert resolved.siblings == [b"bob"]
        with pytest.raises(TypeError, match="the key must be bytes or str, not int"):
            c.get(42)  # type: ignore[arg-type]

    async def with_async() -> list[bytes]:
        async with AsyncClient([a2]) as ac:
            return (await ac.get("user", r=3)).siblings

    assert asyncio.run(with_async()) == [b"bob"]
    with pytest.raises(ValueError, match="at least one node address"):
        Client(" , ")


@pytest.mark.net
def test_the_readme_client_example_runs(net_cluster: LocalCluster) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (block,) = [
        b.split("```", 1)[0]
        for b in readme.split("```python\n")[1:]
        if b.startswith("from dynamo_ref.client import Client")
    ]
    a0, a1, _ = net_cluster.addresses
    code = block.replace("127.0.0.1:7001", a0).replace("127.0.0.1:7002", a1)
    assert code != block
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert sorted(scope["got"].siblings) == [b"eggs", b"milk"]
    with Client([a0]) as c:
        assert c.get("cart", r=3).siblings == []


@pytest.mark.net
def test_failure_detection_across_processes(net_cluster: LocalCluster) -> None:
    # healthy: nobody is suspected (the negative control)
    assert all(suspected_by(net_cluster, i) == set() for i in range(3))
    net_cluster.kill(2)
    eventually(
        lambda: all(suspected_by(net_cluster, i) == {"n3"} for i in (0, 1)),
        what="n1 and n2 suspect the killed n3",
    )
    table = cli("status", "--dir", str(net_cluster.base_dir))
    assert table.exit_code == 1, "a node that does not answer fails the status"
    assert "SUSPECTED" in table.output
    assert f"n3 at {net_cluster.addresses[2]}: no answer" in table.output
    # the dead node's row names it by the id the cluster recorded, with its whole address
    assert any(
        [c.strip() for c in line.split("│")[1:4]] == ["n3", net_cluster.addresses[2], "no answer"]
        for line in table.output.splitlines()
    ), table.output
    net_cluster.start(2)
    eventually(
        lambda: all(suspected_by(net_cluster, i) == set() for i in range(3)),
        what="n3 is back and nobody suspects it",
    )

    def serves_w3() -> bool:
        # its peers' links may still be backing off from the crash: it serves within a while
        try:
            with Client([net_cluster.addresses[2]], timeout=3) as c:
                c.put(b"k", b"v", w=3)
                return c.get(b"k", r=3).siblings == [b"v"]
        except ClientError:
            return False

    eventually(serves_w3, what="the restarted n3 coordinates W=3 and R=3")


@pytest.mark.net
def test_a_node_restarted_on_a_new_port_rejoins_under_its_id(net_cluster: LocalCluster) -> None:
    with Client(net_cluster.addresses[:1]) as c:
        c.put(b"before", b"1", w=3)
    old = net_cluster.addresses[2]
    net_cluster.stop(2)
    net_cluster.start(2, new_port=True)
    new = net_cluster.addresses[2]
    assert new != old

    def everyone_routes_to_new_port() -> bool:
        for i in (0, 1):
            (entry,) = cli_json("status", "--node", net_cluster.addresses[i])
            info = {m["node"]: m for m in entry["members"]}
            if "n3" not in info or entry["suspected"]:
                return False
        try:
            # W=3 under a strict quorum: n3 must ack at its new address
            with Client(net_cluster.addresses[:1], timeout=3) as c:
                c.put(b"after", b"2", w=3)
            # ...and n3, coordinating, must reach the others (its own links are new too)
            with Client([net_cluster.addresses[2]], timeout=3) as c:
                c.get(b"after", r=3)
        except ClientError:
            return False
        return True

    eventually(everyone_routes_to_new_port, what="n1, n2 and n3 reach each other at n3's new port")
    (entry,) = cli_json("status", "--node", new)
    assert entry["node"] == "n3"
    with Client([new]) as c:
        assert c.get(b"before", r=3).siblings == [b"1"]
        assert c.get(b"after", r=3).siblings == [b"2"]


@pytest.mark.net
def test_join_moves_partitions_and_their_data(net_cluster: LocalCluster) -> None:
    keys = [f"key{i}".encode() for i in range(120)]
    with Client(net_cluster.addresses) as c:
        for k in keys:
            c.put(k, b"value-" + k, w=3)
    i = net_cluster.add_node()
    assert net_cluster.ids[i] == "n4"

    def ring_of(address: str) -> Ring:
        with Client([address]) as c:
            st = c.status()
        return ring_from_claims(
            [(m.node, m.status, m.zone, m.claims) for m in st.members], st.q, st.n
        )

    def joined() -> bool:
        (entry,) = cli_json("status", "--node", net_cluster.addresses[0])
        owned = {m["node"]: m["partitions"] for m in entry["members"]}
        return bool(owned.get("n4", 0) > 0)

    eventually(joined, what="n4 claims partitions in n1's view")
    ring = ring_of(net_cluster.addresses[0])
    mine = [k for k in keys if "n4" in ring.preference_list(k, 3)]
    assert 0 < len(mine) < len(keys)

    def data_arrived() -> bool:
        (entry,) = cli_json("status", "--node", net_cluster.addresses[i])
        return bool(entry.get("keys", 0) >= len(mine))

    eventually(data_arrived, timeout=60, what=f"n4 holds its {len(mine)} keys")
    with Client([net_cluster.addresses[i]]) as c:
        for k in mine:
            assert c.get(k, r=1).siblings == [b"value-" + k]

    def n4_seen_by(address: str) -> tuple[str, int]:
        (entry,) = cli_json("status", "--node", address)
        (info,) = [m for m in entry["members"] if m["node"] == "n4"]
        return str(info["status"]), int(info["partitions"])

    def n4_in_n1_view() -> tuple[str, int]:
        return n4_seen_by(net_cluster.addresses[0])

    # leave and join again through the CLI
    left = cli("leave", "n4", "--node", net_cluster.addresses[0])
    assert left.exit_code == 0, left.output
    eventually(
        lambda: all(n4_seen_by(a) == ("left", 0) for a in net_cluster.addresses[:3]),
        what="n4 has left in every view",
    )
    with Client(net_cluster.addresses[:3]) as c:
        assert all(c.get(k, r=3).siblings == [b"value-" + k] for k in keys)
    rejoin = cli("join", "n4", net_cluster.addresses[i], "--node", net_cluster.addresses[1])
    assert rejoin.exit_code == 0, rejoin.output
    try:
        eventually(lambda: n4_in_n1_view()[1] > 0, what="n4 claims partitions again")
    except AssertionError:
        views = {a: cli_json("status", "--node", a)[0] for a in net_cluster.addresses}
        raise AssertionError(f"join said {rejoin.output!r}; views: {views}") from None


@pytest.fixture
def cluster_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    d = tmp_path / "up"
    with (tmp_path / "launcher.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynamo_ref", "cluster", "up", "--nodes", "3", "--dir", str(d)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, d
    finally:
        # whatever the test did: the nodes by their recorded pids, then the launcher
        with contextlib.suppress(ClusterError):
            stop_recorded(d, timeout=5)
        proc.kill()
        proc.wait()


@pytest.mark.net
def test_cluster_up_then_down_from_the_state_file(
    cluster_up: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, d = cluster_up

    def all_listening() -> bool:
        try:
            state = read_state(d)
        except ClusterError:
            return False
        return len(state) == 3 and all(alive(s.pid) for s in state)

    eventually(all_listening, what="cluster up records three live nodes")
    wait_healthy([s.address for s in read_state(d)])
    pids = [s.pid for s in read_state(d)]
    with Client([s.address for s in read_state(d)]) as c:
        c.put(b"k", b"v", w=3)
    down = cli("cluster", "down", "--dir", str(d))
    assert down.exit_code == 0
    assert down.output.count("stopped n") == 3
    assert not any(alive(p) for p in pids)
    # the launcher notices its nodes are gone and exits by itself
    assert proc.wait(timeout=30) == 0, (d.parent / "launcher.log").read_text()


@pytest.mark.net
def test_nodes_log_suspicion_hints_and_handoff_at_info(tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, sloppy=True, fallback_delay=0.2, handoff_interval=0.3)
    options = NodeOptions(config=config, log_level="info")
    with LocalCluster(4, tmp_path / "cluster", options=options) as lc:
        lc.wait_healthy()
        lc.kill(1)
        eventually(lambda: "n2" in suspected_by(lc, 0), what="n1 suspects n2")
        with Client([lc.addresses[0]]) as c:
            keys = [f"k{i}".encode() for i in range(40)]
            for k in keys:
                c.put(k, b"v", w=2)
        lc.start(1)

        def logged(i: int, text: str) -> bool:
            return text in lc.log_path(i).read_text()

        eventually(
            lambda: any(logged(i, "hinted keys back to n2") for i in (0, 2, 3)),
            what="a fallback logs the handoff",
        )
        assert logged(0, "node n1 suspects n2 is down")
        # The detector's recovery is its own step, not ordered with the handoff's log line.
        eventually(lambda: logged(0, "node n1 hears from n2 again"), what="n1 logs n2 is back")
        assert any(
            logged(i, "writes for n2, held down, went to fallbacks as hints") for i in (0, 2, 3)
        )


@pytest.mark.net
def test_control_nodes_log_none_of_it_at_warning(tmp_path: Path) -> None:
    options = NodeOptions(config=FAST, log_level="warning")
    with LocalCluster(3, tmp_path / "cluster", options=options) as lc:
        lc.wait_healthy()
        lc.kill(1)
        eventually(lambda: "n2" in suspected_by(lc, 0), what="n1 suspects n2")
        assert "suspects" not in lc.log_path(0).read_text()


@pytest.mark.net
def test_cluster_kill_start_stop_and_down_stops_restarted_nodes(
    cluster_up: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, d = cluster_up

    def recorded() -> bool:
        try:
            return len(read_state(d)) == 3 and all(alive(s.pid) for s in read_state(d))
        except ClusterError:
            return False

    eventually(recorded, what="cluster up records three live nodes")
    wait_healthy([s.address for s in read_state(d)])
    first = {s.node_id: s.pid for s in read_state(d)}
    killed = cli("cluster", "kill", "n2", "--dir", str(d))
    assert killed.exit_code == 0, killed.output
    assert killed.output.strip() == f"killed n2 (pid {first['n2']})"
    assert not alive(first["n2"])
    again = cli("cluster", "kill", "n2", "--dir", str(d))
    assert again.exit_code == 1
    assert "n2 is not running" in again.output
    started = cli("cluster", "start", "n2", "--dir", str(d))
    assert started.exit_code == 0, started.output
    n2 = next(s for s in read_state(d) if s.node_id == "n2")
    assert n2.pid is not None
    assert n2.pid != first["n2"]
    assert alive(n2.pid)
    assert "already running" in cli("cluster", "start", "n2", "--dir", str(d)).output
    unknown = cli("cluster", "stop", "n9", "--dir", str(d))
    assert unknown.exit_code == 1
    assert "no node 'n9'" in unknown.output
    # The restarted node serves, with what it had before.
    wait_healthy([s.address for s in read_state(d)])
    with Client([n2.address]) as c:
        c.put(b"k", b"v", w=3)
    stopped = cli("cluster", "stop", "n1", "--dir", str(d))
    assert stopped.exit_code == 0, stopped.output
    assert not alive(first["n1"])
    # down stops what is left, the restarted node included, and the launcher then exits.
    down = cli("cluster", "down", "--dir", str(d))
    assert down.exit_code == 0
    assert sorted(down.output.split("\n")[:-1]) == [
        f"stopped n2 (pid {n2.pid})",
        f"stopped n3 (pid {first['n3']})",
    ]
    assert not alive(n2.pid)
    assert proc.wait(timeout=30) == 0


@pytest.mark.net
def test_cluster_up_traces_every_node_for_the_merger(tmp_path: Path) -> None:
    d, traces = tmp_path / "up", tmp_path / "traces"
    command = [sys.executable, "-m", "dynamo_ref", "cluster", "up", "--nodes", "3"]
    with (tmp_path / "launcher.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--dir", str(d), "--trace", str(traces)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def recorded() -> bool:
            try:
                return len(read_state(d)) == 3
            except ClusterError:
                return False

        eventually(recorded, what="cluster up records three nodes")
        wait_healthy([s.address for s in read_state(d)])
        with Client([s.address for s in read_state(d)]) as c:
            c.put(b"traced", b"v", w=3)
        assert cli("cluster", "down", "--dir", str(d)).exit_code == 0
        assert proc.wait(timeout=10) == 0  # not held in its own health wait by nodes gone
    finally:
        with contextlib.suppress(ClusterError):
            stop_recorded(d, timeout=5)
        proc.kill()
        proc.wait()
    assert sorted(p.name for p in traces.iterdir()) == ["n1.jsonl", "n2.jsonl", "n3.jsonl"]
    merged = cli("spec", "merge-traces", str(traces), "-o", str(tmp_path / "merged.jsonl"))
    assert merged.exit_code == 0, merged.output
    steps = [json.loads(x) for x in (tmp_path / "merged.jsonl").read_text().splitlines()]
    puts = [s for s in steps if any(a[0] == "ClientPut" for a in s.get("actions", []))]
    assert len(puts) == 1
    assert puts[0]["actions"][0][2] == "traced"


@pytest.mark.net
def test_cluster_up_stops_its_nodes_on_ctrl_c(
    cluster_up: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, d = cluster_up
    eventually(
        lambda: (d / STATE_FILE).exists() and all(alive(s.pid) for s in read_state(d)),
        what="cluster up records live nodes",
    )
    pids = [s.pid for s in read_state(d)]
    assert len(pids) == 3
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, (d.parent / "launcher.log").read_text()
    assert not any(alive(p) for p in pids)
    assert all(s.pid is None for s in read_state(d))


@pytest.mark.net
def test_the_cluster_secret_reaches_every_node(tmp_path: Path) -> None:
    options = NodeOptions(config=FAST)
    with LocalCluster(3, tmp_path / "c", options=options, secret=b"open sesame") as lc:
        lc.wait_healthy()
        with Client(lc.addresses[:1]) as c:
            c.put(b"k", b"v1", w=3)
        # n3 restarted without the secret: its peers refuse it, so W=3 cannot be met
        assert lc.stop(2) == 0
        secret_file, lc.secret_file = lc.secret_file, None
        lc.start(2)
        with Client(lc.addresses[:1], timeout=3) as c, pytest.raises(ClientError):
            c.put(b"k", b"v2", w=3)
        # with the secret again it is let back in
        assert lc.stop(2) == 0
        lc.secret_file = secret_file
        lc.start(2)

        def serves_w3() -> bool:
            try:
                with Client(lc.addresses[:1], timeout=3) as c:
                    c.put(b"k", b"v3", w=3)
            except ClientError:
                return False
            return True

        eventually(serves_w3, what="n3 with the secret acks again")
        # Changing the ring takes the secret: without it the node refuses, with it the request
        # reaches the node's own checks.
        refused = cli("leave", "nowhere", "--node", lc.addresses[0])
        assert refused.exit_code != 0
        assert "unauthorized" in refused.output
        assert secret_file is not None
        taken = cli(
            "leave", "nowhere", "--node", lc.addresses[0], "--secret-file", str(secret_file)
        )
        assert "unauthorized" not in taken.output, taken.output
