"""CPU per hand-off of a call from the event loop to a thread and back, three ways.

A node server hands each group-commit batch to a thread (``net/server.py``). This measures the
hand-off alone (the call does nothing), as CPU time of the whole process per call:

- ``to_thread``: ``asyncio.to_thread`` (what the server does);
- ``executor``: ``loop.run_in_executor`` on a one-thread ``ThreadPoolExecutor``;
- ``own thread``: one thread fed by a ``queue.SimpleQueue``, answering by
  ``call_soon_threadsafe``.

    python benchmarks/handoff_bench.py [--calls N]

On asyncio's loop and on uvloop. See benchmarks/README.md for why the server keeps to_thread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop


def _noop(_: int) -> None:
    return None


async def _to_thread(n: int) -> float:
    started = time.process_time()
    for i in range(n):
        await asyncio.to_thread(_noop, i)
    return time.process_time() - started


async def _executor(n: int) -> float:
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.process_time()
        for i in range(n):
            await loop.run_in_executor(pool, _noop, i)
        return time.process_time() - started


async def _own_thread(n: int) -> float:
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[tuple[asyncio.Future[None], int] | None] = queue.SimpleQueue()

    def serve() -> None:
        while (job := jobs.get()) is not None:
            fut, arg = job
            _noop(arg)
            loop.call_soon_threadsafe(fut.set_result, None)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.process_time()
    for i in range(n):
        fut: asyncio.Future[None] = loop.create_future()
        jobs.put((fut, i))
        await fut
    spent = time.process_time() - started
    jobs.put(None)
    thread.join()
    return spent


WAYS: dict[str, Callable[[int], Coroutine[Any, Any, float]]] = {
    "to_thread": _to_thread,
    "executor": _executor,
    "own thread": _own_thread,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    n: int = args.calls
    for loop_name, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        spent: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(2):  # alternated: this machine's speed drifts
            for way, bench in WAYS.items():
                spent[way].append(run(bench(n)) / n * 1e6)
        base = min(spent["to_thread"])
        for way, us in spent.items():
            print(
                f"{loop_name:8} {way:11} {min(us):7.1f} us CPU per hand-off"
                f"   to_thread / this: {base / min(us):.2f}x"
            )


if __name__ == "__main__":
    main()
