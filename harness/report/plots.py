"""The report's plots (matplotlib, Agg backend, never a display): latency of each operation over
time, one panel per operation type, colored by outcome; and throughput over time. Above each,
a fault strip draws every fault window in a row of its own, labelled with its family, so
overlapping faults stay apart; the panels are shaded too, each family in its colour and hatch.
Each plot is returned as PNG bytes so a page can embed it; `*_figure` gives the Figure."""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: a headless machine has no display

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from harness.checkers.causal import Fault
from harness.history import NO_TIME, Operation
from harness.report.timebase import Timebase

__all__ = [
    "FAULT_COLORS",
    "OUTCOME_COLORS",
    "Timebase",
    "latency_figure",
    "latency_png",
    "throughput_figure",
    "throughput_png",
]

OUTCOME_COLORS = {"ok": "#2e7d32", "fail": "#9e9e9e", "info": "#e59a3a"}
FAULT_COLORS = {
    "partition": "#d32f2f",
    "kill": "#6a1b9a",
    "pause": "#1565c0",
    "clock-skew": "#00838f",
}
_OTHER_FAULT = "#795548"
_HATCHES = {"partition": "//", "kill": "\\\\", "pause": "..", "clock-skew": "xx"}
_PANELS = 3  # operation types drawn in panels of their own; the rest share one


def _window(f: Fault, base: Timebase) -> tuple[float, float] | None:
    if f.start_time == NO_TIME:
        return None
    start = base.seconds(f.start_time)
    end = base.end if f.end_time is None or f.end_time == NO_TIME else base.seconds(f.end_time)
    return start, max(end, start + 1e-3)


def _shade(ax: Axes, faults: Sequence[Fault], base: Timebase) -> None:
    """A light band per fault window, with its family's hatch, so that overlapping windows
    still show each pattern."""
    for f in faults:
        span = _window(f, base)
        if span is None:
            continue
        color = FAULT_COLORS.get(f.name, _OTHER_FAULT)
        ax.axvspan(*span, color=color, alpha=0.12, lw=0)
        ax.axvspan(
            *span,
            facecolor="none",
            edgecolor=color,
            alpha=0.3,
            hatch=_HATCHES.get(f.name, "--"),
            lw=0,
        )


def _fault_strip(ax: Axes, faults: Sequence[Fault], base: Timebase) -> None:
    """One labelled row per fault family, a bar per window: overlapping faults side by side."""
    families = sorted({f.name for f in faults if _window(f, base) is not None})
    for row, family in enumerate(families):
        spans = [s for f in faults if f.name == family and (s := _window(f, base)) is not None]
        ax.broken_barh(
            [(start, end - start) for start, end in spans],
            (row + 0.15, 0.7),
            facecolors=FAULT_COLORS.get(family, _OTHER_FAULT),
        )
    ax.set_ylim(0, max(len(families), 1))
    ax.set_yticks([i + 0.5 for i in range(len(families))], families, fontsize=7)
    ax.tick_params(axis="x", labelbottom=False, length=0)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    if not families:
        ax.text(
            0.5,
            0.5,
            "no faults",
            ha="center",
            va="center",
            fontsize=7,
            color="#777",
            transform=ax.transAxes,
        )


def _whole_decades(ax: Axes, values: Sequence[float]) -> None:
    """A log y axis spanning whole decades around `values`, labels on decades only (a narrow
    range would otherwise get crowded minor labels)."""
    low, high = 1.0, 10.0
    if values:
        low = 10.0 ** math.floor(math.log10(min(values)))
        high = max(10.0 ** math.ceil(math.log10(max(values))), low * 10)
    ax.set_ylim(low, high)  # before the log scale, which would autoscale a single value
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())


def _axes(fig: Figure, panels: int, base: Timebase) -> tuple[Axes, list[Axes]]:
    """The fault strip above `panels` plot panels sharing its x axis."""
    grid = fig.add_gridspec(1 + panels, 1, height_ratios=[0.9] + [3.0] * panels, hspace=0.08)
    strip = fig.add_subplot(grid[0])
    axes = [fig.add_subplot(grid[i + 1], sharex=strip) for i in range(panels)]
    strip.set_xlim(0, max(base.end, 1e-3))
    for ax in axes[:-1]:
        ax.tick_params(axis="x", labelbottom=False)
    return strip, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def latency_figure(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    marked: Collection[int] = (),
) -> Figure:
    """One point per operation at its call time, its latency on a log scale, in one panel per
    operation type (the commonest few; the rest share a panel). An operation that never
    returned is drawn with the time left to the end of the run. Operations whose invoke index
    is in `marked` (those a checker's findings name) are circled in red."""
    base = base or Timebase.of(operations, faults)
    counts: dict[str, int] = {}
    for op in operations:
        counts[op.f] = counts.get(op.f, 0) + 1
    kinds = sorted(counts, key=lambda f: (-counts[f], f))
    shown = kinds[:_PANELS] if len(kinds) <= _PANELS else kinds[: _PANELS - 1]
    rest = [f for f in kinds if f not in shown]
    names = shown + (["other: " + ", ".join(rest)] if rest else [])
    panel_of = {f: (shown.index(f) if f in shown else len(shown)) for f in kinds}
    fig = plt.figure(figsize=(10, 4))
    strip, axes = _axes(fig, max(len(names), 1), base)
    _fault_strip(strip, faults, base)
    strip.set_title(
        "Latency of each operation by type and outcome; faults above, shaded below", fontsize=9
    )
    points: list[dict[str, tuple[list[float], list[float]]]] = [
        {s: ([], []) for s in OUTCOME_COLORS} for _ in axes
    ]
    flagged: list[tuple[list[float], list[float]]] = [([], []) for _ in axes]
    for op in operations:
        call = op.invoke.time
        if call == NO_TIME:
            continue
        ret = op.return_time
        end = base.end if ret is None or ret == NO_TIME else base.seconds(ret)
        latency_ms = max((end - base.seconds(call)) * 1e3, 1e-3)
        i = panel_of[op.f]
        xs, ys = points[i][op.status]
        xs.append(base.seconds(call))
        ys.append(latency_ms)
        if op.invoke.index in marked:
            flagged[i][0].append(base.seconds(call))
            flagged[i][1].append(latency_ms)
    for i, ax in enumerate(axes):
        _shade(ax, faults, base)
        for status, (xs, ys) in points[i].items():
            if xs:
                ax.scatter(
                    xs,
                    ys,
                    s=4,
                    color=OUTCOME_COLORS[status],
                    label=f"{status} ({len(xs)})",
                    rasterized=True,
                    linewidths=0,
                )
        if flagged[i][0]:
            ax.scatter(
                *flagged[i],
                s=60,
                facecolors="none",
                edgecolors="#b3261e",
                linewidths=1.5,
                label=f"named by a finding ({len(flagged[i][0])})",
            )
        _whole_decades(ax, [y for _, ys in points[i].values() for y in ys])
        ax.set_ylabel("ms", fontsize=8)
        ax.text(
            0.005,
            0.96,
            names[i] if i < len(names) else "no operations",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            fontweight="bold",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1},
        )
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="upper right", fontsize=6, markerscale=2, ncol=4)
    axes[-1].set_xlabel("time since start (s)", fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.99, top=0.93, bottom=0.1)
    return fig


def latency_png(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    marked: Collection[int] = (),
) -> bytes:
    """`latency_figure` as PNG bytes (1000 x 400)."""
    return _png(latency_figure(operations, faults, base, marked))


def throughput_png(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    bins: int = 60,
) -> bytes:
    """`throughput_figure` as PNG bytes (1000 x 300)."""
    return _png(throughput_figure(operations, faults, base, bins))


def throughput_figure(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    bins: int = 60,
) -> Figure:
    """Completions per second in `bins` equal slices of the run, one line per outcome
    (operations that never returned are not completions)."""
    base = base or Timebase.of(operations, faults)
    span = max(base.end, 1e-3)
    width = span / bins
    counts: dict[str, list[int]] = {s: [0] * bins for s in OUTCOME_COLORS}
    for op in operations:
        ret = op.return_time
        if ret is None or ret == NO_TIME:
            continue
        slot = min(int(base.seconds(ret) / width), bins - 1)
        counts[op.status][max(slot, 0)] += 1
    fig = plt.figure(figsize=(10, 3))
    strip, (ax,) = _axes(fig, 1, base)
    _fault_strip(strip, faults, base)
    _shade(ax, faults, base)
    xs = [(i + 0.5) * width for i in range(bins)]
    for status, row in counts.items():
        if any(row):
            ax.plot(
                xs,
                [c / width for c in row],
                color=OUTCOME_COLORS[status],
                label=status,
                lw=1.2,
                drawstyle="steps-mid",
            )
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("operations / s")
    strip.set_title("Throughput (completions per second, by outcome); faults above", fontsize=9)
    ax.set_xlim(0, span)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper right", fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.99, top=0.9, bottom=0.15)
    return fig
