"""Objective measurements of (generated) speech audio.

These numbers make qualitative listening notes measurable, e.g. "the model
captured the periodicity but is peakier than natural speech" becomes
``periodicity`` close to ``ref_periodicity`` while ``kurtosis`` is well above
``ref_kurtosis``.

Everything is plain numpy / scipy / librosa (no torch).  Two entry points::

    measure(audio, sr, reference=None) -> dict[str, float | None]
    measure_files(path, reference_path=None) -> dict

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
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import scipy.stats

__all__ = [
    "measure",
    "measure_files",
    "METRIC_KEYS",
    "FRAME_S",
    "HOP_S",
    "F0_MIN_HZ",
    "F0_MAX_HZ",
    "MCD_CONSTANT",
    "VOICING_MIN_PERIODICITY",
]

# --------------------------------------------------------------------------- constants
FRAME_S = 0.040  #: analysis frame for pYIN and periodicity (s)
HOP_S = 0.010  #: hop for every frame-based metric (s)
SPEC_FRAME_S = 0.032  #: nominal STFT frame for lsd/mcd; n_fft is the nearest power of two
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0

#: A frame pYIN calls voiced only counts as voiced if its own normalised
#: autocorrelation peak (see ``_nccf_peaks``) is at least this.  pYIN alone
#: calls runs of white-noise frames "voiced" near fmin (f0 ~60-66 Hz) in about
#: 1 in 8 one-second 16 kHz noise clips, with autocorrelation peaks of only
#: 0.10-0.22; in the demo corpus's speech, frames pYIN calls voiced are below
#: 0.3 only ~1-3 % of the time.  This veto keeps a model that outputs noise from being
#: reported as partly voiced at ~63 Hz.
VOICING_MIN_PERIODICITY = 0.3
#: If no frame is voiced, a frame counts as voiced for ``periodicity``
#: when its own normalised-autocorrelation peak reaches this value.
AUTOCORR_VOICING_THRESHOLD = 0.5
#: A frame whose energy is this many dB (or more) below the loudest frame of
#: the same signal is "silent" and ignored by ``periodicity`` (its
#: autocorrelation is dominated by rounding noise / the padding).
SILENCE_DB_BELOW_MAX = 60.0

#: Spectral floor of ``lsd_db`` / ``mcd_db``: powers are clipped to this many
#: dB below the *reference's* largest STFT-bin (mel-band) power before the log.
SPECTRAL_FLOOR_DB = 80.0
N_MELS = 40  #: mel bands for the cepstra of ``mcd_db``
MCD_ORDER = 24  #: mel-cepstral coefficients c1..c24 enter ``mcd_db`` (c0 excluded)
#: The standard MCD constant 10 * sqrt(2) / ln(10) ~= 6.1415 dB.
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)

_SINGLE_KEYS = ("rms_db", "kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction")
_COMPARE_KEYS = ("lsd_db", "mcd_db", "f0_rmse_hz", "voicing_agreement", "f0_corr")
#: Every key ``measure`` returns, in order.
METRIC_KEYS = _SINGLE_KEYS + _COMPARE_KEYS + tuple("ref_" + k for k in _SINGLE_KEYS)


# --------------------------------------------------------------------------- helpers
def _clean(value) -> float | None:
    """Python float, or None for None / NaN / inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _as_signal(audio, name: str) -> np.ndarray:
    """1-D float64 copy of ``audio``; integer PCM is scaled to [-1, 1)."""
    x = np.asarray(audio)
    if x.ndim > 1:
        x = np.squeeze(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D (mono) signal, got shape {np.shape(audio)}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    else:
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return x


def _frame_length(sr: int) -> int:
    n = int(round(FRAME_S * sr))
    return n + (n % 2)  # even, so centred framing gives exactly 1 + n // hop frames


def _hop_length(sr: int) -> int:
    return max(1, int(round(HOP_S * sr)))


def _n_fft(sr: int) -> int:
    return int(2 ** round(math.log2(SPEC_FRAME_S * sr)))


# --------------------------------------------------------------------------- single-signal analysis
def _rms_db(x: np.ndarray) -> float | None:
    """RMS level in dBFS: 20*log10(sqrt(mean(x**2))), full scale = amplitude 1.

    (A full-scale sine is therefore -3.01 dBFS.)  None for empty / all-zero.
    """
    if x.size == 0:
        return None
    rms = math.sqrt(float(np.mean(x * x)))
    return _clean(20.0 * math.log10(rms)) if rms > 0 else None


def _kurtosis(x: np.ndarray) -> float | None:
    """Excess (Fisher) kurtosis of the sample values; 0 for Gaussian, -1.5 for a sine."""
    if x.size < 4 or np.all(x == x[0]):
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss on near-constant input
        return _clean(scipy.stats.kurtosis(x, fisher=True, bias=True))


def _frames(x: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames, shape (n_frames, frame_length); like librosa center=True."""
    import librosa

    pad = frame_length // 2
    xp = np.pad(x, (pad, pad), mode="constant")
    return librosa.util.frame(xp, frame_length=frame_length, hop_length=hop, axis=0)


def _nccf_peaks(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame peak of the normalised cross-correlation and per-frame energy.

    For a frame ``f`` of N samples (mean removed) and a lag ``t``::

        r(t) = sum_{n<N-t} f[n] f[n+t] / sqrt(sum_{n<N-t} f[n]^2 * sum_{n<N-t} f[n+t]^2)

    i.e. the correlation between the frame's first N-t and last N-t samples,
    which is exactly 1 for a perfectly periodic frame with period t
    (unlike r(t)/r(0), it does not shrink with the lag).  The peak is the
    maximum over integer lags ``floor(sr/400) .. ceil(sr/60)`` (60-400 Hz),
    clipped to [0, 1].  Autocorrelations are computed with one FFT per frame.
    """
    import scipy.fft

    n = _frame_length(sr)
    hop = _hop_length(sr)
    frames = _frames(x, n, hop)
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
    # Treat lags whose overlapping parts carry (essentially) no energy as uncorrelated.
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
        f0, voiced, _ = librosa.pyin(
            x,
            fmin=F0_MIN_HZ,
            fmax=F0_MAX_HZ,
            sr=sr,
            frame_length=_frame_length(sr),
            hop_length=_hop_length(sr),
            center=True,
        )
    voiced = np.asarray(voiced, dtype=bool) & np.isfinite(f0)
    return np.asarray(f0, dtype=np.float64), voiced


class _Analysis:
    """Everything about one signal that the metrics need, computed once."""

    def __init__(self, x: np.ndarray, sr: int):
        self.x = x
        self.sr = sr
        self.long_enough = x.size >= _frame_length(sr)
        self.f0 = self.voiced = self.peaks = self.energy = None
        # Pitch analysis ignores a DC offset: with it, the zero padding of the
        # centred edge frames would create steps that look periodic.
        ac = x - np.mean(x) if x.size and np.any(x != x[0]) else np.zeros_like(x)
        if self.long_enough and np.any(ac != 0):
            self.f0, self.voiced = _pyin(ac, sr)
            self.peaks, self.energy = _nccf_peaks(ac, sr)
            m = min(len(self.f0), len(self.peaks))
            self.f0, self.voiced = self.f0[:m], self.voiced[:m]
            self.peaks, self.energy = self.peaks[:m], self.energy[:m]
            self.voiced &= self.peaks >= VOICING_MIN_PERIODICITY
        elif self.long_enough:  # digital silence / pure DC: nothing voiced, nothing periodic
            m = 1 + x.size // _hop_length(sr)
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
                return _clean(np.mean(self.peaks[chosen]))
        return None

    def f0_mean(self) -> float | None:
        if self.voiced is None or not np.any(self.voiced):
            return None
        return _clean(np.mean(self.f0[self.voiced]))

    def voiced_fraction(self) -> float | None:
        if self.voiced is None or len(self.voiced) == 0:
            return None
        return _clean(np.mean(self.voiced))

    def summary(self) -> dict[str, float | None]:
        return {
            "rms_db": _rms_db(self.x),
            "kurtosis": _kurtosis(self.x),
            "periodicity": self.periodicity(),
            "f0_mean_hz": self.f0_mean(),
            "voiced_fraction": self.voiced_fraction(),
        }


# --------------------------------------------------------------------------- comparisons
def _power_spec(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    n_fft = _n_fft(sr)
    s = librosa.stft(x, n_fft=n_fft, hop_length=_hop_length(sr), win_length=n_fft, window="hann", center=True)
    return np.abs(s) ** 2  # (freq, frames)


def _lsd_db(p_gen: np.ndarray, p_ref: np.ndarray) -> float | None:
    """Mean over frames of sqrt(mean over frequency of (10 log10 P_gen - 10 log10 P_ref)^2)."""
    floor = max(float(np.max(p_ref)) * 10.0 ** (-SPECTRAL_FLOOR_DB / 10.0), 1e-20)
    d = 10.0 * np.log10(np.maximum(p_gen, floor)) - 10.0 * np.log10(np.maximum(p_ref, floor))
    return _clean(np.mean(np.sqrt(np.mean(d * d, axis=0))))


def _mel_cepstra(mel_power: np.ndarray, floor: float) -> np.ndarray:
    """Cepstra c1..c24 in natural-log-amplitude units (rows), from mel power spectra.

    librosa.feature.mfcc on a dB spectrogram gives orthonormal DCT-II
    coefficients of 10*log10(P) = (20/ln 10) * ln|X|.  Dividing by
    (20/ln 10) * sqrt(2 * n_mels) turns them into real-cepstrum coefficients
    c_d (log|X| = c0 + 2 sum_d c_d cos(...)), the units in which the standard
    MCD constant is defined.
    """
    import librosa

    db = librosa.power_to_db(mel_power, ref=1.0, amin=floor, top_db=None)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=MCD_ORDER + 1, dct_type=2, norm="ortho")
    return mfcc[1:] * (math.log(10.0) / 20.0) / math.sqrt(2.0 * mel_power.shape[0])


def _mcd_db(p_gen: np.ndarray, p_ref: np.ndarray, sr: int) -> float | None:
    """Mean over frames of MCD_CONSTANT * sqrt(sum_{d=1..24} (c_d - c'_d)^2)."""
    import librosa

    mel_fb = librosa.filters.mel(sr=sr, n_fft=_n_fft(sr), n_mels=N_MELS, fmin=0.0, fmax=sr / 2.0)
    m_gen, m_ref = mel_fb @ p_gen, mel_fb @ p_ref
    floor = max(float(np.max(m_ref)) * 10.0 ** (-SPECTRAL_FLOOR_DB / 10.0), 1e-20)
    diff = _mel_cepstra(m_gen, floor) - _mel_cepstra(m_ref, floor)
    return _clean(MCD_CONSTANT * np.mean(np.sqrt(np.sum(diff * diff, axis=0))))


def _compare(gen: _Analysis, ref: _Analysis, sr: int) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(_COMPARE_KEYS)
    n = min(gen.x.size, ref.x.size)
    # Spectral distances on the common prefix (frame-aligned, no DTW).
    if n >= _n_fft(sr):
        p_gen, p_ref = _power_spec(gen.x[:n], sr), _power_spec(ref.x[:n], sr)
        out["lsd_db"] = _lsd_db(p_gen, p_ref)
        out["mcd_db"] = _mcd_db(p_gen, p_ref, sr)
    # Pitch comparisons on frames 0 .. min(n_frames) - 1 of the per-signal pYIN tracks.
    if gen.voiced is not None and ref.voiced is not None:
        m = min(len(gen.voiced), len(ref.voiced))
        vg, vr = gen.voiced[:m], ref.voiced[:m]
        if m:
            out["voicing_agreement"] = _clean(np.mean(vg == vr))
        both = vg & vr
        if np.any(both):
            fg, fr = gen.f0[:m][both], ref.f0[:m][both]
            out["f0_rmse_hz"] = _clean(np.sqrt(np.mean((fg - fr) ** 2)))
            if both.sum() >= 3 and np.std(fg) > 0 and np.std(fr) > 0:
                out["f0_corr"] = _clean(np.corrcoef(fg, fr)[0, 1])
    return out


# --------------------------------------------------------------------------- public API
def measure(audio: np.ndarray, sr: int, reference: np.ndarray | None = None) -> dict[str, float | None]:
    """Measure ``audio`` (mono, float in [-1, 1] or integer PCM) at sample rate ``sr``.

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
    sr = int(sr)
    if sr < 2 * F0_MAX_HZ:
        raise ValueError(f"sample rate {sr} Hz is too low: need at least {2 * F0_MAX_HZ:.0f} Hz")
    x = _as_signal(audio, "audio")
    gen = _Analysis(x, sr)
    out: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    out.update(gen.summary())
    if reference is not None:
        ref = _Analysis(_as_signal(reference, "reference"), sr)
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
