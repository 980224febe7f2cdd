"""Finding utterances in TIMIT-style corpora and reading their phone labels.

Layouts recognised (file and folder names in any letter case):

* ``timit``: the LDC distribution, ``{TRAIN,TEST}/DR1..DR8/<SPEAKER>/<UTT>.{WAV,PHN,WRD,TXT}``
  (``.WAV`` is NIST SPHERE, or RIFF in converted copies: the header is sniffed).
* ``nltk``: the NLTK TIMIT sample, ``dr<N>-<speaker>/<utt>.{wav,phn,wrd,txt}``.
* ``arctic``: Festival / CMU ARCTIC, ``<voice>/wav/<utt>.wav`` with ``<voice>/lab/<utt>.lab``
  (one line per phone: end time in seconds, a number, the label; header up to ``#``).
* ``plain``: any folder of audio files with a ``.phn`` beside each.

Metadata kept where the layout gives it: speaker, sex (TIMIT speaker ids start with F or M),
dialect region, utterance type (SA/SI/SX) and the corpus split (train/test).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

AUDIO_EXTS = {".wav", ".sph", ".flac", ".nist"}
_DR = re.compile(r"^dr(\d)$", re.I)
_NLTK_DIR = re.compile(r"^dr(\d)-([a-z]+\d*)$", re.I)
_TIMIT_SPK = re.compile(r"^[fm][a-z]{3}\d$", re.I)


class CorpusError(InputError):
    """Bad corpus input; the message names the file (and line)."""


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
    extra: dict = field(default_factory=dict)


def _utt_type(stem: str) -> str | None:
    m = re.match(r"^(sa|si|sx)\d+$", stem, re.I)
    return m.group(1).upper() if m else None


def _sex(speaker: str | None) -> str | None:
    if speaker and _TIMIT_SPK.match(speaker):
        return speaker[0].upper()
    return None


def discover(corpus_dir: str | Path) -> tuple[list[Utterance], list[str]]:
    """All utterances under ``corpus_dir`` (sorted by id), and problems found on the way
    (audio without a label file), as messages naming the file."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus directory does not exist")
    utts: list[Utterance] = []
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # hidden entries are no utterances: macOS "._SA1.WAV" companions in copied corpora,
        # the ".OUT.tmp-<pid>" folders of an interrupted prepare
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        filenames = [f for f in filenames if not f.startswith(".")]
        d = Path(dirpath)
        labs: dict[str, Path] = {}  # ARCTIC: lower-case name -> file in the sibling lab/
        if d.name.lower() == "wav":
            lab_dir = next((p for p in d.parent.iterdir() if p.name.lower() == "lab" and p.is_dir()), None)
            if lab_dir is not None:
                labs = {p.name.lower(): p for p in lab_dir.iterdir()}
        by_stem_ext = {(Path(f).stem.lower(), Path(f).suffix.lower()): f for f in filenames}
        for fname in sorted(filenames):
            stem, ext = Path(fname).stem, Path(fname).suffix.lower()
            if ext not in AUDIO_EXTS:
                continue
            audio = d / fname
            parts = d.relative_to(root).parts
            phn = by_stem_ext.get((stem.lower(), ".phn"))
            lab = labs.get(stem.lower() + ".lab") if phn is None else None
            base, inner = Path(stem).stem, Path(stem).suffix.lower()
            if phn is None and lab is None and inner in AUDIO_EXTS and (base.lower(), ".phn") in by_stem_ext:
                # a converted copy beside the original ("SA1.WAV.wav" next to SA1.WAV + SA1.PHN,
                # as some TIMIT copies hold): the original is read, the copy is passed over
                problems.append(f"{audio}: ignored, a converted copy of {d / (base + inner)}")
                continue
            u = _classify(root, d, parts, stem, audio)
            if phn is not None:
                u.labels, u.label_format = str(d / phn), "phn"
            elif lab is not None:
                u.labels, u.label_format = str(lab), "lab"
                if u.layout == "plain":
                    u.layout = "arctic"
                    voice = d.parent.name
                    m = re.match(r"^cmu_us_(\w+?)_arctic$", voice, re.I)
                    u.speaker = (m.group(1) if m else voice)
                    u.id = f"{u.speaker}_{stem}"
            else:
                u.labels = None
                problems.append(f"{audio}: no phone label file (.PHN beside it, or lab/{stem}.lab)")
            for key, ext2 in (("words", ".wrd"), ("text", ".txt")):
                f = by_stem_ext.get((stem.lower(), ext2))
                if f:
                    u.extra[key] = str(d / f)
            utts.append(u)
    utts.sort(key=lambda u: u.id)
    seen: dict[str, str] = {}
    for u in utts:
        if u.id in seen:
            raise CorpusError(f"{u.audio}: utterance id {u.id} also used by {seen[u.id]}")
        seen[u.id] = u.audio
    return utts, problems


def _classify(root: Path, d: Path, parts: tuple[str, ...], stem: str, audio: Path) -> Utterance:
    # LDC TIMIT: .../{TRAIN,TEST}/DRn/SPEAKER/UTT.WAV
    if len(parts) >= 3 and parts[-3].lower() in ("train", "test") and _DR.match(parts[-2]):
        speaker = parts[-1].upper()
        return Utterance(
            id=f"{speaker}_{stem.upper()}", audio=str(audio), labels=None, label_format="phn",
            layout="timit", speaker=speaker, sex=_sex(speaker),
            dialect=f"DR{_DR.match(parts[-2]).group(1)}", utt_type=_utt_type(stem),
            corpus_split=parts[-3].lower(),
        )
    m = _NLTK_DIR.match(d.name)
    if m:
        speaker = m.group(2).upper()
        return Utterance(
            id=f"{speaker}_{stem.upper()}", audio=str(audio), labels=None, label_format="phn",
            layout="nltk", speaker=speaker, sex=_sex(speaker), dialect=f"DR{m.group(1)}",
            utt_type=_utt_type(stem),
        )
    rel = audio.relative_to(root)
    speaker = parts[-1] if parts else None
    uid = "_".join(list(rel.parent.parts) + [rel.stem]) if parts else rel.stem
    return Utterance(
        id=uid, audio=str(audio), labels=None, label_format="phn", layout="plain",
        speaker=speaker, sex=_sex(speaker), utt_type=_utt_type(stem),
    )


def read_labels(
    path: str | Path, label_format: str, file_rate: int, sample_rate: int
) -> list[tuple[int, int, str, int]]:
    """Segments ``(start, end, label, line_number)`` in samples at ``sample_rate``.

    ``.phn`` counts in samples at the audio file's own rate ``file_rate``; ``.lab`` in
    seconds. Raises :class:`CorpusError` naming file and line for malformed lines,
    decreasing or overlapping boundaries, and empty files.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise CorpusError(f"{path}: cannot read label file ({e.strerror})") from None
    segs: list[tuple[int, int, str, int]] = []
    if label_format == "phn":
        ratio = sample_rate / file_rate
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            f = line.split()
            if len(f) != 3:
                raise CorpusError(f"{path}:{n}: expected 'start end phone', got {line.strip()!r}")
            try:
                a, b = int(f[0]), int(f[1])
            except ValueError:
                raise CorpusError(f"{path}:{n}: start and end must be integers, got {line.strip()!r}") from None
            if ratio != 1:
                a, b = round(a * ratio), round(b * ratio)
            segs.append((a, b, f[2], n))
    elif label_format == "lab":
        # a header ends with a line "#"; without one the body starts at once (a "#" inside
        # a label such as "h#" is no header)
        in_body = not any(line.strip() == "#" for line in text.splitlines())
        prev_end = 0
        for n, line in enumerate(text.splitlines(), 1):
            if not in_body:
                in_body = line.strip() == "#"
                continue
            if not line.strip():
                continue
            f = line.split()
            if len(f) < 2:
                raise CorpusError(f"{path}:{n}: expected 'end_time [n] label', got {line.strip()!r}")
            try:
                end = round(float(f[0]) * sample_rate)
            except ValueError:
                raise CorpusError(f"{path}:{n}: end time must be a number, got {f[0]!r}") from None
            segs.append((prev_end, end, f[-1], n))
            prev_end = end
    else:
        raise ValueError(f"unknown label format {label_format!r}")
    if not segs:
        raise CorpusError(f"{path}: no phone segments")
    for (a0, b0, _, n0), (a1, b1, _, n1) in zip([(0, 0, "", 0)] + segs[:-1], segs):
        if a1 < 0 or b1 <= a1:
            raise CorpusError(f"{path}:{n1}: segment [{a1}, {b1}) is empty or negative")
        if n0 and a1 < b0:
            raise CorpusError(f"{path}:{n1}: segment starts at {a1}, before the previous one ends ({b0}): overlap")
    return segs
