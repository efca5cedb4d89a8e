"""How spec/Dynamo.tla sees what the simulation holds for the real node.

Messages: the four kinds the spec has (``Store``, ``StoreAck``, ``Read``, ``ReadResp``) become
its records ``[mtype, msrc, mdest, mkey, mvers, mop, mhint]``; every other kind (gossip, pings,
Merkle exchanges, forwarding, transfers) is invisible to it. Versions take the node's own spec
shape (``core.node.spec_version``), and ``mhint`` is ``""`` for the spec's ``NoNode``, as in the
node's action arguments.

History: a put acknowledged to its client is ``acked`` with the version rebuilt from the reply
(the request's value, the reply's context as counters, its timestamp). A get's reply carries
values and their merged context, not whole versions, so ``answered`` holds ``vals`` (sorted) and
``vc`` instead of the spec's ``vers``; trace validation compares on those.
"""

from __future__ import annotations

from typing import Final

from dynamo_ref.core.messages import (
    ClientMessage,
    Delete,
    Get,
    GetOk,
    MessageError,
    PeerMessage,
    Put,
    PutOk,
    Read,
    ReadResp,
    ReplyMessage,
    Store,
    StoreAck,
    WireVersion,
    decode_context,
    siblings_from_wire,
)
from dynamo_ref.core.node import DurableState, spec_version
from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.sim.simulation import HistoryKind

NO_NODE: Final = ""

_TYPES: Final = {Store: "store", StoreAck: "storeAck", Read: "read", ReadResp: "readResp"}


def _versions(wire: list[WireVersion]) -> list[dict[str, object]] | None:
    try:
        return [spec_version(v) for v in siblings_from_wire(wire)]
    except ValueError:
        return None  # a message the node rejects: still in flight, with no versions


def _counters(clock: VClock) -> dict[NodeId, int]:
    return {node: counter for node, counter, _ in clock.entries()}


class NodeSpecView:
    """The ``SpecView`` of ``core.node.Node``."""

    def message(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> object | None:
        mtype = _TYPES.get(type(msg))
        if mtype is None:
            return None
        assert isinstance(msg, Store | StoreAck | Read | ReadResp)
        hint = None if isinstance(msg, ReadResp) else msg.hint
        wire = [] if isinstance(msg, Read) else msg.versions
        return {
            "mtype": mtype,
            "msrc": src,
            "mdest": dst,
            "mkey": msg.key,
            "mvers": _versions(wire) or [],
            "mop": msg.op,
            "mhint": NO_NODE if hint is None else hint,
        }

    def durable_state(self, node: NodeId, durable: DurableState) -> dict[str, object]:
        return {
            "store": {
                key: [spec_version(v) for v in siblings] for key, siblings in durable.store.items()
            },
            "hints": [
                {"key": key, "owner": owner, "ver": spec_version(v)}
                for (owner, key), siblings in durable.hints.items()
                for v in siblings
            ],
        }

    def reply(
        self, request: ClientMessage, reply: ReplyMessage
    ) -> tuple[HistoryKind, dict[str, object]] | None:
        try:
            if isinstance(request, Put | Delete) and isinstance(reply, PutOk):
                value = request.value if isinstance(request, Put) else None
                vc = _counters(decode_context(reply.context))
                ver = {"val": value, "vc": vc, "ts": reply.ts}
                return ("acked", {"key": request.key, "ver": ver})
            if isinstance(request, Get) and isinstance(reply, GetOk):
                vc = _counters(decode_context(reply.context))
                vals = sorted(reply.siblings)
                return ("answered", {"key": request.key, "vals": vals, "vc": vc})
        except MessageError:
            return None
        return None
