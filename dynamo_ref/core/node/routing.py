"""What the parts of a node ask of its membership: where keys live and who is down.

``members.Members`` is the one implementation; the other parts see only this, so the state
behind it (the gossiped view, the failure detector, transfers) stays the members' own.
"""

from __future__ import annotations

from typing import Protocol

from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId


class Routing(Protocol):
    @property
    def ring(self) -> Ring:
        """The ring this node routes by: the one its membership view's claims describe."""
        ...

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        """The key's preference list of N."""
        ...

    def fallbacks(self, key: bytes) -> tuple[NodeId, ...]:
        """The nodes after the key's N replicas, in preference order (sloppy quorum)."""
        ...

    def held_down(self, peer: NodeId, now: float) -> bool:
        """The failure detector holds ``peer`` down (never this node itself)."""
        ...

    def suspect(self, peer: NodeId) -> None:
        """Hold ``peer`` down until it is heard from again."""
        ...
