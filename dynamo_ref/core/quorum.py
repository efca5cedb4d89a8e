"""N/R/W quorum settings and the collectors that decide a request's outcome.

A coordinator sends a request to its targets: the first N healthy nodes of the key's preference
list. Under a sloppy quorum some of them are fallbacks standing in for an unreachable owner.
Every answer goes into a collector, which decides SUCCEEDED as soon as enough answers are in,
FAILED as soon as success has become impossible or when the caller's timer fires, and never
changes its mind. It keeps recording answers after the decision, because late read responses
still need read repair.

PR and PW (as in Riak) count only answers from primaries, the nodes of the top N that are
themselves owners: a request can demand that some of its quorum is not made of fallbacks.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeAlias, TypeVar

import icontract

from dynamo_ref.core.contracts import ENABLED, query

NodeId: TypeAlias = str

T = TypeVar("T")


class QuorumError(ValueError):
    """Invalid quorum settings; the message lists every problem found."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems: tuple[str, ...] = problems


def _int_problem(name: str, value: object) -> str | None:
    # bool is an int subclass, but R=True is a mistake, not a setting.
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be an integer, got {value!r}"
    return None


def quorum_problems(n: int, r: int, w: int, pr: int = 0, pw: int = 0) -> list[str]:
    """Every reason why these settings are invalid, as readable sentences (empty if valid)."""
    problems = [
        p
        for p in (
            _int_problem(name, value)
            for name, value in (("N", n), ("R", r), ("W", w), ("PR", pr), ("PW", pw))
        )
        if p is not None
    ]
    if problems:
        return problems  # comparisons below would be meaningless
    if n < 1:
        problems.append(f"N must be at least 1, got {n}")
    for name, value in (("R", r), ("W", w)):
        if value < 1:
            problems.append(f"{name} must be at least 1, got {value}")
        elif n >= 1 and value > n:
            problems.append(f"{name}={value} exceeds N={n}")
    for name, value, base_name, base in (("PR", pr, "R", r), ("PW", pw, "W", w)):
        if value < 0:
            problems.append(f"{name} must not be negative, got {value}")
        elif value > base >= 1:
            problems.append(f"{name}={value} exceeds {base_name}={base}")
    return problems


def _config_error(self: QuorumConfig) -> QuorumError:
    return QuorumError(*_config_problems(self))


def _config_problems(config: QuorumConfig) -> list[str]:
    problems = quorum_problems(config.n, config.r, config.w, config.pr, config.pw)
    sloppy: object = config.sloppy  # typed bool, but config files and CLIs send anything
    if not isinstance(sloppy, bool):
        problems.append(f"sloppy must be true or false, got {sloppy!r}")
    return problems


def _override_error(
    self: QuorumConfig, r: int | None, w: int | None, pr: int | None, pw: int | None
) -> QuorumError:
    return QuorumError(
        *quorum_problems(
            self.n,
            self.r if r is None else r,
            self.w if w is None else w,
            self.pr if pr is None else pr,
            self.pw if pw is None else pw,
        )
    )


@dataclass(frozen=True)
class QuorumConfig:
    """Replication factor N, read quorum R, write quorum W, and the primary quorums PR, PW.

    :raises QuorumError: if the settings are inconsistent (see ``quorum_problems``).
    """

    n: int
    r: int
    w: int
    sloppy: bool
    pr: int = 0
    pw: int = 0

    # The contracts raise the same QuorumError as the body; stated as preconditions, they let
    # CrossHair build valid configs directly instead of guessing and being refused. icontract
    # checks the innermost first, so the type check sits below the comparisons it protects.
    @icontract.require(
        lambda self: (
            1 <= self.r <= self.n
            and 1 <= self.w <= self.n
            and 0 <= self.pr <= self.r
            and 0 <= self.pw <= self.w
        ),
        "1 <= R, W <= N; 0 <= PR <= R; 0 <= PW <= W",
        error=_config_error,
        enabled=ENABLED,
    )
    @icontract.require(
        lambda self: (
            all(
                isinstance(v, int) and not isinstance(v, bool)
                for v in (self.n, self.r, self.w, self.pr, self.pw)
            )
            and isinstance(self.sloppy, bool)
        ),
        "settings are integers, sloppy a bool",
        error=_config_error,
        enabled=ENABLED,
    )
    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise QuorumError(*problems)

    @property
    def is_strict_intersecting(self) -> bool:
        """R + W > N: every read quorum meets every write quorum (among the same N nodes)."""
        return self.r + self.w > self.n

    @icontract.require(lambda size: size >= 0, enabled=ENABLED)
    def validate_for_cluster(self, size: int) -> None:
        """Check that a cluster of ``size`` nodes can hold N distinct replicas.

        :raises QuorumError: if N exceeds the cluster size.
        """
        if size < self.n:
            raise QuorumError(f"N={self.n} exceeds cluster size {size}")

    # As in __post_init__: preconditions raising QuorumError, so that CrossHair explores valid
    # overrides only and a client's bad override gets the same clear error either way.
    @icontract.require(
        lambda self, r, w, pr, pw: (
            1 <= (self.r if r is None else r) <= self.n
            and 1 <= (self.w if w is None else w) <= self.n
            and 0 <= (self.pr if pr is None else pr) <= (self.r if r is None else r)
            and 0 <= (self.pw if pw is None else pw) <= (self.w if w is None else w)
        ),
        "overrides keep 1 <= R, W <= N; 0 <= PR <= R; 0 <= PW <= W",
        error=_override_error,
        enabled=ENABLED,
    )
    @icontract.require(
        lambda r, w, pr, pw: all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (r, w, pr, pw)
        ),
        "overrides are integers",
        error=_override_error,
        enabled=ENABLED,
    )
    @icontract.ensure(
        lambda self, result: (result.n, result.sloppy) == (self.n, self.sloppy), enabled=ENABLED
    )
    def for_request(
        self,
        *,
        r: int | None = None,
        w: int | None = None,
        pr: int | None = None,
        pw: int | None = None,
    ) -> QuorumConfig:
        """These settings with a client's per-request overrides applied (N and sloppiness stay).

        :raises QuorumError: if the overrides make the settings inconsistent.
        """
        return replace(
            self,
            r=self.r if r is None else r,
            w=self.w if w is None else w,
            pr=self.pr if pr is None else pr,
            pw=self.pw if pw is None else pw,
        )


@dataclass(frozen=True)
class Target:
    """A node a request goes to: a primary, or a fallback keeping a hint for owner ``hint_for``."""

    node: NodeId
    hint_for: NodeId | None = None

    @icontract.require(
        lambda self: self.hint_for != self.node,
        "a node never stands in for itself",
        enabled=ENABLED,
    )
    def __post_init__(self) -> None:
        """Nothing to do: the contract is the check."""

    @property
    def is_primary(self) -> bool:
        return self.hint_for is None


class RequestStatus(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_DONE = frozenset({RequestStatus.SUCCEEDED, RequestStatus.FAILED})


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Tally:
    """Counting shared by both collectors: who answered well, who refused, and the decision."""

    def __init__(
        self, targets: Sequence[Target], need: int, need_primary: int, names: tuple[str, str, str]
    ) -> None:
        self.targets = tuple(targets)
        self.by_node = {t.node: t for t in self.targets}
        self.need = need
        self.need_primary = need_primary
        self.quorum_name, self.primary_name, self.answer_word = names
        self.ok: dict[NodeId, None] = {}  # insertion-ordered set
        self.refused: dict[NodeId, str] = {}
        self.status = RequestStatus.PENDING
        self.reason: str | None = None
        self.primary_targets = sum(1 for t in self.targets if t.hint_for is None)
        self.primary_ok = 0
        self.primary_refused = 0
        self._decide()

    def answered(self, node: NodeId) -> bool:
        return node in self.ok or node in self.refused

    # The decision rule where it is made: both collectors' invariants state it again, but a
    # search from here reaches a rule one answer short in a second, from them in many.
    @icontract.ensure(
        lambda self: (
            self.status is not RequestStatus.SUCCEEDED
            or (len(self.ok) >= self.need and self.primary_ok >= self.need_primary)
        ),
        "success only with the quorum and the primaries it needs",
        enabled=ENABLED,
    )
    def record_ok(self, node: NodeId) -> bool:
        """Count a good answer once; False if it is a duplicate or from a stranger."""
        target = self.by_node.get(node)
        if target is None or self.answered(node):
            return False
        self.ok[node] = None
        self.primary_ok += target.hint_for is None
        self._decide()
        return True

    def add_target(self, target: Target) -> None:
        """A fallback joins the request; what was decided stays decided."""
        self.targets = (*self.targets, target)
        self.by_node[target.node] = target

    def record_refusal(self, node: NodeId, reason: str) -> None:
        target = self.by_node.get(node)
        if target is None or self.answered(node):
            return
        self.refused[node] = reason
        self.primary_refused += target.is_primary
        self._decide()

    def timeout(self) -> RequestStatus:
        if self.status is RequestStatus.PENDING:
            silent = [t.node for t in self.targets if not self.answered(t.node)]
            self._fail(
                f"timed out with {len(self.ok)} of {self.quorum_name}={self.need} "
                f"{self.answer_word}s, {self.primary_ok} of {self.primary_name}={self.need_primary}"
                f" from primaries; no answer from {', '.join(silent) or 'nobody'}"
                + self._refusals()
            )
        return self.status

    def _refusals(self) -> str:
        if not self.refused:
            return ""
        return "; refused by " + ", ".join(f"{n} ({why})" for n, why in self.refused.items())

    def _fail(self, reason: str) -> None:
        self.status = RequestStatus.FAILED
        self.reason = reason

    def _decide(self) -> None:
        if self.status is not RequestStatus.PENDING:
            return
        if len(self.ok) >= self.need and self.primary_ok >= self.need_primary:
            self.status = RequestStatus.SUCCEEDED
            return
        reachable = len(self.targets) - len(self.refused)
        if reachable < self.need:
            self._fail(
                f"cannot reach {self.quorum_name}={self.need}: "
                f"{_plural(len(self.targets), 'target')}, {len(self.refused)} refused"
                + self._refusals()
            )
            return
        primary_reachable = self.primary_targets - self.primary_refused
        if primary_reachable < self.need_primary:
            self._fail(
                f"cannot reach {self.primary_name}={self.need_primary}: "
                f"{_plural(self.primary_targets, 'primary target')}, "
                f"{self.primary_refused} refused" + self._refusals()
            )


def _stand_ins_distinct(targets: Sequence[Target]) -> bool:
    owners = [t.hint_for for t in targets if t.hint_for is not None]
    return len(set(owners)) == len(owners)


def _may_stand_in(tally: _Tally, target: Target) -> bool:
    owner = None if target.hint_for is None else tally.by_node.get(target.hint_for)
    return (
        owner is not None
        and owner.is_primary
        and target.node not in tally.by_node
        and all(t.hint_for != target.hint_for for t in tally.targets)
    )


_TARGETS_DISTINCT = "each node is targeted at most once"
_TARGETS_AT_MOST_N = "a request has at most N targets"
_FALLBACKS_NEED_SLOPPY = "fallbacks only under a sloppy quorum"


# The contracts read the tally directly: through the public properties each check would run
# the invariants' own wrappers again, for the same values.
@icontract.invariant(
    lambda self: len(self._tally.ok) + len(self._tally.refused) <= len(self._tally.targets),
    enabled=ENABLED,
)
@icontract.invariant(
    lambda self: (
        self._tally.status is not RequestStatus.SUCCEEDED
        or (len(self._tally.ok) >= self._config.w and self._tally.primary_ok >= self._config.pw)
    ),
    "success implies W acks, PW of them from primaries",
    enabled=ENABLED,
)
@icontract.invariant(
    lambda self: (self._tally.status is RequestStatus.FAILED) == (self._tally.reason is not None),
    enabled=ENABLED,
)
@icontract.invariant(
    lambda self: _stand_ins_distinct(self._tally.targets),
    "each fallback stands in for a different replica",
    enabled=ENABLED,
)
class WriteCollector:
    """Decides a put: SUCCEEDED after W acks (PW of them from primaries), FAILED when that is
    impossible or on ``timeout()``. Acks after the decision are still recorded.

    Under a sloppy quorum a fallback may join later (``add_fallback``), standing in for a
    primary that seems down; its ack counts toward W, never toward PW.
    """

    @icontract.require(
        lambda targets: len({t.node for t in targets}) == len(targets),
        _TARGETS_DISTINCT,
        enabled=ENABLED,
    )
    @icontract.require(
        lambda config, targets: len(targets) <= config.n, _TARGETS_AT_MOST_N, enabled=ENABLED
    )
    @icontract.require(
        lambda config, targets: config.sloppy or all(t.is_primary for t in targets),
        _FALLBACKS_NEED_SLOPPY,
        enabled=ENABLED,
    )
    def __init__(self, config: QuorumConfig, targets: Sequence[Target]) -> None:
        self._config = config
        self._tally = _Tally(targets, config.w, config.pw, ("W", "PW", "ack"))

    @property
    @query
    def config(self) -> QuorumConfig:
        return self._config

    @property
    @query
    def targets(self) -> tuple[Target, ...]:
        return self._tally.targets

    @property
    @query
    def stand_ins(self) -> dict[NodeId, NodeId]:
        """Fallback -> the primary it stands in for."""
        return {t.node: t.hint_for for t in self._tally.targets if t.hint_for is not None}

    @property
    @query
    def status(self) -> RequestStatus:
        return self._tally.status

    @property
    @query
    def reason(self) -> str | None:
        """Why the write failed; None unless FAILED."""
        return self._tally.reason

    @property
    @query
    def acked(self) -> frozenset[NodeId]:
        return frozenset(self._tally.ok)

    @property
    @query
    def ack_count(self) -> int:
        return len(self._tally.ok)

    @property
    @query
    def primary_ack_count(self) -> int:
        return self._tally.primary_ok

    @property
    @query
    def refused(self) -> Mapping[NodeId, str]:
        return dict(self._tally.refused)

    @property
    @query
    def pending(self) -> frozenset[NodeId]:
        """Targets that have not answered yet."""
        return self._pending()

    def _pending(self) -> frozenset[NodeId]:
        return frozenset(t.node for t in self._tally.targets if not self._tally.answered(t.node))

    @query
    def is_target(self, node: NodeId) -> bool:
        return node in self._tally.by_node

    @query
    def waiting_on(self, node: NodeId) -> bool:
        """``node`` is a target that has not answered (``node in pending``, without the set)."""
        tally = self._tally
        return node in tally.by_node and node not in tally.ok and node not in tally.refused

    @query
    def outstanding(self) -> int:
        """How many targets have not answered (``len(pending)``)."""
        tally = self._tally
        return len(tally.targets) - len(tally.ok) - len(tally.refused)

    @icontract.require(lambda self: self._config.sloppy, _FALLBACKS_NEED_SLOPPY, enabled=ENABLED)
    @icontract.require(
        lambda self, target: _may_stand_in(self._tally, target),
        "a new node stands in for a primary that has no stand-in yet",
        enabled=ENABLED,
    )
    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.snapshot(lambda self: len(self._tally.ok), name="acks", enabled=ENABLED)
    @icontract.ensure(lambda self, OLD: self._tally.status is OLD.status, enabled=ENABLED)
    @icontract.ensure(lambda self, OLD: len(self._tally.ok) == OLD.acks, enabled=ENABLED)
    @icontract.ensure(lambda self, target: target.node in self._tally.by_node, enabled=ENABLED)
    def add_fallback(self, target: Target) -> None:
        """``target.node`` stands in for primary ``target.hint_for``, which seems down."""
        self._tally.add_target(target)

    @icontract.require(lambda self, node: node in self._tally.by_node, enabled=ENABLED)
    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.snapshot(lambda self: len(self._tally.ok), name="acks", enabled=ENABLED)
    @icontract.snapshot(lambda self: self._pending(), name="pending", enabled=ENABLED)
    @icontract.ensure(
        lambda self, OLD: OLD.status is RequestStatus.PENDING or self._tally.status is OLD.status,
        "a decided status never changes",
        enabled=ENABLED,
    )
    @icontract.ensure(
        lambda self, node, OLD: len(self._tally.ok) == OLD.acks + (node in OLD.pending),
        "an ack counts once, and only from a node that had not answered",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: result is self._tally.status, enabled=ENABLED)
    def ack(self, node: NodeId) -> RequestStatus:
        """Record that ``node`` stored the write; returns the status after it."""
        self._tally.record_ok(node)
        return self._tally.status

    @icontract.require(lambda self, node: node in self._tally.by_node, enabled=ENABLED)
    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.snapshot(lambda self: len(self._tally.ok), name="acks", enabled=ENABLED)
    @icontract.ensure(
        lambda self, OLD: OLD.status is RequestStatus.PENDING or self._tally.status is OLD.status,
        "a decided status never changes",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, OLD: len(self._tally.ok) == OLD.acks, enabled=ENABLED)
    @icontract.ensure(lambda self, result: result is self._tally.status, enabled=ENABLED)
    def nack(self, node: NodeId, reason: str) -> RequestStatus:
        """Record that ``node`` refused or failed the write; its first answer is the one kept."""
        self._tally.record_refusal(node, reason)
        return self._tally.status

    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.ensure(lambda result: result in _DONE, enabled=ENABLED)
    @icontract.ensure(
        lambda OLD, result: OLD.status is RequestStatus.PENDING or result is OLD.status,
        enabled=ENABLED,
    )
    def timeout(self) -> RequestStatus:
        """The caller's timer fired: a write not yet decided fails. Returns the final status."""
        return self._tally.timeout()


@icontract.invariant(
    lambda self: len(self._responses) + len(self._tally.refused) <= len(self._tally.targets),
    enabled=ENABLED,
)
@icontract.invariant(
    lambda self: (
        self._tally.status is not RequestStatus.SUCCEEDED
        or (len(self._responses) >= self._config.r and self._tally.primary_ok >= self._config.pr)
    ),
    "success implies R responses, PR of them from primaries",
    enabled=ENABLED,
)
@icontract.invariant(
    lambda self: (self._tally.status is RequestStatus.FAILED) == (self._tally.reason is not None),
    enabled=ENABLED,
)
class ReadCollector(Generic[T]):
    """Decides a get: SUCCEEDED after R responses (PR of them from primaries), FAILED when that
    is impossible or on ``timeout()``. Payloads are canonical values compared by equality;
    responses after the decision are kept so that late responders are repaired too.
    """

    @icontract.require(
        lambda targets: len({t.node for t in targets}) == len(targets),
        _TARGETS_DISTINCT,
        enabled=ENABLED,
    )
    @icontract.require(
        lambda config, targets: len(targets) <= config.n, _TARGETS_AT_MOST_N, enabled=ENABLED
    )
    @icontract.require(
        lambda config, targets: config.sloppy or all(t.is_primary for t in targets),
        _FALLBACKS_NEED_SLOPPY,
        enabled=ENABLED,
    )
    def __init__(self, config: QuorumConfig, targets: Sequence[Target]) -> None:
        self._config = config
        self._tally = _Tally(targets, config.r, config.pr, ("R", "PR", "response"))
        self._responses: dict[NodeId, T] = {}

    @property
    @query
    def config(self) -> QuorumConfig:
        return self._config

    @property
    @query
    def targets(self) -> tuple[Target, ...]:
        return self._tally.targets

    @property
    @query
    def status(self) -> RequestStatus:
        return self._tally.status

    @property
    @query
    def reason(self) -> str | None:
        """Why the read failed; None unless FAILED."""
        return self._tally.reason

    @property
    @query
    def responses(self) -> Mapping[NodeId, T]:
        """Every response so far, late ones included, in arrival order."""
        return dict(self._responses)

    @property
    @query
    def response_count(self) -> int:
        return len(self._responses)

    @property
    @query
    def primary_response_count(self) -> int:
        return self._tally.primary_ok

    @property
    @query
    def refused(self) -> Mapping[NodeId, str]:
        return dict(self._tally.refused)

    @property
    @query
    def pending(self) -> frozenset[NodeId]:
        """Targets that have not answered yet."""
        return self._pending()

    def _pending(self) -> frozenset[NodeId]:
        return frozenset(t.node for t in self._tally.targets if not self._tally.answered(t.node))

    @query
    def is_target(self, node: NodeId) -> bool:
        return node in self._tally.by_node

    @query
    def waiting_on(self, node: NodeId) -> bool:
        """``node`` is a target that has not answered (``node in pending``, without the set)."""
        tally = self._tally
        return node in tally.by_node and node not in tally.ok and node not in tally.refused

    @query
    def outstanding(self) -> int:
        """How many targets have not answered (``len(pending)``)."""
        tally = self._tally
        return len(tally.targets) - len(tally.ok) - len(tally.refused)

    @icontract.require(lambda self, node: node in self._tally.by_node, enabled=ENABLED)
    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.snapshot(lambda self: len(self._responses), name="count", enabled=ENABLED)
    # ``node in self._pending()``, without building the set of every pending target.
    @icontract.snapshot(
        lambda self, node: (
            not self._tally.answered(node) and any(t.node == node for t in self._tally.targets)
        ),
        name="was_pending",
        enabled=ENABLED,
    )
    @icontract.ensure(
        lambda self, OLD: OLD.status is RequestStatus.PENDING or self._tally.status is OLD.status,
        "a decided status never changes",
        enabled=ENABLED,
    )
    @icontract.ensure(
        lambda self, OLD: len(self._responses) == OLD.count + OLD.was_pending,
        "a response counts once, and only from a node that had not answered",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, result: result is self._tally.status, enabled=ENABLED)
    def respond(self, node: NodeId, payload: T) -> RequestStatus:
        """Record ``node``'s answer; returns the status after it. A repeat answer is ignored."""
        if self._tally.record_ok(node):
            self._responses[node] = payload
        return self._tally.status

    @icontract.require(lambda self, node: node in self._tally.by_node, enabled=ENABLED)
    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.snapshot(lambda self: len(self._responses), name="count", enabled=ENABLED)
    @icontract.ensure(
        lambda self, OLD: OLD.status is RequestStatus.PENDING or self._tally.status is OLD.status,
        "a decided status never changes",
        enabled=ENABLED,
    )
    @icontract.ensure(lambda self, OLD: len(self._responses) == OLD.count, enabled=ENABLED)
    @icontract.ensure(lambda self, result: result is self._tally.status, enabled=ENABLED)
    def nack(self, node: NodeId, reason: str) -> RequestStatus:
        """Record that ``node`` could not answer; its first answer is the one kept."""
        self._tally.record_refusal(node, reason)
        return self._tally.status

    @icontract.snapshot(lambda self: self._tally.status, name="status", enabled=ENABLED)
    @icontract.ensure(lambda result: result in _DONE, enabled=ENABLED)
    @icontract.ensure(
        lambda OLD, result: OLD.status is RequestStatus.PENDING or result is OLD.status,
        enabled=ENABLED,
    )
    def timeout(self) -> RequestStatus:
        """The caller's timer fired: a read not yet decided fails. Returns the final status."""
        return self._tally.timeout()

    @query
    @icontract.ensure(lambda self, result: result <= set(self.responses), enabled=ENABLED)
    @icontract.ensure(
        lambda self, merged, result: all(
            (node in result) == (payload != merged) for node, payload in self.responses.items()
        ),
        enabled=ENABLED,
    )
    def stale_replicas(self, merged: T) -> frozenset[NodeId]:
        """Responders whose payload differs from ``merged``, the reconciliation of all responses:
        they get read repair. Nodes that never answered are not included; nobody knows their state.
        """
        return frozenset(node for node, payload in self._responses.items() if payload != merged)
