"""The hosts backend: nodes on machines reached over SSH, faults as iptables rules on them.

Each host gets a chain of its own (``DYNAMO_REF``), jumped to from the top of its INPUT chain,
so nothing else of the host's firewall is touched; every change replaces that chain's rules
in one ``iptables-restore --noflush`` (the same rules as the netns backend: a cut drops every
packet from the peer's address; drops and slow links by ``statistic`` and ``hashlimit``).
``stop()`` removes the jump and the chain. Delays need ``sch_netem``: not supported.

A host that fails a change and then does not answer a probe is lost (a host that died
mid-run): it is left out of every later change, and ``lost()`` names it; any other failure is
a `NetworkError`. Each change waits at most ``COMMAND_TIMEOUT`` seconds per host.

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
# iptables takes milliseconds: longer means the host is in trouble (then probed). Short, as
# the nemesis's event loop waits for the change.
COMMAND_TIMEOUT = 5.0
T = TypeVar("T")


class HostsNetwork(Network):
    """``hosts``: node -> (SSH host, the address peers reach it at, with no port).
    ``lost``: SSH host -> why it was given up on, shared with the target's pool."""

    def __init__(
        self,
        hosts: Mapping[str, tuple[str, str]],
        options: SshOptions,
        lost: dict[str, str] | None = None,
    ) -> None:
        super().__init__(hosts)
        self._hosts = dict(hosts)
        self._ip = {node: address for node, (_, address) in hosts.items()}
        self._options = options
        self._lost = {} if lost is None else lost
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._pool: HostPool | None = None
        self._started = False

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def lost(self) -> dict[str, str]:
        """node -> why its host was given up on."""
        return {
            n: f"{h}: the host stopped answering ({self._lost[h]})"
            for n, (h, _) in self._hosts.items()
            if h in self._lost
        }

    async def _each(self, script: dict[str, str]) -> None:
        assert self._pool is not None
        pool = self._pool
        script = {n: text for n, text in script.items() if self._hosts[n][0] not in self._lost}

        async def one(node: str, text: str) -> None:
            host = self._hosts[node][0]
            try:
                await pool.run(host, text, root=True, timeout=COMMAND_TIMEOUT)
            except RemoteError:
                if await pool.probe(host):
                    raise  # the host answers: the change itself failed

        results = await asyncio.gather(
            *(one(n, text) for n, text in script.items()), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise NetworkError("; ".join(errors))

    def start(self) -> None:
        self._thread.start()
        self._pool = HostPool(self._options, self._lost)
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
