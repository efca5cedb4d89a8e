"""The client library: async (``AsyncClient``) and blocking (``Client``).

A client keeps one connection per node it talks to and pipelines requests over it, matched to
replies by request id. Reads return every sibling and an opaque context; a write hands the
context of the read it follows, so the node knows which versions it supersedes. Any node can
coordinate (a non-replica forwards); with ``partition_aware`` the client sends each request to
the first node of the key's preference list itself, the paper's client-driven coordination,
using the ring a node's ``status`` describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dynamo_ref.core.membership import ring_from_claims
from dynamo_ref.core.messages import (
    AdminOk,
    ClientMessage,
    Delete,
    ErrorCode,
    ErrorReply,
    Get,
    GetOk,
    Join,
    Leave,
    MessageError,
    Put,
    PutOk,
    ReplicaGet,
    ReplicaVersions,
    ReplyMessage,
    SetClockSkew,
    SiblingClock,
    StatusReply,
    StatusRequest,
    WireVersion,
    decode_reply,
    encode,
)
from dynamo_ref.core.ring import Ring
from dynamo_ref.env import TOKEN_ENV
from dynamo_ref.net.connect import FramedStream, connect
from dynamo_ref.net.framing import MAX_FRAME, FrameError
from dynamo_ref.net.handshake import HandshakeError

T = TypeVar("T")

# How long closing a connection may wait for the other side.
CLOSE_TIMEOUT = 5.0
# How long a partition-aware client routes by a ring before asking for it again.
RING_REFRESH = 5.0
# Where a client token comes from when no file is named (never a command line: ps shows it).


def load_token(path: str | Path | None = None) -> str | None:
    """The client token: the file's text (a trailing newline dropped) when ``path`` is given,
    else ``$DYNAMO_REF_CLIENT_TOKEN``, else None.

    :raises ValueError: the token is empty.
    :raises OSError: the file cannot be read.
    """
    if path is not None:
        token = Path(path).read_text().rstrip("\r\n")
        where = str(path)
    elif os.environ.get(TOKEN_ENV) is not None:
        token, where = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    else:
        return None
    if not token:
        raise ValueError(f"the client token in {where} is empty")
    return token


class ClientError(Exception):
    """A request that failed: an ``ErrorReply`` from the node, a timeout, a refused handshake
    or a lost connection. ``code`` is an ``ErrorCode`` value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class GetResult:
    siblings: list[bytes]  # every concurrent value (none: absent or deleted)
    context: bytes  # hand it to the next put or delete of this key
    clocks: list[SiblingClock] = field(default_factory=list)  # one per sibling, if the node says


@dataclass(frozen=True)
class PutResult:
    context: bytes  # of the written version, or with return_body of every sibling listed
    ts: float
    siblings: list[bytes] = field(default_factory=list)  # with return_body: what is now stored


Addresses = str | Sequence[str]
Data = bytes | str


def addresses_of(addresses: Addresses) -> list[str]:
    """``"h:1,h:2"``, ``"h:1"`` or ``["h:1", "h:2"]`` as a list of addresses.

    :raises ValueError: no address at all.
    """
    items = [addresses] if isinstance(addresses, str) else list(addresses)
    out = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not out:
        raise ValueError("a client needs at least one node address")
    return out


def as_bytes(data: Data, what: str) -> bytes:
    """Keys and values travel as bytes; text is sent as UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"the {what} must be bytes or str, not {type(data).__name__}")


class _Connection:
    """One handshaken connection to a node, with requests in flight by id."""

    def __init__(self, address: str, stream: FramedStream, max_frame: int) -> None:
        self.address = address
        self.stream = stream
        self.max_frame = max_frame
        self.waiting: dict[int, asyncio.Future[ReplyMessage]] = {}
        self.broken: ClientError | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.stream.recv()
                reply = decode_reply(frame, self.max_frame)
                fut = self.waiting.pop(reply.rid, None)
                if fut is None and reply.rid == 0 and isinstance(reply, ErrorReply):
                    # A connection-level error: the node is about to close on us.
                    raise ClientError(reply.code, reply.message)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except ClientError as e:
            self._break(e)
        except (OSError, FrameError, MessageError) as e:
            self._break(ClientError(ErrorCode.UNAVAILABLE, f"connection to {self.address}: {e}"))
        finally:
            self.stream.close()

    def _break(self, error: ClientError) -> None:
        self.broken = error
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(error)
        self.waiting.clear()

    async def request(self, msg: ClientMessage, rid: int, timeout: float) -> ReplyMessage:
        if self.broken is not None:
            raise self.broken
        fut: asyncio.Future[ReplyMessage] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        self.stream.send(encode(msg))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ClientError(
                ErrorCode.TIMEOUT, f"no answer from {self.address} within {timeout:g}s"
            ) from None
        finally:
            self.waiting.pop(rid, None)

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        self.stream.close()
        # Bounded: a peer that never finishes the close must not hold the caller.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.stream.writer.wait_closed(), CLOSE_TIMEOUT)


class AsyncClient:
    """A client of a dynamo-ref cluster (see the module docstring).

    ``await AsyncClient.connect(addresses)`` connects at once; ``AsyncClient(addresses)``
    connects on first use (or on ``async with``). ``addresses`` is a list or one string,
    comma-separated. Keys and values are bytes, or text sent as UTF-8.
    """

    def __init__(
        self,
        addresses: Addresses,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        partition_aware: bool = False,
        max_frame: int = MAX_FRAME,
        secret: bytes | None = None,
    ) -> None:
        self.addresses = addresses_of(addresses)
        self.token = token
        # With the cluster secret the client connects as an admin: it may join, leave and set
        # clock skew on nodes that have a secret.
        self.secret = secret
        self.timeout = timeout
        self.partition_aware = partition_aware
        self.max_frame = max_frame
        self._conns: dict[str, _Connection] = {}
        self._opening: dict[str, asyncio.Future[_Connection]] = {}
        self._rids = itertools.count(1)
        self._ring: tuple[Ring, int, dict[str, str]] | None = None
        self._ring_at = -RING_REFRESH

    @classmethod
    async def connect(
        cls,
        addresses: Addresses,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        partition_aware: bool = False,
        secret: bytes | None = None,
    ) -> AsyncClient:
        """Connect to the first node of ``addresses`` that answers.

        :raises ClientError: UNAVAILABLE when none does, UNAUTHORIZED for a wrong token.
        """
        client = cls(
            addresses,
            token=token,
            timeout=timeout,
            partition_aware=partition_aware,
            secret=secret,
        )
        try:
            await client._default()
            if partition_aware:
                await client.refresh_ring()
        except BaseException:
            # Failed or cancelled half way: close what was opened, or its reader outlives us.
            await asyncio.shield(client.close())
            raise
        return client

    # ---- data ----------------------------------------------------------------------------

    async def get(self, key: Data, *, r: int | None = None, pr: int | None = None) -> GetResult:
        rid = self._rid()
        key = as_bytes(key, "key")
        reply = await self._call(Get(key, r, pr, rid), rid, key)
        if not isinstance(reply, GetOk):
            raise _unexpected(reply)
        return GetResult(list(reply.siblings), reply.context, list(reply.clocks))

    async def put(
        self,
        key: Data,
        value: Data,
        *,
        context: bytes = b"",
        w: int | None = None,
        pw: int | None = None,
        return_body: bool = False,
    ) -> PutResult:
        """Write ``value``; ``context`` is the one of the read this write follows (none: a
        blind write, kept beside what is there). With ``return_body`` the result lists every
        sibling the coordinator holds after the write, and its context covers them all."""
        rid = self._rid()
        key = as_bytes(key, "key")
        msg = Put(key, as_bytes(value, "value"), context, w, pw, return_body, rid=rid)
        return _put_result(await self._call(msg, rid, key))

    async def delete(
        self,
        key: Data,
        *,
        context: bytes = b"",
        w: int | None = None,
        pw: int | None = None,
        return_body: bool = False,
    ) -> PutResult:
        """A tombstone for what ``context`` covers: without one it deletes nothing that is
        stored (read first, and pass the read's context)."""
        rid = self._rid()
        key = as_bytes(key, "key")
        msg = Delete(key, context, w, pw, return_body, rid=rid)
        return _put_result(await self._call(msg, rid, key))

    # ---- admin ---------------------------------------------------------------------------

    async def status(self, address: str | None = None) -> StatusReply:
        rid = self._rid()
        reply = await self._call(StatusRequest(rid), rid, None, address)
        if not isinstance(reply, StatusReply):
            raise _unexpected(reply)
        return reply

    async def join(self, node: str, address: str, zone: str | None = None) -> str:
        """Ask the node to add ``node`` (listening at ``address``) to the ring."""
        rid = self._rid()
        return _admin(await self._call(Join(node, zone, rid, address), rid, None))

    async def leave(self, node: str) -> str:
        rid = self._rid()
        return _admin(await self._call(Leave(node, rid), rid, None))

    async def set_clock_skew(self, skew: float, address: str | None = None) -> str:
        rid = self._rid()
        return _admin(await self._call(SetClockSkew(skew, rid), rid, None, address))

    async def replica_get(self, key: Data, address: str | None = None) -> list[WireVersion]:
        """The versions the node at ``address`` (default: the first) stores for ``key`` itself,
        tombstones included: no coordinator, no quorum (the fault harness' replica read)."""
        rid = self._rid()
        key = as_bytes(key, "key")
        reply = await self._call(ReplicaGet(key, rid), rid, None, address)
        if not isinstance(reply, ReplicaVersions):
            raise _unexpected(reply)
        return list(reply.versions)

    async def refresh_ring(self) -> None:
        """Fetch the ring a partition-aware client routes by."""
        status = await self.status()
        members = [(m.node, m.status, m.zone, m.claims) for m in status.members]
        try:
            ring = ring_from_claims(members, status.q or None, status.n or 1)
        except ValueError:
            return  # the view is mid-change: keep routing as before
        book = {m.node: m.address for m in status.members if m.address}
        self._ring = (ring, status.n, book)
        self._ring_at = time.monotonic()

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.close()

    async def __aenter__(self) -> AsyncClient:
        try:
            await self._default()
            if self.partition_aware:
                await self.refresh_ring()
        except BaseException:
            await asyncio.shield(self.close())
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- plumbing --------------------------------------------------------------------------

    def _rid(self) -> int:
        return next(self._rids)

    async def _call(
        self, msg: ClientMessage, rid: int, key: bytes | None, address: str | None = None
    ) -> ReplyMessage:
        if address is not None:
            conn = await self._open(address)
        elif key is not None and self.partition_aware:
            conn = await self._route(key)
        else:
            conn = await self._default()
        reply = await conn.request(msg, rid, self.timeout)
        if isinstance(reply, ErrorReply):
            raise ClientError(reply.code, reply.message)
        return reply

    async def _route(self, key: bytes) -> _Connection:
        if time.monotonic() - self._ring_at >= RING_REFRESH:
            with contextlib.suppress(ClientError):
                await self.refresh_ring()
        if self._ring is not None:
            ring, n, book = self._ring
            for node in ring.preference_list(key, max(n, 1)):
                address = book.get(node)
                if address is None:
                    continue
                with contextlib.suppress(ClientError):
                    return await self._open(address)
        return await self._default()

    async def _default(self) -> _Connection:
        """The connection to the first node in ``addresses`` that answers."""
        errors: list[str] = []
        for address in self.addresses:
            try:
                return await self._open(address)
            except ClientError as e:
                if e.code == ErrorCode.UNAUTHORIZED:
                    raise
                errors.append(str(e))
        raise ClientError(ErrorCode.UNAVAILABLE, "no node answered: " + "; ".join(errors))

    async def _open(self, address: str) -> _Connection:
        conn = self._conns.get(address)
        if conn is not None and conn.broken is None:
            return conn
        pending = self._opening.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._opening[address] = fut
        try:
            stream, _ = await connect(
                address,
                "client" if self.secret is None else "admin",
                secret=self.secret,
                token=self.token,
                timeout=self.timeout,
                max_frame=self.max_frame,
            )
        except HandshakeError as e:
            err = ClientError(e.code, f"{address} refused the connection: {e.message}")
            fut.set_exception(err)
            raise err from None
        except (OSError, ValueError, FrameError) as e:
            err = ClientError(ErrorCode.UNAVAILABLE, f"cannot connect to {address}: {e}")
            fut.set_exception(err)
            raise err from None
        finally:
            self._opening.pop(address, None)
            if fut.done():
                fut.exception()  # retrieved: no "never retrieved" warning
        conn = self._conns[address] = _Connection(address, stream, self.max_frame)
        fut.set_result(conn)
        return conn


def _put_result(reply: ReplyMessage) -> PutResult:
    if not isinstance(reply, PutOk):
        raise _unexpected(reply)
    return PutResult(reply.context, reply.ts, list(reply.siblings))


def _unexpected(reply: ReplyMessage) -> ClientError:
    return ClientError(ErrorCode.MALFORMED, f"unexpected reply {type(reply).__name__}")


def _admin(reply: ReplyMessage) -> str:
    if not isinstance(reply, AdminOk):
        raise _unexpected(reply)
    return reply.detail


class Client:
    """``AsyncClient``, blocking: it runs its own event loop in a thread.

    Usable as a context manager; ``close`` stops the thread.
    """

    def __init__(
        self,
        addresses: Addresses,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        partition_aware: bool = False,
        secret: bytes | None = None,
    ) -> None:
        addresses = addresses_of(addresses)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self._client = self._run(
                AsyncClient.connect(
                    addresses,
                    token=token,
                    timeout=timeout,
                    partition_aware=partition_aware,
                    secret=secret,
                )
            )
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: ThreadFuture[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def get(self, key: Data, *, r: int | None = None, pr: int | None = None) -> GetResult:
        return self._run(self._client.get(key, r=r, pr=pr))

    def put(
        self,
        key: Data,
        value: Data,
        *,
        context: bytes = b"",
        w: int | None = None,
        pw: int | None = None,
        return_body: bool = False,
    ) -> PutResult:
        return self._run(
            self._client.put(key, value, context=context, w=w, pw=pw, return_body=return_body)
        )

    def delete(
        self,
        key: Data,
        *,
        context: bytes = b"",
        w: int | None = None,
        pw: int | None = None,
        return_body: bool = False,
    ) -> PutResult:
        return self._run(
            self._client.delete(key, context=context, w=w, pw=pw, return_body=return_body)
        )

    def replica_get(self, key: Data, address: str | None = None) -> list[WireVersion]:
        return self._run(self._client.replica_get(key, address))

    def status(self, address: str | None = None) -> StatusReply:
        return self._run(self._client.status(address))

    def join(self, node: str, address: str, zone: str | None = None) -> str:
        return self._run(self._client.join(node, address, zone))

    def leave(self, node: str) -> str:
        return self._run(self._client.leave(node))

    def set_clock_skew(self, skew: float, address: str | None = None) -> str:
        return self._run(self._client.set_clock_skew(skew, address))

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._client.close())
            self._stop()

    def _stop(self) -> None:
        stop: Callable[[], None] = self._loop.stop
        self._loop.call_soon_threadsafe(stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
