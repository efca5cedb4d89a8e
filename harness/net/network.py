"""The interface every network backend offers: directed links and their faults.

A link is a directed pair `(src, dst)` of node names. Faults are per link, so one direction of
a pair can be cut, delayed or slowed while the other is healthy (asymmetric partitions).

- `cut(links)` replaces the whole set of cut links; `cut(set())` heals every partition.
- `delay(link, seconds, jitter)`, `drop(link, probability)`, `slow(link, bytes_per_second)`
  set that link's fault; a zero (or None) clears it.
- `heal()` removes every fault: cuts, delays, drops and slow links.

Every change is appended to `events` with its `time.monotonic_ns()`, so a history can show
which faults were active when. Backends (`ProxyNetwork`, `NetnsNetwork`, `MemoryNetwork`) keep
the fault table here and apply it in `_apply()`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from harness.history import Op

__all__ = [
    "FaultKind",
    "Link",
    "LinkFaults",
    "NetEvent",
    "Network",
    "NetworkError",
    "UnsupportedFault",
    "all_links",
]

Link: TypeAlias = tuple[str, str]
FaultKind: TypeAlias = Literal["cut", "heal", "delay", "drop", "slow"]


class NetworkError(RuntimeError):
    """A backend could not be set up or could not apply a fault."""


class UnsupportedFault(NetworkError):
    """This backend cannot apply this kind of fault on this machine."""


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """The faults on one directed link. The default is a healthy link."""

    delay: float = 0.0
    jitter: float = 0.0
    drop: float = 0.0
    bytes_per_second: float | None = None

    @property
    def healthy(self) -> bool:
        return self == _HEALTHY


_HEALTHY = LinkFaults()


@dataclass(frozen=True, slots=True)
class NetEvent:
    """One change to the network, as applied. `links` is sorted; `params` the fault's numbers."""

    time: int
    kind: FaultKind
    links: tuple[Link, ...]
    params: dict[str, float] = field(default_factory=dict)

    def to_op(self, index: int) -> Op:
        """As a history record: a nemesis `info` op, `f` = `net-<kind>`."""
        value = {"links": [list(link) for link in self.links], **self.params}
        return Op(
            process="nemesis",
            type="info",
            f=f"net-{self.kind}",
            value=value,
            time=self.time,
            index=index,
        )


def all_links(nodes: Iterable[str]) -> set[Link]:
    """Every directed link between distinct nodes."""
    names = list(nodes)
    return {(a, b) for a in names for b in names if a != b}


class Network(ABC):
    """The fault table and its log; a backend applies it in `_apply`."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: tuple[str, ...] = tuple(nodes)
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"duplicate node names in {self.nodes}")
        self._lock = threading.Lock()
        self._cut: frozenset[Link] = frozenset()
        self._faults: dict[Link, LinkFaults] = {}
        self.events: list[NetEvent] = []
        # Called with each change as it is applied (a fault log, for traced runs).
        self.on_event: Callable[[NetEvent], None] | None = None

    # -- queries ---------------------------------------------------------------------------

    def links(self) -> set[Link]:
        return all_links(self.nodes)

    def cut_links(self) -> frozenset[Link]:
        return self._cut

    def is_cut(self, link: Link) -> bool:
        return link in self._cut

    def faults(self, link: Link) -> LinkFaults:
        return self._faults.get(link, _HEALTHY)

    # -- changes ---------------------------------------------------------------------------

    def cut(self, links: Iterable[Link]) -> None:
        """Cut exactly these directed links (all others not cut)."""
        new = frozenset(links)
        self._check(new)
        with self._lock:
            self._cut = new
            self._log("cut", new, {})
        self._apply()

    def heal(self) -> None:
        """Remove every fault: cuts, delays, drops, slow links."""
        with self._lock:
            self._cut = frozenset()
            self._faults = {}
            self._log("heal", (), {})
        self._apply()

    def delay(self, link: Link, seconds: float, jitter: float = 0.0) -> None:
        """Delay each message (or chunk of bytes) on `link` by `seconds` plus up to `jitter`."""
        if seconds < 0 or jitter < 0:
            raise ValueError("delay and jitter must be >= 0")
        self._set(
            link, "delay", {"seconds": seconds, "jitter": jitter}, delay=seconds, jitter=jitter
        )

    def drop(self, link: Link, probability: float) -> None:
        """Lose each message on `link` with `probability` (each backend says what 'lose' means)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be in [0, 1]")
        self._set(link, "drop", {"probability": probability}, drop=probability)

    def slow(self, link: Link, bytes_per_second: float | None) -> None:
        """Limit `link` to `bytes_per_second`; None lifts the limit."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0 (or None)")
        params = {} if bytes_per_second is None else {"bytes_per_second": bytes_per_second}
        self._set(link, "slow", params, bytes_per_second=bytes_per_second)

    # -- internals -------------------------------------------------------------------------

    def _check(self, links: Iterable[Link]) -> None:
        known = self.links()
        for link in links:
            if link not in known:
                raise ValueError(f"unknown link {link!r}; nodes are {self.nodes}")

    def _set(self, link: Link, kind: FaultKind, params: dict[str, float], **change: object) -> None:
        self._check([link])
        with self._lock:
            updated = replace(self.faults(link), **change)  # type: ignore[arg-type]
            faults = dict(self._faults)
            if updated.healthy:
                faults.pop(link, None)
            else:
                faults[link] = updated
            # A new dict, so readers on other threads always see a whole table.
            self._faults = faults
            self._log(kind, (link,), params)
        self._apply()

    def _log(self, kind: FaultKind, links: Iterable[Link], params: dict[str, float]) -> None:
        event = NetEvent(time.monotonic_ns(), kind, tuple(sorted(links)), params)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    @abstractmethod
    def _apply(self) -> None:
        """Make the backend match the fault table (called after every change)."""
