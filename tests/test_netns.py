"""The netns backend: namespaces on a bridge, one-way iptables cuts, heal, clean teardown."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import harness.net.netns as netns_module
from harness.net import NetnsNetwork, NetnsUnavailable, UnsupportedFault
from harness.net.network import NetworkError

# A TCP echo server and a UDP sink in one program, so one process serves both checks.
SERVER = """
import socket, sys, threading
port = int(sys.argv[1])
tcp = socket.create_server(("0.0.0.0", port))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
def serve_udp():
    while True:
        data, _ = udp.recvfrom(100)
        print("udp", data.decode(), flush=True)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept()
    with conn:
        conn.sendall(conn.recv(100))
"""

TCP_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as s:
        s.sendall(b"ping")
        print(s.recv(100).decode())
except OSError as exc:
    print("error", type(exc).__name__)
"""

UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""

PORT = 7000  # inside private namespaces, so no clash with other tests


def our_namespaces(net: NetnsNetwork) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listed.stdout.splitlines() if net.suffix in line]


@pytest.fixture
def net() -> Iterator[NetnsNetwork]:
    network = NetnsNetwork(["n1", "n2"], suffix="t" + secrets.token_hex(3))
    network.start()
    try:
        yield network
    finally:
        network.stop()


def start_server(net: NetnsNetwork, node: str) -> subprocess.Popen[str]:
    proc = net.popen(
        node, [sys.executable, "-c", SERVER, str(PORT)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def tcp_ping(net: NetnsNetwork, src: str, dst: str) -> str:
    out = net.run(src, [sys.executable, "-c", TCP_CLIENT, net.address(dst), str(PORT)])
    return out.strip()


def udp_send(net: NetnsNetwork, src: str, dst: str, text: str) -> None:
    net.run(src, [sys.executable, "-c", UDP_SEND, net.address(dst), str(PORT), text])


@pytest.mark.root
def test_partition_one_way_then_heal(net: NetnsNetwork) -> None:
    server_n2 = start_server(net, "n2")
    server_n1 = start_server(net, "n1")
    assert tcp_ping(net, "n1", "n2") == "ping"

    net.cut({("n1", "n2")})
    assert tcp_ping(net, "n1", "n2").startswith("error")
    # One way only: n2's datagrams still reach n1, n1's never reach n2.
    udp_send(net, "n1", "n2", "lost")
    udp_send(net, "n2", "n1", "through")
    assert server_n1.stdout is not None
    assert server_n1.stdout.readline().strip() == "udp through"

    net.heal()
    assert tcp_ping(net, "n1", "n2") == "ping"
    udp_send(net, "n1", "n2", "after")
    assert server_n2.stdout is not None
    # The datagram sent during the cut never arrived: the first one n2 saw is from after heal.
    assert server_n2.stdout.readline().strip() == "udp after"


@pytest.mark.root
def test_rules_follow_the_fault_table(net: NetnsNetwork) -> None:
    net.cut({("n1", "n2")})
    assert net.rules("n2") == [f"-A INPUT -s {net.address('n1')}/32 -j DROP"]
    assert net.rules("n1") == []
    net.drop(("n2", "n1"), 0.25)
    (rule,) = net.rules("n1")
    assert "--probability 0.250000" in rule
    saved = net.run("n1", ["iptables-save"])
    assert "--probability 0.25" in saved
    net.heal()
    assert "DROP" not in net.run("n2", ["iptables-save"])
    with pytest.raises(UnsupportedFault, match="proxy backend"):
        net.delay(("n1", "n2"), 0.1)


@pytest.mark.root
def test_teardown_leaves_nothing_even_after_a_failure() -> None:
    network = NetnsNetwork(["n1", "n2", "n3"], suffix="t" + secrets.token_hex(3))
    started: list[subprocess.Popen[str]] = []

    def failing_test() -> None:
        with network:
            assert len(our_namespaces(network)) == 4  # hub + three nodes
            started.append(start_server(network, "n1"))
            raise RuntimeError("test failure")

    with pytest.raises(RuntimeError, match="test failure"):
        failing_test()
    assert our_namespaces(network) == []
    assert len(started) == 1
    assert started[0].poll() is not None  # killed by teardown


def test_missing_tools_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    network = NetnsNetwork(["n1", "n2"])
    with pytest.raises(NetnsUnavailable, match="iptables"):
        network.start()
    assert network.namespaces() == []


def test_processes_need_a_started_network() -> None:
    with pytest.raises(NetworkError, match="not started"):
        NetnsNetwork(["n1"]).popen("n1", ["true"])


@pytest.mark.root
def test_a_failed_start_cleans_up_what_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = netns_module._run

    def failing_run(argv: list[str], **kw: Any) -> str:
        if "eth0" in argv and "addr" in argv:  # fail half-way: after namespaces and veths exist
            raise NetworkError("injected failure")
        return real_run(argv, **kw)

    monkeypatch.setattr(netns_module, "_run", failing_run)
    network = NetnsNetwork(["n1", "n2"], suffix="t" + secrets.token_hex(3))
    with pytest.raises(NetworkError, match="injected failure"):
        network.start()
    assert network.namespaces() == []
    assert our_namespaces(network) == []
