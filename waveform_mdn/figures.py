"""The waveform + spectrogram figure: one implementation for PNGs, TensorBoard and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .audio_io import atomic_path, int16_to_float


def waveform_figure(signals: Sequence[tuple[str, np.ndarray]], sample_rate: int, title: str = "",
                    zoom_ms: float | None = None):
    """One row per ``(label, audio)`` (int16 or float audio): its waveform, then its
    spectrogram on one shared dB scale; with ``zoom_ms``, a last panel overlays the
    middle ``zoom_ms`` milliseconds of every signal. Returns a ``matplotlib.figure.Figure``
    made without pyplot (no global backend or figure registry is touched)."""
    from matplotlib.figure import Figure

    rows = [(label, int16_to_float(x)) for label, x in signals]
    n_axes = 2 * len(rows) + (1 if zoom_ms else 0)
    fig = Figure(figsize=(10, 2.4 * n_axes), layout="constrained")
    axes = fig.subplots(n_axes, 1, squeeze=False)
    axes = axes[:, 0]
    nfft = 512 if sample_rate <= 24000 else 1024
    for r, (label, x) in enumerate(rows):
        t = np.arange(len(x)) / sample_rate
        ax = axes[2 * r]
        ax.plot(t, x, lw=0.4, color=f"C{r}")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("amplitude")
        ax.set_title(label + (f": {title}" if title and r == 0 else ""), fontsize=9, loc="left")
        ax = axes[2 * r + 1]
        if len(x) > nfft:
            ax.specgram(x + 1e-9, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma", vmin=-140, vmax=-20)
        ax.set_ylabel("Hz")
        ax.set_xlabel("time (s)")
    if zoom_ms:
        ax = axes[-1]
        for r, (label, x) in enumerate(rows):
            n = len(x)
            a = max(n // 2 - int(zoom_ms / 2000 * sample_rate), 0)
            b = min(a + int(zoom_ms / 1000 * sample_rate), n)
            ax.plot(np.arange(a, b) / sample_rate * 1000, x[a:b], lw=0.8, color=f"C{r}", label=label)
        ax.set_title(f"{zoom_ms:g} ms zoom", fontsize=9, loc="left")
        ax.set_xlabel("ms")
        ax.legend(loc="upper right", fontsize=8)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically (Agg canvas; no pyplot state)."""
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png")
