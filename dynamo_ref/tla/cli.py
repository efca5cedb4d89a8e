"""`dynamo-ref spec ...`: model checking and trace validation with TLC."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.table import Table

from dynamo_ref.tla.models import ManifestError, Model, default_spec_dir, load_models
from dynamo_ref.tla.tlc import TlcResult, TlcSetupError, find_jar, find_java, run_tlc
from dynamo_ref.tla.trace import (
    PROMISES,
    TraceConstants,
    TraceFormatError,
    promises,
    read_trace,
    validate,
)

SPEC_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.group()
def spec() -> None:
    """Check the TLA+ specification with TLC."""


def _load(spec_dir: Path | None) -> tuple[Path, list[Model]]:
    directory = spec_dir or default_spec_dir()
    try:
        return directory, load_models(directory)
    except ManifestError as error:
        raise click.ClickException(str(error)) from None


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _select(models: list[Model], names: tuple[str, ...], ci: bool, nightly: bool) -> list[Model]:
    by_name = {m.name: m for m in models}
    chosen: list[Model] = []
    for name in names:
        key = Path(name).stem if name.endswith(".cfg") else name
        if key not in by_name:
            known = ", ".join(by_name)
            raise click.BadParameter(f"unknown model {name!r} (known: {known})", param_hint="MODEL")
        chosen.append(by_name[key])
    if ci or (not names and not nightly):
        chosen += [m for m in models if m.suite == "ci"]
    if nightly:
        chosen += [m for m in models if m.suite == "nightly"]
    return list(dict.fromkeys(chosen))


def _write_trace(out: Path, model: Model, result: TlcResult) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model.name}.txt"
    header = (
        f"model: {model.name} ({model.cfg(Path('spec')).as_posix()})\n"
        f"expected: {model.expected}\n"
        f"verdict: {result.describe()}\n\n"
    )
    path.write_text(header + result.trace)
    return path


@spec.command("list")
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
def list_models(spec_dir: Path | None) -> None:
    """List the models and the outcome each must reach."""
    _, models = _load(spec_dir)
    table = Table("model", "suite", "expected")
    for m in models:
        table.add_row(m.name, m.suite, m.expected)
    Console().print(table)


@spec.command("check")
@click.argument("names", metavar="[MODEL]...", nargs=-1)
@click.option("--ci", is_flag=True, help="Run every CI model (the default with no MODEL).")
@click.option("--nightly", is_flag=True, help="Run the nightly models too.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write counterexample traces (default: spec/counterexamples/).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="TLC's worker threads for each model.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Models checked at once. TLC gains about 1.5x from a second worker on two cores, two "
    "models at once with one worker each about 2x: `--jobs 2 --workers 1` there.",
)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed per model.")
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
def check(
    *,
    names: tuple[str, ...],
    ci: bool,
    nightly: bool,
    out: Path | None,
    workers: int,
    jobs: int,
    timeout: float | None,
    spec_dir: Path | None,
) -> None:
    """Run TLC on models and compare each verdict with what it must be.

    Exits non-zero when any model passes that must fail, fails that must pass,
    fails on another property, or cannot be checked.
    """
    directory, models = _load(spec_dir)
    chosen = _select(models, names, ci, nightly)
    try:
        find_java()
        find_jar()
    except TlcSetupError as error:
        raise click.ClickException(str(error)) from None
    traces = out or directory / "counterexamples"
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    table = Table("model", "expected", "verdict", "generated", "distinct", "depth", "seconds")
    surprises: list[str] = []
    written: list[Path] = []

    def one(model: Model) -> TlcResult:
        console.print(f"TLC {model.name} (expected {model.expected}) ...", highlight=False)
        return run_tlc(
            directory / model.module,
            model.cfg(directory),
            workers=workers,
            timeout=timeout,
            simulate=model.simulate,
        )

    # Each TLC is a process of its own: threads only wait for them. Results keep the
    # manifest's order whatever order the models end in.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, chosen))
    for model, result in zip(chosen, results, strict=True):
        ok = model.matches(result)
        if not ok:
            surprises.append(model.name)
        if result.trace:
            written.append(_write_trace(traces, model, result))
        else:
            (traces / f"{model.name}.txt").unlink(missing_ok=True)
        style = "green" if ok else "bold red"
        table.add_row(
            model.name,
            model.expected,
            f"[{style}]{result.describe()}[/]",
            _count(result.generated),
            _count(result.distinct),
            _count(result.depth),
            "-" if result.seconds is None else f"{result.seconds:.1f}",
        )
        if result.message and not ok:
            console.print(result.message, markup=False, highlight=False)
    console.print(table)
    for path in written:
        console.print(f"counterexample trace: {path}", highlight=False)
    if surprises:
        raise click.ClickException(f"unexpected outcome: {', '.join(surprises)}")
    console.print(f"all {len(chosen)} models reached their expected outcome", highlight=False)


TRACE_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.most_common()) or "none"


@spec.command("validate-trace")
@click.argument("trace", type=TRACE_FILE)
@click.option(
    "--constants",
    "constants_file",
    type=TRACE_FILE,
    help='JSON of the constants ({"N", "R", "W", "Sloppy", "LWW", "Pref"}), for a trace '
    "without a constants line.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the generated TraceData.tla, the cfg and TLC's output in this directory.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Reject the node's steps that Dynamo.tla lacks (GetTimeout, late read repair, "
    "anti-entropy in halves) instead of checking them against DynamoTrace.tla's extensions.",
)
@click.option(
    "--promise",
    "extra_promises",
    multiple=True,
    type=click.Choice(list(PROMISES)),
    help="Also check this property of the spec at every line (repeatable). By default the "
    "ones the run's mode keeps are: SiblingsAntichain, AckedWritesSurvive (not with LWW), "
    "StrictQuorumRead (strict, R + W > N).",
)
@click.option(
    "--workers", type=click.IntRange(1), default=1, show_default=True, help="TLC's worker threads."
)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed for TLC.")
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
@click.pass_context
def validate_trace(
    ctx: click.Context,
    *,
    trace: Path,
    constants_file: Path | None,
    keep: Path | None,
    strict: bool,
    extra_promises: tuple[str, ...],
    workers: int,
    timeout: float | None,
    spec_dir: Path | None,
) -> None:
    """Check with TLC that a recorded TRACE is a behaviour of spec/Dynamo.tla that keeps what
    the spec promises clients at every step.

    Exits 0 when it is (accepted), 1 when a step is not, or breaks a promise (the step, its
    action and why are printed), 2 when the trace cannot be read or TLC cannot judge it.
    """
    # Whole lines, wrapped or not by the terminal: tools and tests grep them.
    console = Console(highlight=False, soft_wrap=True)
    try:
        find_java()
        find_jar()
        constants = None
        if constants_file is not None:
            constants = msgspec.json.decode(constants_file.read_bytes(), type=TraceConstants)
        text = trace.read_text()
        promised = None
        if extra_promises:
            header, _ = read_trace(text)
            base = constants or header
            promised = [*(promises(base) if base is not None else ()), *extra_promises]
        verdict = validate(
            text,
            promised=promised,
            spec_dir=spec_dir or default_spec_dir(),
            constants=constants,
            keep=keep,
            extensions=not strict,
            workers=workers,
            timeout=timeout,
        )
    except (TlcSetupError, TraceFormatError, msgspec.MsgspecError, OSError) as error:
        click.echo(f"error: {error}", err=True)
        ctx.exit(2)
    console.print(f"trace {trace}: {verdict.steps} steps ({_counts(verdict.actions)})")
    style = "green" if verdict.accepted else "bold red"
    console.print(f"[{style}]{verdict.describe()}[/]")
    for detail in verdict.details:
        console.print(f"  {detail}", markup=False)
    if verdict.promised:
        console.print("promises checked at every step: " + ", ".join(verdict.promised))
    console.print(f"TLC: {verdict.figures()}")
    if verdict.extensions:
        console.print(
            "node steps beyond Dynamo.tla, checked against DynamoTrace.tla's extensions: "
            + _counts(verdict.extensions)
        )
    if keep is not None:
        (keep / "tlc-output.txt").write_text(verdict.result.output)
        console.print(f"kept in {keep}")
    if verdict.error:
        ctx.exit(2)
    ctx.exit(0 if verdict.accepted else 1)


@spec.command("merge-traces")
@click.argument("traces", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merged behaviour here (JSON lines, one step each, with Lamport clocks).",
)
@click.pass_context
def merge_traces(ctx: click.Context, traces: tuple[Path, ...], out: Path | None) -> None:
    """Merge per-process traces (files, or directories of *.jsonl) into one behaviour.

    Each received message is paired with its send, and the steps ordered by happens-before.
    Exit 0 when they merge, 2 on bad input (named by file and line).
    """
    from dynamo_ref.tla.merge import TraceInputError, merge_files, write_merged

    try:
        result = merge_files(traces)
    except TraceInputError as error:
        click.echo(f"error: {error}", err=True)
        ctx.exit(2)
    click.echo(result.summary())
    if out is not None:
        write_merged(result, out)
        click.echo(f"merged behaviour in {out}")


@spec.command("validate-run")
@click.argument("traces", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the generated TraceData.tla and the spec files TLC ran on in this directory.",
)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed for TLC.")
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
@click.option(
    "--promise",
    "extra_promises",
    multiple=True,
    type=click.Choice(list(PROMISES)),
    help="Also check this property of the spec after every step (repeatable). By default the "
    "ones the run's mode keeps: SiblingsAntichain, AckedWritesSurvive (not with LWW), "
    "CausalWritesSurvive (with DVV) and DeletesNotUndone (when the run deletes).",
)
@click.pass_context
def validate_run_command(
    ctx: click.Context,
    *,
    traces: tuple[Path, ...],
    keep: Path | None,
    timeout: float | None,
    spec_dir: Path | None,
    extra_promises: tuple[str, ...],
) -> None:
    """Check with TLC that a real run, its per-process traces (files, or directories of them),
    is a behaviour of spec/Dynamo.tla.

    Exits 0 when it is, 1 when an action is not (the action, its node and the trace line are
    printed), 2 when the traces cannot be read, do not merge, or do what the validator does
    not cover (ring changes: joins, leaves, transfers).
    """
    from dynamo_ref.tla.merge import TraceInputError
    from dynamo_ref.tla.process_trace import validate_run

    try:
        find_java()
        find_jar()
        verdict = validate_run(
            list(traces),
            spec_dir=spec_dir or default_spec_dir(),
            keep=keep,
            timeout=timeout,
            also=extra_promises,
        )
    except (TlcSetupError, TraceFormatError, TraceInputError, OSError) as error:
        click.echo(f"error: {error}", err=True)
        ctx.exit(2)
    click.echo(verdict.describe())
    click.echo(f"actions: {_counts(verdict.actions)}")
    if verdict.failed is None and not verdict.accepted:
        ctx.exit(2)
    ctx.exit(0 if verdict.accepted else 1)


def _rebase_mutants(directory: Path, names: tuple[str, ...]) -> None:
    from dynamo_ref.tla import mutants as mut

    try:
        for name in mut.rebase_all(directory, names):
            click.echo(f"rebased {name}")
    except mut.MutantError as error:
        raise click.ClickException(str(error)) from None


@spec.command("mutants")
@click.argument("names", metavar="[MUTANT]...", nargs=-1)
@click.option(
    "--model",
    "model_names",
    multiple=True,
    help="Run this model (repeatable; default: every CI model).",
)
@click.option("--full", is_flag=True, help="Run every model on every mutant, not just to a kill.")
@click.option(
    "--workers",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="TLC's worker threads for each model.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Mutants checked at once; jobs x workers is at most 2.",
)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed per model.")
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the kill matrix to this file as a Markdown table.",
)
@click.option(
    "--rebase",
    is_flag=True,
    help="After an edit of the spec, move each patch's hunks to where their lines now are "
    "(each must be found exactly once), rewrite the patches and run nothing.",
)
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
def mutants(
    *,
    rebase: bool,
    names: tuple[str, ...],
    model_names: tuple[str, ...],
    full: bool,
    workers: int,
    jobs: int,
    timeout: float | None,
    markdown: Path | None,
    spec_dir: Path | None,
) -> None:
    """Plant each bug of spec/mutants/ in Dynamo.tla and run the models on it.

    Prints the kill matrix: per mutant and model, the property that killed it, `survived`, or
    `-` when not run (a mutant's models stop at the first kill unless --full). Exits non-zero
    when a patch no longer applies, TLC cannot run a mutant, or a mutant survives every model.
    """
    from dynamo_ref.tla import mutants as mut

    if jobs * workers > 2:
        raise click.BadParameter("jobs x workers must be at most 2", param_hint="--jobs")
    directory, models = _load(spec_dir)
    if rebase:
        _rebase_mutants(directory, names)
        return
    try:
        chosen = mut.select_mutants(mut.load_mutants(directory), names)
    except mut.MutantError as error:
        raise click.ClickException(str(error)) from None
    run_models = _select(models, model_names, ci=not model_names, nightly=False)
    if not model_names:
        # A random simulation's verdict depends on its time and seed: kills are the searches'.
        run_models = [m for m in run_models if m.simulate is None]
    try:
        find_java()
        find_jar()
    except TlcSetupError as error:
        raise click.ClickException(str(error)) from None
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(width=200, highlight=False)

    def progress(mutant: mut.Mutant, outcome: mut.Outcome) -> None:
        seconds = outcome.result.seconds or 0.0
        console.print(
            f"{mut.short_name(mutant)} x {outcome.model.name}: {outcome.cell()} ({seconds:.1f} s)",
            markup=False,
        )

    def run(module: Path, cfg: Path) -> TlcResult:
        return run_tlc(module, cfg, workers=workers, timeout=timeout)

    reports = mut.run_all(
        chosen, run_models, directory, run, jobs=jobs, full=full, progress=progress
    )
    shown = [m for m in run_models if any(o.model == m for r in reports for o in r.outcomes)]
    table = Table("mutant", *(m.name for m in shown), title="kill matrix")
    for row in mut.matrix_rows(reports, shown):
        styled = [row[0]]
        for cell in row[1:]:
            if cell == "survived":
                styled.append("[yellow]survived[/]")
            elif cell == "-":
                styled.append("-")
            elif cell.startswith("error"):
                styled.append(f"[bold red]{cell}[/]")
            else:
                styled.append(f"[green]{cell}[/]")
        table.add_row(*styled)
    console.print(table)
    if markdown is not None:
        markdown.write_text(mut.markdown_matrix(reports, shown))
        console.print(f"kill matrix in {markdown}")
    total = sum(r.seconds for r in reports)
    broken = [r.mutant.name for r in reports if r.broken]
    survivors = [r.mutant.name for r in reports if r.survived]
    for report in reports:
        for outcome in report.broken:
            console.print(
                f"{report.mutant.name} x {outcome.model.name}: {outcome.result.message}",
                markup=False,
            )
    console.print(f"{len(reports)} mutants, {total:.0f} s of TLC", markup=False)
    if broken or survivors:
        parts = []
        if survivors:
            parts.append(f"survived every model: {', '.join(survivors)}")
        if broken:
            parts.append(f"TLC could not run: {', '.join(broken)}")
        raise click.ClickException("; ".join(parts))
    console.print(f"all {len(reports)} mutants killed", markup=False)
