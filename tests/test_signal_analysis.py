"""Known answers for the per-signal analysis behind every audio metric
(waveform_mdn/audio_metrics/analysis.py): shapes accepted, frame and hop lengths, kurtosis,
and which frames ``periodicity`` averages."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.audio import AudioError
from waveform_mdn.audio_metrics.analysis import (
    SignalAnalysis, _kurtosis, as_signal, frame_length_for, hop_length_for,
)


def test_a_row_or_column_is_squeezed_to_mono_and_two_channels_are_refused():
    x = np.linspace(-0.5, 0.5, 8)
    np.testing.assert_array_equal(as_signal(x[None, :], "clip"), x)
    np.testing.assert_array_equal(as_signal(x[:, None, None], "clip"), x)
    with pytest.raises(AudioError, match=r"the clip must be a 1-D \(mono\) signal, got shape \(2, 8\)"):
        as_signal(np.stack([x, x]), "the clip")


@pytest.mark.parametrize("sr", [50, 8000, 11025, 16000, 22050, 44100])
def test_frame_and_hop_lengths(sr):
    """40 ms rounded up to an even count of samples; a 10 ms hop, at least one sample."""
    n = round(0.040 * sr)
    assert frame_length_for(sr) == (n if n % 2 == 0 else n + 1)
    assert hop_length_for(sr) == max(1, round(0.010 * sr))


def _naive_excess_kurtosis(x):
    m = sum(x) / len(x)
    m2 = sum((v - m) ** 2 for v in x) / len(x)
    m4 = sum((v - m) ** 4 for v in x) / len(x)
    return m4 / m2**2 - 3.0


@pytest.mark.parametrize("x", [[0.0, 0.0, 0.0, 1.0], [0.1, -0.2, 0.3, 0.05, -0.4],
                               list(np.random.default_rng(0).standard_t(5, 300) * 0.1)])
def test_kurtosis_is_the_population_excess_kurtosis(x):
    assert _kurtosis(np.array(x)) == pytest.approx(_naive_excess_kurtosis(x), rel=1e-9)


@pytest.mark.parametrize("x", [[0.1, 0.2, 0.3], [0.25] * 10, []])
def test_kurtosis_of_too_few_or_constant_samples_is_none(x):
    assert _kurtosis(np.array(x)) is None


def _analysis(energy, peaks, voiced) -> SignalAnalysis:
    """A SignalAnalysis with these per-frame values, as if measured."""
    a = SignalAnalysis(np.zeros(0), 16000)
    a.energy, a.peaks, a.voiced = np.array(energy), np.array(peaks), np.array(voiced)
    return a


# frames: loudest, -57 dB, exactly -60 dB, -61 dB, -70 dB (the last three inaudible)
ENERGY = [1.0, 2e-6, 1e-6, 8e-7, 1e-7]


def test_periodicity_averages_the_voiced_audible_frames():
    a = _analysis(ENERGY, [0.9, 0.7, 0.2, 0.1, 0.05], [True] * 5)
    assert a.periodicity() == pytest.approx((0.9 + 0.7) / 2)
    a = _analysis([0.5 * e for e in ENERGY], [0.9, 0.7, 0.2, 0.1, 0.05], [True, False, True, True, True])
    assert a.periodicity() == pytest.approx(0.9)


def test_without_voiced_frames_periodicity_falls_back_to_the_autocorrelation_then_to_all_audible():
    a = _analysis(ENERGY, [0.9, 0.5, 0.8, 0.8, 0.8], [False] * 5)
    assert a.periodicity() == pytest.approx((0.9 + 0.5) / 2)  # a peak of exactly 0.5 counts
    a = _analysis(ENERGY, [0.4, 0.3, 0.9, 0.9, 0.9], [False] * 5)
    assert a.periodicity() == pytest.approx((0.4 + 0.3) / 2)  # nothing periodic: the audible frames


def test_periodicity_of_zero_energy_is_none():
    assert _analysis([0.0, 0.0], [0.0, 0.0], [False, False]).periodicity() is None


@pytest.mark.parametrize("voiced, fraction", [([True], 1.0), ([False, True, True, False], 0.5), ([], None)])
def test_voiced_fraction(voiced, fraction):
    assert _analysis([1.0] * len(voiced), [0.0] * len(voiced), voiced).voiced_fraction() == fraction


def test_silence_has_as_many_frames_as_a_signal_of_its_length():
    """Digital silence skips pYIN but keeps the frame count that pYIN gives a sound."""
    sr, n = 16000, 16000 + 37
    sound = SignalAnalysis(np.sin(2 * np.pi * 200 * np.arange(n) / sr), sr)
    silence = SignalAnalysis(np.zeros(n), sr)
    assert len(silence.f0) == len(silence.voiced) == len(silence.peaks) == len(silence.energy) == len(sound.f0)
    assert np.all(np.isnan(silence.f0)) and not silence.voiced.any() and silence.periodicity() is None


def test_a_signal_exactly_one_frame_long_is_analysed():
    sr = 16000
    n = frame_length_for(sr)
    a = SignalAnalysis(np.sin(2 * np.pi * 250 * np.arange(n) / sr), sr)
    assert a.long_enough and a.periodicity() is not None
    assert not SignalAnalysis(np.ones(n - 1), sr).long_enough
