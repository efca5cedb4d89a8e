"""`dynamo-ref cluster`: a local cluster of node processes, started through the one launcher
(``launch``) with every node setting of ``node`` (``NodeConfig``'s defaults)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from dynamo_ref.cli import (
    cluster_secret,
    default_cluster_dir,
    read_secret,
)
from dynamo_ref.env import CLUSTER_DIR_ENV, SECRET_ENV
from dynamo_ref.launch import config_from_flags
from dynamo_ref.node_cli import LOG_LEVELS, config_options
from dynamo_ref.storage.sqlite import DEFAULT_SYNC, SYNC_CHOICES


@click.group()
def cluster() -> None:
    """A cluster of node processes: on this machine (ports and data directories chosen for
    you), or one node per host over SSH (`up --hosts`)."""


def _dir_option(f: Any) -> Any:
    return click.option(
        "--dir",
        "cluster_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"State, logs and data (default: ${CLUSTER_DIR_ENV} or .dynamo-ref-cluster).",
    )(f)


def _ssh_options(f: Any) -> Any:
    f = click.option("--ssh-user", help="The SSH user on the hosts (default: yours).")(f)
    f = click.option(
        "--ssh-key",
        "ssh_keys",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A private key for SSH (repeatable; default: ~/.ssh/id_* and an agent).",
    )(f)
    f = click.option(
        "--known-hosts",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The hosts' keys (default: ~/.ssh/known_hosts); unknown host keys are refused.",
    )(f)
    f = click.option(
        "--ssh-port",
        type=click.IntRange(1, 65535),
        default=22,
        show_default=True,
        help="The hosts' SSH port (or give HOST:PORT in --hosts).",
    )(f)
    return click.option(
        "--sudo", is_flag=True, help="The SSH user is not root: run iptables through sudo -n."
    )(f)


@cluster.command("up")
@click.option(
    "--nodes",
    "--node-count",
    "count",
    type=click.IntRange(1, 64),
    default=3,
    show_default=True,
    help="How many nodes (not N, the replicas per key: that is --n).",
)
@_dir_option
@click.option("--memory", is_flag=True, help="Nodes keep data in memory only.")
@click.option(
    "--sync",
    type=click.Choice(SYNC_CHOICES),
    default=DEFAULT_SYNC,
    show_default=True,
    help="SQLite synchronous of every node.",
)
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"A cluster secret for every node (else ${SECRET_ENV}, else a new one).",
)
@click.option(
    "--no-secret",
    is_flag=True,
    help="Start without a cluster secret: anyone who can reach the nodes can join them.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="What each node logs to its log file.",
)
@click.option(
    "--trace",
    "trace_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Each node writes its steps to DIR/<node>.jsonl (the per-process trace format; "
    "`dynamo-ref spec merge-traces DIR` merges them).",
)
@click.option(
    "--hosts",
    help="Run one node on each of these hosts (comma-separated, [USER@]HOST[:SSHPORT]) over SSH "
    "instead of on this machine.",
)
@click.option(
    "--remote-dir",
    default="dynamo-ref",
    show_default=True,
    help="With --hosts: the directory on each host (relative: to the SSH user's home; "
    "{host} in it stands for the host's address).",
)
@click.option(
    "--remote-python",
    default="python3",
    show_default=True,
    help="With --hosts: the Python 3.11+ on the hosts that makes the venv.",
)
@click.option(
    "--remote-venv",
    help="With --hosts: an environment on the hosts with dynamo-ref installed (no install).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=7100,
    show_default=True,
    help="With --hosts: the port every node listens on.",
)
@click.option(
    "--wipe",
    is_flag=True,
    help="With --hosts: start a new cluster, deleting the data, logs and traces an earlier "
    "one left in the nodes' directories (else the nodes start on their data).",
)
@_ssh_options
@config_options
def cluster_up(
    *,
    count: int,
    hosts: str | None,
    remote_dir: str,
    remote_python: str,
    remote_venv: str | None,
    port: int,
    ssh_user: str | None,
    ssh_keys: tuple[Path, ...],
    known_hosts: Path | None,
    ssh_port: int,
    sudo: bool,
    wipe: bool,
    cluster_dir: Path | None,
    memory: bool,
    sync: str,
    secret_file: Path | None,
    no_secret: bool,
    log_level: str,
    trace_dir: Path | None,
    **settings: Any,
) -> None:
    """Start the nodes in the foreground; Ctrl-C (or `cluster down`) stops them all.

    Every node gets the cluster secret, by default a new one written (mode 0600) to the
    cluster's directory, where `join` and `leave` find it."""
    from rich.console import Console
    from rich.table import Table

    from dynamo_ref.localcluster import (
        SECRET_FILE,
        ClusterError,
        LocalCluster,
        NodeOptions,
        is_our_node,
    )
    from dynamo_ref.localcluster import read_state as read_cluster

    directory = cluster_dir or default_cluster_dir()
    if hosts is not None:
        try:
            config = config_from_flags(settings)
        except ValueError as e:
            raise click.UsageError(f"invalid settings: {e}") from None
        if no_secret:
            raise click.UsageError("a cluster on hosts always has a secret: drop --no-secret")
        remote_up(
            hosts=hosts,
            directory=directory,
            ssh={
                "user": ssh_user,
                "keys": ssh_keys,
                "known_hosts": known_hosts,
                "port": ssh_port,
                "sudo": sudo,
            },
            remote_dir=remote_dir,
            remote_python=remote_python,
            remote_venv=remote_venv,
            port=port,
            secret=read_secret(secret_file) or secrets.token_hex(32).encode(),
            log_level=log_level,
            trace=trace_dir is not None,
            config=config,
            wipe=wipe,
        )
        return
    try:
        running = [x for x in read_cluster(directory) if is_our_node(x)]
    except ClusterError:
        running = []
    if running:
        raise click.ClickException(
            f"a cluster is already running in {directory} (pids "
            f"{', '.join(str(x.pid) for x in running)}); `dynamo-ref cluster down` first"
        )
    try:
        config = config_from_flags(settings)
    except ValueError as e:
        raise click.UsageError(f"invalid settings: {e}") from None
    if trace_dir is not None:
        trace_dir = trace_dir.resolve()  # the nodes run in their own directories
        trace_dir.mkdir(parents=True, exist_ok=True)
    options = NodeOptions(
        config=config,
        memory=memory,
        sync=sync,  # type: ignore[arg-type]
        log_level=log_level,
        trace_dir=trace_dir,
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        secret = read_secret(secret_file)
        if no_secret:
            (directory / SECRET_FILE).unlink(missing_ok=True)  # a stale one would mislead join
        elif secret is None:
            secret = cluster_secret(directory) or secrets.token_hex(32).encode()
        lc = LocalCluster(count, directory, options=options, secret=secret)
    except ClusterError as e:
        raise click.ClickException(str(e)) from None
    with lc:
        try:
            lc.wait_healthy(stop=lambda: "stopping" if stopping else None)
        except ClusterError as e:
            click.echo(f"warning: {e}", err=True)
        table = Table(title=f"dynamo-ref cluster in {lc.base_dir}")
        for col in ("node", "address", "pid", "log"):
            table.add_column(col)
        for i, x in enumerate(lc.nodes):
            table.add_row(x.node_id, x.address, str(x.pid), str(lc.log_path(i)))
        Console().print(table)
        click.echo(f"nodes: {','.join(lc.addresses)}")
        click.echo("Ctrl-C or `dynamo-ref cluster down` stops them.", err=True)
        sys.stdout.flush()
        # Until every node is gone: its own, and those `cluster start` restarted.
        while not stopping and (any(x.running for x in lc.nodes) or _any_recorded(directory)):
            time.sleep(0.2)
        click.echo("stopping the cluster", err=True)
    if stopping:
        from dynamo_ref.localcluster import stop_recorded

        with contextlib.suppress(ClusterError):
            stop_recorded(directory)


def _any_recorded(directory: Path) -> bool:
    from dynamo_ref.localcluster import ClusterError, is_our_node, read_state

    try:
        return any(is_our_node(x) for x in read_state(directory))
    except ClusterError:
        return False


def _node_argument(f: Any) -> Any:
    return click.argument("node", metavar="NODE")(f)


@cluster.command("start")
@_node_argument
@_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds for the node to listen before it counts as failed to start.",
)
def cluster_start(node: str, cluster_dir: Path | None, timeout: float) -> None:
    """Start NODE again (after `stop` or `kill`), on its data directory, at its address.

    `cluster down` stops it with the others."""
    from dynamo_ref.localcluster import ClusterError, start_recorded

    rc = _remote(cluster_dir or default_cluster_dir())
    if rc is not None:
        rc.start_timeout = timeout
        remote_start(rc, node)
        return
    try:
        x = start_recorded(cluster_dir or default_cluster_dir(), node, timeout)
    except ClusterError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"started {x.node_id} (pid {x.pid}) at {x.address}")


@cluster.command("stop")
@_node_argument
@_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds after SIGTERM before SIGKILL.",
)
def cluster_stop(node: str, cluster_dir: Path | None, timeout: float) -> None:
    """Stop NODE cleanly (SIGTERM, then SIGKILL after --timeout): it finishes its last write."""
    _signal_node(node, cluster_dir, signal.SIGTERM, timeout, "stopped")


@cluster.command("kill")
@_node_argument
@_dir_option
def cluster_kill(node: str, cluster_dir: Path | None) -> None:
    """Kill NODE (SIGKILL): a crash, losing whatever it had not made durable."""
    _signal_node(node, cluster_dir, signal.SIGKILL, 10.0, "killed")


def _signal_node(
    node: str, cluster_dir: Path | None, sig: signal.Signals, timeout: float, done: str
) -> None:
    from dynamo_ref.localcluster import ClusterError, signal_recorded

    rc = _remote(cluster_dir or default_cluster_dir())
    if rc is not None:
        remote_signal(rc, node, sig.name.removeprefix("SIG"), timeout, done)
        return
    try:
        x = signal_recorded(cluster_dir or default_cluster_dir(), node, sig, timeout)
    except ClusterError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{done} {x.node_id} (pid {x.pid})")


@cluster.command("down")
@_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds after SIGTERM before SIGKILL.",
)
def cluster_down(cluster_dir: Path | None, timeout: float) -> None:
    """Stop the nodes `cluster up` started, by PID (SIGTERM, then SIGKILL after --timeout)."""
    from dynamo_ref.localcluster import ClusterError, stop_recorded

    directory = cluster_dir or default_cluster_dir()
    rc = _remote(directory)
    if rc is not None:
        remote_down(rc, directory)
        return
    try:
        stopped = stop_recorded(directory, timeout)
    except ClusterError as e:
        raise click.ClickException(str(e)) from None
    if not stopped:
        click.echo(f"no running nodes in {directory}")
    for x in stopped:
        click.echo(f"stopped {x.node_id} (pid {x.pid})")


# ---- clusters on hosts over SSH ---------------------------------------------------------------


def _remote(directory: Path) -> Any:
    from dynamo_ref.remote.deploy import read_remote_state

    return read_remote_state(directory)


def _run_remote(coro: Any) -> Any:
    import asyncio

    from dynamo_ref.remote.ssh import RemoteError

    try:
        return asyncio.run(coro)
    except RemoteError as e:
        raise click.ClickException(str(e)) from None


def remote_up(
    *,
    hosts: str,
    directory: Path,
    ssh: dict[str, Any],
    remote_dir: str,
    remote_python: str,
    remote_venv: str | None,
    port: int,
    secret: bytes,
    log_level: str,
    trace: bool,
    config: Any,
    wipe: bool,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from dynamo_ref.localcluster import SECRET_FILE
    from dynamo_ref.remote.deploy import RemoteCluster
    from dynamo_ref.remote.ssh import HostPool, SshOptions

    names = [h.strip() for h in hosts.split(",") if h.strip()]
    existing = _remote(directory)
    if existing is not None and any(p is not None for p in existing.pids.values()):
        raise click.ClickException(
            f"a cluster on {', '.join(existing.hosts)} is recorded in {directory}; "
            "`dynamo-ref cluster down` first"
        )
    options = SshOptions(
        user=ssh["user"],
        keys=tuple(ssh["keys"]),
        known_hosts=ssh["known_hosts"],
        port=ssh["port"],
        sudo=ssh["sudo"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    secret_path = directory / SECRET_FILE
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # a file that was there keeps no wider mode
        f.write(secret + b"\n")

    async def up() -> RemoteCluster:
        async with HostPool(options) as pool:
            try:
                rc = RemoteCluster(
                    names,
                    pool,
                    directory,
                    remote_dir=remote_dir,
                    port=port,
                    python=remote_python,
                    venv=remote_venv,
                    config=config,
                    log_level=log_level,
                    trace=trace,
                )
            except ValueError as e:
                raise click.UsageError(str(e)) from None
            rc.save()
            try:
                await rc.up(secret, wipe=wipe)
            except BaseException:
                # Nothing half-started stays behind; the first error is the one to report.
                with contextlib.suppress(Exception):
                    await rc.down()
                raise
            return rc

    rc = _run_remote(up())
    table = Table(title=f"dynamo-ref cluster on {len(rc.nodes)} hosts (state in {directory})")
    for col in ("node", "host", "address", "pid", "directory"):
        table.add_column(col, no_wrap=True)
    for n in rc.nodes:
        table.add_row(n.node_id, n.host, n.address, str(rc.pids[n.node_id]), n.dir)
    Console().print(table)
    click.echo(f"nodes: {','.join(n.address for n in rc.nodes)}")
    click.echo("`dynamo-ref cluster down` stops them (and fetches their logs).", err=True)


def remote_signal(rc: Any, node: str, sig: str, timeout: float, done: str) -> None:
    async def go() -> bool:
        try:
            rc.node(node)
        except KeyError as e:
            raise click.ClickException(str(e.args[0])) from None
        try:
            return bool(await rc.signal(node, sig, wait=timeout))
        finally:
            await rc.pool.close()

    pid = rc.pids.get(node)
    if not _run_remote(go()):
        raise click.ClickException(f"{node} is not running")
    click.echo(f"{done} {node} (pid {pid}) on {rc.node(node).host}")


def remote_start(rc: Any, node: str) -> None:
    async def go() -> int:
        try:
            rc.node(node)
        except KeyError as e:
            raise click.ClickException(str(e.args[0])) from None
        try:
            if await rc.running(node):
                raise click.ClickException(f"{node} is running already")
            return int(await rc.start(node))
        finally:
            await rc.pool.close()

    pid = _run_remote(go())
    n = rc.node(node)
    click.echo(f"started {node} (pid {pid}) on {n.host} at {n.address}")


def remote_down(rc: Any, directory: Path) -> None:
    async def go() -> list[str]:
        try:
            stopped = await rc.down()
            await rc.collect(directory)
            return list(stopped)
        finally:
            await rc.pool.close()

    stopped = _run_remote(go())
    if not stopped:
        click.echo(f"no running nodes on {', '.join(rc.hosts)}")
    for node in stopped:
        click.echo(f"stopped {node} on {rc.node(node).host}")
    click.echo(f"logs: {directory}/<node>/node.log")
