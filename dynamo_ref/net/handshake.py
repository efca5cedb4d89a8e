"""The handshake that opens every connection, and the cluster secret's challenge-response.

The connector speaks first::

    connector -> Hello(version, role, node, nonce, token)
    acceptor  -> Welcome(version, node, nonce, proof)   or ErrorReply, then close
    connector -> Proof(proof)                           peers and admins only
    acceptor  -> Ready()                                or ErrorReply, then close

A client presents the token when the node requires one and may send requests right after
Welcome. An admin is a client that also proves the cluster secret, as a peer does: when the
node has a secret, only an admin may change membership (join, leave) or settings (clock
skew). A peer and the node it connects to each prove the cluster secret with an HMAC over
both nonces and both node ids (a fresh nonce per connection, so a proof cannot be replayed,
and the role is bound in so one side's proof is never the other's). A process without the
secret cannot become a peer, so it can neither join gossip nor send ``Store``.

A peer need not present the client token, since it proves the secret instead. Without a
secret even a peer must present it; the server refuses a token without a secret anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final, Literal, TypeAlias

import msgspec

from dynamo_ref.core.messages import ErrorCode, ErrorReply

PROTOCOL_VERSION: Final = 1
NONCE_BYTES: Final = 16
# A handshake frame is small; anything larger is not one.
MAX_HANDSHAKE: Final = 4096

Role: TypeAlias = Literal["client", "admin", "peer"]


class _Hs(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    pass


class Hello(_Hs, frozen=True, tag="hello"):
    version: int
    role: Role
    node: str = ""  # a peer's own id
    nonce: bytes = b""
    token: str = ""  # a client's token, when the node asks for one


class Welcome(_Hs, frozen=True, tag="welcome"):
    version: int
    node: str
    nonce: bytes
    proof: bytes = b""  # the acceptor's proof of the secret (peers)


class Proof(_Hs, frozen=True, tag="proof"):
    proof: bytes


class Ready(_Hs, frozen=True, tag="ready"):
    pass


HandshakeMessage: TypeAlias = Hello | Welcome | Proof | Ready | ErrorReply

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final[msgspec.msgpack.Decoder[HandshakeMessage]] = msgspec.msgpack.Decoder(
    HandshakeMessage
)


class HandshakeError(Exception):
    """A handshake that failed; ``code`` is an ``ErrorCode`` value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode_handshake(msg: HandshakeMessage) -> bytes:
    return _ENCODER.encode(msg)


def decode_handshake(data: bytes) -> HandshakeMessage:
    """:raises HandshakeError: MALFORMED for anything that is not a handshake message."""
    if len(data) > MAX_HANDSHAKE:
        raise HandshakeError(ErrorCode.TOO_LARGE, f"a handshake frame of {len(data)} bytes")
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise HandshakeError(
            ErrorCode.MALFORMED, f"expected a handshake (hello, welcome, proof, ready): {e}"
        ) from e


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def proof(secret: bytes, side: str, *parts: bytes | str) -> bytes:
    """HMAC-SHA256 of ``side`` and ``parts``, each length-prefixed so no two inputs collide."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (side, *parts):
        raw = part.encode() if isinstance(part, str) else part
        mac.update(len(raw).to_bytes(4, "big"))
        mac.update(raw)
    return mac.digest()


def acceptor_proof(secret: bytes, hello: Hello, welcome_nonce: bytes, acceptor: str) -> bytes:
    return proof(secret, "acceptor", hello.nonce, welcome_nonce, acceptor, hello.node)


def connector_proof(secret: bytes, hello: Hello, welcome: Welcome) -> bytes:
    return proof(secret, "connector", welcome.nonce, hello.nonce, hello.node, welcome.node)


def check_hello(
    hello: HandshakeMessage, *, secret: bytes | None, client_token: str | None
) -> Hello:
    """The acceptor's check of the first frame.

    :raises HandshakeError: a wrong version or role, a missing id or nonce, a wrong token.
    """
    if not isinstance(hello, Hello):
        raise HandshakeError(ErrorCode.MALFORMED, "the first frame must be a hello")
    if hello.version != PROTOCOL_VERSION:
        raise HandshakeError(
            ErrorCode.INVALID_REQUEST,
            f"protocol version {hello.version} is not supported; this node speaks "
            f"{PROTOCOL_VERSION}",
        )
    if hello.role == "peer":
        if not hello.node:
            raise HandshakeError(ErrorCode.INVALID_REQUEST, "a peer must give its node id")
        if secret is not None and len(hello.nonce) != NONCE_BYTES:
            raise HandshakeError(
                ErrorCode.INVALID_REQUEST, f"a peer's nonce must be {NONCE_BYTES} bytes"
            )
    elif hello.role == "admin" and secret is not None and len(hello.nonce) != NONCE_BYTES:
        raise HandshakeError(
            ErrorCode.INVALID_REQUEST, f"an admin's nonce must be {NONCE_BYTES} bytes"
        )
    # A peer skips the token only because it must prove the secret next; without a secret
    # nothing would stop a client from calling itself a peer.
    token_needed = client_token is not None and (hello.role != "peer" or secret is None)
    if token_needed and not hmac.compare_digest(
        hello.token.encode(), (client_token or "").encode()
    ):
        raise HandshakeError(
            ErrorCode.UNAUTHORIZED,
            "this node requires a client token" if not hello.token else "wrong client token",
        )
    return hello


def check_proof(msg: HandshakeMessage, expected: bytes) -> None:
    """:raises HandshakeError: UNAUTHORIZED unless ``msg`` is the expected proof."""
    if not isinstance(msg, Proof):
        raise HandshakeError(ErrorCode.MALFORMED, "expected the peer's proof")
    if not hmac.compare_digest(msg.proof, expected):
        raise HandshakeError(ErrorCode.UNAUTHORIZED, "the peer does not know the cluster secret")
