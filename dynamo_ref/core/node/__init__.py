"""The sans-I/O node as parts: ``shell.Node`` dispatches to ``members``, ``replica``,
``coordinator`` and ``anti_entropy`` (``docs/architecture.md`` draws them)."""

from dynamo_ref.core.node.config import DurableState, NodeConfig
from dynamo_ref.core.node.outbox import TimerKind, spec_version
from dynamo_ref.core.node.shell import Node
from dynamo_ref.core.node_versions import VersionMode

__all__ = ["DurableState", "Node", "NodeConfig", "TimerKind", "VersionMode", "spec_version"]
