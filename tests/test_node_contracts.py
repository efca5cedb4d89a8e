"""The contracts on the node's parts, each shown to catch the bug it states.

A contract on a handler is worth the bug it kills: each test plants one (a coordinator that
answers a put one ack early, a replica that files a handoff as a hint for itself, a merge that
keeps a dominated version) and runs a scenario that reaches it. The contract fires inside the
handler; the node rolls back and reports ``HandlerFailed``, which fails the simulation. The
same scenario without the plant passes, so the contracts do not fire on correct runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest
from test_node_cluster import CONFIG, Cluster, cluster, ok

from dynamo_ref.core.contracts import ENABLED
from dynamo_ref.core.messages import Store
from dynamo_ref.core.node import VersionMode
from dynamo_ref.core.node.coordinator import Coordinator, PutOp
from dynamo_ref.core.node.replica import Replica, canonical
from dynamo_ref.core.quorum import RequestStatus
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings, Version
from dynamo_ref.sim.simulation import HandlerError

KEY = b"user:7"


@pytest.fixture(autouse=True)
def _contracts_on() -> None:
    # Without them every plant below would pass: these tests must not run vacuously.
    assert ENABLED, "contracts are off (DYNAMO_REF_CONTRACTS=0): these tests need them"


# ---- the plants ------------------------------------------------------------------------------


def _answer_one_ack_early(self: Coordinator, op: PutOp, status: RequestStatus, now: float) -> None:
    if not op.answered and op.collector.ack_count >= op.collector.config.w - 1:
        self._answer_put(op)


def _store_handoff_as_own_hint(self: Replica, src: NodeId, m: Store, now: float) -> None:
    versions = self._out.decode(src, m.versions)
    if versions is None:
        return
    if m.hint is None:
        self.merge(m.key, versions)
    else:  # the owner receiving its handoff keeps it as a hint for itself
        self.add_hint(m.hint, m.key, versions)
    self._ack_store(src, m)


def _merge_without_reconcile(
    self: Replica, key: bytes, versions: Iterable[Version], held: Siblings | None = None
) -> Siblings:
    held = self._engine.get(key) if held is None else held
    merged = canonical((*held, *versions))
    if merged != held:
        self.write(key, merged)
    return merged


# ---- scenarios --------------------------------------------------------------------------------


def _put_and_read_back(c: Cluster) -> None:
    coordinator = c.replicas(KEY)[0]
    first = ok(c.put(coordinator, KEY, b"v1"))
    ok(c.put(coordinator, KEY, b"v2", first.context))
    assert c.get(coordinator, KEY).siblings == [b"v2"]


def _handoff(c: Cluster) -> None:
    coordinator, down, _ = c.replicas(KEY)
    c.crash(down)
    ok(c.put(coordinator, KEY, b"v"))
    c.boot(down)
    c.advance(5.0)
    assert c.values(down, KEY) == {b"v"}


def test_correct_runs_meet_every_contract() -> None:
    _put_and_read_back(cluster())
    _handoff(cluster(replace(CONFIG, w=3)))


def test_a_put_answered_with_w_minus_one_acks_breaks_the_coordinator_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Coordinator, "_check_put", _answer_one_ack_early)
    with pytest.raises(HandlerError, match="only with W acks"):
        _put_and_read_back(cluster())


def test_a_put_answered_without_pw_primary_acks_breaks_the_coordinator_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def early(self: Coordinator, op: PutOp, status: RequestStatus, now: float) -> None:
        # W is met by the coordinator and a fallback, but PW asks for two primaries.
        if not op.answered and op.collector.ack_count >= op.collector.config.w:
            self._answer_put(op)

    c = cluster(replace(CONFIG, w=2))
    coordinator, down, other = c.replicas(KEY)
    c.crash(down)
    c.crash(other)
    monkeypatch.setattr(Coordinator, "_check_put", early)
    with pytest.raises(HandlerError, match="PW acks from primaries"):
        c.put(coordinator, KEY, b"v", pw=2)


def test_an_owner_keeping_its_handoff_as_a_hint_breaks_the_replica_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Replica, "ReplicaStore", _store_handoff_as_own_hint)
    with pytest.raises(HandlerError, match="never holds hints for itself"):
        _handoff(cluster(replace(CONFIG, w=3)))


def test_a_merge_that_keeps_a_dominated_version_breaks_the_store_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Replica, "merge", _merge_without_reconcile)
    with pytest.raises(HandlerError, match="antichain"):
        _put_and_read_back(cluster())


@pytest.mark.parametrize("mode", [VersionMode.DVV, VersionMode.LWW])
def test_the_store_contract_holds_in_every_version_mode(mode: VersionMode) -> None:
    _put_and_read_back(cluster(replace(CONFIG, mode=mode)))
