"""Network backends for the harness: one `Network` interface of directed links and their faults.

- `ProxyNetwork` (default, no privileges): a fault-injecting TCP proxy per directed link.
- `NetnsNetwork` (root): a network namespace per node, iptables rules per directed link.
- `MemoryNetwork`: for targets whose messages the harness routes itself (Maelstrom).
"""

from harness.net.memory import MemoryNetwork
from harness.net.netns import NetnsNetwork, NetnsUnavailable
from harness.net.network import (
    Link,
    LinkFaults,
    NetEvent,
    Network,
    NetworkError,
    UnsupportedFault,
    all_links,
)
from harness.net.proxy import ProxyNetwork

__all__ = [
    "Link",
    "LinkFaults",
    "MemoryNetwork",
    "NetEvent",
    "NetnsNetwork",
    "NetnsUnavailable",
    "Network",
    "NetworkError",
    "ProxyNetwork",
    "UnsupportedFault",
    "all_links",
]
