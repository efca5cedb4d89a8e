"""The netns backend (root only): each node in its own network namespace, as Jepsen does.

Layout: a hub namespace holds a bridge; each node's namespace has `eth0` (one end of a veth
pair whose other end is on the bridge) with an address in 10.213.0.0/24, a private range that
exists only inside these namespaces. Nothing is added to the host's own namespace, so runs can
share the range. Programs run inside a node's namespace via `ip netns exec` (`popen`).

Faults are iptables rules in the filter table's INPUT chain of the receiving node, rebuilt as a
whole with `iptables-restore` on every change:
- cut (A, B): B drops every packet from A's address;
- drop (A, B, p): B drops packets from A with probability p (`statistic` match);
- slow (A, B, rate): B drops packets from A above `rate` bytes per second (`hashlimit`);
  TCP backs off and retransmits, so throughput falls to about that rate.
Delay needs the kernel's `sch_netem`, which this backend does not use: `delay` raises
`UnsupportedFault` (use the proxy backend for delays).

`stop()` kills (SIGKILL, by PID) every process started with `popen`, then deletes the node
namespaces (their veths go with them) and the hub (its bridge goes with it); it runs even when
`start` failed half-way. The harness installs nothing: a missing `ip` or `iptables` is an error.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.net.network import Link, Network, NetworkError, UnsupportedFault

__all__ = ["NetnsNetwork", "NetnsUnavailable", "input_rules", "required_tools"]

_SUBNET = "10.213.0"
_MAX_NODES = 250


class NetnsUnavailable(NetworkError):
    """This machine cannot run the netns backend (not root, or a tool is missing)."""


def required_tools() -> list[str]:
    return ["ip", "iptables", "iptables-restore"]


def _check_prerequisites() -> None:
    missing = [tool for tool in required_tools() if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(
            f"the netns backend needs {', '.join(missing)} on PATH "
            "(Debian: apt-get install iproute2 iptables; `make setup` installs them as root)"
        )
    if os.geteuid() != 0:
        raise NetnsUnavailable("the netns backend needs root (network namespaces, iptables)")


class NetnsNetwork(Network):
    """A namespace per node in `nodes`; `suffix` keeps concurrent runs' names apart."""

    def __init__(self, nodes: Iterable[str], *, suffix: str | None = None) -> None:
        super().__init__(nodes)
        if len(self.nodes) > _MAX_NODES:
            raise ValueError(f"at most {_MAX_NODES} nodes")
        self.suffix = suffix or secrets.token_hex(4)
        self.hub = f"drhub-{self.suffix}"
        self._ns = {name: f"dr-{self.suffix}-{i}" for i, name in enumerate(self.nodes)}
        self._ip = {name: f"{_SUBNET}.{i + 2}" for i, name in enumerate(self.nodes)}
        self._procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        self._started = False

    # -- addresses and processes -----------------------------------------------------------

    def namespace(self, node: str) -> str:
        return self._ns[node]

    def address(self, node: str) -> str:
        """The node's address, reachable from every other node's namespace."""
        return self._ip[node]

    def namespaces(self) -> list[str]:
        """The namespaces this network made (and has not yet deleted)."""
        return list(self._made)

    def exec_args(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self._ns[node], *argv]

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `node`'s namespace; `stop()` kills it if it is still running."""
        if not self._started:
            raise NetworkError("netns network not started")
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_args(node, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, node: str, argv: Sequence[str], timeout: float = 30.0) -> str:
        """Run `argv` inside `node`'s namespace to completion; its stdout."""
        return _run(self.exec_args(node, argv), timeout=timeout)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        _check_prerequisites()
        try:
            self._netns_add(self.hub)
            _run(["ip", "-n", self.hub, "link", "set", "lo", "up"])
            _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
            for i, node in enumerate(self.nodes):
                ns = self._ns[node]
                self._netns_add(ns)
                port = f"v{i}"
                veth = ["veth", "peer", "name", "eth0", "netns", ns]
                _run(["ip", "-n", self.hub, "link", "add", port, "type", *veth])
                _run(["ip", "-n", self.hub, "link", "set", port, "master", "br0", "up"])
                _run(["ip", "-n", ns, "addr", "add", f"{self._ip[node]}/24", "dev", "eth0"])
                _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._started = True
            self._apply()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the processes started here, then delete every namespace made here."""
        errors: list[str] = []
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                errors.append(f"process {proc.pid} did not exit")
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()
        # Nodes first: a node namespace's veth end takes the hub end with it.
        for ns in reversed(self._made):
            try:
                _run(["ip", "netns", "del", ns])
            except NetworkError as exc:
                errors.append(str(exc))
        self._made.clear()
        self._started = False
        if errors:
            raise NetworkError("netns teardown: " + "; ".join(errors))

    def __enter__(self) -> NetnsNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _netns_add(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self._made.append(ns)

    # -- faults ----------------------------------------------------------------------------

    def delay(self, link: Link, seconds: float, jitter: float = 0.0) -> None:
        if seconds == 0 and jitter == 0:
            super().delay(link, 0.0, 0.0)
            return
        raise UnsupportedFault(
            "the netns backend cannot delay links (that needs the kernel's sch_netem); "
            "use the proxy backend for delays"
        )

    def rules(self, node: str) -> list[str]:
        """The INPUT rules `node` holds now, in iptables-save syntax."""
        return input_rules(self, node, self._ip)

    def _apply(self) -> None:
        if not self._started:
            return
        for node in self.nodes:
            chains = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
            table = "\n".join(["*filter", *chains, *self.rules(node), "COMMIT", ""])
            _run(self.exec_args(node, ["iptables-restore"]), stdin=table)


def input_rules(
    network: Network, node: str, ip_of: Mapping[str, str], chain: str = "INPUT"
) -> list[str]:
    """The rules `node` needs in `chain` for the network's faults on the links into it:
    iptables-save syntax, each matching a peer's address."""
    out: list[str] = []
    for src in network.nodes:
        link = (src, node)
        if src == node:
            continue
        match = f"-A {chain} -s {ip_of[src]}/32"
        if network.is_cut(link):
            out.append(f"{match} -j DROP")
            continue
        f = network.faults(link)
        if f.drop:
            out.append(f"{match} -m statistic --mode random --probability {f.drop:.6f} -j DROP")
        if f.bytes_per_second is not None:
            rate = max(1, int(f.bytes_per_second))
            out.append(
                f"{match} -m hashlimit --hashlimit-above {rate}b/s "
                f"--hashlimit-burst {max(rate, 1500)}b "
                f"--hashlimit-name dr{network.nodes.index(src)} -j DROP"
            )
    return out


def _run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> str:
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise NetnsUnavailable(f"{argv[0]} not found: {exc}") from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{' '.join(argv)} timed out after {timeout} s") from None
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
