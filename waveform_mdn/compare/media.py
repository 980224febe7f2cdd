"""The audio of the listening page: the generated WAVs of every measured set grouped by
utterance, each beside its reference, copied with their waveform + spectrogram images into
the report's ``media/`` directory (so that the page works wherever the report is copied).

An image beside a WAV (``X.png`` for ``X.wav``, as ``waveform-mdn generate --png`` writes
them) is reused when it is not older than the WAV; otherwise it is drawn
(:func:`waveform_mdn.figures.wav_image`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..figures import wav_image
from .measurements import AudioFile, Measurements
from .runs import Run

MEDIA_DIR = "media"
REFERENCE_COLUMN = "ref"


@dataclass
class Player:
    """One WAV on the page: where it was found and its copy (paths relative to the report)."""
    source: Path
    wav: str | None  #: None: the file is missing (``source`` is shown instead)
    png: str | None
    values: dict = field(default_factory=dict)  #: its measurements.json entry


@dataclass
class Utterance:
    key: str
    reference: Player | None
    cells: list[list[Player]]  #: per column (measured set), the WAVs made for this utterance


@dataclass
class Listening:
    columns: list[str]  #: column labels, in the order of the measured sets
    utterances: list[Utterance]
    total: int  #: utterances found (``len(utterances)`` is capped)


def utterance_key(f: AudioFile) -> str:
    """What the generated files of one utterance share: the sequence they were generated
    from (``info.sequence``), else the name of their reference, else their own name."""
    info = f.values.get("info")
    if isinstance(info, dict) and info.get("sequence"):
        return str(info["sequence"])
    if f.reference is not None:
        return f.reference.stem
    return f.wav.stem if f.wav is not None else "?"


def safe_stem(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._+-" else "_" for c in name).strip("._")
    return keep or "audio"


class _MediaWriter:
    """Copies WAVs (and images) into ``<staging>/media/<column>/`` under distinct names."""

    def __init__(self, staging: Path):
        self.root = staging / MEDIA_DIR
        self.used: set[str] = set()

    def add(self, source: Path, column: str, name: str, values: dict | None = None) -> Player:
        if not source.is_file():
            return Player(source, None, None, values or {})
        stem, n = safe_stem(name), 1
        while f"{column}/{stem}" in self.used:
            n += 1
            stem = f"{safe_stem(name)}-{n}"
        self.used.add(f"{column}/{stem}")
        wav, png = f"{MEDIA_DIR}/{column}/{stem}.wav", f"{MEDIA_DIR}/{column}/{stem}.png"
        (self.root / column).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, self.root.parent / wav)
        beside = source.with_suffix(".png")
        if beside.is_file() and beside.stat().st_mtime >= source.stat().st_mtime:
            shutil.copyfile(beside, self.root.parent / png)
        else:
            wav_image(source, self.root.parent / png)
        return Player(source, wav, png, values or {})


def stage_media(gen_rows: list[tuple[str, Run, Measurements]], staging: Path, max_rows: int) -> Listening:
    """Group the files of every measured set by :func:`utterance_key` (in the order they
    first appear) and copy the first ``max_rows`` utterances into ``staging/media``."""
    groups: dict[str, list[list[AudioFile]]] = {}
    for col, (_, _, meas) in enumerate(gen_rows):
        for f in meas.files:
            if f.wav is not None:
                groups.setdefault(utterance_key(f), [[] for _ in gen_rows])[col].append(f)
    writer = _MediaWriter(staging)
    utterances = []
    for key, cells in list(groups.items())[:max(max_rows, 0)]:
        refs = [f.reference for cell in cells for f in cell if f.reference is not None]
        ref = next((r for r in refs if r.is_file()), refs[0] if refs else None)
        utterances.append(Utterance(
            key, None if ref is None else writer.add(ref, REFERENCE_COLUMN, key),
            [[writer.add(f.wav, str(col + 1), f.wav.stem, f.values) for f in cell]
             for col, cell in enumerate(cells)]))
    return Listening([label for label, _, _ in gen_rows], utterances, len(groups))
