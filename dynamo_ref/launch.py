"""Starting node processes: the one launcher behind `cluster up`, ``LocalCluster``, the fault
harness and the benchmarks.

A node process is ``python -m dynamo_ref node ...``. ``NodeSpec`` says everything about one
node; ``NodeSpec.argv`` turns it into that command line. Settings travel as a flag for every
``NodeConfig`` field that differs from its default, through ``CONFIG_FLAGS``: the same table
the ``node`` command builds its options from, so a setting's default is written once, in
``NodeConfig``, and no launcher restates it.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.core.node_versions import VersionMode
from dynamo_ref.storage.sqlite import DEFAULT_SYNC, Synchronous

# A node prints this, then its address, once it serves.
READY_PREFIX: Final = "listening on "

Kind = Literal["int", "float", "optional_float", "bool", "mode"]


@dataclass(frozen=True)
class ConfigFlag:
    """One ``NodeConfig`` field as a ``node`` option. A bool is ``--on/--off``."""

    field: str
    flag: str
    kind: Kind
    help: str
    off: str = ""  # for a bool: the flag that turns it off
    low: float | None = None  # the smallest value the option takes
    high: float | None = None


CONFIG_FLAGS: Final[tuple[ConfigFlag, ...]] = (
    ConfigFlag("n", "--n", "int", "Replicas per key (N).", low=1, high=64),
    ConfigFlag("r", "--r", "int", "Responses a get waits for (R).", low=1, high=64),
    ConfigFlag("w", "--w", "int", "Acks a put waits for (W).", low=1, high=64),
    ConfigFlag(
        "pr", "--pr", "int", "Of the R responses, how many from primaries (PR).", low=0, high=64
    ),
    ConfigFlag("pw", "--pw", "int", "Of the W acks, how many from primaries (PW).", low=0, high=64),
    ConfigFlag("sloppy", "--sloppy", "bool", "Sloppy quorum with hinted handoff.", "--strict"),
    ConfigFlag("mode", "--mode", "mode", "Versions: dotted version vectors, vector clocks, LWW."),
    ConfigFlag("partitions", "--partitions", "int", "Q, a power of two, fixed for the cluster."),
    ConfigFlag(
        "request_timeout", "--request-timeout", "float", "Seconds a request may take.", low=0.001
    ),
    ConfigFlag(
        "forward_timeout",
        "--forward-timeout",
        "optional_float",
        "Seconds a forwarded request may take (default: twice the request timeout).",
        low=0.001,
    ),
    ConfigFlag(
        "fallback_delay",
        "--fallback-delay",
        "float",
        "Seconds before a silent replica is stood in for.",
        low=0.001,
    ),
    ConfigFlag(
        "gossip_interval", "--gossip-interval", "float", "Seconds between gossip rounds.", low=0.001
    ),
    ConfigFlag(
        "anti_entropy_interval",
        "--anti-entropy-interval",
        "float",
        "Seconds between Merkle exchanges.",
        low=0.001,
    ),
    ConfigFlag(
        "handoff_interval",
        "--handoff-interval",
        "float",
        "Seconds between hinted handoffs.",
        low=0.001,
    ),
    ConfigFlag(
        "transfer_interval",
        "--transfer-interval",
        "float",
        "Seconds before an unacked transfer chunk is sent again.",
        low=0.001,
    ),
    ConfigFlag(
        "phi_threshold", "--phi-threshold", "float", "Phi above which a peer is down.", low=0.001
    ),
    ConfigFlag(
        "detector_window", "--detector-window", "int", "Heartbeat intervals phi learns from.", low=1
    ),
    ConfigFlag(
        "detector_min_std",
        "--detector-min-std",
        "float",
        "Floor of phi's deviation (s).",
        low=0.001,
    ),
    ConfigFlag(
        "detector_pause",
        "--detector-pause",
        "float",
        "Silence (s) phi accepts on top of normal.",
        low=0.001,
    ),
    ConfigFlag("max_key_size", "--max-key-size", "int", "Longest key, in bytes.", low=1),
    ConfigFlag("max_value_size", "--max-value-size", "int", "Longest value, in bytes.", low=1),
    ConfigFlag(
        "max_pending",
        "--max-pending",
        "int",
        "Client requests in progress past which new ones fail at once with `overload`.",
        low=1,
    ),
    ConfigFlag("clock_skew", "--clock-skew", "float", "Seconds added to this node's timestamps."),
    ConfigFlag(
        "skew_warning",
        "--skew-warning",
        "float",
        "Report peers whose timestamps run this many seconds ahead.",
        low=0.001,
    ),
    ConfigFlag(
        "reap_tombstones",
        "--reap-tombstones",
        "bool",
        "Drop tombstones once every replica holds them.",
        "--keep-tombstones",
    ),
    ConfigFlag(
        "reap_delay", "--reap-delay", "float", "Seconds before such tombstones go.", low=0.001
    ),
    ConfigFlag("merkle_fanout", "--merkle-fanout", "int", "Children per Merkle tree node.", low=1),
    ConfigFlag(
        "merkle_depth", "--merkle-depth", "int", "Levels below a Merkle tree's root.", low=1
    ),
    ConfigFlag(
        "transfer_chunk", "--transfer-chunk", "int", "Keys per partition-transfer message.", low=1
    ),
    ConfigFlag(
        "handoff_batch", "--handoff-batch", "int", "Hinted keys handed off per round.", low=1
    ),
)

DEFAULTS: Final = NodeConfig()


def config_args(config: NodeConfig) -> list[str]:
    """The ``node`` flags that give ``config``, every setting stated: a node's command line
    (and the cluster state file that records it) says exactly how it runs."""
    out: list[str] = []
    for f in CONFIG_FLAGS:
        value = getattr(config, f.field)
        if f.kind == "bool":
            out.append(f.flag if value else f.off)
        elif f.kind == "mode":
            out.append(f"{f.flag}={value.value}")
        elif value is None:
            continue  # an optional setting left to its rule
        else:
            out.append(f"{f.flag}={value!r}" if isinstance(value, float) else f"{f.flag}={value}")
    return out


def config_from_flags(values: Mapping[str, Any], base: NodeConfig = DEFAULTS) -> NodeConfig:
    """``base`` with the settings the flags gave (their ``field`` names as keys).

    :raises ValueError: inconsistent settings (a ``QuorumError`` for quorums).
    """
    given = {f.field: values[f.field] for f in CONFIG_FLAGS if f.field in values}
    if "mode" in given and not isinstance(given["mode"], VersionMode):
        given["mode"] = VersionMode(given["mode"])
    return dataclasses.replace(base, **given)


def node_command(python: str = sys.executable) -> list[str]:
    """How to run the ``dynamo-ref`` command line in a child process."""
    return [python, "-m", "dynamo_ref"]


@dataclass(frozen=True)
class NodeSpec:
    """One node process: who it is, where it listens, what it stores and how it is set.

    ``memory`` (or no ``data_dir``): the node keeps its data in memory only, lost on a crash.
    ``members``: the ids and addresses of a new cluster's initial ring; ``seeds``: addresses of
    nodes to join through; ``routes``: fixed addresses to reach some peers at, whatever gossip says
    (the fault harness's proxies). ``listen_fd``: an inherited socket already bound to
    ``listen``; ``client_socket``: a Unix socket clients may use too; ``trace``: the file the
    node logs its own steps to.
    """

    node_id: str
    listen: str
    data_dir: Path | None = None
    memory: bool = False
    config: NodeConfig = DEFAULTS
    sync: Synchronous = DEFAULT_SYNC
    members: tuple[tuple[str, str], ...] = ()
    seeds: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()
    zone: str | None = None
    secret_file: Path | None = None
    listen_fd: int | None = None
    client_socket: Path | None = None
    log_level: str | None = None
    trace: Path | None = None
    extra_args: tuple[str, ...] = ()

    def argv(self, command: Sequence[str] | None = None) -> list[str]:
        out = [*(command or node_command()), "node", f"--id={self.node_id}"]
        out.append(f"--listen={self.listen}")
        if self.data_dir is not None:
            out.append(f"--data-dir={self.data_dir}")
        out.append("--memory" if self.memory or self.data_dir is None else f"--sync={self.sync}")
        out += [f"--member={node}={address}" for node, address in self.members]
        if self.seeds:
            out.append(f"--seeds={','.join(self.seeds)}")
        out += [f"--route={node}={address}" for node, address in self.routes]
        if self.zone is not None:
            out.append(f"--zone={self.zone}")
        if self.secret_file is not None:
            out.append(f"--secret-file={self.secret_file}")
        if self.listen_fd is not None:
            out.append(f"--listen-fd={self.listen_fd}")
        if self.client_socket is not None:
            out.append(f"--client-socket={self.client_socket}")
        if self.log_level is not None:
            out.append(f"--log-level={self.log_level}")
        if self.trace is not None:
            out.append(f"--trace={self.trace}")
        return out + config_args(self.config) + list(self.extra_args)


Popen = Callable[..., "subprocess.Popen[bytes]"]


def spawn(
    spec: NodeSpec,
    *,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
    popen: Popen = subprocess.Popen,
) -> subprocess.Popen[bytes]:
    """Start the node ``spec`` describes, in a session of its own (a Ctrl-C at the launcher's
    terminal reaches the launcher only, which then stops its nodes by PID)."""
    kwargs: dict[str, object] = {
        "stdin": subprocess.DEVNULL,
        "stdout": stdout,
        "stderr": stderr,
        "env": None if env is None else dict(env),
        "start_new_session": True,
    }
    if cwd is not None:
        kwargs["cwd"] = str(cwd)
    if spec.listen_fd is not None:
        kwargs["pass_fds"] = (spec.listen_fd,)
    return popen(spec.argv(command), **kwargs)
