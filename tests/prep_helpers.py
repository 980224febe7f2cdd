"""Helpers for the data-preparation tests: write small real corpora (NIST SPHERE or RIFF
audio with .PHN or .lab labels) into a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def signal(n: int, seed: int = 0, amp: int = 4000) -> np.ndarray:
    """Deterministic int16 noise (every slice distinct, never silent)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, amp, n), -32768, 32767).astype(np.int16)


def write_audio(path: Path, x: np.ndarray, sr: int = SR, fmt: str = "NIST") -> Path:
    """``fmt``: 'NIST' (SPHERE) or 'WAV' (RIFF), whatever the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, format=fmt, subtype="PCM_16")
    return path


def write_phn(path: Path, segs) -> Path:
    """``segs``: (start, end, label) triples, or ready-made lines (str)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [s if isinstance(s, str) else f"{s[0]} {s[1]} {s[2]}" for s in segs]
    path.write_text("\n".join(lines) + "\n")
    return path


def segments_from(labels, lengths, start: int = 0):
    """[(a, b, label)] of consecutive segments of the given lengths."""
    out, a = [], start
    for lab, n in zip(labels, lengths):
        out.append((a, a + n, lab))
        a += n
    return out


DEFAULT_LABELS = ["h#", "sh", "iy", "hv", "ae", "dcl", "d", "aa", "r", "h#"]


def write_utterance(d: Path, stem: str, *, labels=None, seg_len: int = 400, seed: int = 0,
                    fmt: str = "NIST", wav_ext: str = ".WAV", phn_ext: str = ".PHN", sr: int = SR):
    """One utterance ``d/stem{wav_ext}`` + ``d/stem{phn_ext}``; returns (wave, segments)."""
    labels = labels or DEFAULT_LABELS
    segs = segments_from(labels, [seg_len + 37 * (i % 3) for i in range(len(labels))])
    x = signal(segs[-1][1], seed)
    write_audio(d / f"{stem}{wav_ext}", x, sr, fmt)
    write_phn(d / f"{stem}{phn_ext}", segs)
    return x, segs


def timit_corpus(root: Path, speakers=(("TRAIN", "DR1", "FABC0"), ("TRAIN", "DR2", "MDEF0"),
                                       ("TEST", "DR3", "MGHI0")),
                 utts=("SA1", "SA2", "SI100", "SX10", "SX11"), lower: bool = False,
                 fmt: str = "NIST", seg_len: int = 400) -> Path:
    """A small TIMIT LDC-layout corpus; ``lower`` writes every name in lower case."""
    case = str.lower if lower else str
    seed = 0
    for part, dr, spk in speakers:
        d = root / case(part) / case(dr) / case(spk)
        for u in utts:
            seed += 1
            write_utterance(d, case(u), seed=seed, fmt=fmt, wav_ext=case(".WAV"),
                            phn_ext=case(".PHN"), seg_len=seg_len)
    return root


def read_prepared(out: Path):
    """(meta, sequences, wave, phones, segments) of a prepared directory; ``phones`` (the
    phone id of every sample) is spread from the segment table, which covers every sample."""
    meta = json.loads((out / "meta.json").read_text())
    seqs = json.loads((out / "sequences.json").read_text())
    segs = np.load(out / "segments.npy")
    return (meta, seqs, np.load(out / "wave.npy"), np.repeat(segs[:, 2], segs[:, 1] - segs[:, 0]), segs)


def parse_phn(path: Path):
    return [(int(a), int(b), p) for a, b, p in (line.split() for line in Path(path).read_text().splitlines() if line.strip())]


# --------------------------------------------------------------------- bad inputs
# Each builder writes the bad utterance "bad" (audio + labels) into a plain folder ``d``
# that also holds a good utterance "good"; the pattern is the expected message (a regex,
# matched with re.search) that names the file, and the line where there is one.
_GOOD_SEGS = [(0, 300, "h#"), (300, 700, "aa"), (700, 1000, "h#")]


def write_good(d: Path) -> None:
    write_audio(d / "good.wav", signal(1000, 11), fmt="WAV")
    write_phn(d / "good.phn", _GOOD_SEGS)


def _bad_audio_bytes(content: bytes):
    def build(d: Path):
        (d / "bad.wav").write_bytes(content)
        write_phn(d / "bad.phn", _GOOD_SEGS)
    return build


def _truncated(fmt: str):
    def build(d: Path):
        write_audio(d / "bad.wav", signal(1000), fmt=fmt)
        data = (d / "bad.wav").read_bytes()
        (d / "bad.wav").write_bytes(data[:-300])
        write_phn(d / "bad.phn", _GOOD_SEGS)
    return build


def _labels(lines, n: int = 1000, **kw):
    def build(d: Path):
        write_audio(d / "bad.wav", signal(n), **kw)
        write_phn(d / "bad.phn", lines)
    return build


def _no_labels(d: Path):
    write_audio(d / "bad.wav", signal(1000), fmt="WAV")


def _stereo(d: Path):
    write_audio(d / "bad.wav", np.stack([signal(1000), signal(1000, 1)], 1), fmt="NIST")
    write_phn(d / "bad.phn", _GOOD_SEGS)


def _shorten(d: Path):
    head = ("NIST_1A\n   1024\nchannel_count -i 1\nsample_rate -i 16000\nsample_n_bytes -i 2\n"
            "sample_coding -s26 pcm,embedded-shorten-v2.00\nsample_count -i 1000\nend_head\n")
    (d / "bad.wav").write_bytes(head.encode().ljust(1024, b" ") + b"\x00" * 500)
    write_phn(d / "bad.phn", _GOOD_SEGS)


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


def bad_corpus(tmp_path: Path, case: str) -> Path:
    """``tmp_path/corpus`` with good utterances plus the bad one of ``BAD_CASES[case]``."""
    d = tmp_path / "corpus"
    d.mkdir()
    write_good(d)
    BAD_CASES[case][0](d)
    return d
