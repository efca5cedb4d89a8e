"""A dynamo-ref cluster on hosts reached over SSH (``dynamo-ref cluster up --hosts``).

Deployment: the wheel of this checkout and the node's dependencies are built here into a
wheelhouse (``build_wheelhouse``), copied to each host and installed, without an index, into a
venv under the host's ``remote_dir``; each node then gets a directory there with its data, its
log, its pid file and the cluster secret (written mode 0600 over SFTP, never on a command
line), and runs detached from the SSH session (``setsid``), its PID in ``node.pid``. Every later
command (status, start, stop, kill, down) goes by that PID. The cluster's description is kept
on this machine (``cluster.json`` in the cluster's directory), so any later command finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dynamo_ref import __version__
from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.launch import CONFIG_FLAGS, READY_PREFIX, NodeSpec, config_from_flags
from dynamo_ref.remote.ssh import HostPool, RemoteError, SshOptions

__all__ = [
    "RemoteCluster",
    "RemoteNode",
    "build_wheelhouse",
    "read_remote_state",
    "signal_script",
    "start_script",
]

T = TypeVar("T")

STATE_FILE = "cluster.json"
# What a node process imports (the project's own dependencies, and uvloop).
NODE_REQUIREMENTS = ("msgspec>=0.18", "click>=8.1", "rich>=13", "icontract>=2.6", "uvloop>=0.19")
_REPO = Path(__file__).resolve().parents[2]


def build_wheelhouse(cache: Path | None = None) -> Path:
    """The wheel of this checkout and of the node's dependencies, in a directory of their own
    (reused while the dependencies and the source are unchanged).

    :raises RuntimeError: pip could not build them (its output says why).
    """
    cache = cache or Path.home() / ".cache" / "dynamo-ref" / "wheelhouse"
    digest = hashlib.sha256()
    for path in sorted((_REPO / "dynamo_ref").rglob("*.py")):
        digest.update(path.read_bytes())
    digest.update((_REPO / "pyproject.toml").read_bytes())
    digest.update(repr(NODE_REQUIREMENTS).encode())
    out = cache / digest.hexdigest()[:16]
    if (out / ".done").exists():
        return out
    # Built apart and moved in whole: two builds at once (parallel tests) never mix files.
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=cache))
    try:
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(build)]
        # pip's own wheel too: the hosts run pip from it (``RemoteCluster._deploy``).
        for argv in ([*pip, *NODE_REQUIREMENTS, "pip"], [*pip, "--no-deps", str(_REPO)]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"building the wheelhouse failed: {done.stderr[-2000:]}")
        (build / ".done").write_text("")
        try:
            build.rename(out)
        except OSError:
            if not (out / ".done").exists():
                raise
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return out


# In a host's venv: the name of the wheelhouse installed there.
INSTALLED_MARK = ".dynamo-ref-build"


@dataclass(frozen=True)
class RemoteNode:
    node_id: str
    host: str  # as SSH reaches it
    address: str  # HOST:PORT peers and clients reach the node at
    dir: str  # the node's directory on its host


@dataclass
class RemoteCluster:
    """Nodes ``n1..nK`` on ``hosts`` (one each), reached through ``pool``."""

    hosts: Sequence[str]
    pool: HostPool
    local_dir: Path
    remote_dir: str = "dynamo-ref"
    port: int = 7100
    python: str = "python3"
    venv: str | None = None  # an environment already on the hosts with dynamo-ref installed
    config: NodeConfig = dataclasses.field(default_factory=NodeConfig)
    log_level: str | None = "info"
    trace: bool = False
    start_timeout: float = 30.0
    # How many times each node's log says it served: a restart waits for one more.
    _starts: dict[str, int] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("give at least one host")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("a host is named twice")
        self.nodes = [
            RemoteNode(
                f"n{i + 1}",
                host,
                f"{_bare(host)}:{self.port}",
                f"{self.host_dir(host)}/n{i + 1}",
            )
            for i, host in enumerate(self.hosts)
        ]
        self.pids: dict[str, int | None] = {n.node_id: None for n in self.nodes}
        # Start commands sent and not yet answered: a caller cancelled (Ctrl-C) while one was
        # on its way does not stop the host from running it.
        self._launching: dict[str, asyncio.Future[str]] = {}

    # ---- where things are --------------------------------------------------------------

    def node(self, node_id: str) -> RemoteNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id!r} in this cluster ({', '.join(self.pids)})")

    def host_dir(self, host: str) -> str:
        """``remote_dir`` on ``host``: ``{host}`` in it stands for the host's address, for
        hosts that share a file system (an NFS home, or the tests' namespaces)."""
        return self.remote_dir.replace("{host}", _bare(host))

    def _venv(self, n: RemoteNode) -> str:
        return self.venv or f"{self.host_dir(n.host)}/venv"

    # ---- deployment --------------------------------------------------------------------

    async def deploy(self, wheelhouse: Path | None = None) -> None:
        """Install dynamo-ref on every host (unless ``venv`` names one already there)."""
        wheels = None if self.venv else wheelhouse or await asyncio.to_thread(build_wheelhouse)
        await _each(self.nodes, lambda n: self._deploy(n, wheels))

    async def _deploy(self, n: RemoteNode, wheels: Path | None) -> None:
        pool, q = self.pool, shlex.quote
        version = await pool.run(
            n.host,
            [self.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            check=False,
        )
        parts = version.strip().split(".")
        if (
            len(parts) != 2
            or not all(p.isdigit() for p in parts)
            or (int(parts[0]), int(parts[1])) < (3, 11)
        ):
            raise RemoteError(
                n.host,
                f"{self.python} there is not Python 3.11 or later ({version.strip() or 'none'})",
            )
        home = self.host_dir(n.host)
        wheel_dir = f"{home}/wheels-{n.node_id}"  # the node's own: nodes may share a home
        await pool.run(n.host, f"mkdir -p {q(n.dir)}/data {q(wheel_dir)}")
        if wheels is None:
            return
        venv = q(self._venv(n))
        # The wheelhouse's name is the digest of what it was built from: a venv marked with it
        # holds that build already, and a second `cluster up` or campaign skips pip (seconds
        # per host).
        marker = f"{venv}/{INSTALLED_MARK}"
        held = await pool.run(n.host, f"cat {marker} 2>/dev/null || true", check=False)
        if held.strip() == wheels.name:
            return
        files = sorted(p for p in wheels.iterdir() if p.suffix == ".whl")
        pip_wheels = [p.name for p in files if p.name.startswith("pip-")]
        if len(pip_wheels) != 1:
            raise RuntimeError(f"the wheelhouse {wheels} holds no single wheel of pip")
        pip_wheel = pip_wheels[0]
        await pool.put(n.host, files, wheel_dir)
        # The venv gets no pip of its own: pip runs from its wheel, as ensurepip runs it, which
        # spares installing pip there (9 s of CPU a host here). Modules are compiled when first
        # imported, not all at install (5 s more).
        pip = (
            f"{venv}/bin/python {q(f'{wheel_dir}/{pip_wheel}')}/pip install --quiet --no-compile "
            f"--disable-pip-version-check --no-index --find-links {q(wheel_dir)}"
        )
        build = q(wheels.name)
        script = (
            f'test "$(cat {marker} 2>/dev/null)" = {build} && exit 0; rm -f {marker}; '
            f"test -x {venv}/bin/python || {q(self.python)} -m venv --without-pip {venv}; "
            f"{pip} "
            + " ".join(q(r) for r in NODE_REQUIREMENTS)
            + f" && {pip} --force-reinstall --no-deps dynamo-ref=={__version__}"
            f" && echo {build} > {marker}"
        )
        # Nodes whose hosts share a file system (an NFS home) share the venv: one installs
        # under the lock, the others then find it marked.
        lock = q(f"{self._venv(n)}.lock")
        await pool.run(n.host, f"flock {lock} sh -c {q(script)}", timeout=600)

    async def install_secret(self, secret: bytes) -> None:
        await _each(
            self.nodes,
            lambda n: self.pool.write(n.host, f"{n.dir}/secret", secret + b"\n", mode=0o600),
        )

    # ---- processes ---------------------------------------------------------------------

    def spec(self, n: RemoteNode) -> NodeSpec:
        return NodeSpec(
            node_id=n.node_id,
            listen=f"0.0.0.0:{self.port}",
            data_dir=Path(n.dir) / "data",
            config=self.config,
            members=tuple((m.node_id, m.address) for m in self.nodes),
            secret_file=Path(n.dir) / "secret",
            log_level=self.log_level,
            trace=Path(n.dir) / "trace.jsonl" if self.trace else None,
            extra_args=(f"--advertise={n.address}",),
        )

    async def start(self, node_id: str) -> int:
        """Start the node (again, on its data) and wait until it serves; its PID."""
        n = self.node(node_id)
        argv = self.spec(n).argv([f"{self._venv(n)}/bin/dynamo-ref"])
        launch = asyncio.ensure_future(
            self.pool.run(
                n.host, start_script(n.dir, argv, f"{n.dir}/node.log", f"{n.dir}/node.pid")
            )
        )
        self._launching[node_id] = launch
        # Shielded: cancelled here, the launch still ends, and `signal` waits for it.
        text = await asyncio.shield(launch)
        self._launching.pop(node_id, None)
        pid = int(text.strip())
        self.pids[node_id] = pid
        self.save()
        await self._wait_ready(n, pid)
        return pid

    async def _wait_ready(self, n: RemoteNode, pid: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        q = shlex.quote
        while True:
            out = await self.pool.run(
                n.host,
                f"kill -0 {pid} 2>/dev/null && echo alive; "
                f"grep -c {q(READY_PREFIX)} {q(n.dir)}/node.log || true",
                check=False,
            )
            lines = out.split()
            if "alive" not in lines:
                tail = await self.pool.run(n.host, f"tail -n 20 {q(n.dir)}/node.log", check=False)
                raise RemoteError(n.host, f"{n.node_id} exited at start; its log ends:\n{tail}")
            starts = [int(x) for x in lines if x.isdigit()]
            if starts and starts[-1] >= self._starts.get(n.node_id, 0) + 1:
                self._starts[n.node_id] = starts[-1]
                return
            if time.monotonic() > deadline:
                raise RemoteError(
                    n.host, f"{n.node_id} did not serve within {self.start_timeout:g}s"
                )
            await asyncio.sleep(0.1)

    async def up(self, secret: bytes, wheelhouse: Path | None = None, *, wipe: bool) -> None:
        """Install, hand out the secret and start every node. ``wipe``: a new cluster, with
        no data, log or trace of an earlier one in the nodes' directories (a campaign's run);
        else each node starts on whatever data its directory holds."""
        await self.deploy(wheelhouse)
        await self.install_secret(secret)
        await _each(self.nodes, lambda n: self._prepare(n, wipe))
        await _each(self.nodes, lambda n: self.start(n.node_id))

    async def _prepare(self, n: RemoteNode, wipe: bool) -> None:
        q = shlex.quote
        log = f"{q(n.dir)}/node.log"
        clear = f"rm -rf {q(n.dir)}/data {log} {q(n.dir)}/trace.jsonl; " if wipe else ""
        out = await self.pool.run(
            n.host,
            f"{clear}mkdir -p {q(n.dir)}/data; grep -c {q(READY_PREFIX)} {log} 2>/dev/null || true",
        )
        # A start waits for one more "listening" line in the log than there is now.
        counts = [int(x) for x in out.split() if x.isdigit()]
        self._starts[n.node_id] = counts[-1] if counts else 0

    async def signal(self, node_id: str, sig: str, *, wait: float = 10.0) -> bool:
        """Send ``sig`` (TERM, KILL, STOP, CONT) to the node's PID; for TERM and KILL wait
        until it is gone (KILL after ``wait`` for a TERM). False: it was not running."""
        n = self.node(node_id)
        await self._settle_launch(node_id)
        script = signal_script(
            self.pids.get(node_id), sig, f"{n.dir}/node.pid", f"{n.dir}/data", wait=wait
        )
        if script is None:
            return False
        try:
            await self.pool.run(n.host, script, timeout=wait + 10)
        except RemoteError as e:
            if e.status == 3:
                return False
            raise
        if sig in ENDING:
            self.pids[node_id] = None
            self.save()
        return True

    async def running(self, node_id: str) -> bool:
        pid = self.pids.get(node_id)
        if pid is None:
            return False
        out = await self.pool.run(
            self.node(node_id).host, f"kill -0 {pid} && echo yes", check=False
        )
        return out.strip() == "yes"

    async def _settle_launch(self, node_id: str) -> None:
        """A start cut short while its command was on its way: wait for the host's answer
        (else a signal sent now could find no PID, and the node start after it), and take
        the PID it gives."""
        launch = self._launching.pop(node_id, None)
        if launch is None:
            return
        try:
            text = await asyncio.wait_for(asyncio.shield(launch), self.pool.options.command_timeout)
            self.pids[node_id] = int(text.strip())
        except (RemoteError, TimeoutError, ValueError):
            return
        except asyncio.CancelledError:
            if launch.cancelled():
                return  # the launch itself was cancelled (its pool closed): nothing to take
            raise

    async def down(self) -> list[str]:
        """Stop every node (SIGTERM, then SIGKILL); the ids of those that were running."""
        stopped = await _each(self.nodes, lambda n: self.signal(n.node_id, "TERM"))
        return [n.node_id for n, was in zip(self.nodes, stopped, strict=True) if was]

    async def collect(self, local: Path) -> None:
        """Each node's log and trace into ``local/<node>/``."""

        async def one(n: RemoteNode) -> None:
            for name in ("node.log", "trace.jsonl"):
                with contextlib.suppress(RemoteError):
                    await self.pool.get(n.host, f"{n.dir}/{name}", local / n.node_id / name)

        await _each(self.nodes, one)

    # ---- state on this machine ---------------------------------------------------------

    def save(self) -> None:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        o = self.pool.options
        state = {
            "remote": True,
            "hosts": list(self.hosts),
            "remote_dir": self.remote_dir,
            "port": self.port,
            "python": self.python,
            "venv": self.venv,
            "ssh": {
                "user": o.user,
                "keys": [str(k) for k in o.keys],
                "known_hosts": o.known_hosts
                if isinstance(o.known_hosts, bool)
                else (None if o.known_hosts is None else str(o.known_hosts)),
                "port": o.port,
                "sudo": o.sudo,
            },
            "log_level": self.log_level,
            "trace": self.trace,
            "config": _config_json(self.config),
            "nodes": [
                {
                    "id": n.node_id,
                    "host": n.host,
                    "address": n.address,
                    "dir": n.dir,
                    "pid": self.pids[n.node_id],
                    # Never a local command line: no local PID can pass for a remote node.
                    "argv": ["remote", n.host],
                }
                for n in self.nodes
            ],
        }
        tmp = self.local_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.local_dir / STATE_FILE)


# ---- processes on a host, by PID --------------------------------------------------------

ENDING = ("TERM", "KILL")


def start_script(cwd: str, argv: Sequence[str], log: str, pid_file: str, env: str = "") -> str:
    """A shell script that starts ``argv`` in ``cwd``, detached from the SSH session, its
    output appended to ``log``, its PID written to ``pid_file`` and printed. ``env``: shell
    assignments put before the command."""
    q = shlex.quote
    # Only the program is in the background (so $! is its PID), with none of the session's
    # descriptors: the SSH channel closes as the command returns.
    return (
        f"cd {q(cwd)} || exit 1; {env} setsid {shlex.join(argv)} >> {q(log)} 2>&1 < /dev/null & "
        f"echo $! > {q(pid_file)}; echo $!"
    )


def signal_script(
    pid: int | None, sig: str, pid_file: str, marker: str, *, wait: float
) -> str | None:
    """A shell script sending ``sig`` (TERM, KILL, STOP, CONT) to ``pid``; for TERM and KILL
    it waits until the process is gone (KILL after ``wait`` seconds). It exits 3 when the
    process is not running. With no ``pid`` known here (a start cut short by Ctrl-C), TERM and
    KILL go by ``pid_file`` on the host, if the PID it names is still the program (``marker``,
    its data directory, in its argv); None: nothing to signal."""
    q = shlex.quote
    ending = sig in ENDING
    if pid is not None:
        script = f"pid={pid}; "
    elif ending:
        script = (
            f"pid=$(cat {q(pid_file)} 2>/dev/null) || exit 3; "
            f"grep -qF -- {q(marker)} /proc/$pid/cmdline 2>/dev/null || exit 3; "
        )
    else:
        return None
    script += f'kill -0 "$pid" 2>/dev/null || exit 3; kill -{q(sig)} "$pid"'
    if ending:
        ticks = max(1, int(wait * 10))
        script += (
            '; kill -CONT "$pid" 2>/dev/null; i=0; while kill -0 "$pid" 2>/dev/null; do '
            f'i=$((i+1)); if [ $i -ge {ticks} ]; then kill -KILL "$pid"; fi; sleep 0.1; done'
        )
    return script


def read_remote_state(local_dir: Path) -> RemoteCluster | None:
    """The remote cluster described in ``local_dir`` (None: no state, or a local cluster's)."""
    try:
        raw = json.loads((local_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not raw.get("remote"):
        return None
    ssh = raw["ssh"]
    known = ssh.get("known_hosts")
    options = SshOptions(
        user=ssh.get("user"),
        keys=tuple(Path(k) for k in ssh.get("keys", [])),
        known_hosts=known if isinstance(known, bool) else (None if known is None else Path(known)),
        port=int(ssh.get("port", 22)),
        sudo=bool(ssh.get("sudo", False)),
    )
    cluster = RemoteCluster(
        raw["hosts"],
        HostPool(options),
        local_dir,
        remote_dir=raw["remote_dir"],
        port=int(raw["port"]),
        python=raw["python"],
        venv=raw.get("venv"),
        config=config_from_flags(raw.get("config", {})),
        log_level=raw.get("log_level"),
        trace=bool(raw.get("trace")),
    )
    for entry in raw["nodes"]:
        cluster.pids[entry["id"]] = entry.get("pid")
    return cluster


def _config_json(config: NodeConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in CONFIG_FLAGS:
        value = getattr(config, f.field)
        out[f.field] = value.value if f.kind == "mode" else value
    return out


def _bare(host: str) -> str:
    """The host of ``user@host:port`` as an address (no user, no SSH port)."""
    host = host.rpartition("@")[2]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


async def _each(items: Sequence[Any], step: Callable[[Any], Awaitable[T]]) -> list[T]:
    """``step`` on every item at once; the first error, after all have ended."""
    results = await asyncio.gather(*(step(i) for i in items), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if not isinstance(r, BaseException)]
