"""Wire messages: one msgspec schema for clients and peers, carried as MessagePack.

Every message is a tagged Struct (the ``type`` field names it), so one ``decode`` reads any
frame and rejects unknown types. Three unions group them by who sends what:

- ``ClientMessage``: get, put, delete and the admin requests (join, leave, status, clock skew,
  replica get);
- ``ReplyMessage``: what a node answers a client (and a forwarding peer);
- ``PeerMessage``: node to node. ``Store``, ``StoreAck``, ``Read`` and ``ReadResp`` are the
  spec's four message kinds (``spec/Dynamo.tla``, field for field: ``op`` is ``mop``, ``hint``
  is ``mhint``); the rest are node-only protocols the spec abstracts (forwarding, gossip,
  failure-detector pings, Merkle exchanges, partition transfer, tombstone reaping).

Versions travel as ``WireVersion`` (a compact array), clocks as sorted ``[node, counter, ts]``
triples. A read context is opaque to clients: ``encode_context`` bytes of the merged clock.

Clients get a reply, never an exception: ``decode_client`` turns any bad frame into a
``MessageError`` carrying a stable ``ErrorCode`` that the runtime sends back as ``ErrorReply``.
A frame is decoded once: when it does not validate, what it claims to be (its ``type`` and
``rid``) is read from its first few items only, never by decoding it whole again.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import Annotated, Final, NamedTuple, TypeAlias, TypeVar

import msgspec

from dynamo_ref.core.vclock import NodeId, VClock
from dynamo_ref.core.versions import Siblings, Version, checked_version

T = TypeVar("T")

# Defaults for frames the runtime accepts; the node enforces its own key and value limits.
MAX_FRAME: Final = 16 * 1024 * 1024


class ErrorCode(enum.StrEnum):
    """Stable error codes of ``ErrorReply``: clients and tests match on these, not on text."""

    INVALID_KEY = "invalid_key"  # empty or longer than max_key_size
    INVALID_VALUE = "invalid_value"  # longer than max_value_size
    INVALID_QUORUM = "invalid_quorum"  # R, W, PR or PW out of range for N
    INVALID_CONTEXT = "invalid_context"  # a context that is not one this store handed out
    INVALID_REQUEST = "invalid_request"  # a known message with bad fields or arguments
    UNKNOWN_MESSAGE = "unknown_message"  # a message type nobody defined
    MALFORMED = "malformed"  # not MessagePack, or not a message at all
    TOO_LARGE = "too_large"  # a frame over the size limit
    TIMEOUT = "timeout"  # the quorum did not answer within the request timeout
    UNAVAILABLE = "unavailable"  # too few replicas are up to even try
    OVERLOAD = "overload"  # too many requests in progress at this node
    NOT_FOUND = "not_found"  # admin: no such node
    UNAUTHORIZED = "unauthorized"  # a connection without the cluster secret or client token
    STORAGE_ERROR = "storage_error"  # the node could not write it durably (disk full, I/O)
    INTERNAL_ERROR = "internal_error"  # the node failed on the request; it serves on


class MessageError(ValueError):
    """A frame that cannot be served, with the code to answer it with and, when the frame
    shows one, the request id to answer to."""

    def __init__(self, code: ErrorCode, message: str, rid: int = 0) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.rid = rid


class _Msg(
    msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True, forbid_unknown_fields=True
):
    pass


# ---- versions on the wire -----------------------------------------------------------------

ClockEntry: TypeAlias = tuple[str, int, float]

# A client's context is checked where it is decoded: a coordinator adds one to a counter, and
# the result must still encode (MessagePack integers end at 2^64 - 1); no cluster has more
# coordinators than that many entries.
MAX_COUNTER: Final = 2**63 - 1
MAX_CONTEXT_ENTRIES: Final = 1024
_ContextEntry: TypeAlias = tuple[str, Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNTER)], float]


class WireVersion(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """A ``Version`` as ``[value, clock, ts, writer(, dot)]``; value nil is a tombstone."""

    value: bytes | None
    clock: list[ClockEntry]
    ts: float
    writer: str
    dot: int = 0


class WireContext(msgspec.Struct, frozen=True, array_like=True):
    """What a client gets back from a read and hands to its next write: the merged clock.
    Decoding checks each counter (1..MAX_COUNTER) and the entry count (MAX_CONTEXT_ENTRIES)."""

    clock: Annotated[list[_ContextEntry], msgspec.Meta(max_length=MAX_CONTEXT_ENTRIES)]


def clock_to_wire(clock: VClock) -> list[ClockEntry]:
    return [(node, counter, ts + 0.0) for node, counter, ts in clock.entries()]


_SEQUENCES = (list, tuple)  # a tuple: ``list | tuple`` would be built on every call


def clock_from_wire(entries: Iterable[ClockEntry]) -> VClock:
    """The clock of wire entries.

    :raises ValueError: a node twice, a counter below 1, or a timestamp that is not finite.
    """
    entries = entries if isinstance(entries, _SEQUENCES) else list(entries)
    # Fast paths for what encoders send, entries sorted by node: no dict, no re-sort. Anything
    # else goes the general way below, which also words the errors.
    if len(entries) == 1:
        node, counter, ts = entries[0]
        if counter >= 1 and math.isfinite(ts):
            return VClock._raw((node,), (counter,), (float(ts),))
    nodes: list[NodeId] = []
    counters: list[int] = []
    stamps: list[float] = []
    last: NodeId | None = None
    for node, counter, ts in entries:
        if (last is not None and node <= last) or counter < 1 or not math.isfinite(ts):
            break
        nodes.append(node)
        counters.append(counter)
        stamps.append(float(ts))
        last = node
    else:
        return VClock._raw(tuple(nodes), tuple(counters), tuple(stamps))
    mapping: dict[NodeId, tuple[int, float]] = {}
    for node, counter, ts in entries:
        if node in mapping:
            raise ValueError(f"vector clock names node {node!r} twice")
        if counter < 1:
            raise ValueError(f"vector clock counter for {node!r} must be >= 1, got {counter}")
        if not math.isfinite(ts):
            raise ValueError(f"vector clock timestamp for {node!r} must be finite")
        mapping[node] = (counter, ts)
    return VClock(mapping)


def version_to_wire(v: Version) -> WireVersion:
    # + 0.0: -0.0 and 0.0 are one timestamp and must encode alike (stored bytes are compared).
    return WireVersion(v.value, clock_to_wire(v.clock), v.timestamp + 0.0, v.writer, v.dot)


def version_from_wire(w: WireVersion) -> Version:
    """:raises ValueError: a bad clock, timestamp, writer or dot."""
    ts, writer, dot = w.ts, w.writer, w.dot
    if not math.isfinite(ts):
        raise ValueError("version timestamp must be finite")
    if not writer:
        raise ValueError("version writer must be a node id")
    if dot < 0:
        raise ValueError("version dot must not be negative")
    return checked_version(w.value, clock_from_wire(w.clock), ts, writer, dot)


def siblings_to_wire(siblings: Iterable[Version]) -> list[WireVersion]:
    # version_to_wire, inlined: every store, read and persist goes through here.
    return [
        WireVersion(v.value, clock_to_wire(v.clock), v.timestamp + 0.0, v.writer, v.dot)
        for v in siblings
    ]


def siblings_from_wire(ws: Iterable[WireVersion]) -> tuple[Version, ...]:
    """:raises ValueError: as ``version_from_wire``."""
    out: list[Version] = []
    isfinite = math.isfinite
    for w in ws:
        # version_from_wire inlined for a valid version with a one-entry clock, the common case
        # (every message and every read decodes versions); anything else takes the full path.
        ts, writer, dot, clock = w.ts, w.writer, w.dot, w.clock
        if len(clock) == 1 and isfinite(ts) and writer and dot >= 0:
            node, counter, stamp = clock[0]
            if counter >= 1 and isfinite(stamp):
                vc = VClock._raw((node,), (counter,), (float(stamp),))
                out.append(checked_version(w.value, vc, ts, writer, dot))
                continue
        out.append(version_from_wire(w))
    return tuple(out)


_SIBLINGS_ENCODER: Final = msgspec.msgpack.Encoder()
_SIBLINGS_DECODER: Final = msgspec.msgpack.Decoder(list[WireVersion])
_CONTEXT_DECODER: Final = msgspec.msgpack.Decoder(WireContext)


def encode_siblings(siblings: Siblings) -> bytes:
    """Compact bytes of a sibling set; canonical when ``siblings`` is (equal sets, equal bytes)."""
    return _SIBLINGS_ENCODER.encode(siblings_to_wire(siblings))


def decode_siblings(data: bytes) -> Siblings:
    """:raises ValueError: the bytes are not an encoded sibling set."""
    try:
        return siblings_from_wire(_SIBLINGS_DECODER.decode(data))
    except msgspec.DecodeError as e:
        raise ValueError(f"not an encoded sibling set: {e}") from e


def decode_wire_siblings(data: bytes) -> list[WireVersion]:
    """``siblings_to_wire(decode_siblings(data))`` without the ``Version`` objects, for bytes
    ``encode_siblings`` made (no checks beyond msgspec's: they were valid when encoded).

    :raises ValueError: the bytes are not an encoded sibling set.
    """
    try:
        return _SIBLINGS_DECODER.decode(data)
    except msgspec.DecodeError as e:
        raise ValueError(f"not an encoded sibling set: {e}") from e


def encode_context(clock: VClock) -> bytes:
    return _SIBLINGS_ENCODER.encode(WireContext(clock_to_wire(clock)))


def decode_context(data: bytes) -> VClock:
    """The clock of a client's context; empty bytes are the empty clock.

    :raises MessageError: INVALID_CONTEXT, also for a counter above MAX_COUNTER or more than
        MAX_CONTEXT_ENTRIES entries.
    """
    if not data:
        return VClock.empty()
    try:
        return clock_from_wire(_CONTEXT_DECODER.decode(data).clock)
    except msgspec.ValidationError as e:
        raise MessageError(
            ErrorCode.INVALID_CONTEXT,
            f"the context is not valid ({e}): a context is the one a read returned, with at "
            f"most {MAX_CONTEXT_ENTRIES} entries and counters from 1 to 2^63 - 1",
        ) from e
    except (msgspec.DecodeError, ValueError) as e:
        raise MessageError(ErrorCode.INVALID_CONTEXT, f"the context is not valid: {e}") from e


# ---- client requests ----------------------------------------------------------------------

# Per-request quorum overrides; None takes the node's setting. Range checks are the node's.
Quorum: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=1 << 16)] | None


class Get(_Msg, frozen=True, tag="get"):
    """Read ``key``. ``r``/``pr``: responses needed, and how many from primaries (Riak's PR)."""

    key: bytes
    r: Quorum = None
    pr: Quorum = None
    rid: int = 0  # echoed in the reply, so a client can pipeline requests


class Put(_Msg, frozen=True, tag="put"):
    """Write ``value`` under ``key`` with the ``context`` of an earlier read (empty: none).
    ``return_body``: the reply carries the coordinator's siblings after the write and their
    context, as a read there would."""

    key: bytes
    value: bytes
    context: bytes = b""
    w: Quorum = None
    pw: Quorum = None
    return_body: bool = False
    rid: int = 0


class Delete(_Msg, frozen=True, tag="delete"):
    """Delete ``key``: a tombstone written like a put, with the read's ``context``."""

    key: bytes
    context: bytes = b""
    w: Quorum = None
    pw: Quorum = None
    return_body: bool = False
    rid: int = 0


class Join(_Msg, frozen=True, tag="join"):
    """Admin: ``node`` joins the ring and claims partitions; ``address`` is where peers reach
    it (default: its id, as in the simulator)."""

    node: str
    zone: str | None = None
    rid: int = 0
    address: str | None = None


class Leave(_Msg, frozen=True, tag="leave"):
    """Admin: ``node`` hands its partitions to the others and leaves."""

    node: str
    rid: int = 0


class StatusRequest(_Msg, frozen=True, tag="status"):
    """Admin: what this node sees (membership, hints, anti-entropy, suspected peers)."""

    rid: int = 0


class SetClockSkew(_Msg, frozen=True, tag="set_clock_skew"):
    """Admin (fault harness): this node's timestamps become ``now + skew``."""

    skew: float
    rid: int = 0


class ReplicaGet(_Msg, frozen=True, tag="replica_get"):
    """Admin (fault harness): the versions this node itself stores for ``key`` (tombstones
    included), asking no peer: how the convergence check reads every replica."""

    key: bytes
    rid: int = 0


DataRequest: TypeAlias = Get | Put | Delete
AdminRequest: TypeAlias = Join | Leave | StatusRequest | SetClockSkew | ReplicaGet
ClientMessage: TypeAlias = (
    Get | Put | Delete | Join | Leave | StatusRequest | SetClockSkew | ReplicaGet
)


# ---- replies --------------------------------------------------------------------------------


class SiblingClock(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The clock of one sibling a read returns: ``clock``, coordinator ``writer`` and, in DVV
    mode, the write's own ``dot`` (so a checker can compare siblings causally)."""

    clock: list[ClockEntry]
    writer: str
    dot: int = 0


class GetOk(_Msg, frozen=True, tag="get_ok"):
    """The reconciled values (siblings; none when absent or deleted) and their merged context;
    ``clocks[i]`` is the clock of ``siblings[i]``."""

    siblings: list[bytes]
    context: bytes
    rid: int = 0
    clocks: list[SiblingClock] = []


class PutOk(_Msg, frozen=True, tag="put_ok"):
    """A put or delete is stored on W nodes (PW of them primaries). ``context`` covers the
    written version (``ts`` is its timestamp), or with ``return_body`` every sibling the
    coordinator then held, which ``siblings`` lists. In DVV mode a write that followed
    writes its client had not read is left out of its own context (the gap cannot be
    written as a clock): a later write with it keeps it as a sibling. A read is exact."""

    context: bytes = b""
    ts: float = 0.0
    siblings: list[bytes] = []
    rid: int = 0


class AdminOk(_Msg, frozen=True, tag="admin_ok"):
    """An admin request was taken; ``detail`` says what it changed."""

    detail: str
    rid: int = 0


class ErrorReply(_Msg, frozen=True, tag="error"):
    code: str
    message: str
    rid: int = 0


class MemberInfo(msgspec.Struct, frozen=True, array_like=True):
    """A member as ``status`` shows it; ``address``, ``zone`` and ``claims`` let a client
    rebuild the ring (partition-aware routing)."""

    node: str
    status: str
    incarnation: int
    partitions: int
    suspected: bool
    address: str = ""
    zone: str | None = None
    claims: list[int] = []


class StatusReply(_Msg, frozen=True, tag="status_ok"):
    node: str
    members: list[MemberInfo]
    hints: dict[str, int]  # owner -> keys held for it
    anti_entropy: dict[str, float]  # peer -> time of the last completed exchange
    keys: int
    clock_skew: float
    mode: str
    ring_version: str  # hex digest of the membership this node routes by
    rid: int = 0
    q: int = 0  # partitions on the ring
    n: int = 0  # replicas per key
    # writer -> seconds its timestamps ran ahead of this node's clock, past the warning level
    clocks_ahead: dict[str, float] = {}


class ReplicaVersions(_Msg, frozen=True, tag="replica_versions"):
    """The answer to ``ReplicaGet``: the node's stored versions of the key (none: absent)."""

    versions: list[WireVersion]
    rid: int = 0


ReplyMessage: TypeAlias = GetOk | PutOk | AdminOk | ErrorReply | StatusReply | ReplicaVersions


# ---- peer messages: the spec's four kinds ---------------------------------------------------


class Store(_Msg, frozen=True, tag="store"):
    """Store ``versions`` of ``key``: for put ``op`` (acked), read repair (op 0, not acked) or,
    with ``hint``, as a fallback for replica ``hint``; ``hint`` = the receiver is a handoff."""

    op: int
    key: bytes
    versions: list[WireVersion]
    hint: str | None = None


class StoreAck(_Msg, frozen=True, tag="store_ack"):
    """The sender stored the versions of store ``op`` for ``key``. ``versions`` echoes them
    only for a handoff, where ``hint`` is the sender: the handing node drops those hints. Any
    other ack carries none, as nothing is dropped for it."""

    op: int
    key: bytes
    versions: list[WireVersion]
    hint: str | None = None


class Read(_Msg, frozen=True, tag="read"):
    """Ask for ``key``'s versions; with ``hint`` the receiver is a fallback for that replica
    and answers with what it holds for it too (a sloppy read)."""

    op: int
    key: bytes
    hint: str | None = None


class ReadResp(_Msg, frozen=True, tag="read_resp"):
    op: int
    key: bytes
    versions: list[WireVersion]


# ---- peer messages the spec abstracts -------------------------------------------------------


class Forward(_Msg, frozen=True, tag="forward"):
    """A client request for a key this node does not replicate, sent to one that does."""

    fid: int
    request: Get | Put | Delete
    hops: int = 1


class ForwardReply(_Msg, frozen=True, tag="forward_reply"):
    fid: int
    reply: ReplyMessage


class Ping(_Msg, frozen=True, tag="ping"):
    """Failure-detector heartbeat, sent to peers not heard from for a gossip interval."""


class Pong(_Msg, frozen=True, tag="pong"):
    pass


class WireMember(msgspec.Struct, frozen=True, array_like=True):
    node: str
    incarnation: int
    status: str
    address: str
    zone: str | None
    claims: list[int]


class Gossip(_Msg, frozen=True, tag="gossip"):
    """A whole membership view; ``reply`` asks the receiver to answer with its own."""

    members: list[WireMember]
    reply: bool = True


class JoinRequest(_Msg, frozen=True, tag="join_request"):
    """A node started with only seeds asks one to let it join at ``address`` (or a member
    passes an admin's join on): the claimant makes it claim partitions and sends it its view
    as gossip. ``address`` empty: the node's id is its address."""

    node: str
    address: str
    zone: str | None = None
    view: list[WireMember] = []  # passed on by a member: what it knows, for the claimant


class LeaveRequest(_Msg, frozen=True, tag="leave_request"):
    """A member asks the claimant to take ``node`` out of the ring (an admin's leave), with
    its view, so that the claimant acts on no less than the member knew."""

    node: str
    view: list[WireMember] = []


class MerkleQuery(_Msg, frozen=True, tag="merkle_query"):
    """Anti-entropy: the hashes of children of ``indexes`` at ``level`` of ``partition``'s
    tree (its leaves' items when ``level`` is the tree's depth). ``root`` is the asker's."""

    session: int
    partition: int
    level: int
    indexes: list[int]
    root: bytes
    fanout: int
    depth: int


class MerkleAnswer(_Msg, frozen=True, tag="merkle_answer"):
    """``children[i]``: the hashes below ``indexes[i]``, or for leaves, ``leaves[i]``: the
    (key, digest) items. ``in_sync``: the roots were equal, nothing else to say."""

    session: int
    partition: int
    level: int
    root: bytes
    children: list[list[bytes]] = []
    leaves: list[list[tuple[bytes, bytes]]] = []
    in_sync: bool = False
    refused: str = ""


class SyncKeys(_Msg, frozen=True, tag="sync_keys"):
    """Anti-entropy: the asker's versions of exactly the keys whose digests differ."""

    session: int
    partition: int
    items: list[tuple[bytes, list[WireVersion]]]


class SyncKeysReply(_Msg, frozen=True, tag="sync_keys_reply"):
    """The peer's versions of those keys after merging the asker's."""

    session: int
    partition: int
    items: list[tuple[bytes, list[WireVersion]]]


class Transfer(_Msg, frozen=True, tag="transfer"):
    """A chunk of ``partition`` handed to a new replica after a join or leave."""

    tid: int
    partition: int
    items: list[tuple[bytes, list[WireVersion]]]
    last: bool


class TransferAck(_Msg, frozen=True, tag="transfer_ack"):
    tid: int
    partition: int


class Reap(_Msg, frozen=True, tag="reap"):
    """Every replica holds these tombstones: drop the key if they are still all it holds."""

    key: bytes
    versions: list[WireVersion]


PeerMessage: TypeAlias = (
    Store
    | StoreAck
    | Read
    | ReadResp
    | Forward
    | ForwardReply
    | Ping
    | Pong
    | Gossip
    | JoinRequest
    | LeaveRequest
    | MerkleQuery
    | MerkleAnswer
    | SyncKeys
    | SyncKeysReply
    | Transfer
    | TransferAck
    | Reap
)

Message: TypeAlias = ClientMessage | ReplyMessage | PeerMessage

_ENCODER: Final = msgspec.msgpack.Encoder()
# Annotated: for a union, msgspec's stubs infer Decoder[Any].
_DECODER: Final[msgspec.msgpack.Decoder[Message]] = msgspec.msgpack.Decoder(Message)
_CLIENT_DECODER: Final[msgspec.msgpack.Decoder[ClientMessage]] = msgspec.msgpack.Decoder(
    ClientMessage
)
_PEER_DECODER: Final[msgspec.msgpack.Decoder[PeerMessage]] = msgspec.msgpack.Decoder(PeerMessage)
_REPLY_DECODER: Final[msgspec.msgpack.Decoder[ReplyMessage]] = msgspec.msgpack.Decoder(ReplyMessage)


def _tags(union: object) -> frozenset[str]:
    return frozenset(str(cls.__struct_config__.tag) for cls in getattr(union, "__args__", ()))


CLIENT_TYPES: Final = _tags(ClientMessage)
REPLY_TYPES: Final = _tags(ReplyMessage)
PEER_TYPES: Final = _tags(PeerMessage)


def encode(msg: Message) -> bytes:
    """MessagePack bytes of any message."""
    return _ENCODER.encode(msg)


def decode(data: bytes) -> Message:
    """Any message from MessagePack bytes.

    :raises MessageError: with the code that says what is wrong.
    """
    return _decode(_DECODER, data, CLIENT_TYPES | REPLY_TYPES | PEER_TYPES, MAX_FRAME)


def decode_client(data: bytes, max_size: int = MAX_FRAME) -> ClientMessage:
    """A client request; anything else (a peer message too) is refused.

    :raises MessageError: TOO_LARGE, MALFORMED, UNKNOWN_MESSAGE or INVALID_REQUEST.
    """
    return _decode(_CLIENT_DECODER, data, CLIENT_TYPES, max_size)


def decode_peer(data: bytes, max_size: int = MAX_FRAME) -> PeerMessage:
    """:raises MessageError: as ``decode_client``."""
    return _decode(_PEER_DECODER, data, PEER_TYPES, max_size)


def decode_reply(data: bytes, max_size: int = MAX_FRAME) -> ReplyMessage:
    """:raises MessageError: as ``decode_client``."""
    return _decode(_REPLY_DECODER, data, REPLY_TYPES, max_size)


def _decode(
    decoder: msgspec.msgpack.Decoder[T], data: bytes, known: frozenset[str], max_size: int
) -> T:
    if len(data) > max_size:
        raise MessageError(
            ErrorCode.TOO_LARGE,
            f"frame of {len(data)} bytes exceeds the limit of {max_size}",
            _head(data).rid,
        )
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as e:
        raise _classify(data, known, str(e)) from e
    except msgspec.DecodeError as e:
        raise MessageError(
            ErrorCode.MALFORMED, f"not a MessagePack message: {e}", _head(data).rid
        ) from e
    except UnicodeDecodeError as e:  # msgspec raises it for a str field that is not UTF-8
        raise MessageError(
            ErrorCode.MALFORMED, f"a string that is not UTF-8: {e}", _head(data).rid
        ) from e


def _classify(data: bytes, known: frozenset[str], detail: str) -> MessageError:
    """Unknown type or bad fields of a known one: the answer a client can act on."""
    head = _head(data)
    if not head.is_map:
        return MessageError(ErrorCode.MALFORMED, "a message is a map with a 'type' field")
    kind = head.kind
    if kind is _NOT_SEEN:
        return MessageError(
            ErrorCode.MALFORMED,
            f"a message is a map with a 'type' field among its first {SCAN_BUDGET} items: {detail}",
            head.rid,
        )
    if kind is _ABSENT:
        return MessageError(ErrorCode.MALFORMED, "a message is a map with a 'type' field", head.rid)
    if not isinstance(kind, str) or kind not in known:
        names = ", ".join(sorted(known))
        shown = kind if isinstance(kind, str) else "(not a string)"
        return MessageError(
            ErrorCode.UNKNOWN_MESSAGE,
            f"unknown message type {shown!r}; expected one of {names}",
            head.rid,
        )
    return MessageError(ErrorCode.INVALID_REQUEST, f"bad {kind!r} message: {detail}", head.rid)


# ---- what a bad frame claims to be, from its first items -------------------------------------

# At most this many MessagePack items are looked at to find a bad frame's 'type' and 'rid':
# encoders put the type first, and fields are few, so a real message shows both at once.
SCAN_BUDGET: Final = 256
_ABSENT: Final = object()  # the whole map was read: no 'type' key
_NOT_SEEN: Final = object()  # the budget ran out (or the frame ended) before a 'type' key
_NOT_A_STRING: Final = object()  # a 'type' that is not a short string


class _Head(NamedTuple):
    is_map: bool
    kind: object  # the 'type' value (a str when readable), _ABSENT or _NOT_SEEN
    rid: int  # the 'rid' when it is an integer in 0..2^63-1, else 0


class _GiveUp(Exception):
    pass


# Fixed-size MessagePack items by first byte: total bytes of the item.
_FIXED: Final = {
    0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
    0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,
}  # fmt: skip
# Items with a length field: (bytes of the length, bytes before the payload).
_SIZED: Final = {
    0xC4: (1, 2), 0xC5: (2, 3), 0xC6: (4, 5),  # bin
    0xD9: (1, 2), 0xDA: (2, 3), 0xDB: (4, 5),  # str
    0xC7: (1, 3), 0xC8: (2, 4), 0xC9: (4, 6),  # ext (a type byte after the length)
}  # fmt: skip


def _head(data: bytes) -> _Head:
    """Whether ``data`` is a map, and its 'type' and 'rid', from at most SCAN_BUDGET items."""
    if not data:
        return _Head(False, _NOT_SEEN, 0)
    first = data[0]
    if 0x80 <= first <= 0x8F:
        pairs, pos = first & 0x0F, 1
    elif first in (0xDE, 0xDF):
        width = 2 if first == 0xDE else 4
        pairs, pos = int.from_bytes(data[1 : 1 + width], "big"), 1 + width
    else:
        return _Head(False, _NOT_SEEN, 0)
    kind: object = _NOT_SEEN
    rid = 0
    budget = SCAN_BUDGET
    try:
        for _ in range(pairs):
            if budget <= 0:
                raise _GiveUp
            name, after = _short_str(data, pos)
            if name is None:
                pos, budget = _skip(data, pos, budget)
            else:
                pos, budget = after, budget - 1
            if name == "type":
                value, _ = _short_str(data, pos)
                kind = value if value is not None else _NOT_A_STRING
                pos, budget = _skip(data, pos, budget)
            elif name == "rid":
                rid = _uint(data, pos)
                pos, budget = _skip(data, pos, budget)
            else:
                pos, budget = _skip(data, pos, budget)
            if kind is not _NOT_SEEN and rid:
                break
        else:
            if kind is _NOT_SEEN:
                kind = _ABSENT
    except (_GiveUp, IndexError):
        pass
    return _Head(True, kind, rid)


def _short_str(data: bytes, pos: int) -> tuple[str | None, int]:
    """The string at ``pos`` when it is one of at most 64 UTF-8 bytes (else None), and the
    position after the item when it is a string (else ``pos``)."""
    b = data[pos]
    if 0xA0 <= b <= 0xBF:
        size, start = b & 0x1F, pos + 1
    elif b == 0xD9:
        size, start = data[pos + 1], pos + 2
    else:
        return None, pos
    if size > 64 or start + size > len(data):
        return None, pos
    try:
        return data[start : start + size].decode(), start + size
    except UnicodeDecodeError:
        return None, pos


def _uint(data: bytes, pos: int) -> int:
    """The non-negative integer at ``pos`` when it is one below 2^63, else 0."""
    b = data[pos]
    if b <= 0x7F:
        return b
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(b)
    if width is None or pos + 1 + width > len(data):
        return 0
    value = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    return value if value < 1 << 63 else 0


def _skip(data: bytes, pos: int, budget: int) -> tuple[int, int]:
    """The position after the item at ``pos`` and the budget left; containers count each
    item inside them against the budget.

    :raises _GiveUp: the budget ran out or the item is not MessagePack.
    :raises IndexError: the frame ends inside the item.
    """
    items = 1
    while items:
        if budget <= 0 or pos >= len(data):
            raise _GiveUp
        budget -= 1
        items -= 1
        b = data[pos]
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b <= 0x8F:
            items += 2 * (b & 0x0F)
            pos += 1
        elif b <= 0x9F:
            items += b & 0x0F
            pos += 1
        elif b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _SIZED:
            width, before = _SIZED[b]
            pos += before + int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        elif b in (0xDC, 0xDD, 0xDE, 0xDF):
            width = 2 if b in (0xDC, 0xDE) else 4
            count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            items += count if b in (0xDC, 0xDD) else 2 * count
            pos += 1 + width
        else:  # 0xC1: never used by MessagePack
            raise _GiveUp
    if pos > len(data):
        raise _GiveUp
    return pos, budget


def rid_of(msg: object) -> int:
    """The request id a reply must echo (0 when the message has none)."""
    rid = getattr(msg, "rid", 0)
    return rid if isinstance(rid, int) else 0
