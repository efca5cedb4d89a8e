"""The dynamo-ref target's settings as the node defines them: the version modes, and the
defaults a run takes when it names none (``NodeConfig``'s, written once in the core)."""

from __future__ import annotations

from typing import Final

from dynamo_ref.core.node.config import NodeConfig
from dynamo_ref.core.node_versions import VersionMode

DEFAULTS: Final = NodeConfig()
MODES: Final = tuple(m.value for m in VersionMode)
QUORUMS: Final = ("sloppy", "strict")
DEFAULT_MODE: Final = DEFAULTS.mode.value
DEFAULT_QUORUM: Final = "sloppy" if DEFAULTS.sloppy else "strict"
