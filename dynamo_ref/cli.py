"""The `dynamo-ref` command line.

It imports only click at start: every command imports what it uses when it runs, and commands
that live elsewhere are loaded on first use (``LazyGroup``): ``node`` (``node_cli``), ``spec``
(``tla.cli``) and, registered by the harness's entry point (``harness.cli``), ``check``,
``campaign`` and ``serve``. So ``dynamo-ref --help``, ``get`` and ``put`` start fast, and
``dynamo_ref`` never imports the harness.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dynamo_ref import __version__
from dynamo_ref.env import CLUSTER_DIR_ENV, LOOP_ENV, SECRET_ENV, TOKEN_ENV

if TYPE_CHECKING:
    from dynamo_ref.client import Client
    from dynamo_ref.core.messages import StatusReply
    from dynamo_ref.core.ring import Ring

DEFAULT_NODE = "127.0.0.1:7001"
# A node's default --max-value-size (NodeConfig.max_value_size), checked before sending.
MAX_VALUE = 1 << 20


def default_cluster_dir() -> Path:
    return Path(os.environ.get(CLUSTER_DIR_ENV, ".dynamo-ref-cluster"))


class LazyGroup(click.Group):
    """A group whose commands may live in modules imported only when the command runs.

    ``lazy(name, "module:attribute", help)``: the help line is given here, so that listing the
    commands imports none of them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, tuple[str, str]] = {}

    def lazy(self, name: str, target: str, help_line: str) -> None:
        self._lazy[name] = (target, help_line)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy and cmd_name not in self.commands:
            module, _, attribute = self._lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name][0]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, self._lazy[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="dynamo-ref")
def main() -> None:
    """dynamo-ref: a formally checked reference implementation of Amazon's Dynamo."""


assert isinstance(main, LazyGroup)
main.lazy("node", "dynamo_ref.node_cli:node", "Run one node.")
main.lazy("spec", "dynamo_ref.tla.cli:spec", "Model-check the TLA+ spec; validate traces.")
main.lazy("cluster", "dynamo_ref.cluster_cli:cluster", "A local cluster of node processes.")


def run_loop(coro: Any) -> None:
    """On uvloop when it is installed, or asyncio's loop with ``DYNAMO_REF_LOOP=asyncio``."""
    import asyncio

    if os.environ.get(LOOP_ENV, "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


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


def validate_listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        host, port = parse_address(value, allow_port_zero=True)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return f"{host}:{port}"


def validate_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        host, port = parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return f"{host}:{port}"


def validate_seeds(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Repeatable and comma-separated: ``--node a:1 --node b:2`` or ``--node a:1,b:2``."""
    out: list[str] = []
    for part in (p for v in value for p in v.split(",")):
        if part.strip():
            out.append(validate_address(ctx, param, part) or "")
    return tuple(out)


def validate_members(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...], what: str = "a member"
) -> list[tuple[str, str]]:
    """``ID=HOST:PORT`` pairs, each id once."""
    out: list[tuple[str, str]] = []
    for item in value:
        node, sep, addr = item.partition("=")
        if not sep or not node.strip():
            raise click.BadParameter(f"{what}: {item!r} is not ID=HOST:PORT")
        out.append((node.strip(), validate_address(ctx, param, addr) or ""))
    ids = [n for n, _ in out]
    if len(set(ids)) != len(ids):
        raise click.BadParameter("a node id is given twice")
    return out


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
    """Printable UTF-8 as itself, anything else (newlines included) as ``base64:...``."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")
    if text.isprintable() and not text.startswith("base64:"):
        return text
    return "base64:" + base64.b64encode(value).decode("ascii")


# ---- node ------------------------------------------------------------------------------------


def _token(ctx: click.Context, param: click.Parameter, value: Path | None) -> str | None:
    """The client token from the file named, else from the environment."""
    from dynamo_ref.client import load_token

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
    from dynamo_ref.localcluster import SECRET_FILE

    path = (cluster_dir or default_cluster_dir()) / SECRET_FILE
    try:
        return path.read_bytes().rstrip(b"\r\n") or None
    except OSError:
        return None


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


# ---- client commands ---------------------------------------------------------------------------


def client_options(f: Any) -> Any:
    f = click.option(
        "--node",
        "nodes",
        multiple=True,
        callback=validate_seeds,
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
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0.01),
        default=5.0,
        show_default=True,
        help="Seconds to wait for a node's answer.",
    )(f)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def admin_secret_option(f: Any) -> Any:
    return click.option(
        "--secret-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help=f"The cluster secret, which a node that has one asks of admins (else ${SECRET_ENV}, "
        "else the one `cluster up` wrote in --dir).",
    )(f)


def target_addresses(nodes: tuple[str, ...], cluster_dir: Path | None) -> list[str]:
    return list(recorded_names(nodes, cluster_dir))


def recorded_names(nodes: tuple[str, ...], cluster_dir: Path | None) -> dict[str, str]:
    """The addresses to ask, each with the node id `cluster up` recorded for it (else "")."""
    if nodes:
        return dict.fromkeys(nodes, "")
    from dynamo_ref.localcluster import ClusterError, read_state

    try:
        recorded = read_state(cluster_dir or default_cluster_dir())
    except ClusterError:
        if cluster_dir is not None:
            raise click.UsageError(f"no cluster state in {cluster_dir}") from None
        return {DEFAULT_NODE: ""}
    return {r.address: r.node_id for r in recorded}


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
@click.option(
    "--print-value-only",
    "--raw",
    "raw",
    is_flag=True,
    help="Write the value's bytes alone (each sibling followed by a newline), as etcdctl does.",
)
@client_options
def get(
    *,
    key: str,
    r: int | None,
    pr: int | None,
    raw: bool,
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
    if raw:
        out = sys.stdout.buffer
        for v in result.siblings:
            out.write(v + b"\n")
        out.flush()
        return
    _show_siblings(key, list(result.siblings))
    if result.siblings:
        click.echo(f"context: {context}")


def _show_siblings(key: str, siblings: list[bytes]) -> None:
    if not siblings:
        click.echo(f"{key}: not found")
    elif len(siblings) == 1:
        click.echo(f"{key}: {show_value(siblings[0])}")
    else:
        click.echo(f"{key}: {len(siblings)} siblings (concurrent writes; put with the context")
        click.echo("to resolve them)")
        for i, v in enumerate(siblings, 1):
            click.echo(f"  [{i}] {show_value(v)}")


def _value_of(value: str | None, value_file: Path | None) -> bytes:
    """VALUE, or ``-`` for standard input, or ``--file``'s bytes."""
    if (value is None) == (value_file is None):
        raise click.UsageError("give VALUE (or - for standard input) or --file FILE, not both")
    if value_file is not None:
        data = value_file.read_bytes()
    elif value == "-":
        data = sys.stdin.buffer.read(MAX_VALUE + 1)
    else:
        assert value is not None
        data = value.encode()
    if len(data) > MAX_VALUE:
        raise click.UsageError(
            f"the value is over {MAX_VALUE} bytes (1 MiB), the most a node takes by default "
            "(its --max-value-size)"
        )
    return data


@main.command()
@click.argument("key")
@click.argument("value", required=False)
@click.option(
    "--file",
    "value_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take the value from FILE (or give VALUE as - for standard input).",
)
@click.option("--context", type=str, callback=_context, help="From a get: what this write saw.")
@click.option("--w", type=click.IntRange(1, 64), help="Acks needed (default: the node's W).")
@click.option("--pw", type=click.IntRange(0, 64), help="Of them from primaries.")
@client_options
def put(
    *,
    key: str,
    value: str | None,
    value_file: Path | None,
    context: bytes,
    w: int | None,
    pw: int | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Write VALUE under KEY (with --context, it supersedes what that get returned).

    Prints what the key holds after the write and the context that covers it: without
    --context a write is kept beside the values already there, as a sibling.
    """
    data = _value_of(value, value_file)
    with connected(nodes, cluster_dir, token, timeout) as client:
        result = client.put(key.encode(), data, context=context, w=w, pw=pw, return_body=True)
    text = encode_context(result.context)
    if as_json:
        _emit_json({"key": key, "context": text, "ts": result.ts, **_values_json(result.siblings)})
        return
    click.echo(f"stored {key}" + ("" if context else " (no --context: a blind write)"))
    if len(result.siblings) > 1:
        _show_siblings(key, result.siblings)
    click.echo(f"context: {text}")


@main.command()
@click.argument("key")
@click.option(
    "--context",
    type=str,
    callback=_context,
    help="From a get: what this delete covers (default: read the key first, delete what it held).",
)
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
    """Delete KEY: a tombstone over what a get returned.

    With --context, what that get returned; without, the key is read first and what the read
    returned is deleted (a write that lands meanwhile survives as a sibling).
    """
    read: list[bytes] | None = None
    with connected(nodes, cluster_dir, token, timeout) as client:
        if not context:
            got = client.get(key.encode())
            read = list(got.siblings)
            if not read:
                _not_deleted(key, as_json)
                return
            context = got.context
        result = client.delete(key.encode(), context=context, w=w, pw=pw, return_body=True)
    text = encode_context(result.context)
    if as_json:
        out: dict[str, object] = {"key": key, "deleted": True, "context": text, "ts": result.ts}
        out["remaining"] = _values_json(result.siblings)["siblings"]
        if read is not None:
            out["read_first"] = _values_json(read)["siblings"]
        _emit_json(out)
        return
    if read is not None:
        shown = ", ".join(show_value(v) for v in read)
        click.echo(f"deleted {key}: read it first (no --context) and deleted {shown}")
    else:
        click.echo(f"deleted {key}")
    if result.siblings:
        click.echo(f"{key} still holds {len(result.siblings)} value(s) the delete did not cover:")
        for i, v in enumerate(result.siblings, 1):
            click.echo(f"  [{i}] {show_value(v)}")
    click.echo(f"context: {text}")


def _not_deleted(key: str, as_json: bool) -> None:
    if as_json:
        _emit_json({"key": key, "deleted": False, "reason": "not found"})
    else:
        click.echo(f"{key}: not found, nothing to delete")


@main.command()
@click.argument("node_id", metavar="NODE")
@click.argument("address", callback=validate_address)
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
    """Membership as each node sees it, suspected peers, pending hints, last anti-entropy.

    Exits 1 when a node does not answer.
    """
    names = recorded_names(nodes, cluster_dir)
    addresses = list(names)
    with connected(tuple(addresses), None, token, timeout) as client:
        replies = [(a, _status_of(client, a)) for a in addresses]
    silent = [a for a, rep in replies if isinstance(rep, str)]
    if as_json:
        _emit_json([status_json(a, r) | {"recorded_as": names[a]} for a, r in replies])
    else:
        _print_status(replies, names)
    if silent:
        raise SystemExit(1)


def _print_status(replies: list[tuple[str, StatusReply | str]], names: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    seen = [(a, rep) for a, rep in replies if not isinstance(rep, str)]
    members = sorted({m.node for _, rep in seen for m in rep.members})
    view = Table(
        title="membership as each node sees it (columns: who is asked)",
        caption="p: partitions claimed, i: incarnation",
    )
    view.add_column("member", no_wrap=True)
    for _, rep in seen:
        view.add_column(rep.node, no_wrap=True)
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
    if seen:
        console.print(view)
    nodes_table = Table(title="nodes")
    for col in ("node", "address"):
        nodes_table.add_column(col, no_wrap=True)
    for col in ("keys", "pending hints", "last anti-entropy", "ring", "mode"):
        nodes_table.add_column(col)
    for a, got in replies:
        if isinstance(got, str):
            name = names.get(a) or "(unknown)"
            nodes_table.add_row(name, a, "[bold red]no answer[/]", "", "", "", "")
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
            who = f"{names[a]} at {a}" if names.get(a) else a
            console.print(f"[red]{who}: no answer[/] ({got})", soft_wrap=True)


# ---- ring ----------------------------------------------------------------------------------------


@main.command()
@click.option("--key", "keys", multiple=True, help="Show this key's preference list (repeatable).")
@click.option(
    "--sample",
    is_flag=True,
    help="Draw a sample ring of --nodes nodes instead of asking the running cluster.",
)
@click.option(
    "--nodes",
    "node_count",
    type=click.IntRange(1, 4096),
    default=8,
    show_default=True,
    help="With --sample: how many nodes.",
)
@click.option(
    "--partitions",
    "q",
    type=int,
    default=64,
    show_default=True,
    help="With --sample: Q, a power of 2.",
)
@click.option(
    "--n", "n", type=click.IntRange(1, 64), help="Replicas per key (default: the cluster's, or 3)."
)
@client_options
def ring(
    *,
    keys: tuple[str, ...],
    sample: bool,
    node_count: int,
    q: int,
    n: int | None,
    nodes: tuple[str, ...],
    cluster_dir: Path | None,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """The running cluster's ring: partitions per node and the preference lists of keys.

    It is the ring the first node that answers routes by; --sample draws one instead.
    """
    title: str
    if sample:
        from dynamo_ref.core.node.config import NodeConfig

        n = n or 3
        try:
            r: Ring = NodeConfig(n=n, r=1, w=1, partitions=q).initial_ring(
                [f"n{i + 1}" for i in range(node_count)]
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        title = f"sample ring: Q={q}, {node_count} nodes, N={n}"
    else:
        from dynamo_ref.core.membership import ring_from_claims

        with connected(nodes, cluster_dir, token, timeout) as client:
            st = client.status()
        members = [(m.node, m.status, m.zone, m.claims) for m in st.members]
        try:
            r = ring_from_claims(members, st.q or None, st.n or 1)
        except ValueError as exc:
            raise click.ClickException(f"{st.node}'s view is mid-change: {exc}") from None
        n = n or st.n or 3
        title = f"ring of the cluster, as {st.node} routes by it: Q={r.q}, N={n}"
    if as_json:
        _emit_json(_ring_json(r, n, keys))
        return
    _print_ring(r, n, title, keys)


def _ring_json(r: Ring, n: int, keys: tuple[str, ...]) -> dict[str, object]:
    owned = r.ownership()
    return {
        "q": r.q,
        "n": n,
        "nodes": {
            node: {
                "partitions": owned.get(node, 0),
                "replicated": len(r.partitions_replicated_by(node, n)),
            }
            for node in r.nodes
        },
        "keys": {
            key: {
                "partition": r.partition_of(key.encode()),
                "preference_list": list(r.preference_list(key.encode(), n)),
                "fallbacks": list(r.extended_preference_list(key.encode(), n)[n:]),
            }
            for key in keys
        },
    }


def _print_ring(r: Ring, n: int, title: str, keys: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    owned = r.ownership()
    share = r.key_space_share()
    table = Table(title=title)
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
