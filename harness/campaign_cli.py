"""`dynamo-ref campaign`: run a fault campaign against a local cluster, print a verdict table,
write the report, and exit 0 valid, 1 invalid, 2 unknown (see `harness.campaign`).

    dynamo-ref campaign --nodes 5 --time 60 --nemesis partition,kill,pause --workload set-add \
        --mode dvv --quorum sloppy --net proxy --seed 0 --out DIR

One `--nemesis` is one combination of faults (comma-separated, `none` for no faults). With
`--matrix`, `--nemesis` may be repeated and the other options take comma lists (`--seed` also a
range, `1..5`); the campaign runs their product, the last option varying fastest. Without
`--matrix`, a list is refused rather than silently cut to its first value.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.campaign import (
    CampaignObserver,
    CampaignResult,
    RunOnce,
    RunSummary,
    expand_matrix,
    run_campaign,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CHOICES", "campaign_command", "make_campaign_command", "parse_axes"]

CHOICES: dict[str, tuple[str, ...]] = {
    "workload": ("register", "set-add", "counter"),
    "mode": ("vclock", "lww", "dvv"),
    "quorum": ("strict", "sloppy"),
    "net": ("proxy", "netns"),
    "target": ("dynamo", "etcd", "external"),
}
# Options that take comma lists with --matrix: option name -> (config field, parser).
LIST_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "workload": ("workload", str),
    "mode": ("mode", str),
    "quorum": ("quorum", str),
    "net": ("net", str),
    "nodes": ("nodes", int),
    "time": ("duration", float),
    "clients": ("clients", int),
    "keys": ("keys", int),
    "target": ("target", str),
    "seed": ("seed", int),
}

Loader = Callable[[], tuple[Callable[..., Any], RunOnce[Any]]]


def _split(option: str, text: str, parse: Callable[[str], object]) -> list[object]:
    values: list[object] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise click.BadParameter(f"empty item in {text!r}", param_hint=f"--{option}")
        if option == "seed" and ".." in item:
            lo, _, hi = item.partition("..")
            try:
                first, last = int(lo), int(hi)
            except ValueError:
                raise click.BadParameter(f"bad range {item!r}", param_hint="--seed") from None
            if last < first:
                raise click.BadParameter(f"empty range {item!r}", param_hint="--seed")
            values.extend(range(first, last + 1))
            continue
        if option in CHOICES and item not in CHOICES[option]:
            raise click.BadParameter(
                f"{item!r} is not one of {', '.join(CHOICES[option])}", param_hint=f"--{option}"
            )
        try:
            values.append(parse(item))
        except ValueError:
            raise click.BadParameter(f"bad value {item!r}", param_hint=f"--{option}") from None
    return values


def _nemesis(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts:
        raise click.BadParameter("empty nemesis", param_hint="--nemesis")
    if "none" in parts:
        if len(parts) > 1:
            raise click.BadParameter(f"'none' with other faults: {text!r}", param_hint="--nemesis")
        return ()
    return parts


def parse_axes(
    options: dict[str, str | None], nemeses: Sequence[str], *, matrix: bool
) -> tuple[dict[str, object], dict[str, list[object]]]:
    """(config fields with one value, axes with several), from the raw option texts. Without
    `matrix`, several values anywhere is a usage error."""
    single: dict[str, object] = {}
    axes: dict[str, list[object]] = {}
    combos = [_nemesis(n) for n in nemeses]
    if len(combos) == 1:
        single["nemesis"] = combos[0]
    else:
        axes["nemesis"] = list(combos)
    for option, (name, parse) in LIST_OPTIONS.items():
        text = options.get(option)
        if text is None:
            continue
        values = _split(option, text, parse)
        if len(values) == 1:
            single[name] = values[0]
        else:
            axes[name] = values
    if axes and not matrix:
        names = ", ".join(f"--{'time' if a == 'duration' else a}" for a in axes)
        raise click.UsageError(f"several values for {names}: pass --matrix to run their product")
    # Fields in the order the product should vary: nemesis outermost, seed innermost.
    order = ["nemesis", *(name for name, _ in LIST_OPTIONS.values())]
    return single, {a: axes[a] for a in order if a in axes}


def _default_loader() -> tuple[Callable[..., Any], RunOnce[Any]]:
    from harness.run import RunConfig, run_once

    return RunConfig, run_once


@dataclass
class _RichObserver(CampaignObserver):
    progress: Progress
    total: int
    name: str = ""

    def __post_init__(self) -> None:
        self.overall = self.progress.add_task("campaign", total=self.total)
        self.current = self.progress.add_task("", total=1.0)

    def run_started(self, index: int, total: int, name: str, config: Mapping[str, object]) -> None:
        self.name = f"[{index + 1}/{total}] {name}"
        self.progress.update(self.current, description=self.name, completed=0.0)

    def run_progress(self, phase: str, fraction: float) -> None:
        self.progress.update(
            self.current,
            description=f"{self.name}: {phase}",
            completed=min(max(fraction, 0.0), 1.0),
        )

    def run_finished(self, index: int, summary: RunSummary) -> None:
        self.progress.update(self.current, completed=1.0)
        self.progress.advance(self.overall)
        style = {"valid": "green", "invalid": "bold red"}.get(summary.verdict, "yellow")
        self.progress.console.print(f"{summary.name}: [{style}]{summary.verdict}[/{style}]")


def _labels(result: CampaignResult) -> list[str]:
    """Each run as the config values that differ between runs (its number for a single run;
    the full names are on the lines above the table and in the index)."""
    runs = result.runs
    fields = [k for k in (runs[0].config if runs else {}) if k != "out"]
    varying = [k for k in fields if len({repr(r.config.get(k)) for r in runs}) > 1]
    labels = []
    for i, r in enumerate(runs, 1):
        parts = [f"{k}={_text(r.config.get(k))}" for k in varying]
        labels.append(f"{i} " + " ".join(parts) if parts else str(i))
    return labels


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


def verdict_table(result: CampaignResult) -> Table:
    checks = list(dict.fromkeys(c for r in result.runs for c in r.checks))
    table = Table(title=f"campaign verdict: {result.verdict}")
    table.add_column("run", overflow="fold")
    for c in checks:
        table.add_column(c)
    table.add_column("verdict")
    table.add_column("run s", justify="right")
    table.add_column("check s", justify="right")
    styles = {"valid": "green", "invalid": "bold red", "unknown": "yellow"}
    for label, r in zip(_labels(result), result.runs, strict=True):
        cells = [label]
        for c in checks:
            v = r.checks[c].verdict if c in r.checks else ""
            cells.append(f"[{styles[v]}]{v}[/]" if v else "")
        cells.append(f"[{styles[r.verdict]}]{r.verdict}[/]" + (" (crashed)" if r.error else ""))
        cells.append(f"{r.timings['run']:.1f}" if "run" in r.timings else "")
        cells.append(f"{r.timings['check']:.1f}" if "check" in r.timings else "")
        table.add_row(*cells)
    return table


def make_campaign_command(loader: Loader = _default_loader) -> click.Command:
    """The click command; `loader` gives the config class and the runner (tests pass fakes)."""

    @click.command("campaign")
    @click.option("--nodes", default="5", show_default=True, help="Cluster size.")
    @click.option("--time", "time_", default="60", show_default=True, help="Seconds of load.")
    @click.option(
        "--nemesis",
        multiple=True,
        default=("partition",),
        show_default=True,
        help="Faults, comma-separated (partition, kill, pause, skew) or none; "
        "repeat with --matrix.",
    )
    @click.option(
        "--workload", default="set-add", show_default=True, help="register|set-add|counter"
    )
    @click.option(
        "--mode",
        default="dvv",
        show_default=True,
        help="dvv|vclock|lww (plain vclock loses concurrent writes through one coordinator)",
    )
    @click.option("--quorum", default="sloppy", show_default=True, help="strict|sloppy")
    @click.option("--net", default="proxy", show_default=True, help="proxy|netns (root)")
    @click.option("--seed", default="0", show_default=True, help="Seed; with --matrix 1,2 or 1..5")
    @click.option("--clients", default="10", show_default=True, help="Concurrent clients.")
    @click.option("--keys", default=None, help="Keys the workload spreads over.")
    @click.option("--target", default="dynamo", show_default=True, help="dynamo|etcd|external")
    @click.option(
        "--program",
        default=None,
        help="The external target's node command, e.g. 'python harness/examples/lin_kv_leader.py'.",
    )
    @click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("campaign-out"),
        show_default=True,
    )
    @click.option("--matrix", is_flag=True, help="Run the product of the comma lists.")
    def campaign(
        *,
        nodes: str,
        time_: str,
        nemesis: tuple[str, ...],
        workload: str,
        mode: str,
        quorum: str,
        net: str,
        seed: str,
        clients: str,
        keys: str | None,
        target: str,
        program: str | None,
        out: Path,
        matrix: bool,
    ) -> None:
        """Run a fault campaign; exit 0 valid, 1 invalid, 2 unknown."""
        if len(nemesis) > 1 and not matrix:
            raise click.UsageError("--nemesis given several times: pass --matrix")
        texts: dict[str, str | None] = {
            "nodes": nodes,
            "time": time_,
            "workload": workload,
            "mode": mode,
            "quorum": quorum,
            "net": net,
            "seed": seed,
            "clients": clients,
            "keys": keys,
            "target": target,
        }
        single, axes = parse_axes(texts, nemesis, matrix=matrix)
        if program:
            single["program"] = tuple(shlex.split(program))
        config_cls, run_once = loader()
        try:
            base: DataclassInstance = config_cls(out=out, **single)
            configs = expand_matrix(base, axes) if axes else [base]
        except (TypeError, ValueError) as exc:
            raise click.UsageError(f"bad configuration: {exc}") from None
        console = Console()
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            observer = _RichObserver(progress, len(configs))
            result = asyncio.run(
                run_campaign(
                    configs, out, run_once, observer=observer, title=f"Campaign {out.name}"
                )
            )
        console.print(verdict_table(result))
        for r in result.runs:
            if r.error:
                last = r.error.strip().splitlines()[-1]
                click.echo(f"{r.name} crashed: {last}")
        code = result.exit_code
        if code == 2:
            click.echo("some verdicts are unknown: exit 2 (unknown is not a pass; see the pages)")
        click.echo(f"summary: {result.summary}")
        click.echo(f"report: {result.report()}")
        raise SystemExit(code)

    return campaign


campaign_command = make_campaign_command()
