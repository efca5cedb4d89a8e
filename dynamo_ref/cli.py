"""The `dynamo-ref` command line."""

import click
from rich.console import Console
from rich.table import Table

from dynamo_ref import __version__
from dynamo_ref.tla.cli import spec


@click.group()
@click.version_option(__version__, prog_name="dynamo-ref")
def main() -> None:
    """dynamo-ref: a formally checked reference implementation of Amazon's Dynamo."""


main.add_command(spec)


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
    for node in r.nodes:
        table.add_row(
            node,
            str(owned.get(node, 0)),
            f"{share.get(node, 0.0):.2%}",
            str(len(r.partitions_replicated_by(node, n))),
        )
    console.print(table)
    for key in keys:
        raw = key.encode()
        console.print(
            f"key {key!r}: partition {r.partition_of(raw)}, "
            f"preference list {list(r.preference_list(raw, n))}, "
            f"fallbacks {list(r.extended_preference_list(raw, n)[n:])}"
        )
