"""Clocks as histories record them: the vocabulary shared by the targets that write them and the
checkers that read them (neither imports the other).

A clock is a sorted tuple of (node, counter) pairs with zero counters dropped, so equal clocks
are equal tuples. A dotted version vector (Riak 2.0's fix for false siblings) fits in the same
JSON map: the version's own event, its dot, is the entry `"@node": n`; the other entries are the
history it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

__all__ = ["DOT", "Clock", "Dominates", "descends", "dotted_descends", "split_dot"]

Clock: TypeAlias = tuple[tuple[str, int], ...]
"""Sorted (node, counter) pairs; zero counters dropped, so equal clocks are equal tuples."""

Dominates: TypeAlias = Callable[[Clock, Clock], bool]
"""`dominates(a, b)`: clock `a` has seen everything `b` has."""

DOT = "@"


def descends(a: Clock, b: Clock) -> bool:
    """Vector clock order: `a` has seen every event `b` has (equal clocks included). Clocks
    with a dot (an `"@node": n` entry, see `dotted_descends`) are compared as dotted version
    vectors."""
    if any(n.startswith(DOT) for n, _ in a) or any(n.startswith(DOT) for n, _ in b):
        return dotted_descends(a, b)
    da = dict(a)
    return all(da.get(node, 0) >= counter for node, counter in b)


def split_dot(clock: Clock) -> tuple[dict[str, int], tuple[str, int] | None]:
    """(the history it saw, its dot) of a clock written with a `"@node"` entry."""
    seen: dict[str, int] = {}
    dot = None
    for node, counter in clock:
        if node.startswith(DOT):
            dot = (node[len(DOT) :], counter)
        else:
            seen[node] = counter
    return seen, dot


def dotted_descends(a: Clock, b: Clock) -> bool:
    """`a` has seen `b`: `b`'s event (its dot, else every entry of its clock) is in `a`'s
    history. Two versions written through one node with the same history are concurrent here,
    where plain vector clocks would order them."""
    if tuple(a) == tuple(b):
        return True
    seen_a, dot_a = split_dot(a)
    seen_b, dot_b = split_dot(b)
    if dot_b is None:  # b is a plain clock (a context): a's own event counts too
        if dot_a is not None:
            seen_a[dot_a[0]] = max(seen_a.get(dot_a[0], 0), dot_a[1])
        return all(seen_a.get(n, 0) >= c for n, c in seen_b.items())
    # A version never saw its own dot; its history must hold b's.
    return dot_a != dot_b and seen_a.get(dot_b[0], 0) >= dot_b[1]
