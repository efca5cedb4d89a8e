"""Cluster benchmark: a 3-node dynamo-ref cluster against a 3-member etcd cluster, on loopback.

Both run one after the other in this process's run, driven by the same closed-loop generator:
CONCURRENCY requests in flight, 100-byte values over 10,000 keys, in three phases (put-only,
get-only, 50/50). Every key is loaded first, so gets find values. dynamo-ref runs N=3 R=2 W=2
on the durable SQLite engine (synchronous=full) with contracts off (DYNAMO_REF_CONTRACTS=0 in
the node processes); ``--contracts`` adds a run with them on, ``--trace`` one with every node
writing its per-process trace (the cost of tracing, as a ratio to the run without). Puts carry
the context of the key's last acknowledged put, as a real client does, so sibling sets stay
small. etcd is
Debian's etcd-server, driven through its v3 JSON gateway by harness.targets.etcd.EtcdClient.
Last, the RSS of a node holding RSS_KEYS keys of 100 bytes (every node holds every key at N=3).

    python benchmarks/cluster_bench.py [--quick] [--seconds S] [--contracts] [--trace] [--no-etcd]
        [--rss-keys K] [--loop asyncio|uvloop] [--client-loop asyncio|uvloop] [--dir DIR]
        [--store full|normal|off|memory]
        [--profile DIR [--perf]]

``--profile DIR`` samples node n1 with py-spy (``--gil``: Python holding the GIL, so the SQLite
thread's work outside the GIL is not in it) over each measured phase of each dynamo-ref run and
writes the raw stacks to DIR (summarise them with benchmarks/profile_stacks.py). py-spy sees
Python frames only, and charges native time to the last of them: it put a third of a node's
time in socket writes that perf finds in neither the kernel nor uvloop. ``--perf`` records
with perf instead (on-CPU samples, native frames, every thread); benchmarks/perf_split.py
splits them by thread and by library.

``--store`` runs dynamo-ref on SQLite with synchronous normal or off, or with no durable store
(``memory``), in place of SQLite full: what durability costs a put. The targets are measured
at full.

Prints ops/s, p50 and p99 per system and phase, and the ratios dynamo-ref/etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

os.environ.setdefault("DYNAMO_REF_CONTRACTS", "0")  # this process is only the load generator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamo_ref.client import AsyncClient, ClientError
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.localcluster import LocalCluster, NodeOptions
from dynamo_ref.storage.sqlite import SYNC_CHOICES, Synchronous
from harness.targets.etcd import EtcdClient, EtcdCluster, EtcdError

CONCURRENCY = 64
KEYS = 10_000
VALUE_SIZE = 100
PHASES = (("put", 1.0), ("get", 0.0), ("50/50", 0.5))  # name, share of puts


@dataclass(frozen=True)
class Profile:
    """Sample process ``pid`` into ``out/<label>-<phase>.txt`` (py-spy) or ``.data`` (perf)."""

    pid: int
    out: Path
    label: str
    perf: bool = False


def _sampler(profile: Profile, phase: str, seconds: float) -> list[str]:
    name = phase.replace("/", "-")
    if profile.perf:
        # On-CPU samples of every thread, native frames: the interpreter, the kernel, SQLite.
        data = profile.out / f"{profile.label}-{name}.data"
        return [
            "perf", "record", "-F", "499", "-p", str(profile.pid), "-o", str(data),
            "--", "sleep", str(max(1, int(seconds))),
        ]  # fmt: skip
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        pyspy,
        "record",
        "--pid",
        str(profile.pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "100",
        "--nonblocking",
        "--gil",  # on the GIL only: a node's idle loop (in uvloop's C) is not sampled as busy
        "--format",
        "raw",
        "--output",
        str(profile.out / f"{profile.label}-{name}.txt"),
    ]


async def sample(profile: Profile, phase: str, seconds: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_sampler(profile, phase, seconds),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(proc.wait(), seconds + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@dataclass
class PhaseResult:
    name: str
    ops: int
    errors: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    # Share of one core each process used over the measured window: the system's processes
    # by name, and "generator" (this process).
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Store:
    """What the generator needs of a system: put, get, close."""

    async def put(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    async def get(self, key: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class DynamoStore(Store):
    """One client per node, requests spread over them; each put hands back the context its
    key's last acknowledged put returned."""

    def __init__(self, clients: list[AsyncClient]) -> None:
        self.clients = clients
        self.contexts: dict[bytes, bytes] = {}
        self.turn = 0

    @classmethod
    async def connect(cls, addresses: list[str]) -> DynamoStore:
        clients = [
            await AsyncClient.connect(addresses[i:] + addresses[:i], timeout=10.0)
            for i in range(len(addresses))
        ]
        return cls(clients)

    def _client(self) -> AsyncClient:
        self.turn = (self.turn + 1) % len(self.clients)
        return self.clients[self.turn]

    async def put(self, key: bytes, value: bytes) -> None:
        reply = await self._client().put(key, value, context=self.contexts.get(key, b""))
        self.contexts[key] = reply.context

    async def get(self, key: bytes) -> None:
        await self._client().get(key)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


class EtcdStore(Store):
    def __init__(self, urls: list[str]) -> None:
        per = -(-CONCURRENCY // len(urls))
        self.clients = [EtcdClient(u, timeout=10.0, max_connections=per) for u in urls]
        self.turn = 0

    def _client(self) -> EtcdClient:
        self.turn = (self.turn + 1) % len(self.clients)
        return self.clients[self.turn]

    async def put(self, key: bytes, value: bytes) -> None:
        await self._client().put(key, value)

    async def get(self, key: bytes) -> None:
        await self._client().get(key)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_sample(procs: dict[str, int]) -> dict[str, float]:
    sample = {name: cpu_seconds(pid) for name, pid in procs.items()}
    sample["generator"] = time.process_time()
    return sample


def key_of(i: int) -> bytes:
    return b"key%05d" % i


async def load_keys(store: Store, count: int) -> float:
    """Put keys 0..count-1 once, CONCURRENCY at a time; seconds taken."""
    value = b"v" * VALUE_SIZE
    next_key = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal next_key
        while next_key < count:
            i = next_key
            next_key += 1
            for _ in range(5):
                try:
                    await store.put(key_of(i), value)
                    break
                except (ClientError, EtcdError, OSError):
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start


async def run_phase(
    store: Store,
    name: str,
    put_share: float,
    *,
    seconds: float,
    warmup: float,
    seed: int,
    procs: dict[str, int] | None = None,
    profile: Profile | None = None,
) -> PhaseResult:
    rng = random.Random(seed)
    value = bytes(rng.randrange(97, 123) for _ in range(VALUE_SIZE))
    result = PhaseResult(name, 0, 0, seconds)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            key = key_of(rng.randrange(KEYS))
            try:
                if rng.random() < put_share:
                    await store.put(key, value)
                else:
                    await store.get(key)
                ok = True
            except (ClientError, EtcdError, OSError):
                ok = False
            t1 = time.perf_counter()
            if measure_from <= t0 and t1 <= stop_at:
                if ok:
                    result.ops += 1
                    result.latencies.append(t1 - t0)
                else:
                    result.errors += 1

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        sampler = None
        if profile is not None:
            sampler = asyncio.create_task(sample(profile, name, seconds))
        first = cpu_sample(procs or {})
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        last = cpu_sample(procs or {})
        result.cpu = {k: (last[k] - first[k]) / seconds for k in first}
        if sampler is not None:
            await sampler

    await asyncio.gather(meter(), *(worker() for _ in range(CONCURRENCY)))
    return result


async def drive(
    store: Store,
    seconds: float,
    warmup: float,
    procs: dict[str, int] | None = None,
    profile: Profile | None = None,
) -> list[PhaseResult]:
    results = []
    for i, (name, share) in enumerate(PHASES):
        results.append(
            await run_phase(
                store,
                name,
                share,
                seconds=seconds,
                warmup=warmup,
                seed=i,
                procs=procs,
                profile=profile,
            )
        )
    return results


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


STORES: Final = (*SYNC_CHOICES, "memory")


def cluster_options(trace_dir: Path | None = None, store: str = "full") -> NodeOptions:
    """The benchmarked cluster's nodes: N=3 R=2 W=2 on SQLite with synchronous ``store``
    (full: the targets' setting), or with no durable store at all (``memory``)."""
    config = NodeConfig(n=3, r=2, w=2)
    if store == "memory":
        return NodeOptions(config=config, memory=True, trace_dir=trace_dir)
    assert store in SYNC_CHOICES, store
    return NodeOptions(config=config, sync=cast(Synchronous, store), trace_dir=trace_dir)


def store_label(store: str) -> str:
    return "memory only, no durable store" if store == "memory" else f"SQLite {store}"


def node_env(contracts: bool, loop: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DYNAMO_REF_CONTRACTS"] = "1" if contracts else "0"
    env["DYNAMO_REF_LOOP"] = loop
    return env


def bench_dynamo(
    base: Path,
    *,
    seconds: float,
    warmup: float,
    contracts: bool,
    loop: str,
    rss_keys: int,
    trace: bool = False,
    profile_dir: Path | None = None,
    perf: bool = False,
    label: str = "dynamo",
    store: str = "full",
) -> tuple[list[PhaseResult], float, dict[str, float]]:
    trace_dir = base / "traces" if trace else None
    if trace_dir is not None:
        trace_dir.mkdir(parents=True)
    options = cluster_options(trace_dir, store)
    extra: dict[str, float] = {}
    with LocalCluster(3, base, options=options, env=node_env(contracts, loop)) as lc:
        lc.wait_healthy()

        procs = {n.node_id: n.pid for n in lc.nodes if n.pid is not None}
        profile = None
        if profile_dir is not None and "n1" in procs:
            profile = Profile(procs["n1"], profile_dir, label, perf)

        async def main() -> tuple[list[PhaseResult], float]:
            store = await DynamoStore.connect(lc.addresses)
            try:
                load = await load_keys(store, KEYS)
                return await drive(store, seconds, warmup, procs, profile), load
            finally:
                await store.close()

        results, load = asyncio.run(main())
        pids = [p for p in lc.pids if p is not None]
        extra["rss_after_bench_mb"] = max(rss_mb(p) for p in pids)
        if rss_keys:

            async def fill() -> float:
                store = await DynamoStore.connect(lc.addresses)
                try:
                    return await load_keys(store, rss_keys)
                finally:
                    await store.close()

            # keys0..rss_keys-1 (the first 10,000 already there): rss_keys keys in all
            extra["rss_fill_s"] = asyncio.run(fill())
            extra["rss_keys"] = rss_keys
            extra["rss_mb"] = max(rss_mb(p) for p in pids)
    if trace_dir is not None:
        extra["trace_mb"] = sum(f.stat().st_size for f in trace_dir.iterdir()) / 1e6
    return results, load, extra


def bench_etcd(base: Path, seconds: float, warmup: float) -> tuple[list[PhaseResult], float]:
    with EtcdCluster(3, base) as ec:
        procs = {m.name: pid for m in ec.members if (pid := m.pid) is not None}

        async def main() -> tuple[list[PhaseResult], float]:
            store = EtcdStore(ec.client_urls)
            try:
                load = await load_keys(store, KEYS)
                return await drive(store, seconds, warmup, procs), load
            finally:
                await store.close()

        return asyncio.run(main())


def show(system: str, results: list[PhaseResult], load: float) -> None:
    print(f"{system}: loaded {KEYS} keys in {load:.1f}s ({KEYS / load:,.0f} puts/s)")
    for r in results:
        print(
            f"  {r.name:6} {r.rate:9,.0f} ops/s   p50 {r.pct(0.50):7.2f} ms   "
            f"p99 {r.pct(0.99):7.2f} ms   errors {r.errors}"
        )
        cpu = "  ".join(f"{name} {share:.0%}" for name, share in r.cpu.items())
        used = sum(share for name, share in r.cpu.items() if name != "generator")
        # Per CPU second of the system's own processes: steadier than ops/s on a shared machine.
        per_cpu = f"  = {r.rate / used:,.0f} ops per CPU second" if used > 0 else ""
        print(f"         CPU (of one core): {cpu}{per_cpu}")


def ratios(label: str, ours: list[PhaseResult], theirs: list[PhaseResult]) -> None:
    print(f"dynamo-ref/etcd ({label}):")
    for a, b in zip(ours, theirs, strict=True):
        print(
            f"  {a.name:6} throughput x{a.rate / b.rate:5.2f}   "
            f"p99 {a.pct(0.99):7.2f} vs {b.pct(0.99):7.2f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short phases, fewer RSS keys")
    ap.add_argument("--seconds", type=float, help="measured seconds per phase (default 20)")
    ap.add_argument("--contracts", action="store_true", help="also run with contracts on")
    ap.add_argument("--no-etcd", action="store_true", help="dynamo-ref only")
    ap.add_argument(
        "--trace", action="store_true", help="also run with every node writing its trace"
    )
    ap.add_argument("--rss-keys", type=int, help="keys for the RSS figure (default 100,000)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop", help="nodes' loop")
    ap.add_argument(
        "--client-loop", choices=["asyncio", "uvloop"], default="uvloop", help="generator's loop"
    )
    ap.add_argument(
        "--store",
        choices=STORES,
        default="full",
        help="dynamo-ref's storage: SQLite synchronous full (default), normal or off, or memory "
        "(no durable store: what durability costs)",
    )
    ap.add_argument("--dir", type=Path, help="where clusters keep data (default: a temp dir)")
    ap.add_argument("--profile", type=Path, help="py-spy raw stacks of node n1 per phase, here")
    ap.add_argument(
        "--perf", action="store_true", help="with --profile: perf record instead of py-spy"
    )
    args = ap.parse_args()
    if args.perf and (args.profile is None or shutil.which("perf") is None):
        ap.error("--perf needs --profile DIR and perf (Debian's linux-perf) on the PATH")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.client_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    warmup = 0.5 if args.quick else 2.0
    rss_keys = args.rss_keys if args.rss_keys is not None else (20_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="cluster-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        print(
            f"closed loop: {CONCURRENCY} concurrent, {VALUE_SIZE}-byte values, {KEYS:,} keys, "
            f"{seconds:g}s per phase after {warmup:g}s warm-up; loops: nodes {args.loop}, "
            f"generator {args.client_loop}"
        )
        ours, load, extra = bench_dynamo(
            base / "dynamo",
            seconds=seconds,
            warmup=warmup,
            contracts=False,
            loop=args.loop,
            rss_keys=rss_keys,
            profile_dir=args.profile,
            perf=args.perf,
            label="off",
            store=args.store,
        )
        show(f"dynamo-ref (N=3 R=2 W=2, {store_label(args.store)}, contracts off)", ours, load)
        if rss_keys:
            print(
                f"  RSS of the largest node: {extra['rss_after_bench_mb']:.0f} MB after the "
                f"benchmark, {extra['rss_mb']:.0f} MB holding {rss_keys:,} keys "
                f"(filled in {extra['rss_fill_s']:.1f}s)"
            )
        checked: list[PhaseResult] | None = None
        if args.contracts:
            checked, cload, _ = bench_dynamo(
                base / "checked",
                seconds=seconds,
                warmup=warmup,
                contracts=True,
                loop=args.loop,
                rss_keys=0,
                profile_dir=args.profile,
                perf=args.perf,
                label="on",
                store=args.store,
            )
            show("dynamo-ref (contracts on)", checked, cload)
        if args.trace:
            traced, tload, textra = bench_dynamo(
                base / "traced",
                seconds=seconds,
                warmup=warmup,
                contracts=False,
                loop=args.loop,
                rss_keys=0,
                trace=True,
                store=args.store,
            )
            show("dynamo-ref (contracts off, every node tracing)", traced, tload)
            print(f"  traces: {textra['trace_mb']:.0f} MB in all")
            print("tracing's cost (untraced/traced, target at most 1.5x):")
            for a, b in zip(ours, traced, strict=True):
                print(
                    f"  {a.name:6} x{a.rate / b.rate:5.2f}   "
                    f"p99 {b.pct(0.99):7.2f} vs {a.pct(0.99):7.2f} ms"
                )
        if not args.no_etcd:
            theirs, eload = bench_etcd(base / "etcd", seconds, warmup)
            show("etcd (3 members)", theirs, eload)
            ratios("contracts off", ours, theirs)
            if checked is not None:
                ratios("contracts on", checked, theirs)


if __name__ == "__main__":
    main()
