"""Example node programs for the Maelstrom-protocol target (see README.md)."""
