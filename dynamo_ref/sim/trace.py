"""Traces: one JSON line per spec action step, encoded canonically.

A line is ``{"action", "args", "node", "state", "step", "time"}``: the spec action's name and
arguments (a node's ``Action`` effect, or an environment step the simulation took: ``Init``,
``Crash``, ``Recover``, ``Partition``, ``Heal``, ``LoseMessage``, ``DuplicateMessage``), the node
that took it (null for the network's steps), and ``state``, the spec's variables after the step.
``state`` is null when one node step took several actions at once (``ClientPut`` then
``SloppyFallback``, ``ReadResponse`` then ``ReadRepair``): only the state after the last of them
is observable.

``state`` has every variable of spec/Dynamo.tla: ``store``, ``hints``, ``putOps``, ``getOps``
(per node; a node that is down has its disk's store and hints and no ops), ``up``, ``msgs`` (the
bag, as sorted ``[message, copies]`` pairs), ``cut`` (sorted ``[i, j]`` pairs, i < j, cut when
either direction is), ``clock`` and ``gets`` (the puts and gets begun), ``faults``, ``acked`` and
``answered``.

The encoding is byte-stable, so the same seed gives the same file: object keys sorted, no
whitespace, ASCII only; sets are sorted by their elements' own encoding; mappings with keys that
are not strings become sorted ``[key, value]`` pairs; bytes become text (UTF-8, or ``0x`` hex when
not valid UTF-8); floats use Python's shortest round-trip form and must be finite.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Set
from typing import IO, Final

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def canonical(value: object) -> JsonValue:
    """``value`` as plain JSON data in canonical form (see the module docstring)."""
    # Exact types first: the bulk of a state, and subclasses (enums) need the slow path.
    if value is None:
        return None
    t = type(value)
    if t in _EXACT:
        assert isinstance(value, str | int)
        return value
    if t is dict:
        assert isinstance(value, dict)
        if all(type(k) is str for k in value):
            return {k: canonical(v) for k, v in value.items()}
    elif t is list or t is tuple:
        assert isinstance(value, list | tuple)
        return [canonical(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"trace values must be finite, got {value!r}")
        # -0.0 and 0.0 are equal values; one spelling keeps traces byte-stable.
        return value + 0.0
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + raw.hex()
    if isinstance(value, Mapping):
        items = [(canonical(k), canonical(v)) for k, v in value.items()]
        if all(isinstance(k, str) for k, _ in items):
            return {str(k): v for k, v in items}
        pairs: list[JsonValue] = [[k, v] for k, v in items]
        return sorted(pairs, key=dumps)
    if isinstance(value, Set):
        return sorted((canonical(v) for v in value), key=dumps)
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    raise TypeError(f"cannot put {type(value).__name__} in a trace")


_EXACT: Final = frozenset({str, int, bool})


def dumps(value: JsonValue) -> str:
    """The canonical text of already canonical data."""
    return _ENCODER.encode(value)


def encode(value: object) -> str:
    """The canonical text of any traceable value."""
    return dumps(canonical(value))


class Raw:
    """JSON text already in canonical form, to be put in a line as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def encode_fields(fields: Mapping[str, object]) -> str:
    """A JSON object of ``fields`` with its keys sorted, as ``encode`` would write it, except
    that ``Raw`` values go in as they are (parts of the state encoded once and reused)."""
    return (
        "{"
        + ",".join(
            f"{dumps(k)}:{v.text if isinstance(v, Raw) else encode(v)}"
            for k, v in sorted(fields.items())
        )
        + "}"
    )


class TraceWriter:
    """Writes trace lines to a text stream; ``lines`` keeps them too when ``keep`` is set."""

    def __init__(self, out: IO[str] | None = None, *, keep: bool = False) -> None:
        self._out = out
        self._keep = keep
        self.lines: list[str] = []
        self.steps = 0

    def record(
        self,
        action: str,
        args: object,
        node: str | None,
        time: float,
        state: Mapping[str, object] | Raw | None,
    ) -> None:
        self.steps += 1
        line = encode_fields(
            {
                "action": action,
                "args": args,
                "node": node,
                "state": state,
                "step": self.steps,
                "time": time,
            }
        )
        if self._keep:
            self.lines.append(line)
        if self._out is not None:
            self._out.write(line + "\n")

    def text(self) -> str:
        """Everything kept so far, as the file would hold it."""
        return "".join(line + "\n" for line in self.lines)
