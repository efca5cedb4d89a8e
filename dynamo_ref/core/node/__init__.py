"""The sans-I/O node as parts: ``shell.Node`` dispatches to ``members``, ``replica``,
``coordinator`` and ``anti_entropy`` (``docs/architecture.md`` draws them).

``Node`` is loaded on first use, so that settings (``config``) import without the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo_ref.core.node.config import DurableState, NodeConfig
from dynamo_ref.core.node_versions import VersionMode

if TYPE_CHECKING:
    from dynamo_ref.core.node.outbox import TimerKind, spec_version
    from dynamo_ref.core.node.shell import Node

__all__ = ["DurableState", "Node", "NodeConfig", "TimerKind", "VersionMode", "spec_version"]


def __getattr__(name: str) -> object:
    if name == "Node":
        from dynamo_ref.core.node.shell import Node

        return Node
    if name in ("TimerKind", "spec_version"):
        from dynamo_ref.core.node import outbox

        return getattr(outbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
