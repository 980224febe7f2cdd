"""Spectral distances between two signals: log-spectral distance and mel-cepstral distortion."""

from __future__ import annotations

import math

import numpy as np

from .analysis import finite_or_none, hop_length_for, n_fft_for

#: Spectral floor of ``lsd_db`` / ``mcd_db``: powers are clipped to this many
#: dB below the *reference's* largest STFT-bin (mel-band) power before the log.
SPECTRAL_FLOOR_DB = 80.0
N_MELS = 40  #: mel bands for the cepstra of ``mcd_db``
MCD_ORDER = 24  #: mel-cepstral coefficients c1..c24 enter ``mcd_db`` (c0 excluded)
#: The standard MCD constant 10 * sqrt(2) / ln(10) ~= 6.1415 dB.
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)


def power_spectrum(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    n_fft = n_fft_for(sr)
    s = librosa.stft(x, n_fft=n_fft, hop_length=hop_length_for(sr), win_length=n_fft, window="hann", center=True)
    return np.abs(s) ** 2  # (freq, frames)


def lsd_db(p_gen: np.ndarray, p_ref: np.ndarray) -> float | None:
    """Mean over frames of sqrt(mean over frequency of (10 log10 P_gen - 10 log10 P_ref)^2)."""
    floor = max(float(np.max(p_ref)) * 10.0 ** (-SPECTRAL_FLOOR_DB / 10.0), 1e-20)
    d = 10.0 * np.log10(np.maximum(p_gen, floor)) - 10.0 * np.log10(np.maximum(p_ref, floor))
    return finite_or_none(np.mean(np.sqrt(np.mean(d * d, axis=0))))


def _mel_cepstra(mel_power: np.ndarray, floor: float) -> np.ndarray:
    """Cepstra c1..c24 (rows) in natural-log real-cepstrum units, the units of MCD_CONSTANT
    (librosa's orthonormal DCT-II of dB, rescaled; docs/audio-metrics.md)."""
    import librosa

    db = librosa.power_to_db(mel_power, ref=1.0, amin=floor, top_db=None)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=MCD_ORDER + 1, dct_type=2, norm="ortho")
    return mfcc[1:] * (math.log(10.0) / 20.0) / math.sqrt(2.0 * mel_power.shape[0])


def mcd_db(p_gen: np.ndarray, p_ref: np.ndarray, sr: int) -> float | None:
    """Mean over frames of MCD_CONSTANT * sqrt(sum_{d=1..24} (c_d - c'_d)^2)."""
    import librosa

    mel_fb = librosa.filters.mel(sr=sr, n_fft=n_fft_for(sr), n_mels=N_MELS, fmin=0.0, fmax=sr / 2.0)
    m_gen, m_ref = mel_fb @ p_gen, mel_fb @ p_ref
    floor = max(float(np.max(m_ref)) * 10.0 ** (-SPECTRAL_FLOOR_DB / 10.0), 1e-20)
    diff = _mel_cepstra(m_gen, floor) - _mel_cepstra(m_ref, floor)
    return finite_or_none(MCD_CONSTANT * np.mean(np.sqrt(np.sum(diff * diff, axis=0))))
