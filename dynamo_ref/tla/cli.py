"""`dynamo-ref spec ...`: model checking and trace validation with TLC."""

import click


@click.group()
def spec() -> None:
    """Check the TLA+ specification with TLC."""
