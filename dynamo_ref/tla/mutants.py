"""Planted protocol bugs in spec/Dynamo.tla and the TLC models that kill them.

A mutant is a unified diff under spec/mutants/, `NN_name.patch`, whose first
line is a comment saying what it breaks:

    # a coordinator answers a put with W - 1 acks
    # first: strict_dup sloppy
    --- a/Dynamo.tla
    +++ b/Dynamo.tla
    @@ -180,3 +180,3 @@
    ...

An optional `# first:` line names the models to try before the others (the
ones expected to kill it, so that a run stops early). Patches apply exactly:
no fuzz, no offset, so a patch that no longer matches the spec is reported
with its mutant's name instead of planting some other bug.

A model kills a mutant when TLC, run on the patched spec, ends otherwise than
the model's manifest says: a positive model finds a violation, or a negative
or witness model no longer reaches its own. A model TLC cannot run on the
mutant (a parse error, a timeout) kills nothing: the mutant is broken.
"""

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dynamo_ref.tla.models import Model
from dynamo_ref.tla.tlc import TlcResult, Verdict, cfg_properties

MUTANTS_DIR = Path("mutants")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class MutantError(ValueError):
    """A mutant cannot be read or no longer applies; the message names it."""


@dataclass(frozen=True)
class Hunk:
    """One @@ block: the lines it expects at `start` (1-based) and their replacement."""

    start: int
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True)
class FilePatch:
    """The hunks of one file, named relative to the spec directory."""

    path: str
    hunks: tuple[Hunk, ...]


@dataclass(frozen=True)
class Mutant:
    """One planted bug: its patch, what it breaks, and the models to try first."""

    name: str
    path: Path
    breaks: str
    first: tuple[str, ...]
    files: tuple[FilePatch, ...]


def _target(header: str, mutant: str, lineno: int) -> str:
    raw = header[4:].split("\t", maxsplit=1)[0].strip()
    path = raw[2:] if raw.startswith(("a/", "b/")) else raw
    parts = Path(path).parts
    if not path or Path(path).is_absolute() or ".." in parts:
        raise MutantError(f"mutant {mutant}: line {lineno}: bad file name {raw!r}")
    return path


def parse_patch(name: str, text: str, path: Path | None = None) -> Mutant:
    """Read a mutant's patch; a malformed one raises MutantError naming it."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#") or not lines[0].lstrip("# ").strip():
        raise MutantError(f"mutant {name}: the first line must be '# <what it breaks>'")
    breaks = lines[0].lstrip("# ").strip()
    first: tuple[str, ...] = ()
    files: list[FilePatch] = []
    i = 1
    while i < len(lines) and not lines[i].startswith("--- "):
        comment = lines[i].lstrip("# ").strip()
        if lines[i].startswith("#") and comment.startswith("first:"):
            first = tuple(comment.removeprefix("first:").split())
        i += 1
    while i < len(lines):
        if not lines[i].startswith("--- ") or i + 1 >= len(lines):
            raise MutantError(f"mutant {name}: line {i + 1}: expected a '--- a/FILE' header")
        if not lines[i + 1].startswith("+++ "):
            raise MutantError(f"mutant {name}: line {i + 2}: expected a '+++ b/FILE' header")
        target = _target(lines[i + 1], name, i + 2)
        i += 2
        hunks: list[Hunk] = []
        while i < len(lines) and lines[i].startswith("@@"):
            match = _HUNK.match(lines[i])
            if match is None:
                raise MutantError(f"mutant {name}: line {i + 1}: bad hunk header {lines[i]!r}")
            start = int(match.group(1))
            old_len = int(match.group(2) or "1")
            new_len = int(match.group(4) or "1")
            old: list[str] = []
            new: list[str] = []
            i += 1
            while (len(old) < old_len or len(new) < new_len) and i < len(lines):
                line = lines[i]
                tag, body = (line[:1], line[1:]) if line else (" ", "")
                if tag == " ":
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                elif tag != "\\":
                    raise MutantError(f"mutant {name}: line {i + 1}: not a diff line: {line!r}")
                i += 1
            if (len(old), len(new)) != (old_len, new_len):
                raise MutantError(f"mutant {name}: hunk at line {start} is cut short")
            # A hunk that adds lines at the top of a file says -0,0.
            hunks.append(Hunk(start if old_len else start + 1, tuple(old), tuple(new)))
        if not hunks:
            raise MutantError(f"mutant {name}: {target}: no hunks")
        files.append(FilePatch(target, tuple(hunks)))
        while i < len(lines) and not lines[i].strip():
            i += 1
    if not files:
        raise MutantError(f"mutant {name}: no diff in the patch")
    return Mutant(name, path or Path(f"{name}.patch"), breaks, first, tuple(files))


def apply_file(mutant: str, patch: FilePatch, text: str) -> str:
    """`text` with the hunks applied exactly where they say, or MutantError."""
    lines = text.splitlines()
    offset = 0
    for n, hunk in enumerate(patch.hunks, 1):
        at = hunk.start - 1 + offset
        found = tuple(lines[at : at + len(hunk.old)])
        if found != hunk.old:
            where = next(
                (j for j, (a, b) in enumerate(zip(found, hunk.old, strict=False)) if a != b),
                len(found),
            )
            expected = hunk.old[where] if where < len(hunk.old) else "(end)"
            seen = found[where] if where < len(found) else "(end of file)"
            raise MutantError(
                f"mutant {mutant} no longer applies: {patch.path} hunk {n} "
                f"at line {hunk.start + where}: expected {expected!r}, found {seen!r}"
            )
        lines[at : at + len(hunk.old)] = hunk.new
        offset += len(hunk.new) - len(hunk.old)
    return "\n".join(lines) + "\n"


def _find_unique(mutant: str, path: str, n: int, lines: Sequence[str], old: Sequence[str]) -> int:
    """The one 0-based line where `old` starts in `lines`, or MutantError."""
    size = len(old)
    found = [i for i in range(len(lines) - size + 1) if tuple(lines[i : i + size]) == tuple(old)]
    if len(found) != 1:
        what = "not found" if not found else f"found {len(found)} times"
        raise MutantError(
            f"mutant {mutant} cannot be rebased: {path} hunk {n}: its lines are {what}"
        )
    return found[0]


def rebase(mutant: Mutant, spec_dir: Path) -> str:
    """The mutant's patch with each hunk's line numbers moved to where its lines now stand in
    the spec (after an edit above them); MutantError if a hunk's lines are gone or ambiguous."""
    text = mutant.path.read_text()
    starts: list[tuple[int, int]] = []
    for patch in mutant.files:
        source = spec_dir / patch.path
        if not source.is_file():
            raise MutantError(f"mutant {mutant.name} cannot be rebased: {patch.path} not found")
        lines = source.read_text().splitlines()
        shift = 0
        for n, hunk in enumerate(patch.hunks, 1):
            at = _find_unique(mutant.name, patch.path, n, lines, hunk.old) + 1
            starts.append((at, at + shift))
            shift += len(hunk.new) - len(hunk.old)
    out: list[str] = []
    headers = iter(starts)
    for line in text.splitlines():
        match = _HUNK.match(line)
        if match is not None:
            old_at, new_at = next(headers)
            old_len, new_len = match.group(2), match.group(4)
            old = f"{old_at},{old_len}" if old_len is not None else str(old_at)
            new = f"{new_at},{new_len}" if new_len is not None else str(new_at)
            out.append(f"@@ -{old} +{new} @@" + line[match.end() :])
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def plant(mutant: Mutant, spec_dir: Path, dest: Path) -> Path:
    """Copy the spec's modules into `dest` with the mutant applied; returns `dest`."""
    for tla in spec_dir.glob("*.tla"):
        shutil.copy(tla, dest / tla.name)
    for patch in mutant.files:
        source = spec_dir / patch.path
        if not source.is_file():
            raise MutantError(f"mutant {mutant.name} no longer applies: {patch.path} not found")
        target = dest / patch.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(apply_file(mutant.name, patch, source.read_text()))
    return dest


def read_mutants(spec_dir: Path) -> list[Mutant]:
    """Every spec/mutants/*.patch, in name order, parsed but not yet checked to apply."""
    directory = spec_dir / MUTANTS_DIR
    paths = sorted(directory.glob("*.patch"))
    if not paths:
        raise MutantError(f"no mutants in {directory}")
    return [parse_patch(p.stem, p.read_text(), p) for p in paths]


def check_apply(mutants: Iterable[Mutant], spec_dir: Path) -> None:
    """MutantError, naming it, for the first mutant that no longer applies."""
    with tempfile.TemporaryDirectory(prefix="dynamo-mutant-") as scratch:
        for mutant in mutants:
            plant(mutant, spec_dir, Path(scratch))


def load_mutants(spec_dir: Path) -> list[Mutant]:
    """Every spec/mutants/*.patch, in name order, each checked to apply."""
    mutants = read_mutants(spec_dir)
    check_apply(mutants, spec_dir)
    return mutants


def rebase_all(spec_dir: Path, names: Iterable[str]) -> list[str]:
    """Rebase the named mutants (all by default) onto the spec as it is, rewriting the patches
    that moved; returns their names. MutantError if one cannot be rebased or then applied."""
    chosen = select_mutants(read_mutants(spec_dir), names)
    rebased = [(m, rebase(m, spec_dir)) for m in chosen]
    moved = []
    for m, text in rebased:
        if text != m.path.read_text():
            m.path.write_text(text)
            moved.append(m.name)
    check_apply((parse_patch(m.name, text, m.path) for m, text in rebased), spec_dir)
    return moved


def short_name(mutant: Mutant) -> str:
    """The name without its number: `03_read_repair_skipped` -> `read_repair_skipped`."""
    return re.sub(r"^\d+_", "", mutant.name)


def select_mutants(mutants: Sequence[Mutant], names: Iterable[str]) -> list[Mutant]:
    """The named mutants (by file stem, with or without its number), or all."""
    wanted = list(names)
    if not wanted:
        return list(mutants)
    chosen: list[Mutant] = []
    for name in wanted:
        key = Path(name).stem
        hits = [m for m in mutants if key in (m.name, short_name(m))]
        if not hits:
            known = ", ".join(short_name(m) for m in mutants)
            raise MutantError(f"unknown mutant {name!r} (known: {known})")
        chosen += hits
    return list(dict.fromkeys(chosen))


@dataclass(frozen=True)
class Outcome:
    """One model run on one mutant."""

    model: Model
    result: TlcResult
    properties: tuple[str, ...] = ()
    """The model's PROPERTY names, to tell which a temporal violation may be."""

    @property
    def broken(self) -> bool:
        """TLC could not judge the mutant: a parse error or a timeout."""
        return self.result.verdict is Verdict.ERROR

    @property
    def killed(self) -> bool:
        return not self.broken and not self.model.matches(self.result)

    def cell(self) -> str:
        """What the matrix shows: the property that killed, `survived`, or the error."""
        if self.broken:
            return self.result.describe()
        if not self.killed:
            return "survived"
        if self.result.verdict in (Verdict.INVARIANT, Verdict.PROPERTY):
            # TLC does not name the temporal property a liveness counterexample breaks.
            return self.result.violated or " or ".join(self.properties) or "a property"
        if self.result.verdict is Verdict.PASS:
            return f"passes (no {self.model.violates})"
        return str(self.result.verdict)


@dataclass
class MutantReport:
    """Every model run on one mutant, in the order they ran."""

    mutant: Mutant
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def killers(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.killed]

    @property
    def broken(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.broken]

    @property
    def survived(self) -> bool:
        return not self.killers and not self.broken

    @property
    def seconds(self) -> float:
        return sum(o.result.seconds or 0.0 for o in self.outcomes)


def order_models(mutant: Mutant, models: Sequence[Model]) -> list[Model]:
    """The mutant's `first` models, then the positive models, then the rest."""
    by_name = {m.name: m for m in models}
    first = [by_name[n] for n in mutant.first if n in by_name]
    rest = [m for m in models if m not in first]
    return first + [m for m in rest if m.expect_pass] + [m for m in rest if not m.expect_pass]


Runner = Callable[[Path, Path], TlcResult]


def run_mutant(
    mutant: Mutant,
    models: Sequence[Model],
    spec_dir: Path,
    run: Runner,
    *,
    full: bool = False,
    progress: Callable[[Mutant, Outcome], None] | None = None,
) -> MutantReport:
    """Run the models on the planted mutant, stopping at the first kill unless `full`.

    `run(module, cfg)` runs TLC (dynamo_ref.tla.tlc.run_tlc with its options).
    """
    report = MutantReport(mutant)
    with tempfile.TemporaryDirectory(prefix="dynamo-mutant-") as scratch:
        planted = plant(mutant, spec_dir, Path(scratch))
        for model in order_models(mutant, models):
            cfg = model.cfg(spec_dir)
            outcome = Outcome(
                model, run(planted / model.module, cfg), tuple(cfg_properties(cfg.read_text()))
            )
            report.outcomes.append(outcome)
            if progress is not None:
                progress(mutant, outcome)
            if outcome.broken or (outcome.killed and not full):
                break
    return report


def run_all(
    mutants: Sequence[Mutant],
    models: Sequence[Model],
    spec_dir: Path,
    run: Runner,
    *,
    jobs: int = 1,
    full: bool = False,
    progress: Callable[[Mutant, Outcome], None] | None = None,
) -> list[MutantReport]:
    """run_mutant for each mutant, `jobs` of them at a time; reports in mutant order."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(run_mutant, m, models, spec_dir, run, full=full, progress=progress)
            for m in mutants
        ]
        return [f.result() for f in futures]


def matrix_rows(reports: Sequence[MutantReport], models: Sequence[Model]) -> list[list[str]]:
    """One row a mutant: its name, then per model its cell (`-`: not run)."""
    rows: list[list[str]] = []
    for report in reports:
        cells = {o.model.name: o.cell() for o in report.outcomes}
        rows.append([short_name(report.mutant), *(cells.get(m.name, "-") for m in models)])
    return rows


def markdown_matrix(reports: Sequence[MutantReport], models: Sequence[Model]) -> str:
    """The kill matrix as a Markdown table, killing cells in bold."""
    header = ["mutant", *(f"`{m.name}`" for m in models)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matrix_rows(reports, models):
        cells = [f"`{row[0]}`"]
        for cell in row[1:]:
            plain = cell in ("-", "survived") or cell.startswith("error")
            cells.append(cell if plain else f"**{cell}**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
