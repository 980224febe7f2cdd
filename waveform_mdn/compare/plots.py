"""The two figures of a comparison: ``curves.png`` (every metric against epoch) and
``generated.png`` (mean audio measurements per run next to natural speech)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ..contract import METRICS
from ..figures import new_figure, save_figure
from .measurements import REF_KEYS
from .runs import Run
from .tables import NATURAL

COLORS = [f"C{i}" for i in range(10)]
UNITS = {"nll": " (nats/sample, normalised signal)", "bits_per_sample": " (16-bit codes)"}


def spread_epochs(epochs: list[int]) -> list[float]:
    """Epochs as x positions; n points of one epoch are spread over it: e, e + 1/n, ..."""
    count = Counter(epochs)
    return [e + epochs[:i].count(e) / count[e] for i, e in enumerate(epochs)]


def _plot_metric(ax, runs: list[Run], metric: str) -> None:
    positive = True
    for i, run in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        for split in ("val", "train"):
            curve = run.curves.get(f"{split}/{metric}")
            if curve is None:
                continue
            xs_all = spread_epochs(curve.epochs)
            pts = [(x, v) for x, v in zip(xs_all, curve.values) if math.isfinite(v)]
            if not pts:
                continue
            positive &= all(v > 0 for _, v in pts)
            xs, ys = zip(*pts)
            if split == "train":
                ax.plot(xs, ys, "--", color=color, lw=1.0, alpha=0.55)
                continue
            ax.plot(xs, ys, "-", color=color, lw=1.6, marker="." if len(xs) < 60 else None,
                    label=f"{run.name} ({run.model}, K={run.components})")
            best = curve.summary()["min"]
            ax.plot([xs_all[curve.values.index(best)]], [best], "o", ms=8, mfc="none", color=color)
    if metric.startswith("mse") and positive and ax.has_data():
        ax.set_yscale("log")
    ax.set_title(metric + UNITS.get(metric, " (normalised signal)"), fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3, which="both")


def plot_curves(runs: list[Run], path: Path) -> None:
    from matplotlib.lines import Line2D

    fig = new_figure(5 * len(METRICS), 4.6)
    axes = fig.subplots(1, len(METRICS), sharex=True)
    for ax, metric in zip(axes, METRICS):
        _plot_metric(ax, runs, metric)
    legend: dict[str, Any] = {}  # each run once, whichever panel has it
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    legend.update({"validation": Line2D([], [], color="k", ls="-"), "training": Line2D([], [], color="k", ls="--", alpha=0.55),
                   "validation minimum": Line2D([], [], color="k", ls="", marker="o", mfc="none")})
    axes[0].legend(legend.values(), legend.keys(), fontsize=8)
    fig.suptitle("Validation (solid) and training (dashed) curves")
    save_figure(fig, path, dpi=110)


def plot_generated(rows: list[tuple[str, dict[str, Any]]], path: Path) -> bool:
    """One panel per single-signal measurement: each row's mean (bars; points for dB levels);
    False (nothing written) when no row has any."""
    keys = [k for k in REF_KEYS if any(m.get(k) is not None for _, m in rows)]
    if not keys:
        return False
    fig = new_figure(3.2 * len(keys), 3.8)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = ["0.55" if name == NATURAL else COLORS[i % len(COLORS)] for i, (name, _) in enumerate(rows)]
    xs = list(range(len(rows)))
    for ax, k in zip(axes, keys):
        vals = [m.get(k) for _, m in rows]
        if all(v is None or v >= 0 for v in vals):
            ax.bar(xs, [v if v is not None else 0.0 for v in vals], color=colors)
        else:  # levels in dB: points, bars from 0 would mislead
            for x, v, c in zip(xs, vals, colors):
                if v is not None:
                    ax.plot([x], [v], "o", ms=9, color=c)
            ax.set_xlim(-0.6, len(rows) - 0.4)
        for x, v in zip(xs, vals):
            if v is None:
                ax.text(x, 0.5, "n/a", ha="center", va="center", fontsize=8, transform=ax.get_xaxis_transform())
        ax.set_xticks(xs, [name for name, _ in rows], rotation=30, ha="right", fontsize=8)
        ax.set_title(k, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Generated audio (mean over files) vs natural speech")
    save_figure(fig, path, dpi=110)
    return True
