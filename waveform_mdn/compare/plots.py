"""The report's figures ``curves.png`` and ``generated.png`` (docs/comparison.md)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ..contract import JUDGE_TAGS, METRICS
from ..figures import save_figure
from .measurements import REF_KEYS, means
from .runs import Run
from .tables import NATURAL

UNITS = {"nll": " (nats/sample, normalised signal)", "bits_per_sample": " (16-bit codes)",
         "mse": " (normalised signal)", "mse_sample": " (normalised signal)",
         "audio/dnsmos_ovrl": " (1 to 5, higher is better)", "audio/phone_error_rate": " (lower is better)"}


def spread_epochs(epochs: list[int]) -> list[float]:
    """Epochs as x positions; n points of one epoch are spread over it: e, e + 1/n, ..."""
    count = Counter(epochs)
    return [e + epochs[:i].count(e) / count[e] for i, e in enumerate(epochs)]


def _plot_panel(ax, runs: list[Run], title: str, tags: tuple[str, ...]) -> None:
    """Each run's curves of ``tags``: validation and judges solid, training dashed, the
    validation minimum circled."""
    positive = True
    for i, run in enumerate(runs):
        for tag in (t for t in tags if t in run.curves):
            curve, xs_all = run.curves[tag], spread_epochs(run.curves[tag].epochs)
            pts = [(x, v) for x, v in zip(xs_all, curve.values) if math.isfinite(v)]
            if not pts:
                continue
            positive &= all(v > 0 for _, v in pts)
            xs, ys = zip(*pts)
            if tag.startswith("train/"):
                ax.plot(xs, ys, "--", color=f"C{i % 10}", lw=1.0, alpha=0.55)
                continue
            ax.plot(xs, ys, "-", color=f"C{i % 10}", lw=1.6, marker="." if len(xs) < 60 else None,
                    label=f"{run.name} ({run.model}, K={run.components})")
            if tag.startswith("val/"):
                best = curve.summary()["min"]
                ax.plot([xs_all[curve.values.index(best)]], [best], "o", ms=8, mfc="none", color=f"C{i % 10}")
    if title.startswith("mse") and positive and ax.has_data():
        ax.set_yscale("log")
    ax.set_title(title + UNITS[title], fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3, which="both")


def plot_curves(runs: list[Run], path: Path) -> None:
    """One panel per metric (validation and training), then one per judge some run logged."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [(m, (f"val/{m}", f"train/{m}")) for m in METRICS]
    panels += [(t, (t,)) for t in JUDGE_TAGS if any(t in r.curves for r in runs)]
    n_cols = 4 if len(panels) <= 4 else 3
    n_rows = -(-len(panels) // n_cols)
    fig = Figure(figsize=(5 * n_cols, 4.6 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False).ravel()
    for ax, (title, tags) in zip(axes, panels):
        _plot_panel(ax, runs, title, tags)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    legend: dict[str, Any] = {}  # each run once, whichever panel has it
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    legend.update({"validation": Line2D([], [], color="k", ls="-"), "training": Line2D([], [], color="k", ls="--", alpha=0.55),
                   "validation minimum": Line2D([], [], color="k", ls="", marker="o", mfc="none")})
    axes[0].legend(legend.values(), legend.keys(), fontsize=8)
    axes[0].figure.suptitle("Validation (solid) and training (dashed) curves")
    save_figure(axes[0].figure, path, dpi=110)


def plot_generated(gen_rows: list[tuple[str, Any, Any]], natural: dict | None, path: Path) -> bool:
    """One panel per measurement natural speech has too: each set's mean and natural speech's
    (bars; points where a value is negative, as for levels in dB); False (nothing written)
    when no row has any."""
    from matplotlib.figure import Figure

    rows = [(label, means(m.files)) for label, _, m in gen_rows] + ([(NATURAL, natural["means"])] if natural else [])
    keys = [k for k in REF_KEYS if any(m.get(k) is not None for _, m in rows)]
    if not keys:
        return False
    fig = Figure(figsize=(3.2 * len(keys), 3.8), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = ["0.55" if name == NATURAL else f"C{i % 10}" for i, (name, _) in enumerate(rows)]
    xs = list(range(len(rows)))
    for ax, k in zip(axes, keys):
        vals = [m.get(k) for _, m in rows]
        for x, v, color in zip(xs, vals, colors):
            if v is None:
                ax.text(x, 0.5, "n/a", ha="center", va="center", fontsize=8, transform=ax.get_xaxis_transform())
            elif all(u is None or u >= 0 for u in vals):
                ax.bar([x], [v], color=color)
            else:
                ax.plot([x], [v], "o", ms=9, color=color)
        ax.set_xticks(xs, [name for name, _ in rows], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(k, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Generated audio (mean over files) vs natural speech")
    save_figure(fig, path, dpi=110)
    return True
