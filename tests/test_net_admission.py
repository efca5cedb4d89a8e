"""Admission: past twice its limit a node refuses at once, up to a budget of refusals a
second; past the budget clients wait for room, oldest first, instead of being refused."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Sequence

import pytest
from net_support import FAST, raw_client

from dynamo_ref.core.effects import Effect
from dynamo_ref.core.messages import ErrorReply, Put, decode_reply, encode
from dynamo_ref.net.server import NodeServer, ServerOptions
from dynamo_ref.storage.durable import MemoryStore


class _GatedStore(MemoryStore):
    """Writes wait for the test to open the gate: requests stay in the node meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def apply(self, effects: Sequence[Effect]) -> None:
        self.gate.wait(30)
        super().apply(effects)


async def burst(refusals: float, clients: int = 30) -> Counter[str]:
    """``clients`` connections put one key each into a node that takes 4 at once (8 at
    most) and refuses ``refusals`` a second; the store is held shut until all have sent."""
    store = _GatedStore()
    config = FAST.__class__(n=1, r=1, w=1)
    server = NodeServer(
        ServerOptions(node_id="solo", config=config, store=store, max_inflight=4, refusals=refusals)
    )
    store.gate.set()
    await server.start()
    store.gate.clear()
    try:
        conns = [await raw_client(server.address) for _ in range(clients)]
        for i, (stream, _) in enumerate(conns):
            stream.send(encode(Put(b"k%d" % i, b"v", rid=i + 1)))
        await asyncio.sleep(0.5)
        assert server._inflight_total == 8  # twice the limit, the rest refused or waiting
        store.gate.set()
        answers: Counter[str] = Counter()
        for stream, _ in conns:
            reply = decode_reply(await asyncio.wait_for(stream.recv(), 10))
            answers[reply.code if isinstance(reply, ErrorReply) else type(reply).__name__] += 1
            stream.close()
        assert server._inflight_total == 0
        assert not server._waiting
        return answers
    finally:
        store.gate.set()
        await server.stop()


@pytest.mark.net
def test_past_the_refusal_budget_clients_wait_for_room_and_are_served() -> None:
    # A budget of 10 a second allows a refusal or two here: the others wait, then succeed.
    answers = asyncio.run(burst(refusals=10.0))
    assert 1 <= answers["overload"] <= 3, answers
    assert answers["PutOk"] == 30 - answers["overload"]


@pytest.mark.net
def test_negative_control_with_budget_to_spare_the_excess_is_refused() -> None:
    answers = asyncio.run(burst(refusals=1e6))
    assert answers == {"PutOk": 8, "overload": 22}
