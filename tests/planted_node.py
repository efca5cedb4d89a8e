"""A node process with one protocol bug planted in it, for the negative controls of trace
validation on real processes (tests/test_run_validation.py).

    python tests/planted_node.py PLANT node --id n1 ...

``PLANT`` is one of ``PLANTS``; the rest is the ``dynamo-ref`` command line. Contracts are off
in this process, so that only the trace can catch the bug.
"""

from __future__ import annotations

import os
import sys

os.environ["DYNAMO_REF_CONTRACTS"] = "0"

from dynamo_ref.cli import main
from dynamo_ref.core.messages import Store
from dynamo_ref.core.node.coordinator import Coordinator, PutOp
from dynamo_ref.core.node.outbox import text
from dynamo_ref.core.node.replica import Replica
from dynamo_ref.core.quorum import RequestStatus


def _hint_dropped_on_send() -> None:
    """A fallback forgets a hint when it sends the handoff, not when the owner acks it."""
    handoff = Replica.HandoffHint

    def planted(self: Replica, owner: str, key: bytes) -> None:
        versions = self._engine.get_hint(owner, key)
        handoff(self, owner, key)
        if versions:
            self._drop_hint_versions(owner, key, versions)

    Replica.HandoffHint = planted  # type: ignore[method-assign]


def _put_answered_short() -> None:
    """A put is answered with W-1 acks."""
    check = Coordinator._check_put

    def planted(self: Coordinator, op: PutOp, status: RequestStatus, now: float) -> None:
        if not op.answered and op.collector.ack_count >= op.collector.config.w - 1:
            self._answer_put(op)
        check(self, op, status, now)

    Coordinator._check_put = planted  # type: ignore[method-assign]


def _fallback_keeps_hint_as_own() -> None:
    """A fallback stores a hinted version in its own store, as if it were a replica."""

    def planted(self: Replica, src: str, m: Store, now: float) -> None:
        versions = self._out.decode(src, m.versions)
        if versions is None:
            return
        me = self._out.node_id
        self._out.action("ReplicaStore", me, src, text(m.key), str(m.op), m.hint or "")
        self.merge(m.key, versions)
        self._ack_store(src, m)

    Replica.ReplicaStore = planted  # type: ignore[method-assign]


PLANTS = {
    "hint_dropped_on_send": _hint_dropped_on_send,
    "put_answered_short": _put_answered_short,
    "fallback_keeps_hint_as_own": _fallback_keeps_hint_as_own,
}


if __name__ == "__main__":
    PLANTS[sys.argv[1]]()
    main(sys.argv[2:])
