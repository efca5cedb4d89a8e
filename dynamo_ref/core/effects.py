"""What goes into the sans-I/O node and what comes out of it.

``Node.handle(event, now) -> list[Effect]``: a driver (the simulator, the TCP runtime) turns the
world into events and carries out the effects *in order*. Order matters: a ``Persist`` before a
``Send`` of an acknowledgement means the version must be durable before the ack leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from dynamo_ref.core.messages import ClientMessage, PeerMessage, ReplyMessage
from dynamo_ref.core.vclock import NodeId
from dynamo_ref.core.versions import Siblings

# An opaque handle the driver gives each client connection or simulated client.
ClientId: TypeAlias = int

# Timers are named by the node; the driver hands the same value back when one fires.
TimerId: TypeAlias = tuple[str, int]


# ---- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client's get, put, delete or admin request arrived."""

    client: ClientId
    msg: ClientMessage


@dataclass(frozen=True, slots=True)
class PeerReceived:
    """A message from another node arrived."""

    src: NodeId
    msg: PeerMessage


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer the node set has expired."""

    timer: TimerId


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """The driver could not reach a peer (connection refused or reset): a hint for the detector."""

    peer: NodeId


@dataclass(frozen=True, slots=True)
class StorageFailed:
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


@dataclass(frozen=True, slots=True)
class Send:
    """Send a message to a peer. Delivery is not guaranteed; the protocol copes with loss."""

    dest: NodeId
    msg: PeerMessage


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer a client."""

    client: ClientId
    msg: ReplyMessage


@dataclass(frozen=True, slots=True)
class Persist:
    """Make a key's sibling set durable (an empty set removes the key)."""

    key: bytes
    siblings: Siblings


@dataclass(frozen=True, slots=True)
class PersistHint:
    """Make a hinted version durable: ``siblings`` held for ``owner`` until handed off."""

    owner: NodeId
    key: bytes
    siblings: Siblings


@dataclass(frozen=True, slots=True)
class DropHint:
    """The owner has the hinted versions: forget them durably."""

    owner: NodeId
    key: bytes


@dataclass(frozen=True, slots=True)
class PersistMeta:
    """Durable node metadata (membership, ring claims, settings) under a name."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire ``TimerFired(timer)`` at time ``at`` (replaces a pending timer of the same id)."""

    timer: TimerId
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: TimerId


@dataclass(frozen=True, slots=True)
class Action:
    """The spec action (spec/Dynamo.tla) this step took, with its arguments, for traces."""

    name: str
    args: tuple[str, ...]


Effect: TypeAlias = (
    Send | Reply | Persist | PersistHint | DropHint | PersistMeta | SetTimer | CancelTimer | Action
)
