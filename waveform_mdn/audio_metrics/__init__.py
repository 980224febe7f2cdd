"""Objective measurements of (generated) speech audio.

These numbers make qualitative listening notes measurable, e.g. "the model
captured the periodicity but is peakier than natural speech" becomes
``periodicity`` close to ``ref_periodicity`` while ``kurtosis`` is well above
``ref_kurtosis``.

Everything is plain numpy / scipy / librosa (no torch).  Two entry points::

    measure(audio, sr, reference=None) -> dict[str, float | None]
    measure_files(path, reference_path=None) -> dict

and ``per_file_progress(items)``, the progress bar (one tick per measured file) of the
loops that measure many files.

Frame conventions (shared by every frame-based metric)
------------------------------------------------------
* **Analysis frame** (pYIN and periodicity): ``FRAME_S`` = 40 ms, rounded to an
  even number of samples (640 samples at 16 kHz).  At 40 ms more than two
  periods of the lowest pitch (60 Hz) fit in a frame, as pYIN wants.
* **Hop**: ``HOP_S`` = 10 ms (160 samples at 16 kHz).
* The signal's mean (DC offset) is removed before pitch / periodicity
  analysis, and each periodicity frame's own mean is removed too.
* Frames are *centred* (frame ``i`` is centred on sample ``i * hop``; the
  signal is zero-padded by half a frame at both ends), exactly as
  ``librosa.pyin(center=True)`` does, so periodicity frame ``i`` and pYIN
  frame ``i`` are the same stretch of audio.  A signal of ``n`` samples has
  ``1 + n // hop`` frames.
* **Pitch range**: ``F0_MIN_HZ`` = 60 Hz to ``F0_MAX_HZ`` = 400 Hz (``fmin`` /
  ``fmax`` of pYIN and the lag range of the periodicity autocorrelation).
  The sample rate must therefore be at least 800 Hz.
* **Spectral frame** (``lsd_db``, ``mcd_db``): Hann-windowed STFT with
  ``n_fft = 2 ** round(log2(0.032 * sr))`` (512 at 16 kHz and 22.05 kHz,
  1024 at 44.1/48 kHz), ``win_length = n_fft``, the same 10 ms hop, centred.

A signal shorter than one analysis frame gets ``None`` for every frame-based
metric (``rms_db`` and ``kurtosis`` are still computed if defined).

Output conventions
------------------
``measure`` always returns the same keys (see ``METRIC_KEYS``); the
reference-based ones are ``None`` when no reference is given.  Values are
plain Python floats or ``None``: anything undefined (silence, too short,
fewer than the needed voiced frames, zero variance) is ``None``, and NaN / inf
never appear, so the dict can go straight to ``json.dumps``.

Metrics
-------

Returns a flat dict with the keys of ``METRIC_KEYS``; each value is a float
or ``None`` (undefined), never NaN / inf.

Single-signal metrics (also reported for the reference with a ``ref_`` prefix):

``rms_db``
    20*log10(RMS) in dBFS (amplitude 1.0 = full scale; a full-scale sine is
    -3.01 dBFS).  None for digital silence.
``kurtosis``
    Excess (Fisher) kurtosis of the sample values, ``scipy.stats.kurtosis``
    (biased estimator): 0 Gaussian, -1.5 sine, large for peaky / pulse-like
    signals.  None if the signal is constant.
``f0_mean_hz``, ``voiced_fraction``
    ``librosa.pyin`` with fmin 60 Hz, fmax 400 Hz, frame 40 ms, hop 10 ms,
    centred frames, other parameters at librosa's defaults.  A frame is
    *voiced* when pYIN's voicing decision says so **and** the frame's own
    normalised autocorrelation peak (as for ``periodicity``) is >= 0.3
    (``VOICING_MIN_PERIODICITY``; this vetoes pYIN's occasional false
    voicing of white noise near fmin and removes only ~1-3 % of pYIN's
    voiced frames in natural speech).  ``voiced_fraction`` = voiced frames
    / all frames (silent frames count as unvoiced); ``f0_mean_hz`` =
    arithmetic mean of pYIN's f0 over voiced frames (None if none).
``periodicity``
    Mean, over the *voiced* frames, of each frame's normalised
    autocorrelation peak (see ``_nccf_peaks``: correlation between the
    frame and itself shifted by t, maximised over lags of 60-400 Hz; 1 for
    a perfectly periodic frame, ~0.1-0.2 for white noise).  Same 40 ms /
    10 ms centred frames as pYIN.  Frames more than 60 dB below the
    signal's loudest frame are ignored.  The voiced frames are
    (1) the voiced frames above; if there are none, (2) those whose own
    autocorrelation peak is >= 0.5; if there are still none, (3) all
    non-silent frames, so an aperiodic signal gets its (low) value rather
    than None.  None for silence or audio shorter than one frame.

Comparison metrics (``reference`` given, same ``sr``; None otherwise):

``lsd_db``
    Log-spectral distance: Hann STFT power spectra ``P`` (n_fft =
    2**round(log2(0.032*sr)), hop 10 ms); for every frame the RMS over
    frequency bins of ``10*log10(max(P_gen, floor)) - 10*log10(max(P_ref,
    floor))``, then the mean over frames.  ``floor`` is 80 dB below the
    reference's largest bin power (at least 1e-20).  A pure gain change
    of g dB gives an LSD of |g| dB.
``mcd_db``
    Mel-cepstral distortion, mean over frames of
    ``10*sqrt(2)/ln(10) * sqrt(sum_{d=1..24} (c_d - c'_d)^2)`` (c0, the
    level, is excluded, so a gain change leaves it ~unchanged).  The
    cepstra come from ``librosa.feature.mfcc`` (orthonormal DCT-II) of the
    dB power of a 40-band mel spectrogram (same STFT, same 80 dB floor),
    rescaled to natural-log real-cepstrum units (divide by
    ``20/ln(10) * sqrt(2*40)``) -- the units the constant is defined for.
``f0_rmse_hz``
    RMS of the f0 difference (Hz) over frames voiced in both.  None if no
    such frame.
``voicing_agreement``
    Fraction of frames where the two voicing decisions (as above) agree.
``f0_corr``
    Pearson correlation of f0 over frames voiced in both; None if fewer
    than 3 such frames or either f0 track is constant there.

Alignment: frames are compared index by index; when the lengths differ
only the common prefix is compared (spectral metrics: both signals cut to
the shorter length; pitch metrics: the first min(n_frames) frames of each
signal's own pYIN track).  No DTW is used, on purpose: generated audio
follows the reference's phone durations (it is conditioned on / teacher
forced by the reference timing), so frame i of both should describe the
same sound and a time-warp would hide timing errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, TypeVar

import numpy as np

from .analysis import (
    F0_MAX_HZ,
    F0_MIN_HZ,
    FRAME_S,
    HOP_S,
    METRIC_KEYS,
    VOICING_MIN_PERIODICITY,
    COMPARE_KEYS,
    SignalAnalysis,
    as_signal,
    finite_or_none,
    n_fft_for,
)
from .spectral import MCD_CONSTANT, lsd_db, mcd_db, power_spectrum

__all__ = [
    "measure",
    "measure_files",
    "per_file_progress",
    "METRIC_KEYS",
    "FRAME_S",
    "HOP_S",
    "F0_MIN_HZ",
    "F0_MAX_HZ",
    "MCD_CONSTANT",
    "VOICING_MIN_PERIODICITY",
]


def _compare(gen: SignalAnalysis, ref: SignalAnalysis, sr: int) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(COMPARE_KEYS)
    n = min(gen.x.size, ref.x.size)
    # Spectral distances on the common prefix (frame-aligned, no DTW).
    if n >= n_fft_for(sr):
        p_gen, p_ref = power_spectrum(gen.x[:n], sr), power_spectrum(ref.x[:n], sr)
        out["lsd_db"] = lsd_db(p_gen, p_ref)
        out["mcd_db"] = mcd_db(p_gen, p_ref, sr)
    # Pitch comparisons on frames 0 .. min(n_frames) - 1 of the per-signal pYIN tracks.
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


# --------------------------------------------------------------------------- public API
def measure(audio: np.ndarray, sr: int, reference: np.ndarray | None = None) -> dict[str, float | None]:
    """Measure ``audio`` (mono, float in [-1, 1] or integer PCM) at sample rate ``sr``.

    Returns a flat dict with the keys of ``METRIC_KEYS``; each value is a float or ``None``
    (undefined), never NaN / inf. The metrics are defined in the package docstring.
    """
    sr = int(sr)
    if sr < 2 * F0_MAX_HZ:
        raise ValueError(f"sample rate {sr} Hz is too low: need at least {2 * F0_MAX_HZ:.0f} Hz")
    x = as_signal(audio, "audio")
    gen = SignalAnalysis(x, sr)
    out: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    out.update(gen.summary())
    if reference is not None:
        ref = SignalAnalysis(as_signal(reference, "reference"), sr)
        out.update(_compare(gen, ref, sr))
        out.update({"ref_" + k: v for k, v in ref.summary().items()})
    return out


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise ValueError(f"cannot read audio file {path}: {exc}") from exc
    return data.mean(axis=1), int(sr)  # mix multi-channel down to mono


def measure_files(path: str | Path, reference_path: str | Path | None = None) -> dict:
    """``measure`` on a sound file (read with soundfile, channels averaged to mono).

    Adds ``"file"`` (str path), ``"reference"`` (str path or None),
    ``"sample_rate"``, ``"duration_s"`` and, with a reference,
    ``"ref_duration_s"``.  Raises FileNotFoundError / ValueError naming the
    file if it is missing or unreadable, and ValueError naming both files if
    their sample rates differ (no resampling is done).
    """
    path = Path(path)
    x, sr = _read(path)
    ref = None
    if reference_path is not None:
        reference_path = Path(reference_path)
        ref, ref_sr = _read(reference_path)
        if ref_sr != sr:
            raise ValueError(
                f"sample rates differ: {path} is {sr} Hz but reference {reference_path} is {ref_sr} Hz"
            )
    try:
        metrics = measure(x, sr, reference=ref)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
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


T = TypeVar("T")


def per_file_progress(items: Iterable[T], total: int | None = None, enabled: bool = True,
                      desc: str = "measuring") -> Iterable[T]:
    """``items`` (one per file to measure) with a tqdm bar on stderr, one tick per file;
    redrawn at most every half second on a terminal, every 30 s otherwise (a log file gets
    a few lines). ``enabled=False`` (``--quiet``): ``items`` unchanged, nothing printed."""
    if not enabled:
        return items
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(items, total=total, desc=desc, unit="file", file=sys.stderr, mininterval=0.5 if tty else 30.0,
                dynamic_ncols=tty)
