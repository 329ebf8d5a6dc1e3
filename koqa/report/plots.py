"""Figures for the Snakemake report: F1 by variant, by answer length, the effect of snapping, and the
training loss of all variants on one chart. Each function writes one SVG file atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from koqa.files import atomic_path
from koqa.score.metric import LENGTH_BUCKETS


def new_figure(width: float = 7, height: float = 4) -> tuple[Figure, Axes]:
    """A figure with one axes (no pyplot: no GUI backend, no global state); also used by
    :mod:`koqa.data.stats`."""
    figure = Figure(figsize=(width, height), layout="tight")
    return figure, figure.subplots()


def _save(figure: Figure, path: str | Path) -> None:
    """SVG with text kept as text (searchable, small; the browser draws it)."""
    with atomic_path(path) as tmp, rc_context({"svg.fonttype": "none"}):
        figure.savefig(tmp, format="svg")


def _label_bars(axes: Axes, bars: BarContainer, values: pd.Series) -> None:
    for bar, value in zip(bars, values, strict=True):
        axes.annotate(
            f"{value:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )


def _paired_bars(series: dict[str, pd.Series], n: int) -> tuple[Figure, Axes]:
    """A figure with two labelled bars per position, one for each of the two named series."""
    figure, axes = new_figure(max(5, 1.1 * n + 2))
    width = 0.4
    for shift, (label, values) in zip((-width / 2, width / 2), series.items(), strict=True):
        bars = axes.bar([i + shift for i in range(n)], values, width, label=label)
        _label_bars(axes, bars, values)
    return figure, axes


def plot_f1_by_variant(board: pd.DataFrame, path: str | Path) -> None:
    """Validation F1 and EM of every leaderboard row, in leaderboard order."""
    figure, axes = _paired_bars(
        {"character F1": board["f1"], "exact match": board["em"]}, len(board)
    )
    axes.set_xticks(range(len(board)), board["variant"], rotation=30, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("validation score (0-1)")
    axes.set_title("Validation F1 and EM by variant (best first)")
    axes.legend(loc="upper right")
    _save(figure, path)


def plot_f1_by_length(records: dict[str, dict], path: str | Path) -> None:
    """One line per variant: validation F1 in each gold-answer length bucket (with row counts)."""
    figure, axes = new_figure(7)
    counts: dict[str, int] = {}
    for variant, record in records.items():
        buckets = [label for label in LENGTH_BUCKETS if label in record["by_length"]]
        axes.plot(
            buckets, [record["by_length"][b]["f1"] for b in buckets], marker="o", label=variant
        )
        counts.update({b: record["by_length"][b]["n"] for b in buckets})
    present = [label for label in LENGTH_BUCKETS if label in counts]
    axes.set_xticks(range(len(present)), [f"{b}\n({counts[b]} rows)" for b in present])
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("gold answer length (characters the metric compares)")
    axes.set_ylabel("validation character F1")
    axes.set_title("F1 by answer length")
    axes.legend(fontsize=8)
    _save(figure, path)


def plot_snapping(board: pd.DataFrame, path: str | Path) -> None:
    """Validation F1 of each variant without and with snapping to the context (variants only)."""
    rows = board.dropna(subset=["f1_unsnapped"])
    figure, axes = _paired_bars(
        {"as generated": rows["f1_unsnapped"], "snapped": rows["f1_snapped"]}, len(rows)
    )
    used = ["snapped" if bool(u) else "as generated" for u in rows["snap"]]
    axes.set_xticks(
        range(len(rows)), [f"{v}\n(uses {u})" for v, u in zip(rows["variant"], used, strict=True)]
    )
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("validation character F1")
    axes.set_title("Snapping answers to the best-matching context span")
    axes.legend(loc="upper right")
    _save(figure, path)


def plot_loss_curves(metrics: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Training loss per optimizer step of every trained variant on one chart (log scale)."""
    figure, axes = new_figure(7)
    for variant, frame in metrics.items():
        if len(frame):  # zeroshot trains nothing
            axes.plot(frame["step"], frame["loss"], label=variant, linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss (answer tokens)")
    axes.set_title("Training loss of all variants")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    _save(figure, path)
