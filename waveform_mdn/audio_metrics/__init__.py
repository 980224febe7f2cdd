"""Objective measurements of (generated) speech audio: signal metrics (numpy / scipy /
librosa, no torch) and, on request, the judges. Definitions: docs/audio-metrics.md and
docs/judges.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from data_prep.audio import AudioError

from .analysis import COMPARE_KEYS, F0_MAX_HZ, METRIC_KEYS, SignalAnalysis, as_signal, finite_or_none, n_fft_for
from .judges import JUDGE_KEYS, judge, phones_beside
from .spectral import lsd_db, mcd_db, power_spectrum

#: The judge keys of the reference (``measure(..., judges=True)`` with a reference).
REF_JUDGE_KEYS = tuple("ref_" + k for k in JUDGE_KEYS)


def _compare(gen: SignalAnalysis, ref: SignalAnalysis, sr: int) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(COMPARE_KEYS)
    n = min(gen.x.size, ref.x.size)  # common prefix, frame by frame (no DTW)
    if n >= n_fft_for(sr):
        p_gen, p_ref = power_spectrum(gen.x[:n], sr), power_spectrum(ref.x[:n], sr)
        out["lsd_db"] = lsd_db(p_gen, p_ref)
        out["mcd_db"] = mcd_db(p_gen, p_ref, sr)
    if gen.voiced is not None and ref.voiced is not None:
        m = min(len(gen.voiced), len(ref.voiced))
        vg, vr = gen.voiced[:m], ref.voiced[:m]
        if m:
            out["voicing_agreement"] = finite_or_none(np.mean(vg == vr))
        both = vg & vr
        if np.any(both):
            fg, fr = gen.f0[:m][both], ref.f0[:m][both]
            out["f0_rmse_hz"] = finite_or_none(np.sqrt(np.mean((fg - fr) ** 2)))
            if both.sum() >= 3 and np.std(fg) > 0 and np.std(fr) > 0:
                out["f0_corr"] = finite_or_none(np.corrcoef(fg, fr)[0, 1])
    return out


def measure(audio: np.ndarray, sr: int, reference: np.ndarray | None = None, *, judges: bool = False,
            intended_phones: Sequence[str] | None = None, judge_reference: bool = True) -> dict[str, float | str | None]:
    """``METRIC_KEYS`` of mono ``audio`` (float in [-1, 1] or integer PCM) at ``sr`` Hz; with
    ``judges`` also ``JUDGE_KEYS`` and ``REF_JUDGE_KEYS`` (None without a reference or with
    ``judge_reference=False``: :func:`reference_judges` judges a shared reference once)."""
    sr = int(sr)
    if sr < 2 * F0_MAX_HZ:
        raise AudioError(f"sample rate {sr} Hz is too low: need at least {2 * F0_MAX_HZ:.0f} Hz")
    x = as_signal(audio, "audio")
    gen = SignalAnalysis(x, sr)
    out: dict[str, float | str | None] = dict.fromkeys(METRIC_KEYS)
    out.update(gen.summary())
    ref = None if reference is None else as_signal(reference, "reference")
    if ref is not None:
        ref_analysis = SignalAnalysis(ref, sr)
        out.update(_compare(gen, ref_analysis, sr))
        out.update({"ref_" + k: v for k, v in ref_analysis.summary().items()})
    if judges:
        out.update(judge(x, sr, intended_phones))
        out.update(dict.fromkeys(REF_JUDGE_KEYS))
        if ref is not None and judge_reference:
            out.update(_judged_reference(ref, sr, intended_phones))
    return out


def _judged_reference(ref: np.ndarray, sr: int, intended_phones: Sequence[str] | None) -> dict:
    return {"ref_" + k: v for k, v in judge(ref, sr, intended_phones, "reference").items()}


def reference_judges(reference_path: str | Path, intended_phones: Sequence[str] | None) -> dict:
    """The ``REF_JUDGE_KEYS`` that ``measure_files(..., reference_path, judges=True)`` gives
    for its reference judged against ``intended_phones``."""
    ref, sr = _read(Path(reference_path))
    return _judged_reference(as_signal(ref, "reference"), sr, intended_phones)


def intended_phones_beside(path: str | Path, reference_path: str | Path | None = None) -> list[str] | None:
    """The labels of a ``.PHN`` beside ``path``, else beside ``reference_path``: the intended
    phones of a file measured without any."""
    phones = phones_beside(Path(path))
    return phones if phones is not None or reference_path is None else phones_beside(Path(reference_path))


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    return data.mean(axis=1), int(sr)  # mix multi-channel down to mono


def measure_files(path: str | Path, reference_path: str | Path | None = None, *, judges: bool = False,
                  intended_phones: Sequence[str] | None = None, judge_reference: bool = True) -> dict:
    """``measure`` of a sound file (channels averaged to mono) plus ``file``, ``reference``,
    ``sample_rate``, ``duration_s`` (``ref_duration_s``); intended phones default to a
    ``.PHN`` beside it. Missing / unreadable files and differing rates raise AudioError."""
    path = Path(path)
    x, sr = _read(path)
    ref = None
    if reference_path is not None:
        reference_path = Path(reference_path)
        ref, ref_sr = _read(reference_path)
        if ref_sr != sr:
            raise AudioError(f"sample rates differ: {path} is {sr} Hz but reference {reference_path} is {ref_sr} Hz")
    if judges and intended_phones is None:
        intended_phones = intended_phones_beside(path, reference_path)
    try:
        metrics = measure(x, sr, reference=ref, judges=judges, intended_phones=intended_phones,
                          judge_reference=judge_reference)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from exc
    out: dict = {
        "file": str(path),
        "reference": None if reference_path is None else str(reference_path),
        "sample_rate": sr,
        "duration_s": x.size / sr,
    }
    if ref is not None:
        out["ref_duration_s"] = ref.size / sr
    out.update(metrics)
    return out


def per_file_progress(items: Iterable, total: int | None = None, enabled: bool = True,
                      desc: str = "measuring") -> Iterable:
    """``items`` with a tqdm bar on stderr, one tick per file (redrawn every 0.5 s on a
    terminal, every 30 s in a log file); ``enabled=False`` (``--quiet``): ``items`` unchanged."""
    if not enabled:
        return items
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(items, total=total, desc=desc, unit="file", file=sys.stderr, mininterval=0.5 if tty else 30.0,
                dynamic_ncols=tty)
