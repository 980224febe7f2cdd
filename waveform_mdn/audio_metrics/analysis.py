"""Framing and per-signal analysis shared by every audio metric (docs/audio-metrics.md)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.stats

from data_prep.audio import AudioError

FRAME_S = 0.040  #: analysis frame for pYIN and periodicity (s)
HOP_S = 0.010  #: hop for every frame-based metric (s)
SPEC_FRAME_S = 0.032  #: nominal STFT frame for lsd/mcd; n_fft is the nearest power of two
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0

#: A frame pYIN calls voiced counts only if its autocorrelation peak reaches this (vetoes
#: pYIN's false voicing of white noise near fmin; docs/audio-metrics.md).
VOICING_MIN_PERIODICITY = 0.3
AUTOCORR_VOICING_THRESHOLD = 0.5  #: ``periodicity``'s fallback voicing when nothing is voiced
SILENCE_DB_BELOW_MAX = 60.0  #: frames this far below the loudest are ignored by ``periodicity``

SINGLE_KEYS = ("rms_db", "kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction")
COMPARE_KEYS = ("lsd_db", "mcd_db", "f0_rmse_hz", "voicing_agreement", "f0_corr")
METRIC_KEYS = SINGLE_KEYS + COMPARE_KEYS + tuple("ref_" + k for k in SINGLE_KEYS)


def finite_or_none(value) -> float | None:
    """A finite real number (numpy's too) as a Python float; None for anything else: None,
    NaN, inf, text, booleans (values read from a JSON file are not trusted to be numbers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_signal(audio, name: str) -> np.ndarray:
    """1-D float64 copy of ``audio``; integer PCM is scaled to [-1, 1)."""
    x = np.asarray(audio)
    if x.ndim > 1:
        x = np.squeeze(x)
    if x.ndim != 1:
        raise AudioError(f"{name} must be a 1-D (mono) signal, got shape {np.shape(audio)}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    else:
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{name} contains NaN or infinite samples")
    return x


def frame_length_for(sr: int) -> int:
    n = int(round(FRAME_S * sr))
    return n + (n % 2)  # even, so centred framing gives exactly 1 + n // hop frames


def hop_length_for(sr: int) -> int:
    return max(1, int(round(HOP_S * sr)))


def n_fft_for(sr: int) -> int:
    return int(2 ** round(math.log2(SPEC_FRAME_S * sr)))


def _rms_db(x: np.ndarray) -> float | None:
    """RMS level in dBFS (amplitude 1 = full scale); None for empty / all-zero."""
    if x.size == 0:
        return None
    rms = math.sqrt(float(np.mean(x * x)))
    return finite_or_none(20.0 * math.log10(rms)) if rms > 0 else None


def _kurtosis(x: np.ndarray) -> float | None:
    """Excess (Fisher) kurtosis of the sample values; 0 for Gaussian, -1.5 for a sine."""
    if x.size < 4 or np.all(x == x[0]):
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss on near-constant input
        return finite_or_none(scipy.stats.kurtosis(x, fisher=True, bias=True))


def _nccf_peaks(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame peak (lags of 60-400 Hz, clipped to [0, 1]) of the correlation between the
    frame's first N-t and last N-t samples (1 for a frame periodic in t), and per-frame
    energy; formula in docs/audio-metrics.md."""
    import librosa
    import scipy.fft

    n = frame_length_for(sr)
    hop = hop_length_for(sr)
    # centred, zero-padded frames, shape (n_frames, n): like librosa's center=True
    frames = librosa.util.frame(np.pad(x, n // 2), frame_length=n, hop_length=hop, axis=0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames * frames, axis=1)

    lag_min = max(1, int(math.floor(sr / F0_MAX_HZ)))
    lag_max = min(n - 2, int(math.ceil(sr / F0_MIN_HZ)))
    lags = np.arange(lag_min, lag_max + 1)

    nfft = scipy.fft.next_fast_len(2 * n)
    spec = scipy.fft.rfft(frames, nfft, axis=1)
    acf = scipy.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, lags]

    sq = frames * frames
    csum = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(sq, axis=1)], axis=1)
    e_head = csum[:, n - lags]  # sum of f[n]^2 for n < N - t
    e_tail = csum[:, [n]] - csum[:, lags]  # sum of f[n]^2 for n >= t
    denom = np.sqrt(e_head * e_tail)
    tiny = 1e-12 * np.maximum(energy, 1e-30)[:, None]
    with np.errstate(all="ignore"):
        r = np.where(denom > tiny, acf / np.where(denom > 0, denom, 1.0), 0.0)
    peaks = np.clip(np.max(r, axis=1), 0.0, 1.0) if len(lags) else np.zeros(len(frames))
    return peaks, energy


def _pyin(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz with NaN where unvoiced, voiced flags) from librosa.pyin, once per signal."""
    import librosa

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        f0, voiced, _ = librosa.pyin(x, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sr, frame_length=frame_length_for(sr),
                                     hop_length=hop_length_for(sr), center=True)
    voiced = np.asarray(voiced, dtype=bool) & np.isfinite(f0)
    return np.asarray(f0, dtype=np.float64), voiced


class SignalAnalysis:
    """Everything about one signal that the metrics need, computed once."""

    def __init__(self, x: np.ndarray, sr: int):
        self.x = x
        self.sr = sr
        self.long_enough = x.size >= frame_length_for(sr)
        self.f0 = self.voiced = self.peaks = self.energy = None
        # without the DC offset: the padded edge frames would otherwise look periodic
        ac = x - np.mean(x) if x.size and np.any(x != x[0]) else np.zeros_like(x)
        if self.long_enough and np.any(ac != 0):
            self.f0, self.voiced = _pyin(ac, sr)
            self.peaks, self.energy = _nccf_peaks(ac, sr)
            m = min(len(self.f0), len(self.peaks))
            self.f0, self.voiced = self.f0[:m], self.voiced[:m]
            self.peaks, self.energy = self.peaks[:m], self.energy[:m]
            self.voiced &= self.peaks >= VOICING_MIN_PERIODICITY
        elif self.long_enough:  # digital silence / pure DC: nothing voiced, nothing periodic
            m = 1 + x.size // hop_length_for(sr)
            self.f0 = np.full(m, np.nan)
            self.voiced = np.zeros(m, dtype=bool)
            self.peaks = np.zeros(m)
            self.energy = np.zeros(m)

    def periodicity(self) -> float | None:
        if self.peaks is None:
            return None
        emax = float(np.max(self.energy))
        if emax <= 0:
            return None
        audible = self.energy > emax * 10.0 ** (-SILENCE_DB_BELOW_MAX / 10.0)
        for chosen in (
            self.voiced & audible,  # 1. the voicing decision (pYIN + veto)
            (self.peaks >= AUTOCORR_VOICING_THRESHOLD) & audible,  # 2. own autocorrelation
            audible,  # 3. nothing is periodic: report how (a)periodic it is
        ):
            if np.any(chosen):
                return finite_or_none(np.mean(self.peaks[chosen]))
        return None

    def f0_mean(self) -> float | None:
        if self.voiced is None or not np.any(self.voiced):
            return None
        return finite_or_none(np.mean(self.f0[self.voiced]))

    def voiced_fraction(self) -> float | None:
        if self.voiced is None or len(self.voiced) == 0:
            return None
        return finite_or_none(np.mean(self.voiced))

    def summary(self) -> dict[str, float | None]:
        return {"rms_db": _rms_db(self.x), "kurtosis": _kurtosis(self.x), "periodicity": self.periodicity(),
                "f0_mean_hz": self.f0_mean(), "voiced_fraction": self.voiced_fraction()}
