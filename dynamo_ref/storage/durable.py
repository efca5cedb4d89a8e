"""Durable stores: what a node's ``Persist``/``PersistHint``/``DropHint``/``PersistMeta``
effects are written to, and what a restarted node is built from.

The node's working copy of its data is always in memory (``MemoryEngine``, with its Merkle
trees); a durable store is its write-ahead copy. A driver calls ``apply`` with a batch of effects
and only then sends what followed them, so an acknowledgement never leaves before the version it
acknowledges is durable. ``load`` gives the ``DurableState`` a new ``Node`` starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dynamo_ref.core.effects import Effect
from dynamo_ref.core.node.config import DurableState
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings


class DurableStore(Protocol):
    """Where a node's durable effects go."""

    def load(self) -> DurableState:
        """Everything applied so far (a fresh store gives an empty state)."""
        ...

    def apply(self, effects: Sequence[Effect]) -> None:
        """Make the durable effects among ``effects`` durable, in order, as one atomic batch;
        the other effects are ignored. Returns once they are durable (as far as the store's
        sync setting promises)."""
        ...

    def read(
        self, keys: Sequence[bytes], hints: Sequence[tuple[NodeId, bytes]]
    ) -> tuple[dict[bytes, Siblings], dict[tuple[NodeId, bytes], Siblings]]:
        """What is durable for each of ``keys`` and each (owner, key) of ``hints``, empty for
        none: what a node returns to after a batch failed."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """A store that lives as long as the process: what the simulator's disks are."""

    def __init__(self, state: DurableState | None = None) -> None:
        self.state = DurableState() if state is None else state

    def load(self) -> DurableState:
        return self.state

    def apply(self, effects: Sequence[Effect]) -> None:
        self.state.apply(effects)

    def read(
        self, keys: Sequence[bytes], hints: Sequence[tuple[NodeId, bytes]]
    ) -> tuple[dict[bytes, Siblings], dict[tuple[NodeId, bytes], Siblings]]:
        state = self.state
        return (
            {k: state.store.get(k, ()) for k in keys},
            {h: state.hints.get(h, ()) for h in hints},
        )

    def close(self) -> None:
        pass
