"""The judges (DNSMOS, PocketSphinx phone error rate) on real models with known answers."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import soundfile as sf

from data_prep.phones import TIMIT61
from waveform_mdn.audio_metrics import JUDGE_KEYS, METRIC_KEYS, REF_JUDGE_KEYS, measure, measure_files
from waveform_mdn.audio_metrics import judges as J
from waveform_mdn.audio_metrics.phone_fold import fold_recognised, fold_timit

SR = 16000
#: DNSMOS OVRL of the shared sample's dr1-mcpm0/sa1, measured with the pinned packages.
SA1_OVRL = 2.68


@pytest.fixture
def sa1(timit_sample):
    wav = timit_sample / "dr1-mcpm0" / "sa1.wav"
    x, sr = sf.read(wav)
    return wav, x, sr


# --------------------------------------------------------------------------- fold and PER by hand
FOLD_BY_HAND = {
    "aa": "aa", "ae": "ae", "ah": "ah", "ao": "aa", "aw": "aw", "ax": "ah", "ax-h": "ah", "axr": "er",
    "ay": "ay", "b": "b", "bcl": None, "ch": "ch", "d": "d", "dcl": None, "dh": "dh", "dx": "dx",
    "eh": "eh", "el": "l", "em": "m", "en": "n", "eng": "ng", "epi": None, "er": "er", "ey": "ey",
    "f": "f", "g": "g", "gcl": None, "h#": None, "hh": "hh", "hv": "hh", "ih": "ih", "ix": "ih",
    "iy": "iy", "jh": "jh", "k": "k", "kcl": None, "l": "l", "m": "m", "n": "n", "ng": "ng", "nx": "n",
    "ow": "ow", "oy": "oy", "p": "p", "pau": None, "pcl": None, "q": None, "r": "r", "s": "s", "sh": "sh",
    "t": "t", "tcl": None, "th": "th", "uh": "uh", "uw": "uw", "ux": "uw", "v": "v", "w": "w", "y": "y",
    "z": "z", "zh": "sh",
}


def test_fold_matches_the_hand_written_map_on_every_timit_phone():
    assert sorted(FOLD_BY_HAND) == sorted(TIMIT61)
    assert {p: fold_timit(p) for p in TIMIT61} == FOLD_BY_HAND
    assert fold_timit("SIL") is None and fold_timit("AX-H") == "ah"  # the 39 set's sil; case


def test_sphinx_phones_fold_to_the_same_set():
    for word, phone in [("AO", "aa"), ("ZH", "sh"), ("AH", "ah"), ("T", "t"), ("SIL", None),
                        ("+NSN+", None), ("+SPN+", None), ("<sil>", None), ("SP", None), ("[NOISE]", None)]:
        assert fold_recognised(word) == phone, word


def test_the_phn_beside_a_wav_in_either_case(tmp_path):
    """TIMIT's own layout writes ``.PHN``, the NLTK sample ``.phn``: the labels, in order."""
    for stem, suffix in (("SA1", ".PHN"), ("sa2", ".phn")):
        (tmp_path / f"{stem}{suffix}").write_text("0 100 h#\n100 900 sh\n900 2000 iy\n2000 2400 h#\n")
        assert J.phones_beside(tmp_path / f"{stem}.WAV") == ["h#", "sh", "iy", "h#"]
    assert J.phones_beside(tmp_path / "other.wav") is None


def test_phone_error_rate_is_the_hand_worked_levenshtein_distance():
    ref = J.intended_phones_39(["h#", "k", "ae", "tcl", "t", "q", "s", "h#"])
    assert ref == ["k", "ae", "t", "s"]
    hyp = [p for p in map(fold_recognised, ["SIL", "K", "AO", "T", "+NSN+", "S", "IY", "SIL"]) if p]
    assert hyp == ["k", "aa", "t", "s", "iy"]
    # k=k, ae->aa (substitution), t=t, s=s, +iy (insertion): 2 edits over 4 reference phones
    assert J.edit_distance(hyp, ref) == 2
    assert J.phone_error_rate(hyp, ref) == pytest.approx(0.5)
    assert J.edit_distance(["ae", "t"], ref) == 2  # two deletions
    assert J.edit_distance([], ref) == 4 and J.phone_error_rate([], ref) == 1.0
    assert J.edit_distance(["iy", "iy"], []) == 2  # insertions only
    assert J.edit_distance(["s", "t", "ae", "k"], ref) == 4  # reversed: four substitutions
    assert J.phone_error_rate(hyp, []) is None


# --------------------------------------------------------------------------- real models
def test_natural_speech_scores_in_its_band_and_drops_in_white_noise(judges_loaded, sa1):
    wav, x, sr = sa1
    m = measure_files(wav, judges=True)  # intended phones from the .phn beside the WAV
    assert m["dnsmos_ovrl"] == pytest.approx(SA1_OVRL, abs=0.15)
    assert 2.5 < m["dnsmos_sig"] < 3.6 and 3.3 < m["dnsmos_bak"] < 4.5 and 3.2 < m["dnsmos_p808"] < 4.3
    assert m["phone_error_rate"] < 0.75  # a weak recogniser, but far from noise's 1.0
    assert len(m["recognised_phones"].split()) > 15
    noise = np.random.default_rng(0).standard_normal(x.size)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2))  # 0 dB SNR
    noisy = (x + noise) / max(1.0, np.max(np.abs(x + noise)))
    assert J.judge(noisy, sr, J.phones_beside(wav))["dnsmos_ovrl"] <= m["dnsmos_ovrl"] - 1.0


def test_other_rates_are_resampled_to_16k(judges_loaded, sa1):
    import librosa

    wav, x, sr = sa1
    at_22k = J.judge(librosa.resample(x, orig_sr=sr, target_sr=22050), 22050, J.phones_beside(wav))
    at_16k = J.judge(x, sr, J.phones_beside(wav))
    assert at_22k["dnsmos_ovrl"] == pytest.approx(at_16k["dnsmos_ovrl"], abs=0.1)
    assert at_22k["phone_error_rate"] == pytest.approx(at_16k["phone_error_rate"], abs=0.1)


@pytest.mark.parametrize("kind", ["white noise", "200 Hz tone"])
def test_noise_and_a_tone_are_judged_not_speech(judges_loaded, kind):
    t = np.arange(3 * SR) / SR
    audio = 0.1 * np.random.default_rng(3).standard_normal(t.size) if kind == "white noise" \
        else 0.3 * np.sin(2 * np.pi * 200 * t)
    out = J.judge(audio, SR, ["h#", "dh", "ax", "k", "ae", "tcl", "t", "s", "ae", "tcl", "h#"])
    assert out["dnsmos_ovrl"] < 1.5
    assert out["phone_error_rate"] > 0.9


def test_measure_adds_the_judges_of_audio_and_reference(judges_loaded, sa1, tmp_path):
    wav, x, sr = sa1
    m = measure(x[: 2 * sr], sr, reference=x, judges=True, intended_phones=J.phones_beside(wav))
    assert list(m) == list(METRIC_KEYS) + list(JUDGE_KEYS) + list(REF_JUDGE_KEYS)
    assert m["ref_dnsmos_ovrl"] == pytest.approx(SA1_OVRL, abs=0.15)
    assert m["phone_error_rate"] > m["ref_phone_error_rate"]  # the cut file misses its last second
    alone = measure(x, sr, judges=True)
    assert alone["phone_error_rate"] is None and alone["ref_dnsmos_ovrl"] is None
    assert alone["recognised_phones"] == m["ref_recognised_phones"]


def test_files_are_judged_against_the_phn_beside_them_or_their_reference(judges_loaded, sa1, tmp_path):
    """A generated WAV without a .PHN takes its reference's; the reference judged once by
    ``reference_judges`` is what ``measure_files`` gives for it; ``judge_reference=False``
    leaves it out; the intended phones are the .PHN's labels, in order."""
    from waveform_mdn.audio_metrics import intended_phones_beside, reference_judges

    wav, x, sr = sa1
    take = tmp_path / "take.wav"
    sf.write(take, x[: 2 * sr], sr)
    labels = [line.split()[2] for line in wav.with_suffix(".phn").read_text().split("\n") if line.strip()]
    assert intended_phones_beside(take) is None and intended_phones_beside(take, wav) == labels == J.phones_beside(wav)
    both = measure_files(take, wav, judges=True)
    assert both["phone_error_rate"] == measure(x[: 2 * sr], sr, judges=True, intended_phones=labels)["phone_error_rate"]
    assert reference_judges(wav, labels) == {k: both[k] for k in REF_JUDGE_KEYS}
    once = measure_files(take, wav, judges=True, judge_reference=False)
    assert all(once[k] is None for k in REF_JUDGE_KEYS) and once["phone_error_rate"] == both["phone_error_rate"]


def test_a_too_short_file_gives_none_with_a_logged_reason(tmp_path, caplog):
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.sin(2 * np.pi * 150 * np.arange(int(0.3 * SR)) / SR), SR)
    with caplog.at_level(logging.WARNING, logger=J.__name__):
        m = measure_files(short, judges=True, intended_phones=["h#", "aa", "h#"])
    assert all(m[k] is None for k in JUDGE_KEYS)
    assert m["rms_db"] is not None  # the signal metrics still ran
    assert any("shorter than" in r.getMessage() and "0.300 s" in r.getMessage() for r in caplog.records)


def test_a_judge_that_cannot_load_says_so_once_and_the_rest_runs(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "speechmos", None)  # import speechmos raises ImportError
    J.dnsmos_model.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=J.__name__):
            first = measure(0.1 * np.random.default_rng(0).standard_normal(SR), SR, judges=True)
            measure(0.1 * np.random.default_rng(1).standard_normal(SR), SR, judges=True)
    finally:
        J.dnsmos_model.cache_clear()
    lines = [r.getMessage() for r in caplog.records if "DNSMOS cannot load" in r.getMessage()]
    assert len(lines) == 1
    assert first["dnsmos_ovrl"] is None and first["rms_db"] is not None


@pytest.mark.parametrize("failing", ["dnsmos_scores", "recognise_phones"])
def test_a_judge_that_fails_on_one_file_gives_none_and_the_other_judge_runs(judges_loaded, monkeypatch, caplog,
                                                                          failing):
    def broken(x):
        raise RuntimeError("model refused the input")

    monkeypatch.setattr(J, failing, broken)
    audio = 0.1 * np.random.default_rng(5).standard_normal(2 * SR)
    with caplog.at_level(logging.WARNING, logger=J.__name__):
        out = J.judge(audio, SR, ["h#", "s", "aa", "h#"], name="take_7.wav")
    dnsmos_none = all(out[k] is None for k in J.DNSMOS_KEYS)
    assert dnsmos_none == (failing == "dnsmos_scores")
    assert (out["phone_error_rate"] is None) == (failing == "recognise_phones")
    assert any("take_7.wav" in r.getMessage() and "(RuntimeError: model refused the input)" in r.getMessage()
               and r.levelno == logging.WARNING for r in caplog.records)


def test_without_intended_phones_the_per_is_none_and_the_recognised_phones_are_39_set_words(judges_loaded, sa1,
                                                                                           caplog):
    """No intended phones: None, said at INFO (nothing was asked); intended phones that are
    all silences: None, said as a WARNING naming the file. The recognised phones are
    39-set symbols, space-separated."""
    from data_prep.phones import FOLD39

    _, x, sr = sa1
    audio = x[: 2 * sr]
    with caplog.at_level(logging.INFO, logger=J.__name__):
        none_given = J.judge(audio, sr, None, name="plain.wav")
        silences = J.judge(audio, sr, ["h#", "pau", "h#"], name="quiet.wav")
    assert none_given["phone_error_rate"] is None and silences["phone_error_rate"] is None
    levels = {r.getMessage().split()[1]: r.levelno for r in caplog.records if "no intended phones" in r.getMessage()}
    assert levels == {"plain.wav": logging.INFO, "quiet.wav": logging.WARNING}
    words = silences["recognised_phones"].split(" ")
    assert len(words) > 5 and set(words) <= set(FOLD39.values()) | set(TIMIT61)
