"""Histories in Jepsen's shape: records, JSON lines, importers, and invoke/completion pairing.

A history is a list of `Op` in real-time order: the position of an op in the list is the order
in which it happened. `time` is informational (clients read their clocks at slightly different
moments, so times may disagree with the order); every checker orders events by position.

Importers:
- `read_jsonl` / `write_jsonl`: our own format, one JSON object per line.
- `read_edn_history`: Jepsen/Knossos EDN files (one vector or list of op maps) and Porcupine's
  kv files (one op map per line).
- `read_porcupine_etcd_log`: Porcupine's `jepsen/etcd_NNN.log` files (log4j lines).

`pair` turns ops into `Operation`s: an invocation with its completion, if any.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, TypeAlias

import msgspec

__all__ = [
    "NO_TIME",
    "EdnValue",
    "EmptyHistoryError",
    "HistoryError",
    "Keyword",
    "Op",
    "OpType",
    "Operation",
    "Status",
    "Symbol",
    "dumps_jsonl",
    "is_nemesis",
    "loads_jsonl",
    "pair",
    "parse_edn",
    "read_edn_history",
    "read_history",
    "read_jsonl",
    "read_porcupine_etcd_log",
    "read_porcupine_kv",
    "write_jsonl",
]

OpType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
Status: TypeAlias = Literal["ok", "fail", "info"]

NO_TIME = -1
"""`Op.time` of an op whose source recorded no time (Knossos and Porcupine files)."""


class HistoryError(ValueError):
    """Malformed history input; says where (file, line or op index) and which field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        self.index = index
        where = []
        if source is not None:
            where.append(source)
        if line is not None:
            where.append(f"line {line}")
        if index is not None:
            where.append(f"op index {index}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class EmptyHistoryError(HistoryError):
    """A history with nothing to check in it (no operations, or only nemesis events)."""


class Op(msgspec.Struct, frozen=True, omit_defaults=True):
    """One history event. `value` and `extra` hold JSON-able data only. `node`: the node that
    served the operation (the one its client talked to), when the recorder knows it."""

    process: int | str
    type: OpType
    f: str
    value: object
    time: int
    index: int
    key: object = None
    error: object = None
    node: str | None = None
    extra: dict[str, object] = {}


_OP_FIELDS = ("process", "type", "f", "value", "time", "index", "key", "error")


# ---------------------------------------------------------------------------------------------
# JSON lines

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Op)
_AT_FIELD = re.compile(r"at `\$\.?([A-Za-z_]\w*)")


def dumps_jsonl(ops: Iterable[Op]) -> bytes:
    """One JSON object per line, newline-terminated."""
    buf = bytearray()
    for op in ops:
        _ENCODER.encode_into(op, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def loads_jsonl(data: bytes | str, *, source: str | None = None) -> list[Op]:
    """Parse JSON lines; blank lines are skipped. Raises `HistoryError` naming line and field."""
    raw = data.encode() if isinstance(data, str) else data
    ops: list[Op] = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            ops.append(_DECODER.decode(line))
        except msgspec.ValidationError as exc:
            match = _AT_FIELD.search(str(exc))
            raise HistoryError(
                str(exc), source=source, line=lineno, field=match.group(1) if match else None
            ) from None
        except msgspec.DecodeError as exc:
            raise HistoryError(f"malformed JSON: {exc}", source=source, line=lineno) from None
    return ops


def write_jsonl(path: str | Path, ops: Iterable[Op]) -> None:
    Path(path).write_bytes(dumps_jsonl(ops))


def read_jsonl(path: str | Path) -> list[Op]:
    return loads_jsonl(Path(path).read_bytes(), source=str(path))


# ---------------------------------------------------------------------------------------------
# EDN


class Keyword(str):
    """An EDN keyword such as `:ok`; the string is the name without the colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{self}"


class Symbol(str):
    """An EDN symbol such as `foo`."""

    __slots__ = ()


EdnValue: TypeAlias = (
    "bool | int | float | str | list[EdnValue] | dict[EdnValue, EdnValue] "
    "| frozenset[EdnValue] | tuple[EdnValue, ...] | None"
)

_EDN_TOKEN = re.compile(
    r"""
    [\s,]+ | ;[^\n]*
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][\w.\-/]*)
  | (?P<kw>:[^\s,;()\[\]{}"]+)
  | (?P<num>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[NM]?(?=[\s,;()\[\]{}"]|$))
  | (?P<sym>[A-Za-z*+!\-_?<>=./&$%][\w*+!\-?<>=./:#'&$%]*)
  | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_STR_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_STR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}


def _hashable(value: EdnValue) -> EdnValue:
    """Vectors inside sets and map keys become tuples so they can be hashed."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


class _EdnReader:
    """Tokenizes the whole text at once, then reads forms from the token list."""

    def __init__(self, text: str, source: str | None) -> None:
        self.text = text
        self.source = source
        self.tokens: list[tuple[str, str, int]] = [
            (m.lastgroup, m.group(), m.start())
            for m in _EDN_TOKEN.finditer(text)
            if m.lastgroup is not None
        ]
        self.i = 0
        self._newlines: list[int] | None = None

    def line_at(self, pos: int) -> int:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        return bisect.bisect_right(self._newlines, pos - 1) + 1

    def fail(self, message: str, pos: int) -> NoReturn:
        raise HistoryError(message, source=self.source, line=self.line_at(pos))

    def at_end(self) -> bool:
        return self.i >= len(self.tokens)

    def pos(self) -> int:
        """Text offset of the next token (or the end)."""
        return self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)

    def peek_close(self) -> str | None:
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "close":
            return self.tokens[self.i][1]
        return None

    def read(self) -> EdnValue:
        """Read one form at the cursor."""
        while True:
            if self.i >= len(self.tokens):
                self.fail("unexpected end of input", len(self.text))
            kind, tok, start = self.tokens[self.i]
            self.i += 1
            if kind == "discard":
                self.read()
                continue
            if kind == "tag":
                continue  # #inst "...", #jepsen.history.Op{...}: read as the bare form
            if kind == "open":
                return self.read_collection(tok, start)
            if kind == "kw":
                return Keyword(tok[1:])
            if kind == "num":
                if tok.endswith("M") or any(c in tok for c in ".eE"):
                    return float(tok.rstrip("M"))
                return int(tok.rstrip("N"))
            if kind == "str":
                return self.read_string(tok, start)
            if kind == "sym":
                if tok == "nil":
                    return None
                if tok == "true":
                    return True
                if tok == "false":
                    return False
                return Symbol(tok)
            if kind == "close":
                self.fail(f"unexpected {tok!r}", start)
            if tok == '"':
                self.fail("unterminated string", start)
            self.fail(f"unexpected character {tok!r}", start)

    def read_collection(self, opener: str, start: int) -> EdnValue:
        closer = _CLOSER[opener]
        items: list[EdnValue] = []
        tokens, n = self.tokens, len(self.tokens)
        while True:
            if self.i >= n:
                self.fail(f"{opener!r} opened here is never closed", start)
            kind, tok, pos = tokens[self.i]
            if kind == "close":
                if tok != closer:
                    self.fail(
                        f"expected {closer!r} to close {opener!r} of line {self.line_at(start)}"
                        f", got {tok!r}",
                        pos,
                    )
                self.i += 1
                break
            items.append(self.read())
        if opener in "[(":
            return items
        if opener == "#{":
            return frozenset(_hashable(v) for v in items)
        if len(items) % 2:
            self.fail("map literal has an odd number of forms", start)
        return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}

    def read_string(self, tok: str, start: int) -> str:
        body = tok[1:-1]
        if "\\" not in body:
            return body

        def unescape(m: re.Match[str]) -> str:
            e = m.group(1)
            if e in _STR_ESCAPES:
                return _STR_ESCAPES[e]
            if len(e) != 5:
                self.fail(f"unknown string escape \\{e}", start)
            return chr(int(e[1:], 16))

        return _STR_ESCAPE.sub(unescape, body)


def parse_edn(text: str, *, source: str | None = None) -> list[EdnValue]:
    """All top-level forms of an EDN text. Vectors and lists read as Python lists."""
    reader = _EdnReader(text, source)
    forms: list[EdnValue] = []
    while not reader.at_end():
        forms.append(reader.read())
    return forms


def _history_forms(text: str, source: str | None) -> Iterator[tuple[EdnValue, int]]:
    """(op form, line) pairs: the items of one top-level vector/list, or top-level maps."""
    reader = _EdnReader(text, source)
    if reader.at_end():
        return
    kind, tok, first = reader.tokens[0]
    if kind == "open" and tok in "[(":
        closer = _CLOSER[tok]
        reader.i = 1
        while (close := reader.peek_close()) is None:
            if reader.at_end():
                reader.fail(f"{tok!r} opened here is never closed", first)
            line = reader.line_at(reader.pos())
            yield reader.read(), line
        if close != closer:
            reader.fail(f"expected {closer!r}, got {close!r}", reader.pos())
        reader.i += 1
        if not reader.at_end():
            reader.fail("unexpected form after the history collection", reader.pos())
        return
    while not reader.at_end():
        line = reader.line_at(reader.pos())
        yield reader.read(), line


def _json_able(value: EdnValue) -> object:
    """EDN data as JSON-able data: keywords and symbols become strings, sets sorted lists."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_able(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((_json_able(v) for v in value), key=repr)
    return {
        (str(k) if isinstance(k, str) else repr(_json_able(k))): _json_able(v)
        for k, v in value.items()
    }


_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})


def _op_from_map(form: EdnValue, position: int, line: int, source: str | None) -> Op:
    def bad(message: str, field: str | None = None) -> NoReturn:
        raise HistoryError(message, source=source, line=line, field=field)

    if not isinstance(form, dict):
        bad(f"expected an op map, got {type(form).__name__}")
    fields: dict[str, EdnValue] = {}
    extra: dict[str, object] = {}
    for k, v in form.items():
        name = str(k) if isinstance(k, str) else repr(k)
        if isinstance(k, Keyword) and name in _OP_FIELDS:
            fields[name] = v
        else:
            extra[name] = _json_able(v)
    for required in ("process", "type", "f"):
        if required not in fields:
            bad("missing", required)
    process = fields["process"]
    if isinstance(process, bool) or not isinstance(process, int | str):
        bad(f"expected an integer or keyword, got {process!r}", "process")
    typ = fields["type"]
    if not isinstance(typ, Keyword) or typ not in _TYPES:
        bad(f"expected one of :invoke :ok :fail :info, got {typ!r}", "type")
    f = fields["f"]
    if not isinstance(f, str):
        bad(f"expected a keyword, got {f!r}", "f")
    time = fields.get("time", NO_TIME)
    if isinstance(time, bool) or not isinstance(time, int):
        bad(f"expected an integer, got {time!r}", "time")
    index = fields.get("index", position)
    if isinstance(index, bool) or not isinstance(index, int):
        bad(f"expected an integer, got {index!r}", "index")
    return Op(
        process=process if isinstance(process, int) else str(process),
        type=str(typ),  # type: ignore[arg-type]  # checked against _TYPES above
        f=str(f),
        value=_json_able(fields.get("value")),
        time=time,
        index=index,
        key=_json_able(fields.get("key")),
        error=_json_able(fields.get("error")),
        extra=extra,
    )


def read_edn_history(path_or_text: str | Path, *, source: str | None = None) -> list[Op]:
    """A Jepsen/Knossos EDN history (one vector or list of op maps) or Porcupine kv file.

    A `Path` is read from disk; a `str` is the text itself. Keywords become plain strings
    (`:nemesis` -> "nemesis"). A missing `:index` is the op's position (counting every entry),
    a missing `:time` is `NO_TIME`; keys other than the op fields go to `extra`.
    """
    if isinstance(path_or_text, Path):
        source = source or str(path_or_text)
        text = path_or_text.read_text()
    else:
        text = path_or_text
    return [
        _op_from_map(form, position, line, source)
        for position, (form, line) in enumerate(_history_forms(text, source))
    ]


def read_porcupine_kv(path_or_text: str | Path, *, source: str | None = None) -> list[Op]:
    """Porcupine's `kv/cNN-*.txt`: one EDN op map per line, each with a string `:key`."""
    if source is None and isinstance(path_or_text, Path):
        source = str(path_or_text)
    ops = read_edn_history(path_or_text, source=source)
    for op in ops:
        if not isinstance(op.key, str):
            raise HistoryError(
                f"expected a string key, got {op.key!r}", source=source, index=op.index, field="key"
            )
    return ops


# ---------------------------------------------------------------------------------------------
# Porcupine's etcd logs

_ETCD_LINE = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*?))?\s*$")


def read_porcupine_etcd_log(path_or_text: str | Path, *, source: str | None = None) -> list[Op]:
    """Porcupine's `jepsen/etcd_NNN.log`: `INFO  jepsen.util - P  :TYPE  :F  VALUE` lines.

    A `Path` is read from disk; a `str` is the text itself. Values are `nil`, an integer or
    `[from to]`. A keyword value on a completion (Jepsen's old `:timed-out`) becomes `error`,
    with value None. The ops carry no time.
    """
    if isinstance(path_or_text, Path):
        source = source or str(path_or_text)
        text = path_or_text.read_text()
    else:
        text = path_or_text
    ops: list[Op] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue

        def bad(message: str, field: str | None = None, lineno: int = lineno) -> NoReturn:
            raise HistoryError(message, source=source, line=lineno, field=field)

        m = _ETCD_LINE.match(line)
        if m is None:
            bad(f"not a jepsen.util log line: {line.strip()[:80]!r}")
        proc, typ, f, raw = m.groups()
        if not proc.isdigit():
            bad(f"expected a process number, got {proc!r}", "process")
        if not typ.startswith(":") or typ[1:] not in _TYPES:
            bad(f"expected one of :invoke :ok :fail :info, got {typ!r}", "type")
        if not f.startswith(":") or len(f) < 2:
            bad(f"expected a keyword, got {f!r}", "f")
        try:
            forms = parse_edn(raw or "nil")
        except HistoryError as exc:
            bad(exc.message, "value")
        if len(forms) != 1:
            bad(f"expected one value, got {raw!r}", "value")
        value: EdnValue = forms[0]
        error: object = None
        if isinstance(value, Keyword) and typ != ":invoke":
            value, error = None, str(value)
        elif not (
            value is None
            or (isinstance(value, int) and not isinstance(value, bool))
            or (
                isinstance(value, list)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )
        ):
            bad(f"expected nil, an integer or [from to], got {raw!r}", "value")
        ops.append(
            Op(
                process=int(proc),
                type=typ[1:],  # type: ignore[arg-type]  # checked against _TYPES above
                f=f[1:],
                value=_json_able(value),
                time=NO_TIME,
                index=len(ops),
                error=error,
            )
        )
    return ops


def read_history(path: str | Path) -> list[Op]:
    """Read a history by its file name: `.jsonl`/`.json`, `.edn`, `.log` (Porcupine etcd) or
    `.txt` (Porcupine kv, EDN maps)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(p)
    if suffix in (".edn", ".txt"):
        return read_edn_history(p)
    if suffix == ".log":
        return read_porcupine_etcd_log(p)
    raise HistoryError(f"unknown history format {suffix!r}", source=str(p))


# ---------------------------------------------------------------------------------------------
# Pairing


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion.

    `call` and `ret` are positions in the history (its real-time order); `ret` is None when the
    operation never returned. `status` is "info" both for an `:info` completion and for no
    completion: in either case the operation may have taken effect at any time after its call
    (even after the `:info` was logged), or not at all. `output` is None then.
    """

    id: int
    process: int | str
    f: str
    input: object
    output: object
    status: Status
    call: int
    ret: int | None
    invoke: Op
    completion: Op | None

    @property
    def key(self) -> object:
        return self.invoke.key

    @property
    def node(self) -> object:
        """The node that served it: the completion's `node`, else the invocation's, else an
        `extra.node` (older histories, other tools); None when not recorded."""
        for op in (self.completion, self.invoke):
            if op is not None and op.node is not None:
                return op.node
        for op in (self.completion, self.invoke):
            if op is not None and "node" in op.extra:
                return op.extra["node"]
        return None

    def at_node(self) -> str:
        """`", node N"` when the serving node is recorded, else "" (for messages)."""
        node = self.node
        return "" if node is None else f", node {node}"

    @property
    def unknown(self) -> bool:
        """Outcome unknown: `:info`, or never returned."""
        return self.status == "info"

    @property
    def call_time(self) -> int:
        return self.invoke.time

    @property
    def return_time(self) -> int | None:
        return None if self.completion is None else self.completion.time


def is_nemesis(op: Op) -> bool:
    """Fault-injection events, which are not client operations."""
    return op.process == "nemesis"


def pair(ops: Sequence[Op], *, ignore: Callable[[Op], bool] = is_nemesis) -> list[Operation]:
    """Match each invocation to its process's next completion, in history order.

    Ops for which `ignore` holds (nemesis events by default) are skipped, but they keep their
    position. Operations come out ordered by call. A completion with no open invocation, a second
    invocation while one is open, or a completion whose `f` differs raise `HistoryError`.
    """
    open_calls: dict[int | str, tuple[int, Op]] = {}
    done: list[tuple[int, Op, Op | None, int | None]] = []
    for pos, op in enumerate(ops):
        if ignore(op):
            continue
        if op.type == "invoke":
            if op.process in open_calls:
                _, prev = open_calls[op.process]
                raise HistoryError(
                    f"process {op.process!r} invokes {op.f!r} while its {prev.f!r} "
                    f"(op index {prev.index}) is still open",
                    index=op.index,
                    field="type",
                )
            open_calls[op.process] = (pos, op)
            continue
        if op.process not in open_calls:
            raise HistoryError(
                f"process {op.process!r} completes {op.f!r} ({op.type}) with no open invocation",
                index=op.index,
                field="process",
            )
        call_pos, inv = open_calls.pop(op.process)
        if inv.f != op.f:
            raise HistoryError(
                f"completion {op.f!r} does not match the invocation {inv.f!r} "
                f"(op index {inv.index}) of process {op.process!r}",
                index=op.index,
                field="f",
            )
        done.append((call_pos, inv, op, pos))
    for call_pos, inv in open_calls.values():
        done.append((call_pos, inv, None, None))
    done.sort(key=lambda item: item[0])
    result: list[Operation] = []
    for i, (call_pos, inv, comp, ret_pos) in enumerate(done):
        status: Status = "info"
        if comp is not None and comp.type == "ok":
            status = "ok"
        elif comp is not None and comp.type == "fail":
            status = "fail"
        result.append(
            Operation(
                id=i,
                process=inv.process,
                f=inv.f,
                input=inv.value,
                output=None if comp is None or status == "info" else comp.value,
                status=status,
                call=call_pos,
                ret=ret_pos,
                invoke=inv,
                completion=comp,
            )
        )
    return result
