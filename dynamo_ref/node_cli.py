"""`dynamo-ref node`: run one node. Its settings' options are built from ``launch.CONFIG_FLAGS``,
with ``NodeConfig``'s defaults, so the command line, the launchers and the core agree."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dynamo_ref.cli import (
    _not_on_the_command_line,
    _token,
    parse_address,
    read_secret,
    run_loop,
    validate_address,
    validate_listen,
    validate_members,
    validate_seeds,
)
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.env import SECRET_ENV, TOKEN_ENV
from dynamo_ref.launch import CONFIG_FLAGS, DEFAULTS, READY_PREFIX, config_from_flags
from dynamo_ref.localcluster import STORE_FILE
from dynamo_ref.storage.sqlite import DEFAULT_SYNC, SYNC_CHOICES

LOG_LEVELS = ("debug", "info", "warning", "error")
MODES = [m.value for m in VersionMode]


def _power_of_two(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of 2")
    return value


def config_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """One option per ``NodeConfig`` setting, its default taken from ``NodeConfig``."""
    for flag in reversed(CONFIG_FLAGS):
        default = getattr(DEFAULTS, flag.field)
        common: dict[str, Any] = {"show_default": True, "help": flag.help}
        if flag.kind == "bool":
            f = click.option(f"{flag.flag}/{flag.off}", flag.field, default=default, **common)(f)
        elif flag.kind == "mode":
            choice = click.Choice(MODES)
            f = click.option(flag.flag, flag.field, type=choice, default=default.value, **common)(f)
        elif flag.kind == "int":
            kind: click.ParamType[Any] = click.IntRange(
                None if flag.low is None else int(flag.low),
                None if flag.high is None else int(flag.high),
            )
            callback = _power_of_two if flag.field == "partitions" else None
            f = click.option(
                flag.flag, flag.field, type=kind, default=default, callback=callback, **common
            )(f)
        else:
            kind = click.FloatRange(min=flag.low, max=flag.high)
            f = click.option(flag.flag, flag.field, type=kind, default=default, **common)(f)
    return f


def _routes(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> list[tuple[str, str]]:
    return validate_members(ctx, param, value, what="a route")


@click.command()
@click.option("--id", "node_id", required=True, help="This node's id (stable across restarts).")
@click.option("--listen", required=True, callback=validate_listen, help="HOST:PORT to listen on.")
@click.option(
    "--advertise", callback=validate_address, help="HOST:PORT peers use (default: --listen)."
)
@click.option(
    "--member",
    "members",
    multiple=True,
    callback=validate_members,
    metavar="ID=HOST:PORT",
    help="A node of the initial ring (repeatable; give every node the same list).",
)
@click.option(
    "--seeds",
    multiple=True,
    callback=validate_seeds,
    help="HOST:PORT,... of nodes to join through (without --member).",
)
@click.option(
    "--route",
    "routes",
    multiple=True,
    callback=_routes,
    metavar="ID=HOST:PORT",
    help="Always reach node ID at this address, whatever gossip says (repeatable).",
)
@click.option("--zone", help="This node's zone, when it joins through a seed.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the durable store lives (required unless --memory).",
)
@click.option("--memory", is_flag=True, help="Keep data in memory only: lost on a crash.")
@click.option(
    "--sync",
    type=click.Choice(SYNC_CHOICES),
    default=DEFAULT_SYNC,
    show_default=True,
    help="SQLite synchronous: full survives kill -9 and power loss; normal and off are faster.",
)
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"The cluster secret (else ${SECRET_ENV}).",
)
@click.option(
    "--client-token-file",
    "client_token",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_token,
    help=f"Clients must present the token in this file (else ${TOKEN_ENV}); needs a secret.",
)
@click.option(
    "--client-token",
    "client_token_value",
    hidden=True,
    expose_value=False,
    callback=_not_on_the_command_line,
)
@click.option(
    "--max-inflight",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Client requests the node takes at once: past it a connection past its share is "
    "not read, and past twice it new requests fail at once with `overload`.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Client connections at once (kept below the file limit); one more is refused.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.001),
    default=300.0,
    show_default=True,
    help="Seconds after which a client connection with nothing to do is closed.",
)
@click.option(
    "--max-frame",
    type=click.IntRange(1024),
    default=16 << 20,
    show_default=True,
    help="Largest frame accepted, in bytes.",
)
@click.option("--listen-fd", type=int, help="An inherited socket already bound to --listen.")
@click.option(
    "--client-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also serve clients on this Unix socket.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="warning",
    show_default=True,
    help="What the node logs on stderr: info shows suspicion, hints, handoff, transfers.",
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the node's own steps to this file (the per-process trace format).",
)
@config_options
def node(
    *,
    node_id: str,
    listen: str,
    advertise: str | None,
    members: list[tuple[str, str]],
    seeds: tuple[str, ...],
    routes: list[tuple[str, str]],
    zone: str | None,
    data_dir: Path | None,
    memory: bool,
    sync: str,
    secret_file: Path | None,
    client_token: str | None,
    max_inflight: int,
    max_connections: int,
    idle_timeout: float,
    max_frame: int,
    listen_fd: int | None,
    client_socket: Path | None,
    log_level: str,
    trace: Path | None,
    **settings: Any,
) -> None:
    """Run one node; prints "listening on HOST:PORT" once it serves. SIGTERM stops it."""
    from dynamo_ref.net.server import ServerOptions

    if not node_id.strip():
        raise click.BadParameter("the node id is empty", param_hint="--id")
    if data_dir is None and not memory:
        raise click.UsageError("give --data-dir, or --memory for a node without durable storage")
    if members and node_id not in {m for m, _ in members}:
        raise click.UsageError(f"--member lists the initial ring; it must include {node_id}")
    try:
        config = config_from_flags(settings)
    except ValueError as e:
        raise click.UsageError(f"invalid settings: {e}") from None
    secret = read_secret(secret_file)
    if client_token is not None and secret is None:
        raise click.UsageError(
            "a client token needs a cluster secret (--secret-file or "
            f"${SECRET_ENV}): without one, any process could connect as a peer and skip the "
            "token"
        )
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format=f"%(asctime)s {node_id} %(levelname)s %(name)s: %(message)s",
    )
    host, port = parse_address(listen, allow_port_zero=True)
    options = ServerOptions(
        node_id=node_id,
        host=host,
        port=port,
        advertise=advertise,
        members=members,
        seeds=list(seeds),
        routes=dict(routes),
        zone=zone,
        config=config,
        secret=secret,
        client_token=client_token,
        max_inflight=max_inflight,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        max_frame=max_frame,
        sock=None if listen_fd is None else socket.socket(fileno=listen_fd),
        client_socket=client_socket,
        trace=trace,
    )
    if not memory:
        assert data_dir is not None
        from dynamo_ref.storage.sqlite import SqliteStore, StorageError

        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            options.store = SqliteStore(data_dir / STORE_FILE, synchronous=sync)  # type: ignore[arg-type]
        except (OSError, StorageError) as e:
            raise click.ClickException(f"cannot open the store in {data_dir}: {e}") from None
    try:
        run_loop(_serve_node(options))
    finally:
        if options.store is not None:
            options.store.close()


async def _serve_node(options: Any) -> None:
    from dynamo_ref.net.server import NodeServer

    server = NodeServer(options)
    try:
        await server.start()
    except OSError as e:
        await server.stop()
        where = f"{options.host}:{options.port}"
        raise click.ClickException(f"{options.node_id} cannot listen on {where}: {e}") from None
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"{READY_PREFIX}{server.address}", flush=True)
    serving = asyncio.create_task(server.serve_forever())
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (serving, stop_wait):
            task.cancel()
        await asyncio.gather(serving, stop_wait, return_exceptions=True)
        await server.stop()
    if serving.done() and not serving.cancelled() and serving.exception() is not None:
        raise serving.exception()  # type: ignore[misc]
