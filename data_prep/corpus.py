"""Finding the utterances of a corpus (TIMIT, NLTK sample, Festival/ARCTIC or plain layout,
any letter case; docs/data.md) and reading their phone label files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

AUDIO_EXTS = {".wav", ".sph", ".flac", ".nist"}
_DR = re.compile(r"^dr(\d)$", re.I)
_NLTK_DIR = re.compile(r"^dr(\d)-([a-z]+\d*)$", re.I)
_TIMIT_SPK = re.compile(r"^[fm][a-z]{3}\d$", re.I)


class CorpusError(InputError):
    """A bad utterance's labels (``--skip-bad`` skips it); the message names the file and line."""


@dataclass
class Utterance:
    id: str
    audio: str
    labels: str | None
    label_format: str  # "phn" (start end label, in samples) or "lab" (end seconds)
    layout: str
    speaker: str | None = None
    sex: str | None = None
    dialect: str | None = None
    utt_type: str | None = None
    corpus_split: str | None = None


def _utterance(layout: str, uid: str, audio: Path, stem: str, speaker: str | None, **kw) -> Utterance:
    m = re.match(r"^(sa|si|sx)\d+$", stem, re.I)
    sex = speaker[0].upper() if speaker and _TIMIT_SPK.match(speaker) else None
    return Utterance(uid, str(audio), None, "phn", layout, speaker, sex,
                     utt_type=m.group(1).upper() if m else None, **kw)


def _classify(root: Path, audio: Path, stem: str) -> Utterance:
    parts = audio.parent.relative_to(root).parts
    if len(parts) >= 3 and parts[-3].lower() in ("train", "test") and _DR.match(parts[-2]):
        spk = parts[-1].upper()
        return _utterance("timit", f"{spk}_{stem.upper()}", audio, stem, spk,
                          dialect=f"DR{_DR.match(parts[-2]).group(1)}", corpus_split=parts[-3].lower())
    if m := _NLTK_DIR.match(audio.parent.name):
        spk = m.group(2).upper()
        return _utterance("nltk", f"{spk}_{stem.upper()}", audio, stem, spk, dialect=f"DR{m.group(1)}")
    rel = audio.relative_to(root)
    return _utterance("plain", "_".join(rel.parent.parts + (rel.stem,)), audio, stem, parts[-1] if parts else None)


def _folder(root: Path, d: Path, filenames: list[str], problems: list[str]) -> list[Utterance]:
    """The utterances of one folder (labels beside the audio, or ARCTIC's sibling ``lab/``)."""
    labs: dict[str, Path] = {}
    if d.name.lower() == "wav":
        lab_dir = next((p for p in d.parent.iterdir() if p.name.lower() == "lab" and p.is_dir()), None)
        labs = {p.name.lower(): p for p in lab_dir.iterdir()} if lab_dir else {}
    by_stem_ext = {(Path(f).stem.lower(), Path(f).suffix.lower()): f for f in filenames}
    out = []
    for fname in sorted(f for f in filenames if Path(f).suffix.lower() in AUDIO_EXTS):
        stem, audio = Path(fname).stem, d / fname
        phn = by_stem_ext.get((stem.lower(), ".phn"))
        lab = labs.get(stem.lower() + ".lab") if phn is None else None
        base, inner = Path(stem).stem, Path(stem).suffix.lower()
        if phn is None and lab is None and inner in AUDIO_EXTS and (base.lower(), ".phn") in by_stem_ext:
            problems.append(f"{audio}: ignored, a converted copy of {d / (base + inner)}")  # "SA1.WAV.wav"
            continue
        u = _classify(root, audio, stem)
        if phn is not None:
            u.labels = str(d / phn)
        elif lab is not None:
            u.labels, u.label_format = str(lab), "lab"
            if u.layout == "plain":
                m = re.match(r"^cmu_us_(\w+?)_arctic$", d.parent.name, re.I)
                u.layout, u.speaker = "arctic", m.group(1) if m else d.parent.name
                u.id = f"{u.speaker}_{stem}"
        else:
            problems.append(f"{audio}: no phone label file (.PHN beside it, or lab/{stem}.lab)")
        out.append(u)
    return out


def discover(corpus_dir: str | Path) -> tuple[list[Utterance], list[str]]:
    """All utterances under ``corpus_dir`` (sorted by id), and the problems found on the way
    (audio without labels), as messages naming the file."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus directory does not exist")
    utts: list[Utterance] = []
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # hidden entries (macOS "._SA1.WAV", an interrupted prepare's ".OUT.tmp-<pid>") are no utterances
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        utts += _folder(root, Path(dirpath), [f for f in filenames if not f.startswith(".")], problems)
    utts.sort(key=lambda u: u.id)
    seen: dict[str, str] = {}
    for u in utts:
        if u.id in seen:
            raise CorpusError(f"{u.audio}: utterance id {u.id} also used by {seen[u.id]}")
        seen[u.id] = u.audio
    return utts, problems


def _phn_lines(path: Path, lines: list[str], ratio: float) -> list[tuple[int, int, str, int]]:
    segs = []
    for n, line in ((n, line) for n, line in enumerate(lines, 1) if line.strip()):
        f = line.split()
        if len(f) != 3:
            raise CorpusError(f"{path}:{n}: expected 'start end phone', got {line.strip()!r}")
        try:
            a, b = int(f[0]), int(f[1])
        except ValueError:
            raise CorpusError(f"{path}:{n}: start and end must be integers, got {line.strip()!r}") from None
        segs.append((round(a * ratio), round(b * ratio), f[2], n) if ratio != 1 else (a, b, f[2], n))
    return segs


def _lab_lines(path: Path, lines: list[str], sample_rate: int) -> list[tuple[int, int, str, int]]:
    # a header ends with a line "#"; without one the body starts at once ("h#" is a label)
    in_body, prev_end, segs = not any(line.strip() == "#" for line in lines), 0, []
    for n, line in enumerate(lines, 1):
        if not in_body:
            in_body = line.strip() == "#"
            continue
        if not (f := line.split()):
            continue
        if len(f) < 2:
            raise CorpusError(f"{path}:{n}: expected 'end_time [n] label', got {line.strip()!r}")
        try:
            end = round(float(f[0]) * sample_rate)
        except ValueError:
            raise CorpusError(f"{path}:{n}: end time must be a number, got {f[0]!r}") from None
        segs.append((prev_end, end, f[-1], n))
        prev_end = end
    return segs


def read_labels(path: str | Path, label_format: str, file_rate: int, sample_rate: int
                ) -> list[tuple[int, int, str, int]]:
    """Segments ``(start, end, label, line_number)`` in samples at ``sample_rate`` (``.phn``:
    samples at ``file_rate``; ``.lab``: seconds); a malformed line is a :class:`CorpusError`
    naming file and line (docs/data.md)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise CorpusError(f"{path}: cannot read label file ({e.strerror})") from None
    segs = (_phn_lines(path, lines, sample_rate / file_rate) if label_format == "phn"
            else _lab_lines(path, lines, sample_rate))
    if not segs:
        raise CorpusError(f"{path}: no phone segments")
    return segs
