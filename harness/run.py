"""One test run: set up a cluster, run a workload under a nemesis, heal, quiesce, read, check.

`run_once(cfg)` does, in order (teardown always):

1. setup: the target's nodes (for dynamo-ref: processes with short anti-entropy, handoff and
   gossip intervals, so a run's quiescence is seconds);
2. the workload and the nemesis together for `duration` seconds;
3. heal everything (network healed, paused nodes resumed, killed nodes restarted, skews cleared);
4. quiesce: wait until no node holds hints, and at least `settle` seconds (anti-entropy rounds),
   at most `quiesce` seconds;
5. final reads of every key, then (after a short settle for read repair) replica reads of
   every replica of every key (dynamo-ref's `ReplicaGet`);
6. teardown, write `out/history.jsonl`, then check.

Checks by workload (`harness.checkers`):

- `set-add`, `counter`: lost writes as sets (every acknowledged element in the final set),
  Dynamo semantics (on the history with each `add` as the write of the list it wrote),
  convergence;
- `register` on a versioned (Dynamo-style) target: lost writes (siblings, causal), Dynamo
  semantics (strict-quorum property too when the quorum is strict and R + W > N), convergence,
  and linearizability as a register per key (a read of one sibling reads that value, of none
  reads nil, of several reads a value no write wrote);
- `register` on a register target: linearizability and lost writes (register);
- an external program: also `program`, invalid when any line it wrote broke the protocol.

`progress(phase, fraction, status)` is called at each phase (`setup`, `running`, `healing`,
`quiescing`, `final-reads`, `replica-reads`, `teardown`, `checking`, `done`) with how far the
run is (0..1; the workload's `duration` is 0.05..0.8), and about once a second while the load
runs, with a `LiveStatus` (operations, operations per second, the faults in force).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from harness.checkers import datatypes
from harness.checkers.causal import REPLICA_READ_F, replace_op
from harness.checkers.convergence import check_convergence_history
from harness.checkers.dynamo_semantics import check_dynamo
from harness.checkers.linearizable import as_result, check
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.models import register
from harness.checkers.verdict import Finding, Result, Verdict, combine
from harness.clocks import Dominates, descends
from harness.history import Op, pair, write_jsonl
from harness.nemesis import FAULTS, PATTERNS, Nemesis, NemesisConfig
from harness.recorder import LiveStatus, Progress, Recorder
from harness.targets.dynamo_settings import DEFAULT_MODE, DEFAULT_QUORUM, DEFAULTS, MODES, QUORUMS
from harness.workload import WORKLOADS, Workload, WorkloadConfig, WorkloadKind, default_keys

__all__ = [
    "MODES",
    "NETS",
    "QUORUMS",
    "TARGETS",
    "RunConfig",
    "RunResult",
    "check_run",
    "make_target",
    "run_once",
]


TARGETS = ("dynamo", "etcd", "external")
NETS = ("proxy", "netns")


# The most client operations a run may ask for (its rate times its time) for the campaign
# command to validate its traces without being asked: about a minute of TLC on this
# project's two-core machine (benchmarks/trace_validation_bench.py: 1,600 operations on 5
# nodes under partitions, kills and pauses, 17,700 actions, 50 s).
AUTO_VALIDATE_OPS = 2000


def validation_fits(cfg: RunConfig) -> bool:
    """Whether a run is short enough that validating its traces against the spec is worth
    doing by default: the dynamo target on this machine, at a bounded rate (a closed loop
    makes as many operations as the machine allows), and Java there to run TLC."""
    import shutil

    if cfg.target != "dynamo" or cfg.hosts or cfg.rate is None:
        return False
    if cfg.rate * cfg.clients * cfg.duration > AUTO_VALIDATE_OPS:
        return False
    return shutil.which("java") is not None


@dataclass
class RunConfig:
    nodes: int = 5
    duration: float = 60.0
    nemesis: tuple[str, ...] = ("partition",)
    workload: str = "set-add"
    # The node's defaults: dvv (plain vclock, the paper's rule, loses concurrent writes through
    # one coordinator), sloppy quorum, N/R/W.
    mode: str = DEFAULT_MODE
    quorum: str = DEFAULT_QUORUM
    net: str = "proxy"
    seed: int = 0
    clients: int = 10
    keys: int = 40
    target: str = "dynamo"  # dynamo | etcd | external
    program: tuple[str, ...] = ()  # the external target's node command
    out: Path = field(default_factory=lambda: Path("runs/run"))
    n: int = DEFAULTS.n
    r: int = DEFAULTS.r
    w: int = DEFAULTS.w
    rate: float | None = None  # ops/s per client; None: closed loop
    key_per_client: bool = False  # client i only works on key i (mod keys)
    patterns: tuple[str, ...] = tuple(PATTERNS)
    fault_time: tuple[float, float] = (1.0, 3.0)
    heal_time: tuple[float, float] = (0.5, 1.5)
    skew: float = 60.0
    skew_nodes: tuple[str, ...] = ()
    quiesce: float = 20.0  # at most, after the heal
    settle: float = 2.0  # at least, after the heal (anti-entropy rounds)
    check_time_limit: float = 60.0  # the linearizability search's budget
    # The nodes log their steps and TLC checks the run against the spec (the spec checker).
    # The campaign command turns it on by itself for short runs (`validation_fits`).
    validate_trace: bool = False
    validate_time_limit: float = 600.0
    # The nodes (dynamo-ref, etcd members or external programs) on these hosts over SSH, one
    # each, instead of on this machine.
    hosts: tuple[str, ...] = ()
    ssh_user: str | None = None
    ssh_keys: tuple[str, ...] = ()
    known_hosts: str | None = None
    remote_dir: str = "dynamo-ref"
    remote_python: str = "python3"
    remote_venv: str | None = None
    remote_etcd: str = "etcd"  # the etcd binary on the hosts (--target etcd)
    sudo: bool = False

    def problems(self) -> list[str]:
        """Everything that keeps this run from starting, in the campaign's option names (empty:
        it can run). Checked before any process starts."""
        out: list[str] = []
        known = {
            "--target": (self.target, TARGETS),
            "--workload": (self.workload, WORKLOADS),
            "--mode": (self.mode, MODES),
            "--quorum": (self.quorum, QUORUMS),
            "--net": (self.net, NETS),
        }
        if self.hosts:
            del known["--net"]  # the hosts' own network, cut with iptables on them
        for option, (value, choices) in known.items():
            if value not in choices:
                what = option.removeprefix("--")
                out.append(f"{option} {value!r}: unknown {what}, one of {', '.join(choices)}")
        bad = [f for f in self.nemesis if f not in FAULTS]
        if bad:
            out.append(
                f"--nemesis: unknown fault {', '.join(map(repr, bad))}; the faults are "
                f"{', '.join(FAULTS)} (comma-separated), or none"
            )
        if not (self.duration > 0 and math.isfinite(self.duration)):
            out.append(f"--time must be a positive number of seconds, got {self.duration:g}")
        for option, count in (("--nodes", self.nodes), ("--clients", self.clients)):
            if count < 1:
                out.append(f"{option} must be at least 1, got {count}")
        if self.keys < 1:
            out.append(f"--keys must be at least 1, got {self.keys}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            out.append(f"--rate must be a positive number of operations a second, not {self.rate}")
        if self.hosts and len(self.hosts) != self.nodes:
            out.append(f"--hosts names {len(self.hosts)} hosts for {self.nodes} nodes")
        if (
            self.net == "netns"
            and not self.hosts
            and self.target != "external"
            and os.geteuid() != 0
        ):
            out.append("--net netns needs root (network namespaces and iptables)")
        if self.program and self.target != "external":
            out.append("--program (--bin) is for --target external, the node program's command")
        out += self._target_problems()
        return out

    def _target_problems(self) -> list[str]:
        out: list[str] = []
        if self.target == "etcd" and self.workload != "register":
            out.append(
                f"the etcd target stores registers: use --workload register, not {self.workload}"
            )
        if self.target == "etcd" and "skew" in self.nemesis:
            out.append("the etcd target cannot skew clocks: drop skew from --nemesis")
        if self.target == "external" and "skew" in self.nemesis and not self.hosts:
            out.append(
                "the external target skews clocks only on --hosts (libfaketime there): "
                "drop skew from --nemesis"
            )
        if self.target == "etcd":
            # Each etcd member advertises one peer URL to all, so per-link proxies cannot cut
            # its links: partitions need namespaces.
            if "partition" in self.nemesis and self.net != "netns" and not self.hosts:
                out.append("etcd partitions need --net netns (root)")
            if self.nodes not in (3, 5):
                out.append(f"an etcd cluster here has 3 or 5 members, not --nodes {self.nodes}")
        if self.target == "external" and not self.program:
            out.append("the external target needs the node program's command (--program or --bin)")
        if self.validate_trace and self.target != "dynamo":
            out.append("--validate-trace needs the dynamo target, whose nodes log their steps")
        if self.target == "dynamo":
            n = min(self.n, self.nodes)
            if not (1 <= self.r <= n and 1 <= self.w <= n):
                out.append(f"R={self.r} and W={self.w} must be between 1 and N={n}")
        return out

    def settings(self) -> dict[str, object]:
        """The fields that apply to this run, in declaration order: what names it and what its
        page and summary show. Only dynamo-ref has N/R/W, a version mode and a quorum kind; an
        external program routes its own messages (no --net); fault settings only matter for
        the faults drawn."""
        skip = set()
        if self.target != "dynamo":
            skip |= {"mode", "quorum", "n", "r", "w"}
        if self.target == "external":
            skip.add("net")
        else:
            skip.add("program")
        if "partition" not in self.nemesis:
            skip.add("patterns")
        if "skew" not in self.nemesis:
            skip |= {"skew", "skew_nodes"}
        if not self.nemesis:
            skip |= {"fault_time", "heal_time"}
        if not self.validate_trace:
            skip |= {"validate_trace", "validate_time_limit"}
        remote = ("ssh_user", "ssh_keys", "known_hosts", "remote_dir", "remote_python")
        if not self.hosts:
            skip |= {"hosts", "remote_venv", "remote_etcd", "sudo", *remote}
        else:
            skip.add("net")
        if self.target != "etcd":
            skip.add("remote_etcd")
        else:
            skip |= {"remote_python", "remote_venv"}  # the hosts' own etcd runs
        if self.target == "external":
            # The program runs as given: nothing is installed, nor iptables used (its clock
            # files, for skews, go under remote_dir).
            skip |= {"remote_python", "remote_venv", "sudo"}
            if "skew" not in self.nemesis:
                skip.add("remote_dir")
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


@dataclass
class RunResult:
    config: RunConfig
    history: list[Op]
    faults: list[dict[str, object]]
    checks: dict[str, Result]
    verdict: Verdict
    timings: dict[str, float]
    out: Path
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "checks": {name: r.verdict for name, r in self.checks.items()},
            "ops": sum(1 for op in self.history if op.type == "invoke"),
            "faults": len(self.faults),
            "timings": self.timings,
            "errors": self.errors,
        }


def make_target(cfg: RunConfig) -> Any:
    """The target `cfg.target` names: dynamo-ref processes, an etcd cluster, or the external
    node program `cfg.program` speaking the Maelstrom protocol (harness/examples/README.md).

    :raises ValueError: `cfg.problems()`: an unknown target, faults or a workload the target
        cannot take, ...
    """
    problems = cfg.problems()
    if problems:
        raise ValueError("; ".join(problems))
    if cfg.target == "etcd" and cfg.hosts:
        from harness.targets.remote_etcd import RemoteEtcdTarget

        return RemoteEtcdTarget(
            cfg.hosts,
            _cluster_dir(cfg),
            ssh=_ssh(cfg),
            remote_dir=cfg.remote_dir,
            etcd_bin=cfg.remote_etcd,
        )
    if cfg.target == "etcd":
        from harness.targets.etcd_target import EtcdTarget

        return EtcdTarget(
            cfg.nodes, _cluster_dir(cfg), net="netns" if cfg.net == "netns" else "none"
        )
    if cfg.target == "external" and cfg.hosts:
        from harness.targets.remote import RemoteMaelstromTarget

        return RemoteMaelstromTarget(
            cfg.program,
            cfg.hosts,
            ssh=_ssh(cfg),
            seed=cfg.seed,
            workload=cfg.workload,
            faketime="skew" in cfg.nemesis,
            remote_dir=cfg.remote_dir,
        )
    if cfg.target == "external":
        from harness.targets.maelstrom import MaelstromTarget

        return MaelstromTarget(cfg.program, cfg.nodes, seed=cfg.seed, workload=cfg.workload)
    # What a dynamo-ref cluster is, wherever its nodes run.
    settings: dict[str, Any] = {
        "mode": cfg.mode,
        "quorum": cfg.quorum,
        "n": cfg.n,
        "r": cfg.r,
        "w": cfg.w,
        "seed": cfg.seed,
        "trace": cfg.validate_trace,
    }
    if cfg.hosts:
        return _remote_target(cfg, settings)
    from harness.targets.dynamo import DynamoTarget

    return DynamoTarget(cfg.nodes, _cluster_dir(cfg), net=cast(Any, cfg.net), **settings)


def _ssh(cfg: RunConfig) -> Any:
    from dynamo_ref.remote.ssh import SshOptions

    return SshOptions(
        user=cfg.ssh_user,
        keys=tuple(Path(k) for k in cfg.ssh_keys),
        known_hosts=None if cfg.known_hosts is None else Path(cfg.known_hosts),
        sudo=cfg.sudo,
    )


def _remote_target(cfg: RunConfig, settings: dict[str, Any]) -> Any:
    from harness.targets.remote import RemoteDynamoTarget

    return RemoteDynamoTarget(
        cfg.hosts,
        _cluster_dir(cfg),
        ssh=_ssh(cfg),
        remote_dir=cfg.remote_dir,
        python=cfg.remote_python,
        venv=cfg.remote_venv,
        **settings,
    )


def _cluster_dir(cfg: RunConfig) -> Path:
    """Where the nodes keep their data: absolute, since node processes have a working
    directory of their own."""
    return (cfg.out / "cluster").resolve()


def _noop(_phase: str, _fraction: float, _status: LiveStatus | None = None, /) -> None:
    pass


async def run_once(
    cfg: RunConfig, progress: Progress | None = None, *, target: Any = None
) -> RunResult:
    say = progress or _noop
    cfg.out.mkdir(parents=True, exist_ok=True)
    # A run starts from empty nodes: data left by an earlier run in the same directory would
    # show up as values this run never wrote.
    shutil.rmtree(cfg.out / "cluster", ignore_errors=True)
    target = target if target is not None else make_target(cfg)
    recorder = Recorder()
    timings: dict[str, float] = {}
    errors: list[str] = []
    workload: Workload | None = None
    nemesis: Nemesis | None = None
    replicas: dict[str, list[str]] = {}
    t = time.monotonic()
    try:
        say("setup", 0.0)
        await target.setup()
        timings["setup"] = time.monotonic() - t
        keys = tuple(default_keys(target, cfg.keys))
        workload = Workload(
            target,
            recorder,
            WorkloadConfig(
                kind=cast(WorkloadKind, cfg.workload),
                clients=cfg.clients,
                keys=keys,
                rate=cfg.rate,
                key_per_client=cfg.key_per_client,
                seed=cfg.seed,
            ),
        )
        await workload.open()
        nemesis = Nemesis(
            target,
            recorder,
            NemesisConfig(
                faults=tuple(cfg.nemesis),
                patterns=tuple(cfg.patterns),
                fault_time=cfg.fault_time,
                heal_time=cfg.heal_time,
                skew=cfg.skew,
                skew_nodes=tuple(cfg.skew_nodes),
                seed=cfg.seed,
            ),
        )
        t = time.monotonic()
        deadline = t + cfg.duration
        say("running", 0.05)
        ticker = asyncio.create_task(_tick(say, recorder, t, cfg.duration))
        try:
            await asyncio.gather(workload.run(deadline), nemesis.run(deadline))
        finally:
            ticker.cancel()
        timings["run"] = time.monotonic() - t
        t = time.monotonic()
        say("healing", 0.8)
        await nemesis.heal_all()
        say("quiescing", 0.82)
        await _quiesce(target, cfg)
        timings["quiesce"] = time.monotonic() - t
        t = time.monotonic()
        say("final-reads", 0.9)
        await workload.final_reads()
        await asyncio.sleep(min(1.0, cfg.settle))  # read repair reaches every replica
        say("replica-reads", 0.93)
        replicas = await workload.replica_reads()
        timings["reads"] = time.monotonic() - t
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
        raise
    finally:
        t = time.monotonic()
        say("teardown", 0.96)
        if workload is not None:
            await workload.close()
        await target.teardown()
        recorder.close("the run ended with the op in flight")
        timings["teardown"] = time.monotonic() - t
        write_jsonl(cfg.out / "history.jsonl", recorder.ops)
    say("checking", 0.97)
    t = time.monotonic()
    dominates = getattr(target, "dominates", None)
    versioned = bool(getattr(target, "versioned", hasattr(target, "replica_get")))
    versioned = versioned or cfg.target == "dynamo"
    checks = check_run(
        recorder.ops,
        cfg.workload,
        versioned=versioned,
        strict_quorum=cfg.quorum == "strict" and cfg.r + cfg.w > cfg.n,
        dominates=dominates if callable(dominates) else descends,
        replicas=dict[Hashable, Sequence[str]](replicas.items()),
        time_limit=cfg.check_time_limit,
    )
    faults = getattr(target, "program_faults", None)
    if isinstance(faults, list):
        checks["program"] = program_result(faults, int(getattr(target, "program_fault_count", 0)))
    timings["check"] = time.monotonic() - t
    if cfg.validate_trace:
        say("validating traces", 0.98)
        t = time.monotonic()
        checks["spec"] = await asyncio.to_thread(target.check_traces, cfg.validate_time_limit)
        timings["validate"] = time.monotonic() - t
    verdict = combine(r.verdict for r in checks.values())
    result = RunResult(
        config=cfg,
        history=recorder.ops,
        faults=list(nemesis.faults) if nemesis is not None else [],
        checks=checks,
        verdict=verdict,
        timings=timings,
        out=cfg.out,
        errors=errors,
    )
    say("done", 1.0)
    return result


async def _tick(say: Progress, recorder: Recorder, started: float, duration: float) -> None:
    last, last_done = started, 0
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        status = recorder.live(now - started)
        rate = (status.completed - last_done) / max(now - last, 1e-9)
        last, last_done = now, status.completed
        done = min(1.0, (now - started) / duration) if duration > 0 else 1.0
        say("running", 0.05 + 0.75 * done, dataclasses.replace(status, rate=rate))


async def _quiesce(target: Any, cfg: RunConfig) -> None:
    """Until no node holds hints (and at least `settle` seconds), at most `quiesce`."""
    started = time.monotonic()
    status = getattr(target, "status", None)
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= cfg.quiesce:
            return
        if elapsed >= cfg.settle:
            if status is None:
                return
            try:
                pending = 0
                for node in target.nodes():
                    hints = (await status(node)).get("hints", {})
                    pending += sum(hints.values()) if isinstance(hints, dict) else 0
            except Exception:
                pending = -1  # a node not answering yet: wait
            if pending == 0:
                return
        await asyncio.sleep(0.25)


# ---- checks ---------------------------------------------------------------------------------


def program_result(faults: Sequence[Any], count: int) -> Result:
    """The external program's own protocol breaches (malformed lines, replies of the wrong
    type or to requests never sent): any makes the run invalid, whatever the history says,
    since the history lacks what those lines should have carried."""
    if not count:
        return Result("program", "valid", "valid: every line the program wrote was a message")
    findings = tuple(
        Finding(
            kind="protocol",
            key=f.node,
            message=f.describe(),
            details={"node": f.node, "reason": f.reason, "line": f.line},
        )
        for f in faults
    )
    firsts: dict[str, Any] = {}
    for f in faults:
        firsts.setdefault(f.reason, f)
    first = "; ".join(f"{f.describe()!s}" for f in list(firsts.values())[:4])
    return Result(
        "program",
        "invalid",
        f"invalid: the program broke the protocol {count} time(s); the first line of each "
        f"kind: {first}",
        details={"faults": count, "lines": [f.line for f in faults]},
        findings=findings,
    )


def _as_register(history: Sequence[Op]) -> list[Op]:
    """Reads of sibling lists as register reads: one sibling reads it, none reads nil, several
    read a value no write wrote (a register never holds two)."""
    out: list[Op] = []
    for op in history:
        if op.f == REPLICA_READ_F:
            continue
        if op.f == "read" and op.type == "ok" and isinstance(op.value, list):
            values = op.value
            value: object = None
            if len(values) == 1:
                value = values[0]
            elif values:
                value = {"siblings": values}
            out.append(replace_op(op, value=value))
        else:
            out.append(op)
    return out


# The data type each workload's history holds, for the lost-writes, Dynamo and convergence
# checkers; a register workload against a versioned target reads siblings.
WORKLOAD_DATATYPES: dict[str, Callable[[Dominates], datatypes.Datatype]] = {
    "register": datatypes.siblings,
    "set-add": datatypes.set_add,
    "counter": datatypes.set_add,
}


def linearizable_result(history: Sequence[Op], time_limit: float | None) -> Result:
    """The register-per-key linearizability check as a `Result`."""
    return as_result(check(register(None), pair(history), time_limit=time_limit))


def check_run(
    history: Sequence[Op],
    workload: str,
    *,
    versioned: bool = True,
    strict_quorum: bool = False,
    dominates: Dominates = descends,
    replicas: Mapping[Hashable, Sequence[str]] | None = None,
    time_limit: float | None = 60.0,
) -> dict[str, Result]:
    """The checks a run of `workload` calls for (see the module docstring)."""
    client = [op for op in history if op.f != REPLICA_READ_F]
    checks: dict[str, Result] = {}
    if workload == "register" and not versioned:
        checks["linearizable"] = linearizable_result(client, time_limit)
        checks["lost_writes"] = check_lost_writes(client, datatypes.register(dominates))
        return checks
    datatype = WORKLOAD_DATATYPES[workload](dominates)
    checks["lost_writes"] = check_lost_writes(client, datatype)
    checks["dynamo"] = check_dynamo(client, strict_quorum=strict_quorum, datatype=datatype)
    if workload == "register":
        checks["linearizable"] = linearizable_result(_as_register(client), time_limit)
    if versioned:
        checks["convergence"] = check_convergence_history(
            history, datatype=datatype, replicas=replicas or None
        )
    return checks
