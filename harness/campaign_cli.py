"""`dynamo-ref campaign`: run a fault campaign against a local cluster, print a verdict table and
the failing checkers' explanations, write the report, and exit 0 valid, 1 invalid, 2 unknown
(see `harness.campaign`).

    dynamo-ref campaign --nodes 5 --time 60 --nemesis partition,kill,pause --workload set-add \
        --mode dvv --quorum sloppy --net proxy --seed 0 --out DIR

One `--nemesis` is one combination of faults (comma-separated, `none` for no faults). With
`--matrix`, `--nemesis` may be repeated and the other options take comma lists (`--seed` also a
range, `1..5`); the campaign runs their product, the last option varying fastest. Without
`--matrix`, a list is refused rather than silently cut to its first value.

Every option is checked, for every run of the matrix, before anything starts. Jepsen's and
Maelstrom's names work where they mean the same: `--time-limit`, `--node-count`,
`--concurrency` (also `2n`: twice the node count), `--rate` (operations a second, all clients
together), `--test-count` (runs of each configuration, seeds counting up), `-w lin-kv` and
`--bin PROG` (an external node program, as `maelstrom test -w lin-kv --bin PROG`).

Each campaign writes into a timestamped folder of `--out`, which `--out/latest` points at;
`--out/index.html` lists them all, newest first, and `dynamo-ref serve DIR` serves them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich and the campaign load when a campaign runs, not when the CLI starts
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from harness.campaign import CampaignConfig, CampaignObserver, CampaignResult, RunOnce
    from harness.recorder import LiveStatus

from harness.targets.dynamo_settings import MODES, QUORUMS

__all__ = [
    "CHOICES",
    "WORKLOAD_ALIASES",
    "campaign_command",
    "make_campaign_command",
    "parse_axes",
]

CHOICES: dict[str, tuple[str, ...]] = {
    "workload": ("register", "set-add", "counter"),
    "mode": MODES,
    "quorum": QUORUMS,
    "net": ("proxy", "netns"),
    "target": ("dynamo", "etcd", "external"),
}
# Maelstrom's workload names for ours.
WORKLOAD_ALIASES = {"lin-kv": "register"}
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
_OPTION_OF = {field: option for option, (field, _) in LIST_OPTIONS.items()}
_EXPLAINED_LINES = 30  # of each failing checker's explanation, on the console

Loader = Callable[[], tuple[Callable[..., Any], "RunOnce[Any]"]]


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
        if option == "workload":
            item = WORKLOAD_ALIASES.get(item, item)
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
        names = ", ".join(f"--{_OPTION_OF.get(a, a)}" for a in axes)
        raise click.UsageError(f"several values for {names}: pass --matrix to run their product")
    # Fields in the order the product should vary: nemesis outermost, seed innermost.
    order = ["nemesis", *(name for name, _ in LIST_OPTIONS.values())]
    return single, {a: axes[a] for a in order if a in axes}


def _default_loader() -> tuple[Callable[..., Any], RunOnce[Any]]:
    from harness.run import RunConfig, run_once

    return RunConfig, run_once


def _per_node(text: str | None) -> int | None:
    """`2n` (Maelstrom's `--concurrency 2n`): clients per node; None for a plain count."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d*)\s*n\s*", text)
    if match is None:
        return None
    return int(match.group(1) or 1)


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


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


def verdict_table(result: CampaignResult) -> Table:
    from rich.table import Table

    checks = list(dict.fromkeys(c for r in result.runs for c in r.checks))
    table = Table(title=f"campaign verdict: {result.verdict}")
    table.add_column("run", overflow="fold")
    table.add_column("verdict")
    for c in checks:
        table.add_column(c)
    table.add_column("run s", justify="right")
    table.add_column("check s", justify="right")
    styles = {"valid": "green", "invalid": "bold red", "unknown": "yellow"}
    for label, r in zip(_labels(result), result.runs, strict=True):
        cells = [label]
        cells.append(f"[{styles[r.verdict]}]{r.verdict}[/]" + (" (crashed)" if r.error else ""))
        for c in checks:
            v = r.checks[c].verdict if c in r.checks else ""
            cells.append(f"[{styles[v]}]{v}[/]" if v else "")
        cells.append(f"{r.timings['run']:.1f}" if "run" in r.timings else "")
        cells.append(f"{r.timings['check']:.1f}" if "check" in r.timings else "")
        table.add_row(*cells)
    return table


def explanations(result: CampaignResult, *, lines: int = _EXPLAINED_LINES) -> list[str]:
    """What each failing checker of each run said (as `dynamo-ref check` prints it), cut to
    `lines` lines each; the run's page has the rest."""
    out: list[str] = []
    for r in result.runs:
        for name, check in r.checks.items():
            if check.verdict == "valid":
                continue
            text = check.explanation.rstrip().splitlines()
            shown = text[:lines]
            if len(text) > lines:
                shown.append(f"... ({len(text) - lines} more lines on the run's page)")
            out.append(f"{r.name}: {name} is {check.verdict}:")
            out.extend(f"  {line}" for line in shown)
    return out


class _Display:
    """The live progress of a campaign: a bar per run, and while its load runs the elapsed
    time, operations, operations per second and the fault in force. Off a terminal (CI logs),
    a line per phase and one about every 10 s while the load runs."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.console: Console = progress.console
        self.overall = progress.add_task("campaign", total=total)
        self.current = progress.add_task("", total=1.0)
        self.name = ""
        self.phase = ""
        self.printed = 0.0

    def started(self, index: int, total: int, name: str) -> None:
        self.name = f"[{index + 1}/{total}] {name}"
        self.phase = ""
        self.progress.update(self.current, description=self.name, completed=0.0)

    def step(self, phase: str, fraction: float, status: LiveStatus | None) -> None:
        text = "" if status is None else status.describe()
        self.progress.update(
            self.current,
            description=f"{self.name}: {phase}" + (f"\n{text}" if text else ""),
            completed=min(max(fraction, 0.0), 1.0),
        )
        if self.console.is_terminal:
            return
        now = time.monotonic()
        line = f"{self.name}: {phase}" + (f"  {text}" if text else "")
        if phase != self.phase:
            self.console.print(line)
            self.phase, self.printed = phase, now if text else -math.inf
        elif text and now - self.printed >= 10.0:  # the first status at once, then every 10 s
            self.console.print(line)
            self.printed = now

    def finished(self, verdict: str, name: str) -> None:
        self.progress.update(self.current, completed=1.0)
        self.progress.advance(self.overall)
        style = {"valid": "green", "invalid": "bold red"}.get(verdict, "yellow")
        self.console.print(f"{name}: [{style}]{verdict}[/{style}]")


def _observer(display: _Display) -> CampaignObserver:
    from harness.campaign import CampaignObserver, RunSummary

    class Observer(CampaignObserver):
        def run_started(
            self, index: int, total: int, name: str, config: Mapping[str, object]
        ) -> None:
            display.started(index, total, name)

        def run_progress(
            self, phase: str, fraction: float, status: LiveStatus | None = None, /
        ) -> None:
            display.step(phase, fraction, status)

        def run_finished(self, index: int, summary: RunSummary) -> None:
            display.finished(summary.verdict, summary.name)

    return Observer()


def _configs(
    config_cls: Callable[..., Any],
    out: Path,
    single: dict[str, object],
    axes: dict[str, list[object]],
    *,
    workload_given: bool,
    per_node: int | None,
    rate: float | None,
    validate: bool | None = None,
) -> list[CampaignConfig]:
    """Every run's config, with the defaults that depend on other settings filled in (trace
    validation, unless ``validate`` says, where ``harness.run.validation_fits``)."""
    from harness.campaign import expand_matrix
    from harness.run import RunConfig, validation_fits

    try:
        base = config_cls(out=out, **single)
        configs: list[CampaignConfig] = expand_matrix(base, axes) if axes else [base]
    except (TypeError, ValueError) as exc:
        raise click.UsageError(f"bad configuration: {exc}") from None
    done = []
    for cfg in configs:
        changes: dict[str, object] = {}
        target = getattr(cfg, "target", "dynamo")
        if not workload_given and target in ("etcd", "external"):
            changes["workload"] = "register"  # what those targets store (Maelstrom's lin-kv)
        if per_node is not None:
            changes["clients"] = per_node * getattr(cfg, "nodes", 1)
        clients = changes.get("clients", getattr(cfg, "clients", 1))
        if rate is not None and isinstance(clients, int) and clients > 0:
            # The runner's rate is per client; a bad one is left as given for its message.
            changes["rate"] = rate / clients if rate > 0 else rate
        run = dataclasses.replace(cfg, **changes) if changes else cfg
        if validate is None and isinstance(run, RunConfig) and validation_fits(run):
            run = dataclasses.replace(run, validate_trace=True)
        done.append(run)
    return done


def _validate(configs: Sequence[CampaignConfig], given: Mapping[str, str | None]) -> None:
    """Every config's problems, and options given that apply to none of the runs (a version
    mode for an external program, say): refused, not silently ignored."""
    problems = list(dict.fromkeys(p for cfg in configs for p in cfg.problems()))
    for name, text in given.items():
        if text is not None and not any(name in cfg.settings() for cfg in configs):
            targets = sorted({str(getattr(cfg, "target", "?")) for cfg in configs})
            problems.append(f"--{name} does not apply to the {' or '.join(targets)} target")
    if problems:
        raise click.UsageError(
            "the campaign cannot run:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def make_campaign_command(loader: Loader = _default_loader) -> click.Command:
    """The click command; `loader` gives the config class and the runner (tests pass fakes)."""

    @click.command("campaign")
    @click.option(
        "--nodes",
        "--node-count",
        "nodes",
        default="5",
        show_default=True,
        help="Cluster size (Jepsen and Maelstrom: --node-count).",
    )
    @click.option(
        "--time",
        "--time-limit",
        "time_",
        default="60",
        show_default=True,
        help="Seconds of load under the nemesis (Jepsen and Maelstrom: --time-limit).",
    )
    @click.option(
        "--nemesis",
        multiple=True,
        default=("partition",),
        show_default=True,
        help="Faults, comma-separated (partition, kill, pause, skew) or none; "
        "repeat with --matrix.",
    )
    @click.option(
        "--workload",
        "-w",
        default=None,
        help="register (Maelstrom's lin-kv), set-add or counter. Default: set-add against "
        "dynamo-ref, register against etcd and external programs.",
    )
    @click.option(
        "--mode",
        default=None,
        help="dynamo-ref's version mode: dvv (the default), vclock or lww (plain vclock loses "
        "concurrent writes through one coordinator).",
    )
    @click.option(
        "--quorum",
        default=None,
        help="dynamo-ref's quorum: sloppy (hinted handoff, the default) or strict.",
    )
    @click.option(
        "--net",
        default=None,
        help="How partitions cut links: proxy (a TCP proxy per link, the default) or netns "
        "(namespaces and iptables, root). An external program's links go through the harness.",
    )
    @click.option("--seed", default="0", show_default=True, help="Seed; with --matrix 1,2 or 1..5.")
    @click.option(
        "--clients",
        "--concurrency",
        "clients",
        default="10",
        show_default=True,
        help="Concurrent clients; Kn is K per node, as Maelstrom's --concurrency 2n.",
    )
    @click.option(
        "--keys",
        default=None,
        help="Keys the workload spreads over (default: the runner's, 40 for dynamo-ref).",
    )
    @click.option(
        "--rate",
        type=float,
        default=None,
        help="Operations a second, all clients together (Jepsen, Maelstrom). Default: as fast "
        "as each client can.",
    )
    @click.option(
        "--test-count",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Runs of each configuration, with seeds counting up from --seed (Jepsen).",
    )
    @click.option(
        "--target",
        default=None,
        help="dynamo (dynamo-ref nodes), etcd, or external (a program speaking the Maelstrom "
        "protocol). Default: external with --program or --bin, else dynamo.",
    )
    @click.option(
        "--program",
        "--bin",
        "program",
        default=None,
        help="The external target's node command, e.g. 'python harness/examples/"
        "lin_kv_leader.py' (Maelstrom: --bin).",
    )
    @click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("campaign-out"),
        show_default=True,
        help="Where campaigns go: each in a timestamped folder, OUT/latest the newest, "
        "OUT/index.html all of them.",
    )
    @click.option("--matrix", is_flag=True, help="Run the product of the comma lists.")
    @click.option(
        "--hosts",
        help="Run the nodes (dynamo-ref, etcd or --program) on these hosts over SSH, one each "
        "(comma-separated [USER@]HOST[:SSHPORT]); faults act on the hosts (iptables, signals "
        "by PID).",
    )
    @click.option("--ssh-user", help="With --hosts: the SSH user (default: yours).")
    @click.option(
        "--ssh-key",
        "ssh_keys",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="With --hosts: a private key (repeatable; default: ~/.ssh/id_* and an agent).",
    )
    @click.option(
        "--known-hosts",
        type=click.Path(exists=True, dir_okay=False),
        help="With --hosts: the hosts' keys (default: ~/.ssh/known_hosts).",
    )
    @click.option(
        "--remote-dir",
        help="With --hosts: the directory on each host (default: dynamo-ref in the SSH "
        "user's home; {host} stands for the host's address).",
    )
    @click.option("--remote-python", help="With --hosts: the hosts' Python 3.11+ (python3).")
    @click.option(
        "--remote-venv", help="With --hosts: an environment there with dynamo-ref installed."
    )
    @click.option(
        "--remote-etcd", help="With --hosts and --target etcd: the hosts' etcd binary (etcd)."
    )
    @click.option("--sudo", is_flag=True, help="With --hosts: iptables through sudo -n.")
    @click.option(
        "--junit",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write a JUnit XML file: a test case per run and per checker of each run "
        "(invalid: a failure; unknown or crashed: an error).",
    )
    @click.option(
        "--validate-trace/--no-validate-trace",
        default=None,
        help="The nodes log their steps and TLC checks the run against spec/Dynamo.tla (the "
        "spec checker). Default: on for dynamo-target runs on this machine at a --rate that "
        "makes at most 2,000 operations, off otherwise.",
    )
    def campaign(
        *,
        nodes: str,
        time_: str,
        nemesis: tuple[str, ...],
        workload: str | None,
        mode: str | None,
        quorum: str | None,
        net: str | None,
        seed: str,
        clients: str,
        keys: str | None,
        rate: float | None,
        test_count: int,
        target: str | None,
        program: str | None,
        out: Path,
        matrix: bool,
        hosts: str | None,
        ssh_user: str | None,
        ssh_keys: tuple[str, ...],
        known_hosts: str | None,
        remote_dir: str | None,
        remote_python: str | None,
        remote_venv: str | None,
        remote_etcd: str | None,
        sudo: bool,
        junit: Path | None,
        validate_trace: bool | None,
    ) -> None:
        """Run a fault campaign; exit 0 valid, 1 invalid, 2 unknown or bad options."""
        if len(nemesis) > 1 and not matrix:
            raise click.UsageError("--nemesis given several times: pass --matrix")
        per_node = _per_node(clients)
        texts: dict[str, str | None] = {
            "nodes": nodes,
            "time": time_,
            "workload": workload,
            "mode": mode,
            "quorum": quorum,
            "net": net,
            "seed": seed,
            "clients": None if per_node is not None else clients,
            "keys": keys,
            "target": target if target is not None else ("external" if program else None),
        }
        single, axes = parse_axes(texts, nemesis, matrix=matrix)
        if test_count > 1:
            if "seed" in axes:
                raise click.UsageError("--test-count counts seeds up from one --seed: give one")
            first = int(str(single.pop("seed", 0)))
            axes["seed"] = list(range(first, first + test_count))
        if program:
            single["program"] = tuple(shlex.split(program))
        if validate_trace is not None:
            single["validate_trace"] = validate_trace
        remote: dict[str, object] = {
            "ssh_user": ssh_user,
            "ssh_keys": tuple(ssh_keys) or None,
            "known_hosts": known_hosts,
            "remote_dir": remote_dir,
            "remote_python": remote_python,
            "remote_venv": remote_venv,
            "remote_etcd": remote_etcd,
            "sudo": sudo or None,
        }
        if hosts:
            names = tuple(h.strip() for h in hosts.split(",") if h.strip())
            single["hosts"] = names
            single["nodes"] = len(names)
            single.update({k: v for k, v in remote.items() if v is not None})
        elif any(v is not None for v in remote.values()):
            given = [k for k, v in remote.items() if v is not None]
            raise click.UsageError(f"--{given[0].replace('_', '-')} is for --hosts")
        config_cls, run_once = loader()
        configs = _configs(
            config_cls,
            out,
            single,
            axes,
            workload_given=workload is not None,
            per_node=per_node,
            rate=rate,
            validate=validate_trace,
        )
        _validate(configs, {"mode": mode, "quorum": quorum, "net": net})
        code = _run(configs, out, run_once, junit)
        raise SystemExit(code)

    return campaign


def _run(
    configs: Sequence[CampaignConfig], out: Path, run_once: RunOnce[Any], junit: Path | None = None
) -> int:
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from harness.campaign import new_campaign_dir, run_campaign, write_campaigns_index

    folder = new_campaign_dir(out)
    console = Console()
    # The description last: it takes the room left, and its second line is the live status.
    columns = (
        SpinnerColumn(),
        BarColumn(bar_width=20),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            observer = _observer(_Display(progress, len(configs)))
            result = asyncio.run(
                run_campaign(
                    configs, folder, run_once, observer=observer, title=f"Campaign {folder.name}"
                )
            )
    finally:
        write_campaigns_index(out)
    if junit is not None:
        write_campaign_junit(junit, result)
    console.print(verdict_table(result))
    for line in explanations(result):
        click.echo(line)
    for r in result.runs:
        if r.error:
            click.echo(f"{r.name} crashed: {_crash_message(r.error)}")
    code = result.exit_code
    if code == 2:
        click.echo("some verdicts are unknown: exit 2 (unknown is not a pass; see the pages)")
    click.echo(f"summary: {result.summary}")
    click.echo(f"report: {result.report()}")
    click.echo(f"all campaigns: {out / 'index.html'} (dynamo-ref serve {out})")
    return code


def _crash_message(error: str, lines: int = 15) -> str:
    """The exception at the end of a crash's traceback, with the lines after it (an external
    program's stderr, say), not just the last line."""
    text = error.strip().splitlines()
    frames = [i for i, line in enumerate(text) if line.startswith("  File ")]
    start = frames[-1] + 1 if frames else len(text) - 1
    while start < len(text) - 1 and text[start].startswith(" "):
        start += 1  # the frame's code line and markers
    shown = text[start : start + lines]
    more = len(text) - start - len(shown)
    return "\n".join(shown) + (f"\n  ({more} more lines in the run's page)" if more > 0 else "")


def write_campaign_junit(path: Path, result: CampaignResult) -> None:
    """One testsuite for the campaign: a testcase per run (its verdict, or its crash) and one
    per checker of each run, so CI's test view shows campaign verdicts. Invalid is a failure,
    unknown (a crash too) an error; each message names the run's report page."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name=f"dynamo-ref campaign {result.out.name}")
    counts = {"tests": 0, "failures": 0, "errors": 0}

    def case(classname: str, name: str, verdict: str, text: str, seconds: float) -> None:
        counts["tests"] += 1
        tc = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
        if verdict == "valid":
            return
        kind = "failure" if verdict == "invalid" else "error"
        counts[f"{kind}s"] += 1
        el = ET.SubElement(tc, kind, message=f"{verdict}: {text}"[:300], type=verdict)
        el.text = text

    for run in result.runs:
        page = f"\nreport: {run.report}" if run.report is not None else ""
        verdict_text = run.error or "; ".join(
            f"{name}: {r.verdict}" for name, r in run.checks.items()
        )
        seconds = sum(run.timings.values())
        case("campaign", run.name, run.verdict, f"{verdict_text}{page}", seconds)
        for name, r in run.checks.items():
            case(run.name, name, r.verdict, f"{r.explanation}{page}", r.elapsed)
    for k, v in counts.items():
        suite.set(k, str(v))
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


campaign_command = make_campaign_command()
