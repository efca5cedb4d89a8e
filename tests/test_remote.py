"""Clusters on hosts over SSH, against real OpenSSH servers: the hosts are network namespaces
on a bridge (tests/ssh_hosts.py), root only.

What is checked: `cluster up --hosts` installs and starts a node on each host, the data
commands and `status` reach them, `cluster kill/start/stop` act by PID on the right host,
`cluster down` leaves nothing running there; and every way SSH can fail is a clear error that
names the host, within its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ssh_hosts import SshHosts, missing

from dynamo_ref.remote.deploy import INSTALLED_MARK
from dynamo_ref.remote.ssh import HostPool, RemoteError, SshOptions
from harness.cli import main
from harness.run import RunConfig, RunResult, make_target, run_once

pytestmark = [pytest.mark.net, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

PYTHON = os.path.realpath(sys.executable)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHosts]:
    h = SshHosts(3, tmp_path_factory.mktemp("hosts")).start()
    try:
        yield h
    finally:
        h.stop()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ssh_args(h: SshHosts) -> list[str]:
    return ["--ssh-user", "root", "--ssh-key", str(h.key), "--known-hosts", str(h.known_hosts)]


def node_pids(h: SshHosts) -> list[int]:
    """The dynamo-ref node processes running on the hosts."""
    out = []
    for pid in h.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"dynamo-ref") for part in cmd) and b"node" in cmd:
            out.append(pid)
    return out


def test_a_cluster_on_three_hosts_over_ssh(hosts: SshHosts, tmp_path: Path) -> None:
    d = str(tmp_path / "c")
    remote = str(tmp_path / "remote-{host}")
    up = cli(
        "cluster",
        "up",
        "--hosts",
        ",".join(hosts.addresses),
        "--dir",
        d,
        "--remote-dir",
        remote,
        "--remote-python",
        PYTHON,
        *ssh_args(hosts),
        "--w",
        "3",
    )
    try:
        assert up.exit_code == 0, up.output
        assert len(node_pids(hosts)) == 3
        state = json.loads((tmp_path / "c" / "cluster.json").read_text())
        a1, a2, a3 = (f"{a}:7100" for a in hosts.addresses)
        assert [n["address"] for n in state["nodes"]] == [a1, a2, a3]
        # the secret went to each host's node directory, readable by its owner only
        secret = Path(remote.replace("{host}", hosts.addresses[1])) / "n2" / "secret"
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        assert secret.read_bytes() == (tmp_path / "c" / "secret").read_bytes()
        # W=3 needs every peer link up: wait for a probe write to go through first.
        assert eventually(lambda: cli("put", "probe", "x", "--dir", d).exit_code == 0)
        assert cli("put", "user:42", "alice", "--dir", d).exit_code == 0
        got = cli("get", "user:42", "--dir", d, "--r", "3", "--json")
        assert json.loads(got.output)["siblings"] == ["alice"]
        killed = cli("cluster", "kill", "n2", "--dir", d)
        assert killed.exit_code == 0, killed.output
        assert (
            f"killed n2 (pid {state['nodes'][1]['pid']}) on {hosts.addresses[1]}" in killed.output
        )
        assert len(node_pids(hosts)) == 2
        status = cli("status", "--dir", d)
        assert status.exit_code == 1
        assert f"n2 at {a2}: no answer" in status.output
        restarted = cli("cluster", "start", "n2", "--dir", d)
        assert restarted.exit_code == 0, restarted.output
        assert eventually(lambda: cli("status", "--dir", d).exit_code == 0)
        # the restarted node has its data (once its peers' links are back: R=3 needs it)
        assert eventually(lambda: _read(d) == ["alice"]), _read(d)
        again = cli("cluster", "start", "n2", "--dir", d)
        assert again.exit_code == 1
        assert "n2 is running already" in again.output
        stopped = cli("cluster", "stop", "n3", "--dir", d)
        assert stopped.exit_code == 0, stopped.output
    finally:
        down = cli("cluster", "down", "--dir", d)
    assert down.exit_code == 0, down.output
    assert "stopped n1" in down.output
    assert node_pids(hosts) == []
    # logs came back to the cluster's directory
    assert "listening on" in (tmp_path / "c" / "n1" / "node.log").read_text()
    # Up again: the nodes start on their data; with --wipe, on none.
    runs: list[tuple[tuple[str, ...], list[str]]] = [((), ["alice"]), (("--wipe",), [])]
    for wipe, expected in runs:
        again = cli(
            "cluster",
            "up",
            "--hosts",
            ",".join(hosts.addresses),
            "--dir",
            d,
            "--remote-dir",
            remote,
            "--remote-python",
            PYTHON,
            *ssh_args(hosts),
            *wipe,
        )
        try:
            assert again.exit_code == 0, again.output
            assert eventually(functools.partial(_reads, d, expected)), _read(d)
        finally:
            assert cli("cluster", "down", "--dir", d).exit_code == 0
        assert node_pids(hosts) == []


def _reads(d: str, expected: list[str]) -> bool:
    return _read(d) == expected


def _read(d: str) -> object:
    got = cli("get", "user:42", "--dir", d, "--r", "3", "--json")
    return json.loads(got.output)["siblings"] if got.exit_code == 0 else got.output


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_host_without_python_3_11_is_named(hosts: SshHosts, tmp_path: Path) -> None:
    up = cli(
        "cluster",
        "up",
        "--hosts",
        hosts.addresses[0],
        "--dir",
        str(tmp_path / "c"),
        "--remote-dir",
        str(tmp_path / "r-{host}"),
        "--remote-python",
        "/bin/false",
        *ssh_args(hosts),
    )
    assert up.exit_code == 1
    assert f"{hosts.addresses[0]}: /bin/false there is not Python 3.11 or later" in up.output
    assert node_pids(hosts) == []


def _pool(h: SshHosts, **changes: object) -> HostPool:
    settings: dict[str, object] = {
        "user": "root",
        "keys": (h.key,),
        "known_hosts": h.known_hosts,
        "connect_timeout": 3.0,
    }
    settings.update(changes)
    return HostPool(SshOptions(**settings))  # type: ignore[arg-type]


def _fails(
    pool: HostPool, host: str, command: str = "true", timeout: float | None = None
) -> RemoteError:
    async def go() -> None:
        async with pool:
            await pool.run(host, command, timeout=timeout)

    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        asyncio.run(go())
    assert time.monotonic() - started < 10
    assert str(info.value).startswith(host)
    return info.value


def test_every_ssh_failure_names_the_host(hosts: SshHosts, tmp_path: Path) -> None:
    a = hosts.addresses[0]
    # nobody at that address: no answer within the connect timeout
    silent = f"{hosts.subnet}.250"
    assert "no SSH answer within 3s" in str(_fails(_pool(hosts), silent))
    # a key the host does not take
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    assert "login was refused" in str(_fails(_pool(hosts, keys=(other,)), a))
    # a host key that is not known
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    assert "host key is not in the known hosts" in str(_fails(_pool(hosts, known_hosts=empty), a))
    # a command that hangs is cut off at its timeout, and one that fails says how
    hung = _fails(_pool(hosts), a, "sleep 30", timeout=1.0)
    assert "no end within 1s" in str(hung)
    assert "sleep 30" in str(hung)
    failed = _fails(_pool(hosts), a, "echo oops >&2; exit 7")
    assert failed.status == 7
    # the command's stderr, at the end (a login's own noise may come first: see ssh_hosts.py)
    assert "; stderr: " in str(failed)
    assert str(failed).endswith("oops")


def test_control_the_same_pool_runs_commands(hosts: SshHosts) -> None:
    async def go() -> list[str]:
        async with _pool(hosts) as pool:
            return [await pool.run(a, "hostname -I") for a in hosts.addresses]

    assert [out.split()[0] for out in asyncio.run(go())] == hosts.addresses


def _campaign(hosts: SshHosts, tmp_path: Path) -> tuple[Result, dict[str, dict[str, Any]]]:
    """One campaign over SSH, a run for each of dvv and lww: mode -> its run's summary."""
    out = tmp_path / "runs"
    result = cli(
        "campaign",
        "--hosts",
        ",".join(hosts.addresses),
        *ssh_args(hosts),
        # One home for the three hosts (they share this file system, as an NFS home would):
        # one venv, which one node's deploy installs under the lock and the others find made;
        # the second run finds it marked and installs nothing.
        "--remote-dir",
        str(tmp_path / "remote"),
        "--remote-python",
        PYTHON,
        "--matrix",
        "--mode",
        "dvv,lww",
        # 10 s: the seed's schedule reaches its kill at 5.9 s of fault time, and every
        # fault step here costs SSH round trips (under load, 8 s sometimes ran out first).
        "--time",
        "10",
        "--nemesis",
        "partition,kill,pause",
        "--keys",
        "3",
        "--clients",
        "6",
        "--seed",
        "2",
        "--out",
        str(out),
    )
    (summary,) = (out / "latest").glob("summary.json")
    runs = json.loads(summary.read_text())["runs"]
    return result, {r["config"]["mode"]: r for r in runs}


def test_a_campaign_over_ssh_dvv_loses_nothing_and_lww_is_caught(
    hosts: SshHosts, tmp_path: Path
) -> None:
    result, runs = _campaign(hosts, tmp_path)
    assert result.exit_code == 1, result.output  # the worst verdict: lww's
    assert {name: c["verdict"] for name, c in runs["dvv"]["checks"].items()} == {
        "lost_writes": "valid",
        "dynamo": "valid",
        "convergence": "valid",
    }
    # the control: last-writer-wins under the same faults loses acknowledged writes
    assert runs["lww"]["checks"]["lost_writes"]["verdict"] == "invalid"
    # the nemesis cut links, killed and paused nodes on the hosts
    assert {"start-partition", "start-kill", "start-pause"} <= _faults(tmp_path, "dvv")
    assert "start-partition" in _faults(tmp_path, "lww")
    # control: hosts that stay up are never recorded as lost
    assert "start-host-down" not in _faults(tmp_path, "dvv") | _faults(tmp_path, "lww")
    assert node_pids(hosts) == [], "nothing is left running on the hosts"
    logs = list((tmp_path / "runs" / "latest").glob("*/cluster/n1/node.log"))
    assert len(logs) == 2, "the nodes' logs came back"
    venvs = [p.parent.parent for p in tmp_path.glob("remote/**/bin/python")]
    assert len(venvs) == 1, venvs
    assert (venvs[0] / INSTALLED_MARK).exists()


def _faults(tmp_path: Path, mode: str) -> set[str]:
    (history,) = (tmp_path / "runs" / "latest").glob(f"*_{mode}_*/history.jsonl")
    ops = [json.loads(line) for line in history.read_text().splitlines()]
    return {op["f"] for op in ops if op["process"] == "nemesis"}


EXAMPLES = Path(__file__).parent.parent / "harness" / "examples"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("program", "verdict"),
    [("lin_kv_leader.py", "valid"), ("lin_kv_stale_reads.py", "invalid")],
)
def test_external_programs_on_hosts_are_passed_or_caught(
    hosts: SshHosts, tmp_path: Path, program: str, verdict: str
) -> None:
    """A Maelstrom-protocol program on each host, its stdin and stdout over SSH: the harness
    routes its messages, so partitions are the router's. Isolating a node cuts a follower off
    the leader's replication, so every run has stale reads to serve (as in the local test)."""
    cfg = RunConfig(
        nodes=3,
        duration=6.0,
        clients=4,
        keys=4,
        seed=1,
        out=tmp_path / "run",
        target="external",
        workload="register",
        program=(PYTHON, str(EXAMPLES / program)),
        nemesis=("partition",),
        patterns=("isolate",),
        fault_time=(0.8, 1.5),
        heal_time=(0.3, 0.6),
        settle=1.0,
        quiesce=10.0,
        hosts=tuple(hosts.addresses),
        ssh_user="root",
        ssh_keys=(str(hosts.key),),
        known_hosts=str(hosts.known_hosts),
    )
    seen: list[int] = []

    async def run() -> RunResult:
        target = make_target(cfg)
        assert target.name.endswith("on 3 hosts")

        async def watch() -> None:
            # The programs run in the hosts' namespaces, not here.
            while True:
                seen.extend(p for p in hosts.pids() if _is_program(p, program))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        try:
            return await run_once(cfg, target=target)
        finally:
            watcher.cancel()

    result = asyncio.run(run())
    assert len(set(seen)) >= 3
    assert "start-partition" in {op.f for op in result.history if op.process == "nemesis"}
    assert result.checks["linearizable"].verdict == verdict, result.checks["linearizable"]
    assert not [p for p in hosts.pids() if _is_program(p, program)], "programs left running"


def _is_program(pid: int, program: str) -> bool:
    try:
        return program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def doomed_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHosts]:
    """Hosts of a test's own: one of them dies in it."""
    h = SshHosts(3, tmp_path_factory.mktemp("doomed")).start()
    try:
        yield h
    finally:
        h.stop()


# In make test-slow with the other host-death test (14 s, mostly waiting on the dead host).
@pytest.mark.slow
def test_a_dead_host_under_an_external_program_does_not_hold_its_kill_or_teardown(
    doomed_hosts: SshHosts,
) -> None:
    """The host of n3's program dies (link down, its processes killed): its SSH channel never
    closes, yet killing n3 and tearing the target down end within their timeouts (the host is
    probed and dropped), and the programs on the live hosts are stopped. Without the probe, the
    kill waited on the dead channel for good (the guard below)."""
    h = doomed_hosts
    program = "lin_kv_leader.py"
    cfg = RunConfig(
        nodes=3,
        target="external",
        workload="register",
        program=(PYTHON, str(EXAMPLES / program)),
        hosts=tuple(h.addresses),
        ssh_user="root",
        ssh_keys=(str(h.key),),
        known_hosts=str(h.known_hosts),
    )

    async def go() -> float:
        target = make_target(cfg)
        await target.setup()
        try:
            assert len([p for p in h.pids() if _is_program(p, program)]) == 3
            await asyncio.to_thread(h.kill_host, h.addresses[2])
            started = time.monotonic()
            await asyncio.wait_for(target.kill("n3"), 60)
        finally:
            await asyncio.wait_for(target.teardown(), 60)
        return time.monotonic() - started

    elapsed = asyncio.run(go())
    # a `kill` that times out (10 s), a probe (3 s), and the live hosts' stops
    assert elapsed < 40
    assert not [p for p in h.pids() if _is_program(p, program)], "programs left running"


# About a minute each on hosts over SSH: in `make test-slow`, to keep `make test` under 20 min.
@pytest.mark.slow
def test_a_host_that_dies_mid_run_is_a_fault_and_the_verdict_unknown(
    doomed_hosts: SshHosts, tmp_path: Path
) -> None:
    """Two seconds into the load, the third host dies for good (its link down, every process
    on it killed): the nemesis records it as a fault naming the host, the run finishes within
    its timeouts, its replicas there are unreadable, so convergence, and the run, are unknown,
    not valid; what the two live hosts hold is still judged (nothing lost)."""
    h = doomed_hosts
    dead = h.addresses[2]
    cfg = RunConfig(
        nodes=3,
        duration=8.0,
        clients=6,
        keys=3,
        seed=2,
        out=tmp_path / "run",
        workload="set-add",
        nemesis=("partition", "pause"),
        quiesce=6.0,
        settle=1.0,
        hosts=tuple(h.addresses),
        ssh_user="root",
        ssh_keys=(str(h.key),),
        known_hosts=str(h.known_hosts),
        remote_dir=str(tmp_path / "remote-{host}"),
        remote_python=PYTHON,
    )
    killer: list[asyncio.Task[None]] = []

    async def die() -> None:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(h.kill_host, dead)

    def progress(phase: str, _fraction: float, _status: object = None) -> None:
        if phase == "running" and not killer:
            killer.append(asyncio.get_running_loop().create_task(die()))

    started = time.monotonic()
    result = asyncio.run(run_once(cfg, progress))
    elapsed = time.monotonic() - started
    assert killer
    assert killer[0].done()
    downs = [op for op in result.history if op.f == "start-host-down"]
    assert len(downs) == 1, [op.f for op in result.history if op.process == "nemesis"]
    value = downs[0].value
    assert isinstance(value, dict)
    assert value["nodes"] == ["n3"]
    assert str(value["error"]).startswith(dead)
    assert not [op for op in result.history if op.f == "stop-host-down"], "a dead host stays down"
    assert {"fault": "host-down", "nodes": ["n3"], "error": value["error"]} in result.faults
    verdicts = {name: c.verdict for name, c in result.checks.items()}
    assert verdicts == {"lost_writes": "valid", "dynamo": "valid", "convergence": "unknown"}
    assert result.verdict == "unknown"
    unreadable = result.checks["convergence"].details["unreadable"]
    assert isinstance(unreadable, dict)
    assert unreadable
    assert {tuple(nodes) for nodes in unreadable.values()} == {("n3",)}
    # setup about 10 s, 8 s of load, quiesce at most 6 s: the dead host costs a few timeouts
    assert elapsed < 90, result.timings
    assert node_pids(h) == [], "nothing is left running on the live hosts"


def _alive_by_pid_files(h: SshHosts, remote: str) -> list[str]:
    """Over SSH, on each host: the node pid files whose PID still runs."""

    async def go() -> list[str]:
        async with _pool(h) as pool:
            found: list[str] = []
            for a in h.addresses:
                found += (
                    await pool.run(
                        a,
                        f"for f in {remote.replace('{host}', a)}/n*/node.pid; do "
                        '[ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && echo "$f"; done; true',
                    )
                ).split()
            return found

    return asyncio.run(go())


def _chains(h: SshHosts) -> list[str]:
    """The hosts whose firewall still has the harness's chain."""

    async def go() -> list[str]:
        async with _pool(h) as pool:
            return [
                a
                for a in h.addresses
                if (
                    await pool.run(a, "iptables -S DYNAMO_REF >/dev/null 2>&1 && echo yes; true")
                ).strip()
                == "yes"
            ]

    return asyncio.run(go())


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "running"])
def test_ctrl_c_leaves_nothing_running_on_the_hosts(
    hosts: SshHosts, tmp_path: Path, when: str
) -> None:
    """`dynamo-ref campaign --hosts` as a process of its own, sent SIGINT (Ctrl-C) while its
    nodes start (a start cut short leaves its PID only in the host's pid file) or while its
    load runs: it exits within its timeouts, and no node process, pid file's PID or iptables
    chain is left on any host. Control: just before the SIGINT the same checks see the
    nodes."""
    remote = str(tmp_path / "remote-{host}")
    args = ["--remote-dir", remote, "--remote-python", PYTHON, "--nemesis", "partition,pause"]
    with _campaign_process(hosts, tmp_path, args) as (proc, log):
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            if when == "starting" and node_pids(hosts):
                break
            if when == "running" and ": running" in log.read_text():
                break
            time.sleep(0.05)
        if when == "running":
            assert len(node_pids(hosts)) == 3
            assert len(_alive_by_pid_files(hosts, remote)) == 3
            assert _chains(hosts) == hosts.addresses
        else:
            assert node_pids(hosts)
        _interrupt(proc, log)
    assert node_pids(hosts) == [], log.read_text()
    assert _alive_by_pid_files(hosts, remote) == []
    assert _chains(hosts) == []


@contextlib.contextmanager
def _campaign_process(
    hosts: SshHosts, tmp_path: Path, args: list[str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`dynamo-ref campaign --hosts ... ARGS` for 60 s as a process of its own, with its log;
    killed by PID if a check fails before it exits."""
    argv = [
        str(Path(sys.executable).parent / "dynamo-ref"),
        "campaign",
        "--hosts",
        ",".join(hosts.addresses),
        *ssh_args(hosts),
        *args,
        *("--time", "60", "--keys", "3", "--clients", "3", "--out", str(tmp_path / "runs")),
    ]
    log = tmp_path / "campaign.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C: the campaign exits within its timeouts (40 s), not with success."""
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = proc.wait(timeout=60)
    assert code != 0, log.read_text()
    assert time.monotonic() - started < 40, log.read_text()


def _etcd_pids(h: SshHosts) -> list[int]:
    return [p for p in h.pids() if _is_program(p, "--initial-cluster-token")]


# etcd's (12 s) in make test-slow with the other Ctrl-C tests; the external one takes 3 s.
@pytest.mark.parametrize("target", [pytest.param("etcd", marks=pytest.mark.slow), "external"])
def test_ctrl_c_leaves_no_etcd_member_or_program_on_the_hosts(
    hosts: SshHosts, tmp_path: Path, target: str
) -> None:
    """As above for the other targets on hosts: `campaign --target etcd` (members started over
    SSH, iptables chains) and `--target external` (programs whose pipes are SSH channels), sent
    SIGINT while their load runs, exit within their timeouts and leave no member, program or
    chain on any host. Control: just before the SIGINT the same checks see all three."""
    program = "lin_kv_leader.py"
    extra = (
        ["--remote-dir", str(tmp_path / "remote-{host}"), "--nemesis", "partition,pause"]
        if target == "etcd"
        else ["--program", f"{PYTHON} {EXAMPLES / program}", "--nemesis", "partition"]
    )

    def running() -> list[int]:
        if target == "etcd":
            return _etcd_pids(hosts)
        return [p for p in hosts.pids() if _is_program(p, program)]

    with _campaign_process(hosts, tmp_path, ["--target", target, *extra]) as (proc, log):
        deadline = time.monotonic() + 120
        while ": running" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert len(running()) == 3
        if target == "etcd":
            assert _chains(hosts) == hosts.addresses
        _interrupt(proc, log)
    assert running() == [], log.read_text()
    assert _chains(hosts) == []


@pytest.mark.slow
def test_etcd_on_hosts_under_faults_is_linearizable(hosts: SshHosts, tmp_path: Path) -> None:
    """etcd members on the hosts over SSH (the hosts' own etcd), cut apart with iptables
    there, killed and paused by PID: the register history is linearizable; control: the same
    history with one read made stale is not. Nothing of etcd is left running afterwards."""
    from test_etcd_campaign import make_stale

    from harness.run import linearizable_result

    cfg = RunConfig(
        nodes=3,
        duration=8.0,
        clients=4,
        keys=2,
        seed=3,
        out=tmp_path / "run",
        target="etcd",
        workload="register",
        nemesis=("partition", "kill", "pause"),
        fault_time=(0.8, 1.5),
        heal_time=(0.3, 0.6),
        settle=1.0,
        quiesce=5.0,
        hosts=tuple(hosts.addresses),
        ssh_user="root",
        ssh_keys=(str(hosts.key),),
        known_hosts=str(hosts.known_hosts),
        remote_dir=str(tmp_path / "remote-{host}"),
    )
    seen: list[int] = []

    async def run() -> RunResult:
        target = make_target(cfg)
        assert target.name == "etcd on 3 hosts"

        async def watch() -> None:
            while True:
                seen.extend(_etcd_pids(hosts))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        try:
            return await run_once(cfg, target=target)
        finally:
            watcher.cancel()

    result = asyncio.run(run())
    assert len(set(seen)) >= 3, "the members ran in the hosts' namespaces"
    nemesis = {op.f for op in result.history if op.process == "nemesis"}
    assert {"start-partition", "start-kill", "start-pause"} <= nemesis
    assert "error" not in nemesis, [op.value for op in result.history if op.f == "error"]
    assert result.checks["linearizable"].verdict == "valid", result.checks["linearizable"]
    assert result.verdict == "valid", result.checks
    altered, read = make_stale(list(result.history))
    assert linearizable_result(altered, 30.0).verdict == "invalid", read
    assert _etcd_pids(hosts) == [], "etcd left running"
    assert (tmp_path / "run" / "cluster" / "etcd0.log").stat().st_size > 0


def test_a_host_without_etcd_is_named(hosts: SshHosts, tmp_path: Path) -> None:
    from harness.targets.remote_etcd import RemoteEtcdTarget

    target = RemoteEtcdTarget(
        hosts.addresses,
        tmp_path / "c",
        ssh=_pool(hosts).options,
        remote_dir=str(tmp_path / "r-{host}"),
        etcd_bin="/nonexistent/etcd",
    )
    with pytest.raises(RemoteError) as info:
        asyncio.run(target.setup())
    assert str(info.value).startswith(hosts.addresses[0])
    assert "etcd (/nonexistent/etcd) is not installed there" in str(info.value)
    assert _etcd_pids(hosts) == []


def _clock_target(h: SshHosts, tmp_path: Path, *, faketime: bool = True) -> Any:
    from harness.targets.remote import RemoteMaelstromTarget

    return RemoteMaelstromTarget(
        [PYTHON, str(Path(__file__).parent / "clock_node.py")],
        h.addresses,
        ssh=_pool(h).options,
        faketime=faketime,
        remote_dir=str(tmp_path / "r-{host}"),
    )


def test_clock_skew_of_external_programs_on_hosts_with_libfaketime(
    hosts: SshHosts, tmp_path: Path
) -> None:
    """A program on each host under libfaketime: a skew moves that program's wall clock by
    the amount asked, at once, and a skew of 0 brings it back; control: before any skew, and
    on the node not skewed, the program's clock is the real one."""
    target = _clock_target(hosts, tmp_path)

    async def go() -> list[tuple[str, float]]:
        await target.setup()
        try:
            n1, n2 = await target.client("n1"), await target.client("n2")

            async def offset(c: Any) -> float:
                return float(await c.read("t")) - time.time()

            seen = [("before", await offset(n1))]
            for skew in (3600.0, -90.5):
                await target.set_clock_skew("n1", skew)
                seen += [(f"n1 {skew:+g}", await offset(n1) - skew), ("n2", await offset(n2))]
            await target.set_clock_skew("n1", 0.0)
            seen.append(("healed", await offset(n1)))
            return seen
        finally:
            await target.teardown()

    seen = asyncio.run(go())
    assert all(abs(off) < 2.0 for _, off in seen), seen
    assert not [p for p in hosts.pids() if _is_program(p, "clock_node.py")], "left running"


def test_clock_skew_without_libfaketime_is_refused_naming_the_host(
    hosts: SshHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.targets import remote

    monkeypatch.setattr(remote, "FAKETIME_LIBS", ("/nonexistent/libfaketime.so.1",))
    target = _clock_target(hosts, tmp_path)
    with pytest.raises(RemoteError) as info:
        asyncio.run(target.setup())
    assert any(str(info.value).startswith(f"{a}: ") for a in hosts.addresses), info.value
    assert "libfaketime is not installed there" in str(info.value)
    # without libfaketime a skew is refused, not silently dropped
    plain = _clock_target(hosts, tmp_path, faketime=False)
    with pytest.raises(RemoteError, match="needs the program run under libfaketime"):
        asyncio.run(plain.set_clock_skew("n2", 5.0))
    assert not [p for p in hosts.pids() if _is_program(p, "clock_node.py")]
