"""Tests for waveform_mdn.audio_metrics on synthetic signals with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.errors import InputError
from waveform_mdn.audio_metrics import METRIC_KEYS, finite_or_none, measure, measure_files

SR = 16000
GAIN_6DB = 20 * math.log10(2.0)  # doubling the amplitude: +6.02 dB


# --------------------------------------------------------------------------- signals
def _t(seconds: float, sr: int = SR) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def harmonic(f0, seconds: float = 1.0, sr: int = SR, n_harm: int = 6, amp: float = 0.3) -> np.ndarray:
    """Sum of harmonics with 1/k amplitudes; f0 may be a constant or a per-sample track."""
    t = _t(seconds, sr)
    f0 = np.broadcast_to(np.asarray(f0, dtype=float), t.shape)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return amp * sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))


def gliding(seconds: float = 1.5, sr: int = SR) -> np.ndarray:
    """Harmonic tone with f0 gliding 120 -> 180 Hz, plus a little noise (no empty spectral bins)."""
    t = _t(seconds, sr)
    f0 = 120 + 60 * t / seconds
    rng = np.random.default_rng(1)
    return harmonic(f0, seconds, sr) + 0.01 * rng.standard_normal(t.size)


def white_noise(seconds: float = 1.0, sr: int = SR, scale: float = 0.1, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))


def write(tmp_path, name: str, x: np.ndarray, sr: int = SR, subtype: str = "FLOAT"):
    path = tmp_path / name
    sf.write(path, x, sr, subtype=subtype)
    return path


def assert_clean(metrics: dict) -> None:
    """Every value is None or a finite Python float (ints allowed for bookkeeping keys)."""
    for key, value in metrics.items():
        if key in ("file", "reference"):
            continue
        assert value is None or (isinstance(value, (float, int)) and math.isfinite(value)), (key, value)
    json.dumps(metrics, allow_nan=False)  # raises on NaN / inf


@pytest.fixture(scope="module")
def glide() -> np.ndarray:
    return gliding()


@pytest.fixture(scope="module")
def glide_self(glide) -> dict:
    return measure(glide, SR, reference=glide)


# --------------------------------------------------------------------------- single-signal metrics
def test_harmonic_tone_from_wav(tmp_path):
    path = write(tmp_path, "tone150.wav", harmonic(150.0), subtype="PCM_16")
    m = measure_files(path)
    assert_clean(m)
    assert m["f0_mean_hz"] == pytest.approx(150.0, abs=3.0)
    assert m["voiced_fraction"] > 0.9
    assert m["periodicity"] > 0.8
    assert set(METRIC_KEYS) <= set(m)
    assert m["file"] == str(path) and m["reference"] is None
    assert m["sample_rate"] == SR
    assert m["duration_s"] == pytest.approx(1.0)


@pytest.mark.parametrize("f0", [70.0, 220.0, 380.0])
def test_f0_follows_the_tone(f0):
    m = measure(harmonic(f0, seconds=0.6), SR)
    assert m["f0_mean_hz"] == pytest.approx(f0, rel=0.03)
    # Normalised per lag, so a periodic frame scores ~1 even for long periods
    # (r(T)/r(0) would give only (N - T)/N, ~0.6 at 70 Hz).
    assert m["periodicity"] > 0.95


def test_periodicity_is_measured_in_voiced_frames():
    rng = np.random.default_rng(4)
    half = SR // 2
    x = np.concatenate([harmonic(150.0, seconds=0.5), 0.1 * rng.standard_normal(half)])
    m = measure(x, SR)
    assert m["voiced_fraction"] == pytest.approx(0.5, abs=0.08)
    assert m["periodicity"] > 0.9  # the noisy half is unvoiced and does not dilute it
    assert m["f0_mean_hz"] == pytest.approx(150.0, abs=3.0)  # mean over voiced frames only


def test_white_noise_is_aperiodic_and_unvoiced(tmp_path):
    path = write(tmp_path, "noise.wav", white_noise())
    m = measure_files(path)
    assert_clean(m)
    assert m["periodicity"] is not None and m["periodicity"] < 0.4
    assert m["voiced_fraction"] < 0.2
    assert m["kurtosis"] == pytest.approx(0.0, abs=0.3)  # Gaussian samples
    tone = measure(harmonic(150.0), SR)
    assert tone["periodicity"] > m["periodicity"] + 0.4


@pytest.mark.parametrize("seed", [7, 9])
def test_noise_that_fools_pyin_is_still_unvoiced(seed):
    """Bare pYIN calls 10-20 % of these particular noise clips voiced near fmin (~63 Hz);
    the autocorrelation veto must keep them unvoiced."""
    m = measure(white_noise(seed=seed), SR)
    assert m["voiced_fraction"] < 0.05
    assert (m["f0_mean_hz"] is None) == (m["voiced_fraction"] == 0.0)


def test_rms_db_of_a_sine_is_minus_3_dbfs():
    m = measure(np.sin(2 * np.pi * 440 * _t(0.5)), SR)
    assert m["rms_db"] == pytest.approx(-3.0103, abs=0.01)
    assert m["kurtosis"] == pytest.approx(-1.5, abs=0.01)  # excess kurtosis of a sine


def test_pulse_train_is_peakier_than_a_sine():
    n = SR
    pulses = np.zeros(n)
    pulses[:: SR // 150] = 0.8
    sine = 0.5 * np.sin(2 * np.pi * 150 * _t(1.0))
    k_pulse = measure(pulses, SR)["kurtosis"]
    k_sine = measure(sine, SR)["kurtosis"]
    assert k_pulse > 10.0 > 0.0 > k_sine


def test_periodicity_drops_as_noise_is_added():
    tone = harmonic(150.0)
    values = [measure(tone + white_noise(scale=s, seed=3), SR)["periodicity"] for s in (0.0, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]


def test_integer_pcm_matches_float():
    x = harmonic(150.0, seconds=0.5)
    pcm = np.round(x * 32767).astype(np.int16)
    a, b = measure(x, SR), measure(pcm, SR)
    assert a["rms_db"] == pytest.approx(b["rms_db"], abs=0.01)
    assert a["f0_mean_hz"] == pytest.approx(b["f0_mean_hz"], abs=0.5)


# --------------------------------------------------------------------------- comparisons
def test_signal_against_itself(tmp_path, glide):
    path = write(tmp_path, "glide.wav", glide)
    m = measure_files(path, reference_path=path)
    assert_clean(m)
    assert m["lsd_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["mcd_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["voicing_agreement"] == 1.0
    assert m["f0_rmse_hz"] == pytest.approx(0.0, abs=1e-9)
    assert m["f0_corr"] == pytest.approx(1.0, abs=1e-9)
    for k in ("rms_db", "kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction"):
        assert m["ref_" + k] == pytest.approx(m[k])
    assert m["reference"] == str(path)
    assert m["ref_duration_s"] == pytest.approx(m["duration_s"])


def test_gain_change(glide, glide_self):
    m = measure(2.0 * glide, SR, reference=glide)
    assert m["rms_db"] - m["ref_rms_db"] == pytest.approx(GAIN_6DB, abs=0.05)
    # A pure gain shifts every log-power bin by the same 6.02 dB ...
    assert m["lsd_db"] == pytest.approx(GAIN_6DB, abs=0.05)
    # ... which only moves c0, excluded from MCD.
    assert m["mcd_db"] < 0.1
    # Level-independent measures do not move.
    for k in ("kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction"):
        assert m[k] == pytest.approx(glide_self[k], rel=1e-3, abs=1e-6)
    assert m["voicing_agreement"] == 1.0
    assert m["f0_rmse_hz"] == pytest.approx(0.0, abs=0.5)


def test_lsd_is_rms_over_frequency():
    """Boosting exactly the upper half of the spectrum by 20 dB: per frame, about half
    the bins differ by 20 dB and half by 0, so the RMS over frequency is 20 / sqrt(2)."""
    x = white_noise()
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    spec[freqs >= SR / 4] *= 10.0
    y = np.fft.irfft(spec, x.size)
    m = measure(y, SR, reference=x)
    assert m["lsd_db"] == pytest.approx(20 / math.sqrt(2), abs=0.5)
    assert m["mcd_db"] > 1.0  # a spectral-shape change, unlike a gain change


def test_differences_below_the_spectral_floor_do_not_count():
    ref = harmonic(150.0)  # clean harmonics: bins between them are essentially empty
    gen = ref + 1e-7 * np.random.default_rng(6).standard_normal(ref.size)  # ~ -150 dB re peak
    m = measure(gen, SR, reference=ref)
    assert m["lsd_db"] < 0.5
    assert m["mcd_db"] < 0.5


def test_distances_grow_with_distortion(glide, glide_self):
    noisy = [measure(glide + white_noise(1.5, scale=s, seed=5), SR, reference=glide) for s in (0.02, 0.2)]
    lsd = [glide_self["lsd_db"]] + [m["lsd_db"] for m in noisy]
    mcd = [glide_self["mcd_db"]] + [m["mcd_db"] for m in noisy]
    assert lsd[0] < lsd[1] < lsd[2]
    assert mcd[0] < mcd[1] < mcd[2]


def test_f0_offset_is_the_rmse():
    gen, ref = harmonic(165.0), harmonic(150.0)
    m = measure(gen, SR, reference=ref)
    assert m["f0_rmse_hz"] == pytest.approx(15.0, abs=3.0)
    assert m["voicing_agreement"] > 0.9
    assert m["f0_mean_hz"] - m["ref_f0_mean_hz"] == pytest.approx(15.0, abs=3.0)


def test_f0_corr_sign_follows_the_contour():
    up = harmonic(np.linspace(120, 180, SR))
    down = harmonic(np.linspace(180, 120, SR))
    assert measure(up, SR, reference=up)["f0_corr"] == pytest.approx(1.0)
    m = measure(down, SR, reference=up)
    assert m["f0_corr"] < -0.9
    # f0 difference runs linearly from +60 to -60 Hz: RMS = 60 / sqrt(3).
    assert m["f0_rmse_hz"] == pytest.approx(60 / math.sqrt(3), abs=3.0)


def test_voicing_disagreement_with_noise(glide):
    m = measure(white_noise(1.5), SR, reference=glide)
    assert_clean(m)
    assert m["voicing_agreement"] < 0.2
    if m["voiced_fraction"] == 0.0:  # nothing voiced in both: pitch comparisons undefined
        assert m["f0_rmse_hz"] is None and m["f0_corr"] is None
    assert m["ref_periodicity"] > m["periodicity"]
    # Two unrelated noises are both unvoiced: their voicing decisions agree.
    assert measure(white_noise(seed=7), SR, reference=white_noise(seed=8))["voicing_agreement"] > 0.9


def test_different_lengths_compare_the_common_prefix(glide):
    m = measure(glide[: SR // 2], SR, reference=glide)
    assert_clean(m)
    assert m["lsd_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["mcd_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["voicing_agreement"] > 0.95
    assert m["f0_rmse_hz"] < 2.0


@pytest.mark.parametrize("value,expected", [
    (0.5, 0.5), (3, 3.0), (np.float32(0.25), 0.25), (np.int64(-2), -2.0), (np.float64(1e300), 1e300),
    (None, None), (math.nan, None), (-math.inf, None), (np.float32("inf"), None),
    ("1.0", None), (True, None), (np.bool_(False), None), ([1.0], None),
])
def test_finite_or_none_keeps_finite_numbers_only(value, expected):
    """The one cleaner of values for JSON and tables: numbers (numpy's too) become floats;
    text, booleans and non-finite values (as a hand-edited measurements.json may hold) become None."""
    got = finite_or_none(value)
    assert got == expected and (got is None or type(got) is float)


def test_no_reference_gives_none_for_comparisons():
    m = measure(harmonic(150.0, seconds=0.3), SR)
    assert list(m) == list(METRIC_KEYS)
    for k in ("lsd_db", "mcd_db", "f0_rmse_hz", "voicing_agreement", "f0_corr", "ref_rms_db"):
        assert m[k] is None


# --------------------------------------------------------------------------- degenerate input
def test_silence(tmp_path):
    path = write(tmp_path, "silence.wav", np.zeros(SR))
    m = measure_files(path, reference_path=path)
    assert_clean(m)
    assert m["rms_db"] is None and m["kurtosis"] is None and m["periodicity"] is None
    assert m["f0_mean_hz"] is None and m["voiced_fraction"] == 0.0
    m = measure(np.zeros(SR), SR, reference=harmonic(150.0))
    assert_clean(m)
    assert m["voicing_agreement"] < 0.1


def test_dc_offset_is_neither_periodic_nor_voiced():
    m = measure(np.full(SR, 0.25), SR)
    assert m["periodicity"] is None and m["voiced_fraction"] == 0.0 and m["kurtosis"] is None
    assert m["rms_db"] == pytest.approx(20 * math.log10(0.25))
    tone = harmonic(150.0, seconds=0.5)
    shifted = measure(tone + 0.3, SR)
    plain = measure(tone, SR)
    for k in ("periodicity", "f0_mean_hz", "voiced_fraction"):
        assert shifted[k] == pytest.approx(plain[k], abs=1e-6)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 639])
def test_shorter_than_one_frame(n):
    x = harmonic(150.0, seconds=0.1)[:n]
    m = measure(x, SR, reference=x)
    assert_clean(m)
    for k in ("periodicity", "f0_mean_hz", "voiced_fraction", "f0_rmse_hz", "voicing_agreement", "f0_corr"):
        assert m[k] is None
    assert (m["rms_db"] is None) == (n == 0)


def test_clipped_noise():
    x = np.clip(white_noise(scale=3.0), -1.0, 1.0)
    m = measure(x, SR, reference=white_noise(seed=9))
    assert_clean(m)
    assert m["kurtosis"] < -1.0  # mass piled up at +-1: flatter than Gaussian
    assert m["rms_db"] > -3.0
    assert m["periodicity"] < 0.4


def test_nonfinite_input_is_rejected():
    x = harmonic(150.0, seconds=0.2)
    x[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        measure(x, SR)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 4000),
    kind=st.sampled_from(["noise", "const", "spikes", "clipped", "tiny"]),
    seed=st.integers(0, 2**16),
)
def test_never_nan(n, kind, seed):
    rng = np.random.default_rng(seed)
    x = {
        "noise": lambda: rng.standard_normal(n) * 0.1,
        "const": lambda: np.full(n, 0.25),
        "spikes": lambda: (rng.random(n) < 0.01) * 1.0,
        "clipped": lambda: np.clip(rng.standard_normal(n) * 10, -1, 1),
        "tiny": lambda: rng.standard_normal(n) * 1e-12,
    }[kind]()
    ref = rng.standard_normal(rng.integers(0, 4000)) * 0.1
    m = measure(x, SR, reference=ref)
    assert list(m) == list(METRIC_KEYS)
    assert_clean(m)


# --------------------------------------------------------------------------- files and errors
def test_mismatched_sample_rates(tmp_path):
    gen = write(tmp_path, "gen_16k.wav", harmonic(150.0, seconds=0.2))
    ref = write(tmp_path, "ref_22k.wav", harmonic(150.0, seconds=0.2, sr=22050), sr=22050)
    with pytest.raises(ValueError, match="ref_22k.wav") as err:
        measure_files(gen, reference_path=ref)
    assert "gen_16k.wav" in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is not a wav file")
    with pytest.raises(ValueError, match="not_audio.wav"):
        measure_files(bad)
    good = write(tmp_path, "ok.wav", harmonic(150.0, seconds=0.2))
    with pytest.raises(ValueError, match="not_audio.wav"):
        measure_files(good, reference_path=bad)
    with pytest.raises(InputError, match="missing.wav"):  # the CLI's one handler exits 2
        measure_files(tmp_path / "missing.wav")


def test_stereo_file_is_mixed_to_mono(tmp_path):
    x = harmonic(150.0, seconds=0.5)
    path = write(tmp_path, "stereo.wav", np.stack([x, x], axis=1))
    m = measure_files(path)
    assert m["rms_db"] == pytest.approx(measure(x, SR)["rms_db"], abs=1e-4)
    assert m["duration_s"] == pytest.approx(0.5)


@pytest.mark.parametrize("signal", ["tone_on_a_ramp", "noise"])
def test_frame_periodicity_is_the_documented_correlation(signal):
    """``_nccf_peaks`` against a per-frame, per-lag loop of the formula in
    docs/audio-metrics.md: centred zero-padded frames, each frame's mean removed, the
    correlation of its first N-t and last N-t samples over the root of their energies, the
    peak over the lags of 60-400 Hz clipped to [0, 1]; and each frame's energy."""
    from waveform_mdn.audio_metrics.analysis import F0_MAX_HZ, F0_MIN_HZ, _nccf_peaks, frame_length_for, hop_length_for

    sr, rng = 8000, np.random.default_rng(7)
    t = np.arange(int(0.25 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 157.0 * t) + 2.0 * t if signal == "tone_on_a_ramp"  # the ramp: a mean per frame
         else 0.2 * rng.standard_normal(len(t)) + 0.5)
    n, hop = frame_length_for(sr), hop_length_for(sr)
    padded = np.pad(x, (n // 2, n // 2))
    peaks, energy = _nccf_peaks(x, sr)
    assert len(peaks) == len(energy) == 1 + len(x) // hop
    for i in range(len(peaks)):
        f = padded[i * hop: i * hop + n]
        f = f - f.mean()
        best = -np.inf
        for lag in range(max(1, int(np.floor(sr / F0_MAX_HZ))), min(n - 2, int(np.ceil(sr / F0_MIN_HZ))) + 1):
            head, tail = f[: n - lag], f[lag:]
            denom = np.sqrt(np.dot(head, head) * np.dot(tail, tail))
            best = max(best, np.dot(head, tail) / denom if denom > 1e-12 * max(np.dot(f, f), 1e-30) else 0.0)
        assert peaks[i] == pytest.approx(min(max(best, 0.0), 1.0), abs=1e-9), i
        assert energy[i] == pytest.approx(np.dot(f, f), rel=1e-9), i
    if signal == "tone_on_a_ramp":
        assert np.median(peaks) > 0.95  # periodic in 8000 / 157 samples, whatever the ramp


def test_pitch_comparisons_over_the_frames_voiced_in_both():
    """``_compare`` on hand-made pitch tracks: voicing agreement over the common frames; the
    f0 RMSE and correlation over the frames voiced in both; no correlation from fewer than 3
    such frames or a flat track; no spectral distance for audio shorter than one FFT."""
    from types import SimpleNamespace

    from waveform_mdn.audio_metrics import _compare

    nan = float("nan")

    def track(f0, extra=0):
        f0 = np.array(f0 + [150.0] * extra)
        return SimpleNamespace(x=np.zeros(100), f0=f0, voiced=np.isfinite(f0))

    gen = track([100.0, 110.0, 120.0, nan, 130.0], extra=3)  # 3 more frames: beyond the reference
    ref = track([100.0, 100.0, nan, 90.0, 120.0])
    m = _compare(gen, ref, SR)
    assert m["voicing_agreement"] == pytest.approx(3 / 5)  # frames 0, 1, 4 agree
    assert m["f0_rmse_hz"] == pytest.approx(math.sqrt((0 + 10**2 + 10**2) / 3))
    assert m["f0_corr"] == pytest.approx(np.corrcoef([100, 110, 130], [100, 100, 120])[0, 1])
    assert m["lsd_db"] is None and m["mcd_db"] is None
    flat = _compare(gen, track([100.0, 100.0, nan, 90.0, 100.0]), SR)
    assert flat["f0_rmse_hz"] is not None and flat["f0_corr"] is None
    two = _compare(track([100.0, 110.0, nan, nan, nan]), ref, SR)
    assert two["f0_rmse_hz"] == pytest.approx(math.sqrt(50)) and two["f0_corr"] is None
