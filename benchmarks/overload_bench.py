"""Overload: offered load against goodput and refusals, up to ten times what saturates a node.

A node (or a cluster of ``--nodes``; contracts off, SQLite) is first driven closed-loop by
``--saturate`` clients, one request in flight each, to find its peak throughput X. Then
open-loop load generators (``--procs`` processes, each with a pool of ``--pool`` connections
holding at most ``--depth`` requests each, pipelined) offer Poisson arrivals at multiples of
X, up to 10X, for ``--seconds`` each. Every request is a put of a 100-byte value, nearly
always to a new key; its latency runs from its arrival. For each load the bench prints the
goodput (acknowledged writes per second), the refusals (``overload``) per second, other
errors, the p50/p99 latency of successes and of refusals, the node's peak RSS, how late the
generators themselves sent (part of every latency), the node's CPU use and the time it
waited for a CPU (others' load on the machine), and the arrivals held back: those that found
every connection of the pool full, because the node stopped reading them (past their share,
or past its refusal budget). It writes the curve as a PNG (goodput and refusals against
offered load, latencies beneath) and the figures as JSON. ``--pin`` puts the nodes on CPU 0
and the generators on the others. With ``PYTHONPATH`` naming another checkout (and run from
outside this one), the nodes are that checkout's: how the bench measures a node before a
change.

The target (issue 17): at 10X, goodput stays at or above 80% of the peak throughput and
refusals come back in under 50 ms at p99. The exit code is 0 when both hold, else 1.

    python benchmarks/overload_bench.py [--nodes 1] [--procs 1] [--pool 800] [--seconds 5]
        [--depth 1] [--pin] [--loads 0.25,0.5,1,2,5,10] [--out out/overload.png]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from dynamo_ref.core.messages import ErrorReply, Put, ReplyMessage, encode
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.localcluster import LocalCluster, NodeOptions
from dynamo_ref.net.framing import FrameDecoder, encode_frame
from dynamo_ref.net.handshake import PROTOCOL_VERSION, Hello, encode_handshake

# Keys drawn from a space this large are nearly all new: blind puts to one key would pile up
# siblings in DVV mode (the default), and every later put would cost more.
KEYS = 10**9
VALUE = b"x" * 100
GRACE = 3.0  # seconds after the offered window for answers still on their way
_REPLIES: msgspec.msgpack.Decoder[ReplyMessage] = msgspec.msgpack.Decoder(ReplyMessage)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- one load generator process ----------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """A client connection with up to ``depth`` requests in flight (pipelined)."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.sent: dict[int, float] = {}  # rid -> arrival of each request in flight
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        hello = Hello(PROTOCOL_VERSION, "client")
        self.transport.write(encode_frame(encode_handshake(hello)))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        # One whole reply per read is the common case: no decoder in between.
        if not self.decoder.buffered and int.from_bytes(data[:4], "big") == len(data) - 4:
            frames = [data[4:]]
        else:
            frames = self.decoder.feed(data)
        for frame in frames:
            if not self.ready.done():
                self.ready.set_result(None)  # the welcome
                continue
            self.gen.answered(self, _REPLIES.decode(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the welcome"))
        self.gen.lost(self)

    def send(self, rid: int, payload: bytes, arrival: float) -> None:
        self.sent[rid] = arrival
        assert self.transport is not None
        self.transport.write(encode_frame(payload))


@dataclass
class Result:
    """What one generator saw (latencies in seconds, from each request's arrival)."""

    offered: int = 0
    ok: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    no_connection: int = 0  # arrivals that found every connection of the pool full
    unanswered: int = 0
    lag: list[float] = field(default_factory=list)  # the generator's own delay in sending


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.free: list[_Conn] = []  # a connection once for each request it may still take
        self.result = Result()
        self.measuring = False
        self.rid = 0

    def _error(self, kind: str) -> None:
        if self.measuring:
            self.result.errors[kind] = self.result.errors.get(kind, 0) + 1

    def answered(self, conn: _Conn, reply: ReplyMessage) -> None:
        arrival = conn.sent.pop(reply.rid, None)
        if arrival is None:
            self._error(getattr(reply, "code", "unmatched reply"))  # the connection's own
            return
        latency = time.perf_counter() - arrival
        self.free.append(conn)
        if not self.measuring:
            return
        if isinstance(reply, ErrorReply):
            if reply.code == "overload":
                self.result.refused.append(latency)
            else:
                self._error(reply.code)
        else:
            self.result.ok.append(latency)

    def lost(self, conn: _Conn) -> None:
        for _ in conn.sent:
            self._error("connection lost")
        conn.sent.clear()

    def request(self, arrival: float) -> bool:
        while self.free:
            conn = self.free.pop()
            if conn.closed:
                continue
            self.rid += 1
            key = b"k%d" % self.rng.randrange(KEYS)
            conn.send(self.rid, encode(Put(key, VALUE, rid=self.rid)), arrival)
            if self.measuring and self.rid % 16 == 0:
                self.result.lag.append(time.perf_counter() - arrival)
            return True
        return False


async def _generate(
    *,
    addresses: list[str],
    pool: int,
    depth: int,
    rate: float,
    closed: bool,
    start: float,
    seconds: float,
    seed: int,
) -> Result:
    loop = asyncio.get_running_loop()
    gen = _Generator(seed)
    conns: list[_Conn] = []
    for i in range(pool):
        host, port = addresses[i % len(addresses)].rsplit(":", 1)
        _, conn = await loop.create_connection(lambda: _Conn(gen), host, int(port))
        await conn.ready
        conns.append(conn)
    gen.free = [c for c in conns for _ in range(depth)]
    await asyncio.sleep(max(0.0, start - time.time()))
    t0 = time.perf_counter()
    end = t0 + seconds
    warm = t0 + min(1.0, seconds / 5)  # the first second is not measured
    if closed:
        # Closed loop: every connection sends its next request as soon as it is answered.
        while time.perf_counter() < end:
            gen.measuring = time.perf_counter() >= warm
            now = time.perf_counter()
            while gen.request(now):
                if gen.measuring:
                    gen.result.offered += 1
            await asyncio.sleep(0.0005)
    else:
        next_at = t0
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            gen.measuring = now >= warm
            while next_at <= now:
                sent = gen.request(next_at)
                if gen.measuring:
                    gen.result.offered += 1
                    if not sent:
                        gen.result.no_connection += 1
                next_at += gen.rng.expovariate(rate)
            await asyncio.sleep(min(0.001, max(0.0, next_at - time.perf_counter())))
    # Answers on their way are counted; the rest are unanswered.
    deadline = time.perf_counter() + GRACE
    while any(c.sent for c in conns) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    gen.result.unanswered = sum(len(c.sent) for c in conns)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return gen.result


def _worker(kwargs: dict[str, Any], out: Any) -> None:
    cpus = kwargs.pop("cpus")
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        import uvloop

        result = uvloop.run(_generate(**kwargs))
    except ImportError:
        result = asyncio.run(_generate(**kwargs))
    out.send(asdict(result))
    out.close()


def offer(
    addresses: list[str],
    *,
    procs: int,
    pool: int,
    rate: float,
    closed: bool,
    seconds: float,
    depth: int = 1,
    cpus: set[int] | None = None,
) -> tuple[Result, float]:
    """Run ``procs`` generators at ``rate`` in total (or closed-loop); their merged result and
    the measured window's length."""
    ctx = mp.get_context("spawn")
    start = time.time() + 1.0 + pool * procs / 2000  # time to connect the pools first
    pipes, workers = [], []
    for p in range(procs):
        mine, theirs = ctx.Pipe(duplex=False)
        w = ctx.Process(
            target=_worker,
            args=(
                {
                    "addresses": addresses,
                    "pool": pool,
                    "depth": depth,
                    "rate": rate / procs,
                    "closed": closed,
                    "start": start,
                    "seconds": seconds,
                    "seed": p,
                    "cpus": cpus,
                },
                theirs,
            ),
        )
        w.start()
        pipes.append(mine)
        workers.append(w)
    merged = Result()
    for pipe, w in zip(pipes, workers, strict=True):
        got = pipe.recv()
        w.join()
        merged.offered += got["offered"]
        merged.ok += got["ok"]
        merged.refused += got["refused"]
        merged.no_connection += got["no_connection"]
        merged.lag += got["lag"]
        merged.unanswered += got["unanswered"]
        for k, v in got["errors"].items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    return merged, seconds - min(1.0, seconds / 5)


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


@dataclass
class Step:
    load: float  # multiple of X (0: the closed-loop saturation run)
    offered: float  # requests per second offered
    goodput: float
    refused: float
    errors: float
    ok_p50: float | None
    ok_p99: float | None
    refused_p50: float | None
    refused_p99: float | None
    no_connection: int
    unanswered: int
    error_kinds: dict[str, int]
    peak_rss_mb: float
    window: float  # seconds measured
    generator_lag_p99: float | None  # how late the generators sent: part of each latency
    node_cpu: float  # CPU seconds the node processes used per second, over the step
    node_wait: float  # seconds per second they were ready to run but had no CPU


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """Time the process's threads were ready to run but waited for a CPU (others' load)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def step(
    lc: LocalCluster, load: float, rate: float, args: argparse.Namespace, closed: bool = False
) -> Step:
    pool = args.saturate if closed else args.pool
    procs = 1 if closed else args.procs
    pids = [p for p in lc.pids if p is not None]
    cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.perf_counter()
    wait0 = sum(runqueue_seconds(p) for p in pids)
    result, window = offer(
        lc.addresses,
        procs=procs,
        pool=pool,
        rate=rate,
        closed=closed,
        seconds=args.seconds,
        depth=1 if closed else args.depth,
        cpus=args.generator_cpus,
    )
    elapsed = time.perf_counter() - t0
    node_cpu = (sum(cpu_seconds(p) for p in pids) - cpu0) / elapsed
    node_wait = (sum(runqueue_seconds(p) for p in pids) - wait0) / elapsed
    errors = sum(result.errors.values()) + result.unanswered
    return Step(
        load=load,
        offered=(result.offered / window) if not closed else len(result.ok) / window,
        goodput=len(result.ok) / window,
        refused=len(result.refused) / window,
        errors=errors / window,
        ok_p50=quantile(result.ok, 0.5),
        ok_p99=quantile(result.ok, 0.99),
        refused_p50=quantile(result.refused, 0.5),
        refused_p99=quantile(result.refused, 0.99),
        no_connection=result.no_connection,
        unanswered=result.unanswered,
        error_kinds=dict(result.errors),
        peak_rss_mb=max(rss_mb(p) for p in lc.pids if p is not None),
        window=window,
        generator_lag_p99=quantile(result.lag, 0.99),
        node_cpu=node_cpu,
        node_wait=node_wait,
    )


def plot(steps: list[Step], peak: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((s for s in steps if s.load > 0), key=lambda s: s.offered)
    offered = [s.offered for s in runs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    top.plot(offered, [s.goodput for s in runs], "o-", label="goodput (acknowledged puts/s)")
    top.plot(offered, [s.refused for s in runs], "s-", label="refused with overload /s")
    top.plot(offered, [s.errors for s in runs], "x-", label="other errors /s")
    top.plot(
        offered,
        [s.no_connection / s.window for s in runs],
        "^:",
        label="held back: every connection waiting, not read /s",
    )
    top.axhline(0.8 * peak, color="grey", ls="--", lw=1, label="80% of peak throughput")
    top.axvline(10 * peak, color="red", ls=":", lw=1, label="ten times the peak throughput")
    top.set_ylabel("requests per second")
    top.set_yscale("symlog", linthresh=100)
    top.set_ylim(bottom=0)
    top.set_title("Offered load against goodput and refusals")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)

    def millis(values: list[float | None]) -> list[float]:
        return [math.nan if v is None else 1000 * v for v in values]  # none: a gap

    bottom.plot(offered, millis([s.refused_p99 for s in runs]), "s-", label="refusal p99")
    bottom.plot(offered, millis([s.ok_p99 for s in runs]), "o-", label="success p99")
    bottom.plot(offered, millis([s.ok_p50 for s in runs]), "o--", label="success p50")
    bottom.axhline(50, color="red", ls="--", lw=1, label="50 ms")
    bottom.axvline(10 * peak, color="red", ls=":", lw=1)
    bottom.set_yscale("log")
    bottom.set_xscale("log")
    bottom.set_xlabel("offered load (puts per second)")
    bottom.set_ylabel("latency (ms)")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--pool", type=int, default=800, help="connections per generator")
    ap.add_argument("--depth", type=int, default=1, help="requests a connection pipelines")
    ap.add_argument("--saturate", type=int, default=128, help="closed-loop clients to find X")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--loads", default="0.25,0.5,0.75,1,1.5,2,3,5,10")
    ap.add_argument("--sync", default="full", choices=["full", "normal", "off"])
    ap.add_argument("--node-arg", action="append", default=[], help="extra `node` option")
    ap.add_argument("--out", type=Path, default=Path("out/overload.png"))
    ap.add_argument(
        "--pin", action="store_true", help="nodes on CPU 0, load generators on the others"
    )
    args = ap.parse_args()
    args.generator_cpus = None
    n = min(3, args.nodes)
    w = min(2, n)
    options = NodeOptions(
        config=NodeConfig(n=n, r=w, w=w, anti_entropy_interval=3600.0),
        sync=args.sync,
        extra_args=tuple(args.node_arg),
    )
    env = dict(os.environ, DYNAMO_REF_CONTRACTS="0")
    steps: list[Step] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(args.nodes, Path(tmp), options=options, env=env) as lc,
    ):
        lc.wait_healthy()
        if args.pin:
            # The nodes on the first CPU, the generators on the others: the load generators
            # must not take the node's CPU (on a machine of 2 CPUs, the generators share one).
            for pid in lc.pids:
                if pid is not None:
                    os.sched_setaffinity(pid, {0})
            args.generator_cpus = set(range(1, os.cpu_count() or 2))
        print(
            f"{args.nodes} node(s), N={n} W={w}, SQLite synchronous={args.sync}; "
            f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )
        sat = step(lc, 0.0, 0.0, args, closed=True)
        steps.append(sat)
        x = sat.goodput
        print(
            f"X = {x:,.0f} puts/s with {args.saturate} closed-loop clients "
            f"(p50 {ms(sat.ok_p50)} ms, p99 {ms(sat.ok_p99)} ms)",
            flush=True,
        )
        header = (
            f"{'load':>5} {'offered/s':>10} {'goodput/s':>10} {'refused/s':>10} "
            f"{'errors/s':>9} {'ok p50':>7} {'ok p99':>7} {'ref p50':>7} {'ref p99':>7} "
            f"{'RSS MB':>6} {'lag p99':>7} {'CPU':>4} {'wait':>4}"
        )
        print(header, flush=True)

        def run(load: float, rate: float) -> Step:
            s = step(lc, load, rate, args)
            steps.append(s)
            print(
                f"{load:>4g}X {s.offered:>10,.0f} {s.goodput:>10,.0f} {s.refused:>10,.0f} "
                f"{s.errors:>9,.0f} {ms(s.ok_p50):>7} {ms(s.ok_p99):>7} "
                f"{ms(s.refused_p50):>7} {ms(s.refused_p99):>7} {s.peak_rss_mb:>6.0f} "
                f"{ms(s.generator_lag_p99):>7} {s.node_cpu:>4.0%} {s.node_wait:>4.0%}"
                + (f"  {s.error_kinds}" if s.error_kinds else "")
                + (f"  held back {s.no_connection / s.window:,.0f}/s" if s.no_connection else ""),
                flush=True,
            )
            return s

        for load in (float(v) for v in args.loads.split(",")):
            run(load, load * x)
        # X came from a closed loop; the peak the open loop reached may be higher. The last
        # step is offered ten times the peak, whatever X was.
        peak = max(s.goodput for s in steps)
        if max(s.offered for s in steps) < 9.5 * peak:
            print(f"the peak, {peak:,.0f} puts/s, is above X: ten times it", flush=True)
            run(round(10 * peak / x, 1), 10 * peak)
    peak = max(s.goodput for s in steps)
    at10 = max((s for s in steps if s.load > 0), key=lambda s: s.offered)
    plot(steps, peak, args.out)
    args.out.with_suffix(".json").write_text(
        json.dumps({"x": x, "peak": peak, "steps": [asdict(s) for s in steps]}, indent=2)
    )
    goodput_ok = at10.goodput >= 0.8 * peak
    refusal_ok = at10.refused_p99 is None or at10.refused_p99 < 0.050
    print(
        f"peak throughput {peak:,.0f} puts/s; offered {at10.offered / peak:.1f} times that, "
        f"goodput {at10.goodput:,.0f} ({at10.goodput / peak:.0%} of peak, target >= 80%: "
        f"{'met' if goodput_ok else 'MISSED'}), refusal p99 {ms(at10.refused_p99)} ms "
        f"(target < 50 ms: {'met' if refusal_ok else 'MISSED'})"
    )
    print(f"plot: {args.out}  figures: {args.out.with_suffix('.json')}")
    sys.exit(0 if goodput_ok and refusal_ok else 1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
