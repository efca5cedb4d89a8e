"""`python -m harness.targets.dynamo_node`: one dynamo-ref node with fixed peer routes.

It is `dynamo-ref node` (same `NodeServer`, `NodeConfig`, SQLite store, "listening on
HOST:PORT" line, SIGTERM to stop) with two differences the fault harness needs:

- Routes are fixed. Under the proxy network node A must reach node B at the proxy of link
  (A, B), which is a different address for every A. `--member` alone does not hold that route:
  the runtime prefers the address a peer advertises in gossiped membership (its real port) over
  the configured one, so A would soon bypass the proxy. Here `peer_address` answers from the
  `--route` map first; gossip still runs, only its addresses are not used for dialing.
- `--client-socket`: clients may also connect over a Unix socket (the netns backend's way in).
- Every timing knob a short run needs (handoff, fallback, reap, detector) is a flag.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path

from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.net.server import NodeServer, ServerOptions, _Connection
from dynamo_ref.storage.sqlite import SqliteStore

READY_PREFIX = "listening on "


class RoutedServer(NodeServer):
    """A node that dials each peer at the address its route map gives."""

    def __init__(self, options: ServerOptions, routes: dict[str, str]) -> None:
        super().__init__(options)
        self.routes = routes

    def peer_address(self, peer: str) -> str | None:
        return self.routes.get(peer) or super().peer_address(peer)


def _pair(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    return name, address


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.targets.dynamo_node")
    p.add_argument("--id", required=True)
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--route", type=_pair, action="append", default=[], help="ID=HOST:PORT")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--sync", choices=["full", "normal", "off"], default="normal")
    p.add_argument("--mode", choices=["vclock", "lww", "dvv"], default="vclock")
    p.add_argument("--strict", action="store_true", help="strict quorum (default: sloppy)")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--r", type=int, default=2)
    p.add_argument("--w", type=int, default=2)
    p.add_argument("--partitions", type=int, default=32)
    p.add_argument("--listen-fd", type=int, help="an inherited socket bound to --listen")
    p.add_argument("--client-socket", type=Path, help="also serve clients on this Unix socket")
    for name, default in (
        ("request-timeout", 1.0),
        ("fallback-delay", 0.3),
        ("gossip-interval", 0.5),
        ("anti-entropy-interval", 1.0),
        ("handoff-interval", 0.5),
        ("reap-delay", 5.0),
        ("detector-pause", 1.0),
    ):
        p.add_argument(f"--{name}", type=float, default=default)
    return p


async def serve(args: argparse.Namespace) -> None:
    host, _, port = str(args.listen).rpartition(":")
    config = NodeConfig(
        n=args.n,
        r=args.r,
        w=args.w,
        sloppy=not args.strict,
        mode=args.mode,
        request_timeout=args.request_timeout,
        fallback_delay=args.fallback_delay,
        gossip_interval=args.gossip_interval,
        anti_entropy_interval=args.anti_entropy_interval,
        handoff_interval=args.handoff_interval,
        reap_delay=args.reap_delay,
        detector_pause=args.detector_pause,
        partitions=args.partitions,
    )
    routes = dict(args.route)
    members = [(n, a) for n, a in routes.items() if n != args.id] + [(args.id, args.listen)]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(args.data_dir / "store.sqlite3", synchronous=args.sync)
    options = ServerOptions(
        node_id=args.id,
        host=host,
        port=int(port),
        members=members,
        config=config,
        store=store,
        sock=None if args.listen_fd is None else socket.socket(fileno=args.listen_fd),
    )
    server = RoutedServer(options, {n: a for n, a in routes.items() if n != args.id})
    await server.start()
    loop = asyncio.get_running_loop()
    if args.client_socket is not None:
        # A network namespace is unreachable from the harness' own; a Unix socket is not.
        args.client_socket.unlink(missing_ok=True)
        await loop.create_unix_server(lambda: _Connection(server), str(args.client_socket))
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"{READY_PREFIX}{server.address}", flush=True)
    try:
        await stopping.wait()
    finally:
        await server.stop()


def main() -> None:
    asyncio.run(serve(parser().parse_args()))


if __name__ == "__main__":
    main()
