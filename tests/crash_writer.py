"""Applies numbered batches to a durable store in a loop, printing each id once ``apply`` returns.

Run by tests/test_storage_sqlite.py, which SIGKILLs it and then checks that every printed id
is in the store. Batch ``i`` writes ``WIDTH`` keys ``b"<i>/<j>"``, overwrites ``b"last"`` with
``i``, keeps a hint and deletes the keys of batch ``i - 2``, so that after a crash a batch is
either wholly there or wholly absent and the check can tell.

    python tests/crash_writer.py PATH FIRST_ID [--sync full|normal|off] [--buffered]

``--buffered`` is the negative control: the batches stay in memory and are never written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dynamo_ref.core.effects import Effect, Persist, PersistHint, PersistMeta
from dynamo_ref.core.vclock import VClock
from dynamo_ref.core.versions import Siblings, Version
from dynamo_ref.storage.durable import DurableStore, MemoryStore
from dynamo_ref.storage.sqlite import SqliteStore

WIDTH = 4


def value(batch: int, j: int) -> Siblings:
    clock = VClock.from_counters({"w": batch + 1}, float(batch))
    return (Version(f"{batch}:{j}".encode() * 8, clock, float(batch), "w"),)


def batch_effects(batch: int) -> list[Effect]:
    effects: list[Effect] = [
        Persist(f"{batch}/{j}".encode(), value(batch, j)) for j in range(WIDTH)
    ]
    effects.append(Persist(b"last", value(batch, 0)))
    effects.append(PersistHint("owner", f"{batch}".encode(), value(batch, 1)))
    effects.append(PersistMeta("last", str(batch).encode()))
    if batch >= 2:
        effects.extend(Persist(f"{batch - 2}/{j}".encode(), ()) for j in range(WIDTH))
    return effects


class BufferedStore:
    """Acknowledges batches it only keeps in memory: what the crash test must catch."""

    def __init__(self, backing: DurableStore) -> None:
        self.backing = backing
        self.pending = MemoryStore()

    def apply(self, effects: Sequence[Effect]) -> None:
        self.pending.apply(effects)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("first", type=int)
    parser.add_argument("--sync", default="full", choices=["full", "normal", "off"])
    parser.add_argument("--buffered", action="store_true")
    args = parser.parse_args()
    store = SqliteStore(args.path, args.sync)
    sink = BufferedStore(store) if args.buffered else store
    batch = args.first
    while True:
        sink.apply(batch_effects(batch))
        sys.stdout.write(f"{batch}\n")
        sys.stdout.flush()
        batch += 1


if __name__ == "__main__":
    main()
