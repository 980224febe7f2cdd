"""The waveform + spectrogram figure: one implementation for PNGs, TensorBoard and reports.
Figures are made without pyplot (no global backend or figure registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from data_prep.audio_io import atomic_path, int16_to_float

SPEC_DB = (-140, -20)  #: spectrogram colour scale (dB), the same for every figure


def waveform_figure(signals: Sequence[tuple[str, np.ndarray]], sample_rate: int, title: str = "",
                    zoom_ms: float | None = None, panel_size: tuple[float, float] = (10, 2.4),
                    fontsize: float | None = None, layout: str | None = "constrained"):
    """One row per ``(label, audio)`` (int16 or float): its waveform, then its spectrogram on
    :data:`SPEC_DB`; with ``zoom_ms``, a last panel overlays the middle ``zoom_ms`` ms of all.
    ``panel_size`` in inches; ``layout`` None places the axes by hand (faster)."""
    from matplotlib.figure import Figure

    rows = [(label, int16_to_float(x)) for label, x in signals]
    n_axes = 2 * len(rows) + (1 if zoom_ms else 0)
    axes = Figure(figsize=(panel_size[0], panel_size[1] * n_axes), layout=layout).subplots(n_axes, 1, squeeze=False)[:, 0]
    nfft = 512 if sample_rate <= 24000 else 1024
    for r, (label, x) in enumerate(rows):
        wave, spec = axes[2 * r], axes[2 * r + 1]
        wave.plot(np.arange(len(x)) / sample_rate, x, lw=0.4, color=f"C{r}")
        wave.set(ylim=(-1.05, 1.05), ylabel="amplitude", xlim=(0, len(x) / sample_rate))
        wave.set_title(label + (f": {title}" if title and r == 0 else ""), fontsize=9, loc="left")
        if len(x) > nfft:
            with np.errstate(divide="ignore"):  # digital silence: -inf dB, drawn at the bottom
                spec.specgram(x + 1e-9, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma",
                              vmin=SPEC_DB[0], vmax=SPEC_DB[1])
        spec.set(xlim=(0, len(x) / sample_rate), ylabel="Hz", xlabel="time (s)")
    if zoom_ms:
        ax = axes[-1]
        for r, (label, x) in enumerate(rows):
            a = max(len(x) // 2 - int(zoom_ms / 2000 * sample_rate), 0)
            b = min(a + int(zoom_ms / 1000 * sample_rate), len(x))
            ax.plot(np.arange(a, b) / sample_rate * 1000, x[a:b], lw=0.8, color=f"C{r}", label=label)
        ax.set_title(f"{zoom_ms:g} ms zoom", fontsize=9, loc="left")
        ax.set_xlabel("ms")
        ax.legend(loc="upper right", fontsize=8)
    if fontsize is not None:
        for ax in axes:
            for text in [ax.title, ax.xaxis.label, ax.yaxis.label] + ax.get_xticklabels() + ax.get_yticklabels():
                text.set_fontsize(fontsize)
    return axes[0].figure


def audio_image(audio: np.ndarray, sample_rate: int, path: str | Path, title: str = "") -> None:
    """The PNG of one signal for a page of players (500 x 330 pixels): waveform above spectrogram."""
    fig = waveform_figure([(title, audio)], sample_rate, panel_size=(5.0, 1.65), fontsize=8, layout=None)
    fig.subplots_adjust(left=0.14, right=0.96, bottom=0.12, top=0.93, hspace=0.32)
    save_figure(fig, path, dpi=100)


def wav_image(wav: str | Path, path: str | Path) -> None:
    """:func:`audio_image` of a WAV file (its first channel), titled with its name."""
    import soundfile as sf

    audio, sample_rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio_image(audio[:, 0], sample_rate, path, Path(wav).stem)


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png")
