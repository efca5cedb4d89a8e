"""A state machine over membership changes: nodes that start with only seeds join a running
simulated cluster (the core's bootstrap: ``JoinRequest``, then the seed's view as gossip),
nodes leave, crash and restart, while clients write. At the end the cluster quiesces, and
every node must route by the same ring, every replica of a key on that ring must hold the
same versions, and every acknowledged write must be in a quorum read.

Writes carry no context, so under dotted version vectors nothing supersedes them: each
acknowledged value must come back as a sibling. The negative control runs the same machine in
LWW mode, where concurrent writes are lost, and Hypothesis must find it.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dynamo_ref.core.messages import Get, GetOk, Leave, Put, PutOk
from dynamo_ref.core.node import Node, NodeConfig, VersionMode
from dynamo_ref.sim import ClientHandle
from dynamo_ref.sim.cluster import Cluster
from dynamo_ref.sim.network import LinkConfig

KEYS = (b"a", b"b", b"c")
NEWCOMERS = ("n4", "n5")


class LostWrite(AssertionError):
    """An acknowledged write is missing from a quorum read after the cluster quiesced."""


class MembershipMachine(RuleBasedStateMachine):
    MODE: ClassVar[VersionMode] = VersionMode.DVV

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        config = NodeConfig(
            mode=self.MODE,
            request_timeout=1.0,
            gossip_interval=0.2,
            handoff_interval=0.3,
            transfer_interval=0.3,
            anti_entropy_interval=1.0,
            reap_tombstones=False,
        )
        self.sim = Cluster(3, config, seed=seed, q=8, link=LinkConfig(delay=0.002, jitter=0.003))
        self.sim.run_for(1.0)
        self.pending: list[tuple[bytes, bytes, ClientHandle]] = []
        self.acked: dict[bytes, set[bytes]] = {k: set() for k in KEYS}
        self.writes = 0
        self.left: set[str] = set()

    def _live(self) -> list[str]:
        return [n for n in self.sim.node_ids if self.sim.is_up(n) and n not in self.left]

    def _settle(self) -> None:
        for key, value, h in self.pending:
            if h.done and isinstance(h.reply, PutOk):
                self.acked[key].add(value)
        self.pending = [p for p in self.pending if not p[2].done]

    @rule(key=st.sampled_from(KEYS), data=st.data())
    def put(self, key: bytes, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(self._live()), label="coordinator")
        self.writes += 1
        value = f"v{self.writes}".encode()
        self.pending.append((key, value, self.sim.client_request(node, Put(key, value, b""))))

    @rule(dt=st.sampled_from([0.01, 0.1, 0.5, 2.0]))
    def run(self, dt: float) -> None:
        self.sim.run_for(dt)
        self._settle()

    @precondition(lambda self: len(self.sim.node_ids) < 3 + len(NEWCOMERS))
    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        seed = data.draw(st.sampled_from(self._live()), label="seed")
        self.sim.join(NEWCOMERS[len(self.sim.node_ids) - 3], [seed])

    @precondition(lambda self: len(self.sim.node_ids) > 3 and not self.left)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        joined = [n for n in self._live() if self.sim.node(n).joined]
        leaving = data.draw(st.sampled_from(joined), label="leaving")
        admin = data.draw(st.sampled_from([n for n in joined if n != leaving]), label="admin")
        self.sim.client_request(admin, Leave(leaving))
        self.left.add(leaving)

    @precondition(lambda self: all(self.sim.is_up(n) for n in self.sim.node_ids))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        self.sim.crash(data.draw(st.sampled_from(self._live()), label="crash"))

    @rule()
    def restart(self) -> None:
        for n in self.sim.node_ids:
            if not self.sim.is_up(n):
                self.sim.restart(n)

    @invariant()
    def a_joined_node_routes_by_a_ring_that_holds_it(self) -> None:
        if not hasattr(self, "sim"):
            return
        for n in self.sim.node_ids:
            node = self.sim.nodes.get(n)
            if isinstance(node, Node) and node.joined and node.membership[n].status.value == "up":
                assert n in node.ring.nodes, f"{n} is up but outside its own ring"

    def teardown(self) -> None:
        if not hasattr(self, "sim"):
            return
        sim = self.sim
        self.restart()
        sim.run_for(40.0)
        self._settle()
        live = [sim.node(n) for n in sim.node_ids if sim.is_up(n)]
        assert all(n.joined for n in live), "a node never joined"
        members = [n for n in live if n.membership[n.node_id].status.value in ("up", "joining")]
        rings = {n.ring for n in members}
        assert len(rings) == 1, f"nodes route by {len(rings)} different rings"
        (ring,) = rings
        for key in KEYS:
            replicas = ring.preference_list(key, sim.config.n)
            held = {r: sim.node(r).engine.get(key) for r in replicas}
            assert len(set(held.values())) == 1, f"replicas of {key!r} differ: {held}"
            h = sim.client_request(replicas[0], Get(key))
            sim.run_until_done([h], limit=10.0)
            assert isinstance(h.reply, GetOk), h.reply
            missing = self.acked[key] - set(h.reply.siblings)
            if missing:
                raise LostWrite(f"{key!r}: acknowledged {sorted(missing)} not read back")


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_nodes_join_through_seeds_and_leave_without_losing_writes() -> None:
    run_state_machine_as_test(MembershipMachine, settings=SETTINGS)


class LwwMembershipMachine(MembershipMachine):
    MODE = VersionMode.LWW


def test_negative_control_lww_loses_concurrent_writes_across_joins() -> None:
    with pytest.raises(LostWrite):
        run_state_machine_as_test(
            LwwMembershipMachine,
            settings=settings(
                SETTINGS,
                max_examples=200,
                derandomize=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
            ),
        )
