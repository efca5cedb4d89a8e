"""kill -9 under write load: a node keeps every write it acknowledged as a replica.

Three node processes, N=3 and W=3 under a strict quorum, so a put is acknowledged only after
every replica, the victim n3 included, has made it durable; anti-entropy is off, so nothing
refills n3 behind the test's back. Writers put fresh keys while n3 is SIGKILLed and restarted
several times. After each restart n3 must already hold every acknowledged key (its own count,
from its status), and at the end its SQLite file, opened directly, must hold each acknowledged
value. The same run with ``--memory`` is the negative control: there the writes are lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dynamo_ref.client import Client, ClientError
from dynamo_ref.core.node import NodeConfig
from dynamo_ref.localcluster import LocalCluster, NodeOptions
from dynamo_ref.storage.sqlite import SqliteStore

ROUNDS = 3
VICTIM = 2
FAST = NodeConfig(gossip_interval=0.2, request_timeout=1, anti_entropy_interval=3600)


class Writers:
    """Threads putting fresh keys with W=3 through n1 and n2; ``acked`` holds what succeeded."""

    def __init__(self, addresses: list[str], threads: int = 3) -> None:
        self.addresses = addresses
        self.acked: dict[bytes, bytes] = {}
        self.last_error = ""
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.quit = threading.Event()
        self.idle = [threading.Event() for _ in range(threads)]
        self.threads = [
            threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)
        ]
        self.go.set()
        for t in self.threads:
            t.start()

    def run(self, index: int) -> None:
        seq = 0
        with Client(self.addresses, timeout=3) as client:
            while not self.quit.is_set():
                if not self.go.is_set():
                    self.idle[index].set()
                    self.go.wait(0.1)
                    continue
                self.idle[index].clear()
                key = f"w{index}-{seq}".encode()
                value = f"value {index}-{seq}".encode()
                seq += 1
                try:
                    client.put(key, value, w=3)
                except ClientError as e:
                    self.last_error = str(e)
                    continue  # not acknowledged: no promise to keep
                with self.lock:
                    self.acked[key] = value

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def pause(self) -> dict[bytes, bytes]:
        """Stop writing, wait for writes in flight to end; what was acknowledged."""
        self.go.clear()
        for idle in self.idle:
            assert idle.wait(30), "a writer did not come back"
        with self.lock:
            return dict(self.acked)

    def resume(self) -> None:
        self.go.set()

    def close(self) -> None:
        self.quit.set()
        self.go.set()
        for t in self.threads:
            t.join(30)


def wait_for_progress(writers: Writers, more: int, timeout: float = 30.0) -> None:
    target = writers.count() + more
    deadline = time.monotonic() + timeout
    while writers.count() < target:
        assert time.monotonic() < deadline, (
            f"writers stalled at {writers.count()} acks; last error: {writers.last_error}"
        )
        time.sleep(0.02)


def keys_held(address: str) -> int:
    with Client([address], timeout=5) as c:
        return c.status().keys


@pytest.fixture
def crash_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    memory: bool = request.param
    options = NodeOptions(
        config=replace(FAST, n=3, r=2, w=3, sloppy=False, partitions=16), memory=memory
    )
    with LocalCluster(3, tmp_path / "cluster", options=options) as lc:
        lc.wait_healthy()
        yield lc


def crash_rounds(lc: LocalCluster, seed: int) -> tuple[list[tuple[int, int]], dict[bytes, bytes]]:
    """SIGKILL n3 under load ROUNDS times: (acknowledged, held by n3 after the restart) per
    round, and every acknowledged write."""
    rng = random.Random(seed)
    writers = Writers(lc.addresses[:VICTIM])
    observed: list[tuple[int, int]] = []
    try:
        for _ in range(ROUNDS):
            wait_for_progress(writers, more=20)
            time.sleep(rng.uniform(0.0, 0.3))  # land the kill at some point mid-write
            lc.kill(VICTIM)
            acked = writers.pause()
            lc.start(VICTIM)
            observed.append((len(acked), keys_held(lc.addresses[VICTIM])))
            lc.wait_healthy()
            writers.resume()
        final = writers.pause()
    finally:
        writers.close()
    return observed, final


@pytest.mark.net
@pytest.mark.parametrize("crash_cluster", [False], indirect=True, ids=["sqlite"])
def test_acknowledged_writes_survive_sigkill(crash_cluster: LocalCluster) -> None:
    lc = crash_cluster
    observed, acked = crash_rounds(lc, seed=1)
    assert len(acked) >= 20 * ROUNDS
    for count, held in observed:
        # W=3: each of these was durable on n3 before it was acknowledged
        assert held >= count > 0, observed
    # every acknowledged value, read straight from n3's file once it is stopped
    assert lc.stop(VICTIM) == 0
    with SqliteStore(lc.store_path(VICTIM)) as store:
        state = store.load()
    missing = [k for k, v in acked.items() if v not in {s.value for s in state.store.get(k, ())}]
    assert not missing, f"{len(missing)} acknowledged writes are not in n3's store"
    # and the cluster serves them all
    with Client(lc.addresses[:VICTIM]) as c:
        assert all(c.get(k, r=2).siblings == [v] for k, v in acked.items())


@pytest.mark.net
@pytest.mark.parametrize("crash_cluster", [True], indirect=True, ids=["memory"])
def test_without_durable_storage_acknowledged_writes_are_lost(crash_cluster: LocalCluster) -> None:
    lc = crash_cluster
    observed, _ = crash_rounds(lc, seed=2)
    for count, held in observed:
        assert count > 0
        assert held < count, observed  # the negative control: a restarted node lost them
    assert not lc.store_path(VICTIM).exists()
