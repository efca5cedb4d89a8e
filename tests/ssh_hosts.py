"""Hosts for the SSH tests: network namespaces on a bridge, each running OpenSSH's server on
its own address (root only).

The bridge lives in a hub namespace the fixture makes; one veth joins this machine's own
namespace to it, with the address ``.1``, so the test (the control machine) reaches every
host and nothing else does. Each host runs ``sshd`` in the foreground (started and stopped by
its PID) with a host key, an authorized key and a known-hosts file made for the test.
``stop`` kills, by PID, every process left in the hosts' namespaces, then deletes them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why this machine cannot make SSH hosts (None: it can)."""
    if os.geteuid() != 0:
        return "SSH hosts are network namespaces: the tests need root"
    for tool in ("ip", "iptables", "ssh-keygen", SSHD):
        if shutil.which(tool) is None and not Path(tool).exists():
            return f"{tool} is missing (make sysdeps installs openssh-server, iproute2, iptables)"
    return None


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class SshHosts:
    count: int
    base: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    addresses: list[str] = field(default_factory=list)
    key: Path = Path()
    known_hosts: Path = Path()
    _sshd: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)
    _root_veth: str | None = None

    def __post_init__(self) -> None:
        octet = int(self.suffix, 16) % 200 + 20
        self.subnet = f"10.215.{octet}"
        self.hub = f"drsh-{self.suffix}"
        self.names = [f"drsh-{self.suffix}-{i}" for i in range(self.count)]
        self.addresses = [f"{self.subnet}.{i + 2}" for i in range(self.count)]

    def namespace(self, address: str) -> str:
        return self.names[self.addresses.index(address)]

    def start(self) -> SshHosts:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        self.key = self.base / "id_ed25519"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        (self.base / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        _run("ip", "netns", "add", self.hub)
        self._made.append(self.hub)
        _run("ip", "-n", self.hub, "link", "set", "lo", "up")
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        self._root_veth = f"drsh{self.suffix}"
        _run(
            "ip",
            "link",
            "add",
            self._root_veth,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            self.hub,
        )
        _run("ip", "-n", self.hub, "link", "set", "up0", "master", "br0", "up")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self._root_veth)
        _run("ip", "link", "set", self._root_veth, "up")
        lines = []
        for i, (ns, address) in enumerate(zip(self.names, self.addresses, strict=True)):
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run(
                "ip",
                "-n",
                self.hub,
                "link",
                "add",
                f"v{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            _run("ip", "-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            host_key = self.base / f"host{i}_ed25519"
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
            pub = host_key.with_suffix(".pub").read_text().split()
            lines.append(f"{address} {pub[0]} {pub[1]}\n")
            config = self.base / f"sshd{i}.conf"
            config.write_text(
                f"ListenAddress {address}\nPort 22\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {self.base / 'authorized_keys'}\n"
                f"PidFile {self.base / f'sshd{i}.pid'}\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "StrictModes no\nSubsystem sftp internal-sftp\nMaxSessions 64\nMaxStartups 64\n"
                # A lock a killed `pyenv rehash` left (this machine's root .bashrc runs it at
                # every login) makes each later login wait 60 s: here, one try and go on.
                "SetEnv PYENV_REHASH_TIMEOUT=0\n"
            )
            log = (self.base / f"sshd{i}.log").open("wb")
            self._sshd.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        self.known_hosts = self.base / "known_hosts"
        self.known_hosts.write_text("".join(lines))
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 15
        for address in self.addresses:
            while True:
                with socket.socket() as s:
                    s.settimeout(1)
                    if s.connect_ex((address, 22)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {address} did not listen")
                time.sleep(0.05)

    def kill_host(self, address: str) -> None:
        """The host dies: its link goes down for good (nothing reaches it, so SSH times out
        rather than being refused) and every process in it is killed by PID."""
        ns = self.namespace(address)
        _run("ip", "-n", ns, "link", "set", "eth0", "down")
        for pid in _run("ip", "netns", "pids", ns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def pids(self) -> list[int]:
        """Every process running in the hosts' namespaces."""
        out: list[int] = []
        for ns in self.names:
            if ns in self._made:
                with contextlib.suppress(subprocess.CalledProcessError):
                    out += [int(p) for p in _run("ip", "netns", "pids", ns).split()]
        return out

    def stop(self) -> None:
        for proc in self._sshd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self._sshd:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        # TERM first: a login shell killed outright in root's `pyenv rehash` (the machine's
        # .bashrc) leaves its lock behind, and every later SSH login then waits 60 s on it.
        _signal_all(self.pids(), signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_all(self.pids(), signal.SIGKILL)
        for ns in reversed(self._made):
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "netns", "del", ns)
        self._made.clear()
        if self._root_veth is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "link", "del", self._root_veth)
            self._root_veth = None


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
