"""One node for the adversarial tests, in its own process so that its RSS is its own.

    python tests/adversary_node.py SPEC_JSON

``SPEC_JSON``: ``{"node_id", "config": {NodeConfig fields}, "options": {ServerOptions fields},
"sqlite": path (else a MemoryStore), "sync": "full"|"normal"|"off", "state_file": path,
"nofile": the file descriptor limit to run with, "plant": a bug to plant (``PLANTS``), for the
negative controls}``.
It prints "listening on HOST:PORT" once it serves. On SIGUSR1 it writes its request state to
``state_file`` (JSON): the core's requests in progress and the driver's connections, requests
in flight and buffered bytes. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from dynamo_ref.core import messages
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.net import server as server_module
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.sqlite import SqliteStore


def _count(obj: object, name: str) -> int | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return len(value) if hasattr(value, "__len__") else None


def _unbounded_contexts() -> None:
    """Contexts decoded without the bounds on counters and entries."""

    class Context(msgspec.Struct, frozen=True, array_like=True):
        clock: list[messages.ClockEntry]

    messages._CONTEXT_DECODER = msgspec.msgpack.Decoder(Context)  # type: ignore[assignment]


def _open_handshake() -> None:
    """Frames before the handshake as large as after it."""
    server_module.MAX_HANDSHAKE = 1 << 24  # type: ignore[misc]


def _no_timeouts() -> None:
    """Neither idle connections nor unfinished frames are ever closed."""
    server_module._Connection.check_timeouts = lambda self, now: None  # type: ignore[method-assign]


def _unbounded_contexts_no_rollback() -> None:
    """Every defence gone: contexts unbounded, the coordinator's counter limit lifted (so the
    encoder overflows half way through a put), and a failing handler's requests kept."""
    from dynamo_ref.core import node_versions
    from dynamo_ref.core.node.coordinator import Coordinator

    _unbounded_contexts()
    node_versions.MAX_COUNTER = 2**80  # type: ignore[misc]
    Coordinator.rollback = lambda self, first: None  # type: ignore[method-assign]


PLANTS = {
    "unbounded_contexts": _unbounded_contexts,
    "unbounded_contexts_no_rollback": _unbounded_contexts_no_rollback,
    "open_handshake": _open_handshake,
    "no_timeouts": _no_timeouts,
}


def request_state(server: NodeServer) -> dict[str, Any]:
    node = server.node
    return {
        "pending": node.in_progress(),
        "connections": sum(1 for c in server._conns if c.state != "peer"),
        "clients": len(server._clients),
        "inflight": _count(server, "_inflight_total"),
        "buffered": _count(server, "_buffered_total"),
        "held": len(server._held),
        "keys": len(node.engine),
    }


async def serve(spec: dict[str, Any]) -> None:
    config = NodeConfig(**spec.get("config", {}))
    known = {f.name for f in dataclasses.fields(ServerOptions)}
    options: dict[str, Any] = {k: v for k, v in spec.get("options", {}).items() if k in known}
    if isinstance(options.get("secret"), str):
        options["secret"] = options["secret"].encode()
    store: DurableStore = MemoryStore()
    if spec.get("sqlite"):
        store = SqliteStore(spec["sqlite"], synchronous=spec.get("sync", "full"))
    server = NodeServer(
        ServerOptions(node_id=spec.get("node_id", "solo"), config=config, store=store, **options)
    )
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    state_file = Path(spec["state_file"])

    def dump() -> None:
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(request_state(server)))
        tmp.replace(state_file)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on {server.address}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("plant"):
        PLANTS[spec["plant"]]()
    if spec.get("nofile"):
        resource.setrlimit(resource.RLIMIT_NOFILE, (spec["nofile"], spec["nofile"]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(spec))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
