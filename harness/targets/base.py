"""The Target protocol: what the harness needs from a system under test (Jepsen's :db + :client).

A target owns a cluster of named nodes and the network between them:

- lifecycle, per node: `start` (also restarts a killed or stopped node), `stop` (graceful),
  `kill` (SIGKILL), `pause` (SIGSTOP), `resume` (SIGCONT); `setup` starts every node and
  `teardown` stops everything and is always safe to call (also after a failure);
- `nodes()` and `links()` (the directed node-to-node links its `network` can cut);
- `client(node)`: an async client bound to one node, for one logical client of a workload.

Clients are small. Each operation returns normally when it took effect, raises `OpFailed` when
it certainly did not take effect (history type `fail`), and raises `OpUnknown` when it may or
may not have (timeouts, a node crashing mid-request: history type `info`).

- `RegisterClient` (read/write/cas registers, e.g. Maelstrom's lin-kv, etcd): `read` gives
  None for a key that does not exist; `cas` gives False when the key did not hold `expected`
  (or did not exist).
- `VersionedClient` (Dynamo-style stores): `get` gives the sibling values and an opaque
  context; `put` writes with the context of an earlier `get` (None: a blind write).
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from harness.net.network import Link, Network

__all__ = [
    "Client",
    "OpFailed",
    "OpUnknown",
    "RegisterClient",
    "Target",
    "VersionedClient",
]


class OpFailed(Exception):
    """The operation certainly did not take effect."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OpUnknown(Exception):
    """The operation may or may not have taken effect."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@runtime_checkable
class Client(Protocol):
    @property
    def node(self) -> str:
        """The node this client talks to."""

    async def close(self) -> None: ...


@runtime_checkable
class RegisterClient(Client, Protocol):
    async def read(self, key: str) -> object: ...

    async def write(self, key: str, value: object) -> None: ...

    async def cas(self, key: str, expected: object, new: object) -> bool: ...


@runtime_checkable
class VersionedClient(Client, Protocol):
    async def get(self, key: str) -> tuple[list[object], object]: ...

    async def put(self, key: str, value: object, context: object | None) -> None: ...


C_co = TypeVar("C_co", bound=Client, covariant=True)


class Target(Protocol[C_co]):
    """A cluster under test. `C_co` is the kind of client it opens."""

    @property
    def name(self) -> str: ...

    @property
    def network(self) -> Network: ...

    def nodes(self) -> list[str]: ...

    def links(self) -> set[Link]: ...

    def pid(self, node: str) -> int | None:
        """The node's process id while it runs (for the history and for checks)."""

    async def setup(self) -> None: ...

    async def teardown(self) -> None: ...

    async def start(self, node: str) -> None: ...

    async def stop(self, node: str) -> None: ...

    async def kill(self, node: str) -> None: ...

    async def pause(self, node: str) -> None: ...

    async def resume(self, node: str) -> None: ...

    async def client(self, node: str) -> C_co: ...
