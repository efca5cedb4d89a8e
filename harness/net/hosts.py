"""The hosts backend: nodes on machines reached over SSH, faults as iptables rules on them.

Each host gets a chain of its own (``DYNAMO_REF``), jumped to from the top of its INPUT chain,
so nothing else of the host's firewall is touched; every change replaces that chain's rules
in one ``iptables-restore --noflush`` (the same rules as the netns backend: a cut drops every
packet from the peer's address; drops and slow links by ``statistic`` and ``hashlimit``).
``stop()`` removes the jump and the chain. Delays need ``sch_netem``: not supported.

The harness's nemesis calls the network from its event loop and expects the change made when
the call returns, so the SSH commands run on a loop of this backend's own, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from dynamo_ref.remote.ssh import HostPool, RemoteError, SshOptions
from harness.net.netns import input_rules
from harness.net.network import Link, Network, NetworkError, UnsupportedFault

__all__ = ["CHAIN", "HostsNetwork"]

CHAIN = "DYNAMO_REF"
T = TypeVar("T")


class HostsNetwork(Network):
    """``hosts``: node -> (SSH host, the address peers reach it at, with no port)."""

    def __init__(self, hosts: Mapping[str, tuple[str, str]], options: SshOptions) -> None:
        super().__init__(hosts)
        self._hosts = dict(hosts)
        self._ip = {node: address for node, (_, address) in hosts.items()}
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._pool: HostPool | None = None
        self._started = False

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _each(self, script: dict[str, str]) -> None:
        assert self._pool is not None
        pool = self._pool
        results = await asyncio.gather(
            *(pool.run(self._hosts[n][0], text, root=True) for n, text in script.items()),
            return_exceptions=True,
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise NetworkError("; ".join(errors))

    def start(self) -> None:
        self._thread.start()
        self._pool = HostPool(self._options)
        hook = (
            f"iptables -N {CHAIN} 2>/dev/null; iptables -F {CHAIN} && "
            f"(iptables -C INPUT -j {CHAIN} 2>/dev/null || iptables -I INPUT 1 -j {CHAIN})"
        )
        self._call(self._each(dict.fromkeys(self.nodes, hook)))
        self._started = True
        self._apply()

    def stop(self) -> None:
        """Remove the chain from every host; then close the connections and the loop."""
        if self._pool is not None:
            unhook = (
                f"while iptables -D INPUT -j {CHAIN} 2>/dev/null; do :; done; "
                f"iptables -F {CHAIN} 2>/dev/null; iptables -X {CHAIN} 2>/dev/null; true"
            )
            try:
                with contextlib.suppress(NetworkError, RemoteError, TimeoutError):
                    self._call(self._each(dict.fromkeys(self.nodes, unhook)), timeout=60)
            finally:
                pool, self._pool = self._pool, None
                with contextlib.suppress(Exception):
                    self._call(pool.close(), timeout=30)
        self._started = False
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def rules(self, node: str) -> list[str]:
        return input_rules(self, node, self._ip, chain=CHAIN)

    def delay(self, link: Link, seconds: float, jitter: float = 0.0) -> None:
        if seconds == 0 and jitter == 0:
            super().delay(link, 0.0, 0.0)
            return
        raise UnsupportedFault("the hosts backend cannot delay links (that needs sch_netem)")

    def _apply(self) -> None:
        if not self._started:
            return
        script = {}
        for node in self.nodes:
            table = "\n".join(["*filter", f":{CHAIN} - [0:0]", *self.rules(node), "COMMIT", ""])
            script[node] = f"iptables-restore --noflush <<'EOF'\n{table}EOF"
        self._call(self._each(script))
