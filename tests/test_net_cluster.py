"""A real cluster over loopback TCP: three (or four) NodeServers in one event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from net_support import FAST, LocalCluster, wait_for

from dynamo_ref.client import AsyncClient, Client, ClientError
from dynamo_ref.core.effects import Effect
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore

pytestmark = pytest.mark.net


def test_put_get_delete_with_siblings_and_contexts() -> None:
    async def main() -> None:
        async with LocalCluster(3) as cluster:
            a = await AsyncClient.connect([cluster.address("n1")])
            b = await AsyncClient.connect([cluster.address("n3")])
            try:
                assert (await a.get(b"k")).siblings == []
                await a.put(b"k", b"one")
                await b.put(b"k", b"two")  # no context: concurrent with "one"
                got = await a.get(b"k")
                assert sorted(got.siblings) == [b"one", b"two"]
                # A write with the read's context supersedes both siblings.
                await b.put(b"k", b"merged", context=got.context)
                got = await a.get(b"k", r=3)
                assert got.siblings == [b"merged"]
                await a.delete(b"k", context=got.context)
                assert (await b.get(b"k")).siblings == []
                for server in cluster.servers.values():
                    assert not any(v.value for v in server.node.engine.get(b"k"))
            finally:
                await a.close()
                await b.close()

    asyncio.run(main())


def test_partition_aware_client_goes_to_a_replica() -> None:
    async def main() -> None:
        async with LocalCluster(3) as cluster:
            client = await AsyncClient.connect([cluster.address("n1")], partition_aware=True)
            try:
                keys = [f"key-{i}".encode() for i in range(20)]
                for key in keys:
                    await client.put(key, key)
                for key in keys:
                    assert (await client.get(key)).siblings == [key]
                ring = cluster.servers["n1"].node.ring
                first = {ring.preference_list(k, 3)[0] for k in keys}
                # Requests went straight to each key's first replica: a connection per node.
                used = set(client._conns)
                assert used == {cluster.address(n) for n in first}
                assert len(first) > 1
            finally:
                await client.close()

    asyncio.run(main())


def test_a_restarted_node_keeps_its_data() -> None:
    async def main() -> None:
        async with LocalCluster(3) as cluster:
            client = await AsyncClient.connect([cluster.address("n1")])
            try:
                for i in range(10):
                    await client.put(b"k%d" % i, b"v%d" % i, w=3)
                await cluster.stop_node("n2")
                # n2's store has every write (W=3 waited for its durable ack).
                assert len(cluster.stores["n2"].state.store) == 10
                server = await cluster.restart_node("n2")
                for i in range(10):
                    held = server.node.engine.get(b"k%d" % i)
                    assert [v.value for v in held] == [b"v%d" % i]
                await cluster.wait_connected()
                got = await client.get(b"k4", r=3)
                assert got.siblings == [b"v4"]
            finally:
                await client.close()

    asyncio.run(main())


def test_hinted_handoff_delivers_writes_to_a_node_that_was_down() -> None:
    async def main() -> None:
        async with LocalCluster(4) as cluster:
            ring = cluster.servers["n1"].node.ring
            key = next(
                k
                for k in (f"key-{i}".encode() for i in range(200))
                if "n1" in ring.preference_list(k, 3) and "n4" in ring.preference_list(k, 3)
            )
            await cluster.stop_node("n4")
            client = await AsyncClient.connect([cluster.address("n1")])
            try:
                # W=3 with a replica down: only a fallback holding a hint can make the quorum.
                await client.put(key, b"while-down", w=3)
                holders = [
                    n for n, s in cluster.servers.items() if s.node.pending_hints().get("n4", 0) > 0
                ]
                assert len(holders) == 1
                server = await cluster.restart_node("n4")

                def arrived() -> bool:
                    return [v.value for v in server.node.engine.get(key)] == [b"while-down"]

                await wait_for(arrived)
                holder = cluster.servers[holders[0]].node
                await wait_for(lambda: not holder.pending_hints())
            finally:
                await client.close()

    asyncio.run(main())


def test_the_blocking_client() -> None:
    ready = threading.Event()
    done = threading.Event()
    addresses: list[str] = []

    def run_cluster() -> None:
        async def main() -> None:
            async with LocalCluster(3) as cluster:
                addresses.extend(cluster.address(n) for n in cluster.ids)
                ready.set()
                while not done.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(main())

    thread = threading.Thread(target=run_cluster)
    thread.start()
    try:
        assert ready.wait(30)
        with Client(addresses) as client:
            put = client.put(b"k", b"v")
            got = client.get(b"k")
            assert got.siblings == [b"v"]
            assert got.context == put.context
            assert client.status().node == "n1"
            with pytest.raises(ClientError) as err:
                client.get(b"")
            assert err.value.code == "invalid_key"
    finally:
        done.set()
        thread.join()


class _GatedStore(MemoryStore):
    """A store whose writes wait for the test to open the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writes = 0

    def apply(self, effects: Sequence[Effect]) -> None:
        self.gate.wait(30)
        self.writes += 1
        super().apply(effects)


def test_no_reply_leaves_before_its_write_is_durable() -> None:
    async def main() -> None:
        store = _GatedStore()
        config = FAST.__class__(n=1, r=1, w=1, gossip_interval=0.1)
        server = NodeServer(ServerOptions(node_id="solo", config=config, store=store))
        store.gate.set()
        await server.start()
        client = await AsyncClient.connect([server.address])
        try:
            store.gate.clear()
            puts = [asyncio.ensure_future(client.put(b"k%d" % i, b"v")) for i in range(20)]
            done, _ = await asyncio.wait(puts, timeout=0.5)
            assert not done  # the acks wait behind the blocked write
            writes = store.writes
            store.gate.set()
            await asyncio.gather(*puts)
            assert all(b"k%d" % i in store.state.store for i in range(20))
            # Group commit: twenty writes took fewer batches than twenty.
            assert store.writes - writes < 20
        finally:
            store.gate.set()
            await client.close()
            await server.stop()

    asyncio.run(main())


def test_overload_is_refused_at_once() -> None:
    async def main() -> None:
        # n2 acks only when its store lets it: n1's puts wait for W=2 and pile up past 3.
        config = FAST.__class__(
            n=2, r=1, w=2, sloppy=False, max_pending=3, request_timeout=5.0, reap_delay=30.0
        )
        cluster = LocalCluster(2, config)
        gated = cluster.stores["n2"] = _GatedStore()
        gated.gate.set()
        async with cluster:
            client = await AsyncClient.connect([cluster.address("n1")], timeout=10.0)
            try:
                gated.gate.clear()
                puts = [asyncio.ensure_future(client.put(b"k%d" % i, b"v")) for i in range(6)]
                await wait_for(lambda: sum(p.done() for p in puts) >= 3)
                done = [p for p in puts if p.done()]
                # The three past the limit were refused at once, not queued.
                assert len(done) == 3
                for fut in done:
                    err = fut.exception()
                    assert isinstance(err, ClientError)
                    assert err.code == "overload"
                gated.gate.set()
                results = await asyncio.gather(*puts, return_exceptions=True)
                assert sum(1 for r in results if not isinstance(r, BaseException)) == 3
                # Below the limit again: served.
                await client.put(b"after", b"v")
            finally:
                gated.gate.set()
                await client.close()

    asyncio.run(main())


def test_a_link_outlives_a_write_to_a_closed_transport() -> None:
    """uvloop raises RuntimeError (not OSError) for a write to a transport that has closed: the
    link must reconnect rather than die, or the peer is never written to again."""

    async def main() -> None:
        async with LocalCluster(2, FAST.__class__(n=2, r=1, w=2)) as cluster:
            client = await AsyncClient.connect([cluster.address("n1")])
            await client.put(b"warm", b"up")
            link = cluster.servers["n1"]._links["n2"]
            pump = link._pump
            calls = 0

            async def failing_once(stream: Any) -> None:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("unable to perform operation: the handler is closed")
                await pump(stream)

            link._pump = failing_once  # type: ignore[method-assign]
            # The link task is parked in the first pump: break it by reopening.
            if link._task is not None:
                link._task.cancel()
                link._task = None
            # The failed write costs the puts in flight (the peer looks unreachable for a
            # moment); the link comes back.
            stored = 0
            for i in range(100):
                try:
                    await client.put(b"k%d" % i, b"v", w=2)
                    stored += 1
                except ClientError:
                    await asyncio.sleep(0.05)
                if stored == 5:
                    break
            assert stored == 5
            assert calls >= 2
            await client.close()

    asyncio.run(main())
