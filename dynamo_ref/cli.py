"""The `dynamo-ref` command line."""

import click

from dynamo_ref import __version__
from dynamo_ref.tla.cli import spec


@click.group()
@click.version_option(__version__, prog_name="dynamo-ref")
def main() -> None:
    """dynamo-ref: a formally checked reference implementation of Amazon's Dynamo."""


main.add_command(spec)
