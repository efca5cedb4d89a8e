"""The report's plots (matplotlib, Agg backend, never a display): latency of each operation over
time colored by outcome, and throughput over time, both with fault windows shaded. Each plot is
returned as PNG bytes so a page can embed it."""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: a headless machine has no display

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.checkers.causal import Fault
from harness.history import NO_TIME, Operation
from harness.report.timebase import Timebase

__all__ = ["OUTCOME_COLORS", "Timebase", "latency_png", "throughput_png"]

OUTCOME_COLORS = {"ok": "#2e7d32", "fail": "#9e9e9e", "info": "#e59a3a"}
_FAULT_COLORS = {
    "partition": "#d32f2f",
    "kill": "#6a1b9a",
    "pause": "#1565c0",
    "clock-skew": "#00838f",
}


def _shade(ax: Axes, faults: Sequence[Fault], base: Timebase) -> None:
    labelled: set[str] = set()
    for f in faults:
        if f.start_time == NO_TIME:
            continue
        end = base.end if f.end_time is None or f.end_time == NO_TIME else base.seconds(f.end_time)
        color = _FAULT_COLORS.get(f.name, "#795548")
        ax.axvspan(
            base.seconds(f.start_time),
            max(end, base.seconds(f.start_time) + 1e-3),
            color=color,
            alpha=0.12,
            lw=0,
            label=None if f.name in labelled else f.name,
        )
        labelled.add(f.name)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def latency_png(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    marked: Collection[int] = (),
) -> bytes:
    """One point per operation at its call time, its latency on a log scale. An operation that
    never returned is drawn with the time left to the end of the run. Operations whose invoke
    index is in `marked` (those a checker's findings name) are circled in red."""
    base = base or Timebase.of(operations, faults)
    fig, ax = plt.subplots(figsize=(10, 4))
    _shade(ax, faults, base)
    points: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in OUTCOME_COLORS}
    flagged: tuple[list[float], list[float]] = ([], [])
    for op in operations:
        call = op.invoke.time
        if call == NO_TIME:
            continue
        ret = op.return_time
        end = base.end if ret is None or ret == NO_TIME else base.seconds(ret)
        latency_ms = max((end - base.seconds(call)) * 1e3, 1e-3)
        xs, ys = points[op.status]
        xs.append(base.seconds(call))
        ys.append(latency_ms)
        if op.invoke.index in marked:
            flagged[0].append(base.seconds(call))
            flagged[1].append(latency_ms)
    for status, (xs, ys) in points.items():
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
    if flagged[0]:
        ax.scatter(
            *flagged,
            s=60,
            facecolors="none",
            edgecolors="#b3261e",
            linewidths=1.5,
            label=f"named by a finding ({len(flagged[0])})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency of each operation, by outcome; shaded: faults")
    ax.set_xlim(0, max(base.end, 1e-3))
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper right", fontsize=8, markerscale=3)
    fig.tight_layout()
    return _png(fig)


def throughput_png(
    operations: Sequence[Operation],
    faults: Sequence[Fault],
    base: Timebase | None = None,
    bins: int = 60,
) -> bytes:
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
    fig, ax = plt.subplots(figsize=(10, 3))
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
    ax.set_title("Throughput (completions per second, by outcome); shaded: faults")
    ax.set_xlim(0, span)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)
