"""A simulated cluster of real nodes (``core.node.Node``) on one ring, with client calls."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import IO

from dynamo_ref.core.messages import Delete, Get, Put
from dynamo_ref.core.node import DurableState, Node, NodeConfig
from dynamo_ref.core.ring import Ring
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.sim.network import LinkConfig
from dynamo_ref.sim.simulation import ClientHandle, Simulation, SpecView
from dynamo_ref.sim.spec_view import NodeSpecView
from dynamo_ref.sim.trace import TraceWriter
from dynamo_ref.storage.memory import MemoryEngine


def node_names(count: int) -> tuple[NodeId, ...]:
    """``n1`` ... ``nK``, zero-padded so that their sorted order is their numeric order."""
    width = len(str(count))
    return tuple(f"n{i:0{width}d}" for i in range(1, count + 1))


class Cluster(Simulation):
    """``nodes`` real nodes (a count, or their ids) on the ring ``config.initial_ring`` gives.

    Every node starts from an empty disk with every other node as a gossip seed. Client calls
    go to the node given, or by default to the key's first replica, as a partition-aware
    client would do.
    """

    def __init__(
        self,
        nodes: int | Sequence[NodeId] = 5,
        config: NodeConfig | None = None,
        *,
        seed: int = 0,
        q: int | None = None,
        link: LinkConfig | None = None,
        trace: IO[str] | TraceWriter | None = None,
        manual: bool = False,
        notify_unreachable: bool = True,
        history: bool = True,
        view: SpecView | None = None,
    ) -> None:
        ids = node_names(nodes) if isinstance(nodes, int) else tuple(nodes)
        config = config or NodeConfig()
        # ``q``: the partition count, when it is the only setting that differs.
        self.config = config if q is None else replace(config, partitions=q)
        self.ring = self.config.initial_ring(ids)
        cfg, ring, seeds = self.config, self.ring, ids

        def factory(nid: NodeId, durable: DurableState, rng: random.Random, now: float) -> Node:
            return Node(nid, cfg, ring, seeds, durable, rng, now, engine=MemoryEngine)

        super().__init__(
            ids,
            factory,
            seed=seed,
            link=link,
            view=view or NodeSpecView(),
            trace=trace,
            manual=manual,
            notify_unreachable=notify_unreachable,
            history=history,
        )

    def replicas(self, key: bytes) -> tuple[NodeId, ...]:
        """The key's replicas on the initial ring (``current_ring`` after a join)."""
        return self.ring.preference_list(key, self.config.n)

    def current_ring(self) -> Ring:
        """The ring most running nodes route by (the initial one until a join spreads)."""
        rings = [n.ring for n in self.nodes.values() if isinstance(n, Node) and n.joined]
        return max(rings, key=rings.count) if rings else self.ring

    def join(self, nid: NodeId, seeds: Sequence[NodeId] | None = None) -> None:
        """Start node ``nid`` with only ``seeds`` (default: the first node): it asks them to
        let it join, claims partitions, and data moves to it."""
        cfg = self.config
        chosen = tuple(seeds) if seeds is not None else self.node_ids[:1]

        def factory(n: NodeId, durable: DurableState, rng: random.Random, now: float) -> Node:
            return Node(n, cfg, None, chosen, durable, rng, now, engine=MemoryEngine)

        self.add_node(nid, factory)

    def node(self, nid: NodeId) -> Node:
        """The running node ``nid``.

        :raises KeyError: it is down.
        """
        node = self.nodes[nid]
        assert isinstance(node, Node)
        return node

    def client_put(
        self, node: NodeId | None, key: bytes, value: bytes, context: bytes = b""
    ) -> ClientHandle:
        return self.client_request(node or self.replicas(key)[0], Put(key, value, context))

    def client_get(self, node: NodeId | None, key: bytes) -> ClientHandle:
        return self.client_request(node or self.replicas(key)[0], Get(key))

    def client_delete(self, node: NodeId | None, key: bytes, context: bytes = b"") -> ClientHandle:
        return self.client_request(node or self.replicas(key)[0], Delete(key, context))
