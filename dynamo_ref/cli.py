"""The `dynamo-ref` command line."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from dynamo_ref import __version__
from dynamo_ref.client import TOKEN_ENV, load_token
from dynamo_ref.localcluster import SECRET_FILE, STORE_FILE
from dynamo_ref.tla.cli import spec

if TYPE_CHECKING:
    from dynamo_ref.client import Client
    from dynamo_ref.core.messages import StatusReply
    from dynamo_ref.net.server import ServerOptions

DEFAULT_NODE = "127.0.0.1:7001"
CLUSTER_DIR_ENV = "DYNAMO_REF_CLUSTER_DIR"
SECRET_ENV = "DYNAMO_REF_SECRET"
LOOP_ENV = "DYNAMO_REF_LOOP"


def default_cluster_dir() -> Path:
    return Path(os.environ.get(CLUSTER_DIR_ENV, ".dynamo-ref-cluster"))


@click.group()
@click.version_option(__version__, prog_name="dynamo-ref")
def main() -> None:
    """dynamo-ref: a formally checked reference implementation of Amazon's Dynamo."""


main.add_command(spec)


def _add_harness_commands() -> None:
    # The harness's commands: `check` (histories from anywhere) and `campaign` (fault runs).
    from harness.campaign_cli import campaign_command
    from harness.check_cli import check_command

    main.add_command(check_command, "check")
    main.add_command(campaign_command, "campaign")


_add_harness_commands()


# ---- argument types -------------------------------------------------------------------------


def parse_address(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``host:port`` as (host, port).

    :raises ValueError: no host, or a port that is not a number in range.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: the port {port_text!r} is not a number") from None
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be in {low}..65535")
    return host, port


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        host, port = parse_address(value, allow_port_zero=True)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return f"{host}:{port}"


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        host, port = parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return f"{host}:{port}"


def _addresses(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Repeatable and comma-separated: ``--node a:1 --node b:2`` or ``--node a:1,b:2``."""
    out: list[str] = []
    for part in (p for v in value for p in v.split(",")):
        if part.strip():
            out.append(_address(ctx, param, part) or "")
    return tuple(out)


def _members(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in value:
        node, sep, addr = item.partition("=")
        if not sep or not node.strip():
            raise click.BadParameter(f"{item!r} is not ID=HOST:PORT")
        out.append((node.strip(), _address(ctx, param, addr) or ""))
    ids = [n for n, _ in out]
    if len(set(ids)) != len(ids):
        raise click.BadParameter("a node id is given twice")
    return out


def _partitions(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of 2")
    return value


def encode_context(context: bytes) -> str:
    """A context as text a user can paste back into ``--context``."""
    return base64.urlsafe_b64encode(context).decode("ascii")


def decode_context(text: str) -> bytes:
    """:raises ValueError: not base64 (either alphabet)."""
    cleaned = text.strip().replace("+", "-").replace("/", "_")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.urlsafe_b64decode(cleaned.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"the context is not base64 text: {e}") from None


def _context(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes:
    if not value:
        return b""
    try:
        return decode_context(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def show_value(value: bytes) -> str:
    """Printable UTF-8 as itself (quoted), anything else as base64."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")
    if text.isprintable():
        return repr(text)
    return "base64:" + base64.b64encode(value).decode("ascii")


# ---- node ------------------------------------------------------------------------------------


def read_secret(secret_file: Path | None) -> bytes | None:
    """The cluster secret: the file's bytes (a trailing newline dropped), else the environment.

    :raises click.UsageError: an empty secret.
    """
    if secret_file is not None:
        secret = secret_file.read_bytes().rstrip(b"\r\n")
        where = str(secret_file)
    elif os.environ.get(SECRET_ENV):
        secret = os.environ[SECRET_ENV].encode()
        where = SECRET_ENV
    else:
        return None
    if not secret:
        raise click.UsageError(f"the cluster secret in {where} is empty")
    return secret


def _token(ctx: click.Context, param: click.Parameter, value: Path | None) -> str | None:
    """The client token from the file named, else from the environment."""
    try:
        return load_token(value)
    except (OSError, ValueError) as e:
        raise click.BadParameter(str(e)) from None


def _not_on_the_command_line(ctx: click.Context, param: click.Parameter, value: object) -> None:
    if value is not None:
        name = param.opts[0] if param.opts else "the token"
        raise click.UsageError(
            f"{name} VALUE is gone: a token on the command line shows in `ps`. Put it in a "
            f"file ({name}-file FILE) or in ${TOKEN_ENV}."
        )


def cluster_secret(cluster_dir: Path | None) -> bytes | None:
    """The secret `cluster up` wrote into its directory, if there is one."""
    path = (cluster_dir or default_cluster_dir()) / SECRET_FILE
    try:
        return path.read_bytes().rstrip(b"\r\n") or None
    except OSError:
        return None


@main.command()
@click.option("--id", "node_id", required=True, help="This node's id (stable across restarts).")
@click.option("--listen", required=True, callback=_listen, help="HOST:PORT to listen on.")
@click.option("--advertise", callback=_address, help="HOST:PORT peers use (default: --listen).")
@click.option(
    "--member",
    "members",
    multiple=True,
    callback=_members,
    metavar="ID=HOST:PORT",
    help="A node of the initial ring (repeatable; give every node the same list).",
)
@click.option(
    "--seeds", multiple=True, callback=_addresses, help="HOST:PORT,... to gossip with first."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the durable store lives (required unless --memory).",
)
@click.option("--memory", is_flag=True, help="Keep data in memory only: lost on a crash.")
@click.option(
    "--sync",
    type=click.Choice(["full", "normal", "off"]),
    default="full",
    show_default=True,
    help="SQLite synchronous: full survives kill -9 and power loss; normal and off are faster.",
)
@click.option("--n", "n", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--r", "r", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--w", "w", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--pr", type=click.IntRange(0, 64), default=0, show_default=True)
@click.option("--pw", type=click.IntRange(0, 64), default=0, show_default=True)
@click.option("--sloppy/--strict", default=True, show_default=True, help="Sloppy quorum or not.")
@click.option(
    "--mode", type=click.Choice(["vclock", "lww", "dvv"]), default="dvv", show_default=True
)
@click.option("--partitions", type=int, default=64, show_default=True, callback=_partitions)
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
@click.option("--request-timeout", type=click.FloatRange(min=0.001), default=1.0)
@click.option("--gossip-interval", type=click.FloatRange(min=0.001), default=1.0)
@click.option("--anti-entropy-interval", type=click.FloatRange(min=0.001), default=5.0)
@click.option("--max-frame", type=click.IntRange(1024), default=16 << 20)
@click.option(
    "--max-pending",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Client requests in progress past which new ones fail at once with `overload`.",
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
def node(
    *,
    node_id: str,
    listen: str,
    advertise: str | None,
    members: list[tuple[str, str]],
    seeds: tuple[str, ...],
    data_dir: Path | None,
    memory: bool,
    sync: str,
    n: int,
    r: int,
    w: int,
    pr: int,
    pw: int,
    sloppy: bool,
    mode: str,
    partitions: int,
    secret_file: Path | None,
    client_token: str | None,
    request_timeout: float,
    gossip_interval: float,
    anti_entropy_interval: float,
    max_frame: int,
    max_pending: int,
    max_inflight: int,
    max_connections: int,
    idle_timeout: float,
) -> None:
    """Run one node; prints "listening on HOST:PORT" once it serves. SIGTERM stops it."""
    from dynamo_ref.core.node_state import NodeConfig
    from dynamo_ref.net.server import ServerOptions

    if not node_id.strip():
        raise click.BadParameter("the node id is empty", param_hint="--id")
    if data_dir is None and not memory:
        raise click.UsageError("give --data-dir, or --memory for a node without durable storage")
    if members and node_id not in {m for m, _ in members}:
        raise click.UsageError(f"--member lists the initial ring; it must include {node_id}")
    try:
        config = NodeConfig(
            n=n,
            r=r,
            w=w,
            pr=pr,
            pw=pw,
            sloppy=sloppy,
            mode=mode,  # type: ignore[arg-type]  # NodeConfig converts the name
            request_timeout=request_timeout,
            gossip_interval=gossip_interval,
            anti_entropy_interval=anti_entropy_interval,
            max_pending=max_pending,
        )
    except ValueError as e:
        raise click.UsageError(f"invalid settings: {e}") from None
    secret = read_secret(secret_file)
    if client_token is not None and secret is None:
        raise click.UsageError(
            "a client token needs a cluster secret (--secret-file or "
            f"${SECRET_ENV}): without one, any process could connect as a peer and skip the "
            "token"
        )
    options = ServerOptions(
        node_id=node_id,
        host=parse_address(listen, allow_port_zero=True)[0],
        port=parse_address(listen, allow_port_zero=True)[1],
        advertise=advertise,
        members=members,
        seeds=list(seeds),
        config=config,
        partitions=partitions,
        secret=secret,
        client_token=client_token,
        max_frame=max_frame,
        max_inflight=max_inflight,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
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
        _run(_serve_node(options))
    finally:
        if options.store is not None:
            options.store.close()


def _run(coro: Any) -> None:
    """On uvloop when it is installed, or asyncio's loop with ``DYNAMO_REF_LOOP=asyncio``."""
    if os.environ.get(LOOP_ENV, "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


async def _serve_node(options: ServerOptions) -> None:
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
    print(f"listening on {server.address}", flush=True)
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


# ---- client commands ---------------------------------------------------------------------------


def client_options(f: Any) -> Any:
    f = click.option(
        "--node",
        "nodes",
        multiple=True,
        callback=_addresses,
        help=(
            "HOST:PORT of a node (repeatable). Default: the nodes of the cluster in --dir, "
            f"else {DEFAULT_NODE}."
        ),
    )(f)
    f = click.option(
        "--dir",
        "cluster_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"A `cluster up` directory (default: ${CLUSTER_DIR_ENV} or .dynamo-ref-cluster).",
    )(f)
    f = click.option(
        "--token-file",
        "token",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=_token,
        help=f"A file holding the client token, if nodes need one (else ${TOKEN_ENV}).",
    )(f)
    f = click.option(
        "--token",
        "token_value",
        hidden=True,
        expose_value=False,
        callback=_not_on_the_command_line,
    )(f)
    f = click.option("--timeout", type=click.FloatRange(min=0.01), default=5.0, show_default=True)(
        f
    )
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def admin_secret_option(f: Any) -> Any:
    return click.option(
        "--secret-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help=f"The cluster secret, which a node that has one asks of admins (else ${SECRET_ENV}, "
        "else the one `cluster up` wrote in --dir).",
    )(f)


def target_addresses(nodes: tuple[str, ...], cluster_dir: Path | None) -> list[str]:
    if nodes:
        return list(nodes)
    from dynamo_ref.localcluster import ClusterError, read_state

    try:
        recorded = read_state(cluster_dir or default_cluster_dir())
    except ClusterError:
        if cluster_dir is not None:
            raise click.UsageError(f"no cluster state in {cluster_dir}") from None
        return [DEFAULT_NODE]
    return [r.address for r in recorded]


@contextmanager
def connected(
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    secret: bytes | None = None,
) -> Iterator[Client]:
    from dynamo_ref.client import Client, ClientError

    addresses = target_addresses(nodes, cluster_dir)
    try:
        with Client(addresses, token=token, timeout=timeout, secret=secret) as client:
            yield client
    except ClientError as e:
        raise click.ClickException(f"{e.code}: {e.message}") from None
    except OSError as e:
        raise click.ClickException(f"cannot reach {', '.join(addresses)}: {e}") from None


def _emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _values_json(values: list[bytes]) -> dict[str, list[str | None]]:
    texts: list[str | None] = []
    for v in values:
        try:
            texts.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
    return {"siblings": texts, "siblings_b64": [base64.b64encode(v).decode() for v in values]}


@main.command()
@click.argument("key")
@click.option("--r", type=click.IntRange(1, 64), help="Responses needed (default: the node's R).")
@click.option("--pr", type=click.IntRange(0, 64), help="Of them from primaries.")
@client_options
def get(
    *,
    key: str,
    r: int | None,
    pr: int | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Read KEY: every sibling, and the context to write back with."""
    with connected(nodes, cluster_dir, token, timeout) as client:
        result = client.get(key.encode(), r=r, pr=pr)
    context = encode_context(result.context)
    if as_json:
        _emit_json({"key": key, "context": context, **_values_json(list(result.siblings))})
        return
    siblings = list(result.siblings)
    if not siblings:
        click.echo(f"{key!r}: not found")
    elif len(siblings) == 1:
        click.echo(f"{key!r}: {show_value(siblings[0])}")
    else:
        click.echo(f"{key!r}: {len(siblings)} siblings (concurrent writes; put with the context")
        click.echo("to resolve them)")
        for i, v in enumerate(siblings, 1):
            click.echo(f"  [{i}] {show_value(v)}")
    if context:
        click.echo(f"context: {context}")


@main.command()
@click.argument("key")
@click.argument("value")
@click.option("--context", type=str, callback=_context, help="From a get: what this write saw.")
@click.option("--w", type=click.IntRange(1, 64), help="Acks needed (default: the node's W).")
@click.option("--pw", type=click.IntRange(0, 64), help="Of them from primaries.")
@client_options
def put(
    *,
    key: str,
    value: str,
    context: bytes,
    w: int | None,
    pw: int | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Write VALUE under KEY (with --context, it supersedes what that get returned)."""
    with connected(nodes, cluster_dir, token, timeout) as client:
        result = client.put(key.encode(), value.encode(), context=context, w=w, pw=pw)
    _write_done("stored", key, result.context, result.ts, as_json)


@main.command()
@click.argument("key")
@click.option("--context", type=str, callback=_context, help="From a get: what this delete saw.")
@click.option("--w", type=click.IntRange(1, 64), help="Acks needed (default: the node's W).")
@click.option("--pw", type=click.IntRange(0, 64), help="Of them from primaries.")
@client_options
def delete(
    *,
    key: str,
    context: bytes,
    w: int | None,
    pw: int | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Delete KEY (a tombstone; with --context, of what that get returned)."""
    with connected(nodes, cluster_dir, token, timeout) as client:
        result = client.delete(key.encode(), context=context, w=w, pw=pw)
    _write_done("deleted", key, result.context, result.ts, as_json)


def _write_done(what: str, key: str, context: bytes, ts: float, as_json: bool) -> None:
    text = encode_context(context)
    if as_json:
        _emit_json({"key": key, "context": text, "ts": ts})
        return
    click.echo(f"{what} {key!r}")
    if text:
        click.echo(f"context: {text}")


@main.command()
@click.argument("node_id", metavar="NODE")
@click.argument("address", callback=_address)
@click.option("--zone", help="The node's zone (replicas are spread across zones).")
@client_options
@admin_secret_option
def join(
    *,
    node_id: str,
    address: str,
    zone: str | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
    secret_file: Path | None,
) -> None:
    """Add NODE (listening at ADDRESS) to the ring: it claims partitions, data moves to it."""
    secret = read_secret(secret_file) or cluster_secret(cluster_dir)
    with connected(nodes, cluster_dir, token, timeout, secret) as client:
        detail = client.join(node_id, address, zone)
    _emit_json({"detail": str(detail)}) if as_json else click.echo(str(detail))


@main.command()
@click.argument("node_id", metavar="NODE")
@client_options
@admin_secret_option
def leave(
    *,
    node_id: str,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
    secret_file: Path | None,
) -> None:
    """NODE hands its partitions to the others and leaves the ring."""
    secret = read_secret(secret_file) or cluster_secret(cluster_dir)
    with connected(nodes, cluster_dir, token, timeout, secret) as client:
        detail = client.leave(node_id)
    _emit_json({"detail": str(detail)}) if as_json else click.echo(str(detail))


def _status_of(client: Client, address: str) -> StatusReply | str:
    from dynamo_ref.client import ClientError

    try:
        return client.status(address)
    except ClientError as e:
        return f"{e.code}: {e.message}"
    except OSError as e:
        return f"unreachable: {e}"


def status_json(address: str, reply: StatusReply | str) -> dict[str, Any]:
    if isinstance(reply, str):
        return {"address": address, "error": reply}
    return {
        "address": address,
        "node": reply.node,
        "members": [
            {
                "node": m.node,
                "status": m.status,
                "incarnation": m.incarnation,
                "partitions": m.partitions,
                "suspected": m.suspected,
            }
            for m in reply.members
        ],
        "suspected": sorted(m.node for m in reply.members if m.suspected),
        "hints": dict(reply.hints),
        "anti_entropy": dict(reply.anti_entropy),
        "keys": reply.keys,
        "clock_skew": reply.clock_skew,
        "mode": reply.mode,
        "ring_version": reply.ring_version,
    }


def _ago(t: float) -> str:
    # Wall-clock stamps read as an age; anything else (a monotonic clock) as is.
    if t > 1e9:
        return f"{max(0.0, time.time() - t):.1f}s ago"
    return f"t={t:.1f}"


@main.command()
@client_options
def status(
    *,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Membership as each node sees it, suspected peers, pending hints, last anti-entropy."""
    addresses = target_addresses(nodes, cluster_dir)
    with connected(tuple(addresses), None, token, timeout) as client:
        replies = [(a, _status_of(client, a)) for a in addresses]
    if as_json:
        _emit_json([status_json(a, r) for a, r in replies])
        return
    console = Console()
    seen: list[tuple[str, StatusReply]] = []
    for a, rep in replies:
        if not isinstance(rep, str):
            seen.append((a, rep))
    members = sorted({m.node for _, rep in seen for m in rep.members})
    view = Table(
        title="membership as each node sees it", caption="p: partitions claimed, i: incarnation"
    )
    view.add_column("member")
    for a, rep in seen:
        view.add_column(f"{rep.node}\n{a}")
    for member in members:
        cells: list[str] = []
        for _, rep in seen:
            info = next((m for m in rep.members if m.node == member), None)
            if info is None:
                cells.append("-")
            elif info.suspected:
                cells.append(f"[bold red]SUSPECTED[/] ({info.status})")
            else:
                cells.append(f"{info.status} {info.partitions}p i{info.incarnation}")
        view.add_row(member, *cells)
    console.print(view)
    nodes_table = Table(title="nodes")
    for col in ("node", "address", "keys", "pending hints", "last anti-entropy", "ring", "mode"):
        nodes_table.add_column(col)
    for a, got in replies:
        if isinstance(got, str):
            nodes_table.add_row("?", a, "[bold red]no answer[/]", "", "", "", "")
            continue
        hints = ", ".join(f"{owner}: {k}" for owner, k in sorted(got.hints.items())) or "none"
        if got.anti_entropy:
            peer, when = max(got.anti_entropy.items(), key=lambda item: item[1])
            ae = f"with {peer}, {_ago(when)}"
        else:
            ae = "never"
        nodes_table.add_row(got.node, a, str(got.keys), hints, ae, got.ring_version[:8], got.mode)
    console.print(nodes_table)
    for a, got in replies:
        if isinstance(got, str):
            console.print(f"[red]{a}: no answer[/] ({got})", soft_wrap=True)


# ---- cluster ---------------------------------------------------------------------------------


@main.group()
def cluster() -> None:
    """A local cluster of node processes (ports and data directories chosen for you)."""


@cluster.command("up")
@click.option("-n", "count", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"State, logs and data (default: ${CLUSTER_DIR_ENV} or .dynamo-ref-cluster).",
)
@click.option("--n", "n", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--r", "r", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--w", "w", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--sloppy/--strict", default=True, show_default=True)
@click.option(
    "--mode", type=click.Choice(["vclock", "lww", "dvv"]), default="dvv", show_default=True
)
@click.option("--partitions", type=int, default=64, show_default=True, callback=_partitions)
@click.option("--memory", is_flag=True, help="Nodes keep data in memory only.")
@click.option("--sync", type=click.Choice(["full", "normal", "off"]), default="full")
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
def cluster_up(
    *,
    count: int,
    cluster_dir: Path | None,
    n: int,
    r: int,
    w: int,
    sloppy: bool,
    mode: str,
    partitions: int,
    memory: bool,
    sync: str,
    secret_file: Path | None,
    no_secret: bool,
) -> None:
    """Start COUNT nodes in the foreground; Ctrl-C (or `cluster down`) stops them all.

    Every node gets the cluster secret, by default a new one written (mode 0600) to the
    cluster's directory, where `join` and `leave` find it."""
    from dynamo_ref.localcluster import ClusterError, LocalCluster, NodeOptions, is_our_node
    from dynamo_ref.localcluster import read_state as read_cluster

    directory = cluster_dir or default_cluster_dir()
    try:
        running = [x for x in read_cluster(directory) if is_our_node(x)]
    except ClusterError:
        running = []
    if running:
        raise click.ClickException(
            f"a cluster is already running in {directory} (pids "
            f"{', '.join(str(x.pid) for x in running)}); `dynamo-ref cluster down` first"
        )
    options = NodeOptions(
        n=n, r=r, w=w, sloppy=sloppy, mode=mode, partitions=partitions, memory=memory, sync=sync
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
            lc.wait_healthy()
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
        while not stopping and any(x.running for x in lc.nodes):
            time.sleep(0.2)
        click.echo("stopping the cluster", err=True)


@cluster.command("down")
@click.option(
    "--dir",
    "cluster_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"The `cluster up` directory (default: ${CLUSTER_DIR_ENV} or .dynamo-ref-cluster).",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
def cluster_down(cluster_dir: Path | None, timeout: float) -> None:
    """Stop the nodes `cluster up` started, by PID (SIGTERM, then SIGKILL after --timeout)."""
    from dynamo_ref.localcluster import ClusterError, stop_recorded

    directory = cluster_dir or default_cluster_dir()
    try:
        stopped = stop_recorded(directory, timeout)
    except ClusterError as e:
        raise click.ClickException(str(e)) from None
    if not stopped:
        click.echo(f"no running nodes in {directory}")
    for x in stopped:
        click.echo(f"stopped {x.node_id} (pid {x.pid})")


# ---- ring ----------------------------------------------------------------------------------------


@main.command()
@click.option("--nodes", "node_count", type=click.IntRange(1, 4096), default=8, show_default=True)
@click.option("--partitions", "q", type=int, default=64, show_default=True, help="Q, a power of 2")
@click.option("--n", "n", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--key", "keys", multiple=True, help="show this key's preference list (repeatable)")
def ring(node_count: int, q: int, n: int, keys: tuple[str, ...]) -> None:
    """Show a sample ring: partitions per node and the preference lists of keys."""
    from dynamo_ref.core.ring import Ring

    try:
        r = Ring.create([f"n{i + 1}" for i in range(node_count)], q=q, target_n=n)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    console = Console()
    owned = r.ownership()
    share = r.key_space_share()
    table = Table(title=f"ring: Q={q}, {node_count} nodes, N={n}")
    table.add_column("node")
    table.add_column("partitions", justify="right")
    table.add_column("key space", justify="right")
    table.add_column(f"partitions replicated (N={n})", justify="right")
    for node_name in r.nodes:
        table.add_row(
            node_name,
            str(owned.get(node_name, 0)),
            f"{share.get(node_name, 0.0):.2%}",
            str(len(r.partitions_replicated_by(node_name, n))),
        )
    console.print(table)
    for key in keys:
        raw = key.encode()
        console.print(
            f"key {key!r}: partition {r.partition_of(raw)}, "
            f"preference list {list(r.preference_list(raw, n))}, "
            f"fallbacks {list(r.extended_preference_list(raw, n)[n:])}"
        )
