"""Independent judges of generated speech: DNSMOS (quality, no reference) and the phone
error rate of PocketSphinx's phone recogniser. What they are and how to read them:
docs/judges.md."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from data_prep.audio_io import float_to_int16

from .analysis import as_signal, finite_or_none
from .phone_fold import fold_recognised, fold_timit

log = logging.getLogger(__name__)

DNSMOS_KEYS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
#: Every key ``judge`` returns, in order; ``recognised_phones`` is the one string.
JUDGE_KEYS = DNSMOS_KEYS + ("phone_error_rate", "recognised_phones")
JUDGE_SR = 16000  #: both judges' models are 16 kHz
#: Shorter audio gets None: DNSMOS fills its 9 s window by repeating the clip, and a
#: repeated fraction of a syllable is a buzz, not speech.
MIN_SECONDS = 0.5
#: CMU's settings for phone recognition with the phone language model.
RECOGNISER_SETTINGS = {"beam": 1e-20, "pbeam": 1e-20, "lw": 2.0}
_SPHINX_LOCK = threading.Lock()  # one decoder per process; it is not re-entrant


@functools.cache
def dnsmos_model():
    """The process's DNSMOS (speechmos' model and scoring, onnxruntime on one thread), or
    None with one warning if it cannot load."""
    try:
        import importlib.resources

        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS

        class OneThreadDNSMOS(DNSMOS):
            def __init__(self, primary_model_path: str, p808_model_path: str):
                opts, cpu = ort.SessionOptions(), ["CPUExecutionProvider"]
                opts.intra_op_num_threads = 1
                opts.inter_op_num_threads = 1
                self.primary_model_path = primary_model_path
                self.onnx_sess = ort.InferenceSession(primary_model_path, opts, providers=cpu)
                self.p808_onnx_sess = ort.InferenceSession(p808_model_path, opts, providers=cpu)

        root = importlib.resources.files("speechmos") / "dnsmos_models"
        return OneThreadDNSMOS(str(root / "sig_bak_ovr.onnx"), str(root / "model_v8.onnx"))
    except Exception as e:  # missing or broken package: the other metrics still run
        log.warning("judges: DNSMOS cannot load (%s: %s); dnsmos_* will be None", type(e).__name__, e)
        return None


@functools.cache
def phone_recogniser():
    """The process's PocketSphinx decoder in allphone mode (the wheel's US-English acoustic
    model and phone language model), or None with one warning if it cannot load."""
    try:
        from pocketsphinx import Decoder, get_model_path

        return Decoder(hmm=get_model_path("en-us/en-us"), allphone=get_model_path("en-us/en-us-phone.lm.bin"),
                       lm=None, loglevel="FATAL", **RECOGNISER_SETTINGS)
    except Exception as e:
        log.warning("judges: PocketSphinx cannot load (%s: %s); phone_error_rate will be None",
                    type(e).__name__, e)
        return None


def edit_distance(hyp: Sequence[str], ref: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i]
        for j, r in enumerate(ref, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1]


def phone_error_rate(recognised: Sequence[str], intended: Sequence[str]) -> float | None:
    """Edit distance over the reference length, both sides already folded; None if the
    reference is empty."""
    return edit_distance(recognised, intended) / len(intended) if intended else None


def to_judge_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """Float32 mono at 16 kHz in [-1, 1] (librosa's resampler when ``sr`` differs)."""
    x = np.asarray(audio, dtype=np.float32)
    if sr != JUDGE_SR:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=JUDGE_SR)
    return np.clip(x, -1.0, 1.0)


def dnsmos_scores(x: np.ndarray) -> dict[str, float | None]:
    """The four DNSMOS scores of 16 kHz audio; a clip shorter than the model's window is
    repeated to fill exactly one window (speechmos would score several overlapping ones)."""
    out: dict[str, float | None] = dict.fromkeys(DNSMOS_KEYS)
    model = dnsmos_model()
    if model is None:
        return out
    from speechmos.dnsmos import INPUT_LENGTH

    window = int(INPUT_LENGTH * JUDGE_SR)
    scores = model(np.resize(x, window) if x.size < window else x, JUDGE_SR, False)
    for key, name in zip(DNSMOS_KEYS, ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")):
        out[key] = finite_or_none(scores[name])
    return out


def recognise_phones(x: np.ndarray) -> list[str] | None:
    """PocketSphinx's phones of 16 kHz audio, folded to the 39 set, silences and fillers
    dropped; None if the recogniser cannot load."""
    decoder = phone_recogniser()
    if decoder is None:
        return None
    pcm = float_to_int16(x)[0].astype("<i2").tobytes()
    with _SPHINX_LOCK:
        # fresh features and cepstral mean: otherwise the result depends on earlier files
        decoder.reinit_feat()
        decoder.set_cmn(decoder.config["cmninit"])
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        words = [seg.word for seg in decoder.seg()]
    return [p for p in map(fold_recognised, words) if p is not None]


def judge(audio: np.ndarray, sr: int, intended_phones: Sequence[str] | None = None,
          name: str = "audio") -> dict[str, float | str | None]:
    """``JUDGE_KEYS`` of mono ``audio`` (float in [-1, 1] or integer PCM) at ``sr``, the phone
    error rate against ``intended_phones`` (TIMIT labels, 61 or 39 set); values the judges
    cannot give are None, the reason logged under ``name`` (docs/judges.md)."""
    out: dict[str, float | str | None] = dict.fromkeys(JUDGE_KEYS)
    x = as_signal(audio, name)
    if x.size < MIN_SECONDS * sr:
        log.warning("judges: %s lasts %.3f s, shorter than the %.1f s the judges score; judges None",
                    name, x.size / sr, MIN_SECONDS)
        return out
    x = to_judge_rate(x, sr)
    try:  # a judge that fails on one file gives None for it, never ends the measurement
        out.update(dnsmos_scores(x))
    except Exception as e:  # noqa: BLE001 (onnxruntime's errors have no common base)
        log.warning("judges: DNSMOS failed on %s (%s: %s); dnsmos_* None", name, type(e).__name__, e)
    try:
        recognised = recognise_phones(x)
    except Exception as e:  # noqa: BLE001 (PocketSphinx raises RuntimeError and others)
        log.warning("judges: PocketSphinx failed on %s (%s: %s); phone_error_rate None", name, type(e).__name__, e)
        recognised = None
    if recognised is not None:
        out["recognised_phones"] = " ".join(recognised)
        ref = intended_phones_39(intended_phones)
        out["phone_error_rate"] = phone_error_rate(recognised, ref)
        if not ref:
            log.log(logging.INFO if intended_phones is None else logging.WARNING,
                    "judges: %s has no intended phones (besides silences); phone_error_rate None", name)
    return out


def intended_phones_39(labels: Sequence[str] | None) -> list[str]:
    """TIMIT labels folded to the 39 set, closures, silences and ``q`` dropped."""
    return [p for p in map(fold_timit, labels or ()) if p is not None]


def phones_beside(wav: Path) -> list[str] | None:
    """The labels of the ``.PHN`` (or ``.phn``) file beside ``wav``, or None if there is none."""
    from data_prep.corpus import read_labels

    for suffix in (".PHN", ".phn"):
        phn = Path(wav).with_suffix(suffix)
        if phn.is_file():
            return [label for _, _, label, _ in read_labels(phn, "phn", 1, 1)]
    return None
