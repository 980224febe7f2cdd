"""Shared fixtures: the demo corpus prepared, the shared NLTK TIMIT sample (skipped cleanly
when ../shared is absent), the one corpus synthesiser (:class:`Corpora`), the one test head
(``laplace_head``), the event-file reader of a run (``scalars``)."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import DEMO_CORPUS
from data_prep.prepare import Selection, SplitRule, prepare

REPO = Path(__file__).resolve().parent.parent
SHARED_TIMIT = Path(os.environ.get("WAVEFORM_MDN_SHARED", REPO.parent / "shared")) / "corpora" / "timit_nltk_sample"
_GOOD_SEGS = [(0, 300, "h#"), (300, 700, "aa"), (700, 1000, "h#")]


class Corpora:
    """Small real corpora written into a temporary directory: NIST SPHERE or RIFF audio with
    .PHN labels; ``bad_corpus`` adds one bad utterance of each kind in :attr:`BAD_CASES`."""

    SR = 16000
    DEFAULT_LABELS = ["h#", "sh", "iy", "hv", "ae", "dcl", "d", "aa", "r", "h#"]

    @staticmethod
    def signal(n: int, seed: int = 0, amp: int = 4000) -> np.ndarray:
        """Deterministic int16 noise (every slice distinct, never silent)."""
        return np.clip(np.random.default_rng(seed).normal(0, amp, n), -32768, 32767).astype(np.int16)

    @staticmethod
    def write_audio(path: Path, x: np.ndarray, sr: int = 16000, fmt: str = "NIST") -> Path:
        """``fmt``: 'NIST' (SPHERE) or 'WAV' (RIFF), whatever the file's extension."""
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, sr, format=fmt, subtype="PCM_16")
        return path

    @staticmethod
    def write_phn(path: Path, segs) -> Path:
        """``segs``: (start, end, label) triples, or ready-made lines (str)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(s if isinstance(s, str) else f"{s[0]} {s[1]} {s[2]}" for s in segs) + "\n")
        return path

    @classmethod
    def write_utterance(cls, d: Path, stem: str, *, labels=None, seg_len: int = 400, seed: int = 0,
                        fmt: str = "NIST", wav_ext: str = ".WAV", phn_ext: str = ".PHN", sr: int = 16000,
                        lengths=None, audio=None):
        """``d/stem{wav_ext}`` + ``d/stem{phn_ext}``; returns (wave, segments). Segment lengths
        are ``seg_len + 37 * (i % 3)`` unless ``lengths`` are given; the audio is noise unless
        ``audio`` is."""
        labels = labels or cls.DEFAULT_LABELS
        lengths = lengths or [seg_len + 37 * (i % 3) for i in range(len(labels))]
        ends = np.cumsum(lengths)
        segs = [(int(e - n), int(e), lab) for lab, n, e in zip(labels, lengths, ends)]
        x = cls.signal(int(ends[-1]), seed) if audio is None else audio
        cls.write_audio(d / f"{stem}{wav_ext}", x, sr, fmt)
        cls.write_phn(d / f"{stem}{phn_ext}", segs)
        return x, segs

    @classmethod
    def timit_corpus(cls, root: Path, speakers=(("TRAIN", "DR1", "FABC0"), ("TRAIN", "DR2", "MDEF0"),
                                                ("TEST", "DR3", "MGHI0")),
                     utts=("SA1", "SA2", "SI100", "SX10", "SX11"), lower: bool = False,
                     fmt: str = "NIST", seg_len: int = 400) -> Path:
        """A small TIMIT LDC-layout corpus; ``lower`` writes every name in lower case."""
        case = str.lower if lower else str
        seed = 0
        for part, dr, spk in speakers:
            for u in utts:
                seed += 1
                cls.write_utterance(root / case(part) / case(dr) / case(spk), case(u), seed=seed, fmt=fmt,
                                    wav_ext=case(".WAV"), phn_ext=case(".PHN"), seg_len=seg_len)
        return root

    @classmethod
    def speech_like_corpus(cls, root: Path, n_utts: int = 6, seed: int = 0) -> Path:
        """One TIMIT-layout speaker of ``n_utts`` learnable utterances (~0.3 s, odd lengths: odd
        example counts, uneven DDP shards): harmonic "vowels" with per-segment pitch, noise
        "fricatives", quiet silence."""
        rng = np.random.default_rng(seed)
        labels = ["h#", "aa", "s", "iy", "ae", "h#"]
        for u in range(n_utts):
            lengths, pieces = [], []
            for lab in labels:  # the draws in this order: the same corpus as ever
                lengths.append(n := int(rng.integers(500, 900)))
                t = np.arange(n) / cls.SR
                if lab in ("h#", "s"):
                    pieces.append(rng.normal(0, 20 if lab == "h#" else 600, n))
                    continue
                f0, ph = rng.uniform(110, 230), rng.uniform(0, 2 * np.pi, 4)
                y = sum(4000 / h * np.sin(2 * np.pi * h * f0 * t + ph[h - 1]) for h in range(1, 5))
                pieces.append(y + rng.normal(0, 50, n))
            x = np.concatenate(pieces)
            if len(x) % 2 == 0:
                x, lengths[-1] = x[:-1], lengths[-1] - 1
            cls.write_utterance(root / "TRAIN" / "DR1" / "FSYN0", f"SX{u + 1}", labels=labels, lengths=lengths,
                                audio=np.clip(x, -32768, 32767).astype(np.int16))
        return root

    @classmethod
    def speech_like_prepared(cls, tmp: Path, n_utts: int = 6) -> Path:
        """:meth:`speech_like_corpus` prepared (one validation utterance), once per ``tmp``."""
        out = tmp / "synthetic_prepared"
        if not (out / "meta.json").exists():
            prepare(cls.speech_like_corpus(tmp / "synthetic_corpus", n_utts), out,
                    split=SplitRule(mode="per_speaker", valid=1, seed=0), progress=False)
        return out

    @staticmethod
    def read_prepared(out: Path):
        """(meta, sequences, wave, phones, segments) of a prepared directory; ``phones`` (each
        sample's phone id) is spread from the segment table, which covers every sample."""
        segs = np.load(out / "segments.npy")
        return (json.loads((out / "meta.json").read_text()), json.loads((out / "sequences.json").read_text()),
                np.load(out / "wave.npy"), np.repeat(segs[:, 2], segs[:, 1] - segs[:, 0]), segs)

    @staticmethod
    def parse_phn(path: Path):
        return [(int(a), int(b), p) for a, b, p in (ln.split() for ln in Path(path).read_text().splitlines() if ln.strip())]

    @classmethod
    def write_good(cls, d: Path) -> None:
        cls.write_audio(d / "good.wav", cls.signal(1000, 11), fmt="WAV")
        cls.write_phn(d / "good.phn", _GOOD_SEGS)

    @classmethod
    def bad_corpus(cls, tmp_path: Path, case: str) -> Path:
        """``tmp_path/corpus`` with a good utterance and the bad one ``bad`` of ``BAD_CASES[case]``."""
        d = tmp_path / "corpus"
        d.mkdir()
        cls.write_good(d)
        BAD_CASES[case][0](d)
        return d


def _bad_audio_bytes(content: bytes):
    def build(d: Path):
        (d / "bad.wav").write_bytes(content)
        Corpora.write_phn(d / "bad.phn", _GOOD_SEGS)
    return build


def _truncated(fmt: str):
    def build(d: Path):
        Corpora.write_audio(d / "bad.wav", Corpora.signal(1000), fmt=fmt)
        (d / "bad.wav").write_bytes((d / "bad.wav").read_bytes()[:-300])
        Corpora.write_phn(d / "bad.phn", _GOOD_SEGS)
    return build


def _labels(lines, n: int = 1000, **kw):
    def build(d: Path):
        Corpora.write_audio(d / "bad.wav", Corpora.signal(n), **kw)
        Corpora.write_phn(d / "bad.phn", lines)
    return build


def _no_labels(d: Path):
    Corpora.write_audio(d / "bad.wav", Corpora.signal(1000), fmt="WAV")


def _stereo(d: Path):
    Corpora.write_audio(d / "bad.wav", np.stack([Corpora.signal(1000), Corpora.signal(1000, 1)], 1), fmt="NIST")
    Corpora.write_phn(d / "bad.phn", _GOOD_SEGS)


def _shorten(d: Path):
    head = ("NIST_1A\n   1024\nchannel_count -i 1\nsample_rate -i 16000\nsample_n_bytes -i 2\n"
            "sample_coding -s26 pcm,embedded-shorten-v2.00\nsample_count -i 1000\nend_head\n")
    (d / "bad.wav").write_bytes(head.encode().ljust(1024, b" ") + b"\x00" * 500)
    Corpora.write_phn(d / "bad.phn", _GOOD_SEGS)


#: bad utterance -> (builder, the expected message: a regex naming the file, and the line where there is one)
BAD_CASES = {
    "unreadable": (_bad_audio_bytes(b"this is not audio" * 20), r"bad\.wav: unreadable audio"),
    "empty_audio": (_bad_audio_bytes(b""), r"bad\.wav: unreadable audio"),
    "truncated_nist": (_truncated("NIST"), r"bad\.wav: truncated: header says 1000 samples, file holds 850"),
    "truncated_riff": (_truncated("WAV"), r"bad\.wav: truncated: header says 1000 samples, file holds 850"),
    "compressed_nist": (_shorten, r"bad\.wav: NIST SPHERE with pcm,embedded-shorten-v2\.00 compression"),
    "stereo": (_stereo, r"bad\.wav: 2 channels; only mono audio is supported"),
    "missing_labels": (_no_labels, r"bad\.wav: no phone label file"),
    "beyond_audio": (_labels(["0 300 h#", "300 700 aa", "700 1200 h#"]),
                     r"bad\.phn:3: segment \[700, 1200\) ends after the audio \(1000 samples in .*bad\.wav\)"),
    "overlap": (_labels(["0 300 h#", "250 700 aa", "700 1000 h#"]),
                r"bad\.phn:2: segment starts at 250, before the previous one ends \(300\): overlap"),
    "decreasing": (_labels(["0 300 h#", "300 200 aa"]), r"bad\.phn:2: segment \[300, 200\) is empty or negative"),
    "unknown_phone": (_labels(["0 300 h#", "300 700 brth", "700 1000 h#"]), r"bad\.phn:2: unknown phone 'brth'"),
    "malformed": (_labels(["0 300 h#", "300 700"]), r"bad\.phn:2: expected 'start end phone'"),
    "not_integer": (_labels(["0 300 h#", "300 7x0 aa"]), r"bad\.phn:2: start and end must be integers"),
    "empty_labels": (_labels([""]), r"bad\.phn: no phone segments"),
    "too_short": (_labels(["0 100 h#", "100 200 aa"], n=200),
                  r"bad\.phn: sequence bad has 200 samples, shorter than the window \+ 1 \(241\)"),
    "wrong_rate": (_labels(_GOOD_SEGS, sr=8000, fmt="WAV"), r"bad\.wav: sample rate 8000 Hz, expected 16000 Hz"),
}
Corpora.BAD_CASES = BAD_CASES


def pytest_generate_tests(metafunc):
    """A test asking for ``bad_case`` runs once per kind of bad utterance."""
    if "bad_case" in metafunc.fixturenames:
        metafunc.parametrize("bad_case", sorted(BAD_CASES))


@pytest.fixture(scope="session")
def corpora() -> type[Corpora]:
    """The one corpus synthesiser."""
    return Corpora


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    return DEMO_CORPUS


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory) -> Path:
    """One speaker (MKAL0) of the demo corpus: 10 train and 2 valid utterances, ~35 s."""
    out = tmp_path_factory.mktemp("prepared") / "demo_mkal0"
    prepare(DEMO_CORPUS, out, selection=Selection(speakers=["MKAL0"]),
            split=SplitRule(mode="per_speaker", valid=2, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def demo_prepared_all(tmp_path_factory) -> Path:
    """All three demo speakers, official split (TEST speaker MKED0 is validation)."""
    out = tmp_path_factory.mktemp("prepared") / "demo_all"
    prepare(DEMO_CORPUS, out, split=SplitRule(mode="official"), progress=False)
    return out


@pytest.fixture(scope="session")
def timit_sample() -> Path:
    if not SHARED_TIMIT.is_dir():
        pytest.skip(f"shared TIMIT sample not present at {SHARED_TIMIT}")
    return SHARED_TIMIT


@pytest.fixture(scope="module")
def prepared(demo_prepared):
    """The prepared demo corpus, opened (a :class:`~waveform_mdn.data.PreparedDataset`)."""
    from waveform_mdn.data import PreparedDataset

    return PreparedDataset(demo_prepared)


@pytest.fixture
def one_thread():
    """One OpenMP thread for the test (small batches on a shared 2-core machine: more threads
    only add contention); files opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def laplace_head():
    """The one test head, registered as ``test_laplace`` for the test (the registry is restored
    after): a new head as the docs write one, ``params`` and ``distribution_from_params`` only."""
    import torch
    import torch.nn.functional as F

    from waveform_mdn.heads import HEADS, Head, register_head

    class LaplaceHead(Head):
        n_outputs = 2

        def params(self, features):
            loc, raw = self.project(features).unbind(-1)
            return loc, F.softplus(raw) + self.min_scale

        def distribution_from_params(self, params):
            return torch.distributions.Laplace(*params, validate_args=False)

    saved = dict(HEADS)
    register_head("test_laplace")(LaplaceHead)
    yield LaplaceHead
    HEADS.clear()
    HEADS.update(saved)


def _event_accumulators(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(glob.glob(str(run_dir / "events.out.tfevents.*")))
    assert files, f"no event file in {run_dir}"
    accs = [EventAccumulator(f, size_guidance={"scalars": 0, "audio": 0, "images": 0, "tensors": 0}) for f in files]
    for ea in accs:
        ea.Reload()
    return accs


@pytest.fixture(scope="session")
def events():
    """``events(run_dir)``: the TensorBoard event accumulators of a run, loaded."""
    return _event_accumulators


@pytest.fixture(scope="session")
def scalars():
    """``scalars(run_dir, tag)``: ``[(step, value)]`` of a tag over the run's event files."""
    def read(run_dir: Path, tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for ea in _event_accumulators(run_dir)
                if tag in ea.Tags()["scalars"] for e in ea.Scalars(tag)]
    return read


@pytest.fixture(scope="session")
def judges_loaded():
    """Both judges (DNSMOS, PocketSphinx) loaded; skip with the reason when a package is missing
    or broken, fail instead under ``CI=true`` (where they must run)."""
    from waveform_mdn.audio_metrics import judges as J

    missing = [name for name, model in (("speechmos/onnxruntime", J.dnsmos_model()),
                                        ("pocketsphinx", J.phone_recogniser())) if model is None]
    if missing:
        reason = f"judge packages cannot load: {', '.join(missing)} (pip install -e .)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
