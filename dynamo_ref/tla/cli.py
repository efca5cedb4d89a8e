"""`dynamo-ref spec ...`: model checking and trace validation with TLC."""

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dynamo_ref.tla.models import ManifestError, Model, default_spec_dir, load_models
from dynamo_ref.tla.tlc import TlcResult, TlcSetupError, find_jar, find_java, run_tlc

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
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds allowed per model.")
@click.option("--spec-dir", type=SPEC_DIR, help="The spec directory (default: spec/).")
def check(
    *,
    names: tuple[str, ...],
    ci: bool,
    nightly: bool,
    out: Path | None,
    workers: int,
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
    for model in chosen:
        console.print(f"TLC {model.name} (expected {model.expected}) ...", highlight=False)
        result = run_tlc(
            directory / model.module, model.cfg(directory), workers=workers, timeout=timeout
        )
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
