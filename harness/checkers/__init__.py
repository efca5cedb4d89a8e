"""Checkers: each takes a history (and a model) and gives a verdict, knowing nothing else."""
