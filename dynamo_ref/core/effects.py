"""What goes into the sans-I/O node and what comes out of it.

``Node.handle(event, now) -> list[Effect]``: a driver (the simulator, the TCP runtime) turns the
world into events and carries out the effects *in order*. Order matters: a ``Persist`` before a
``Send`` of an acknowledgement means the version must be durable before the ack leaves.

Events and effects are frozen msgspec Structs, not frozen dataclasses: a message builds several
(its event, its actions, sends, timers), and a Struct builds in a fifth of the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import msgspec

from dynamo_ref.core.messages import ClientMessage, PeerMessage, ReplyMessage
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings

# An opaque handle the driver gives each client connection or simulated client.
ClientId: TypeAlias = int

# Timers are named by the node; the driver hands the same value back when one fires.
TimerId: TypeAlias = tuple[str, int]


# ---- events ------------------------------------------------------------------------------------


class ClientRequest(msgspec.Struct, frozen=True):
    """A client's get, put, delete or admin request arrived."""

    client: ClientId
    msg: ClientMessage


class PeerReceived(msgspec.Struct, frozen=True):
    """A message from another node arrived."""

    src: NodeId
    msg: PeerMessage


class TimerFired(msgspec.Struct, frozen=True):
    """A timer the node set has expired."""

    timer: TimerId


class PeerUnreachable(msgspec.Struct, frozen=True):
    """The driver could not reach a peer (connection refused or reset): a hint for the detector."""

    peer: NodeId


class StorageFailed(msgspec.Struct, frozen=True):
    """The driver could not make a batch of durable effects durable (disk full, I/O error).

    ``keys``, ``hint_keys`` and ``meta`` are what the batch (and all held behind it) would have
    written. ``store`` and ``hints`` map each of those keys and hints to what the durable store
    holds for it (empty: nothing), read back after the failure, for the node to return to;
    None when the store could not be read either.
    """

    keys: tuple[bytes, ...]
    hint_keys: tuple[tuple[NodeId, bytes], ...]
    meta: tuple[str, ...]
    reason: str
    store: Mapping[bytes, Siblings] | None
    hints: Mapping[tuple[NodeId, bytes], Siblings] | None


Event: TypeAlias = ClientRequest | PeerReceived | TimerFired | PeerUnreachable | StorageFailed


# ---- effects -----------------------------------------------------------------------------------


class Send(msgspec.Struct, frozen=True):
    """Send a message to a peer. Delivery is not guaranteed; the protocol copes with loss."""

    dest: NodeId
    msg: PeerMessage


class Reply(msgspec.Struct, frozen=True):
    """Answer a client."""

    client: ClientId
    msg: ReplyMessage


class Persist(msgspec.Struct, frozen=True):
    """Make a key's sibling set durable (an empty set removes the key). ``raw``: the set's
    ``encode_siblings`` bytes when the writer has them (the engine's), so a store need not
    encode it again; None: the store encodes it."""

    key: bytes
    siblings: Siblings
    raw: bytes | None = None


class PersistHint(msgspec.Struct, frozen=True):
    """Make a hinted version durable: ``siblings`` held for ``owner`` until handed off."""

    owner: NodeId
    key: bytes
    siblings: Siblings


class DropHint(msgspec.Struct, frozen=True):
    """The owner has the hinted versions: forget them durably."""

    owner: NodeId
    key: bytes


class PersistMeta(msgspec.Struct, frozen=True):
    """Durable node metadata (membership, ring claims, settings) under a name."""

    name: str
    data: bytes


class SetTimer(msgspec.Struct, frozen=True):
    """Fire ``TimerFired(timer)`` at time ``at`` (replaces a pending timer of the same id)."""

    timer: TimerId
    at: float


class CancelTimer(msgspec.Struct, frozen=True):
    timer: TimerId


class Action(msgspec.Struct, frozen=True):
    """The spec action (spec/Dynamo.tla) this step took, with its arguments, for traces."""

    name: str
    args: tuple[str, ...]


Effect: TypeAlias = (
    Send | Reply | Persist | PersistHint | DropHint | PersistMeta | SetTimer | CancelTimer | Action
)
