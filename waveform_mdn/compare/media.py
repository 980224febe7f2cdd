"""The listening page's audio: WAVs grouped by utterance, copied into ``media/`` (docs/comparison.md)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..figures import wav_image
from ..generation.writers import safe_name
from .measurements import AudioFile, Measurements

MEDIA_DIR = "media"


@dataclass
class Player:
    """One WAV on the page: where it was found and its copy (paths relative to the report)."""
    source: Path
    wav: str | None  #: None: the file is missing (``source`` is shown instead)
    png: str | None
    values: dict = field(default_factory=dict)  #: its measurements (a reference's: the ``ref_*`` values)


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


def stage_media(gen_rows: list[tuple[str, object, Measurements]], staging: Path, max_rows: int) -> Listening:
    """Group the files of every measured set by utterance (in the order they first appear)
    and copy the first ``max_rows`` utterances into ``staging/media``: each WAV into
    ``media/<column>/`` under a distinct name, with its image (the PNG beside it when not
    older than the WAV, else drawn)."""
    groups: dict[str, list[list[AudioFile]]] = {}
    for col, (_, _, meas) in enumerate(gen_rows):
        for f in meas.files:
            if f.wav is not None:
                groups.setdefault(f.utterance, [[] for _ in gen_rows])[col].append(f)
    used: set[str] = set()

    def add(source: Path, column: str, name: str, values: dict) -> Player:
        if not source.is_file():
            return Player(source, None, None, values)
        stem, n = safe_name(name), 1
        while f"{column}/{stem}" in used:
            n += 1
            stem = f"{safe_name(name)}-{n}"
        used.add(f"{column}/{stem}")
        wav, png = f"{MEDIA_DIR}/{column}/{stem}.wav", f"{MEDIA_DIR}/{column}/{stem}.png"
        (staging / MEDIA_DIR / column).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / wav)
        beside = source.with_suffix(".png")
        if beside.is_file() and beside.stat().st_mtime >= source.stat().st_mtime:
            shutil.copyfile(beside, staging / png)
        else:
            wav_image(source, staging / png)
        return Player(source, wav, png, values)

    utterances = []
    for key, cells in list(groups.items())[:max_rows]:
        refs = [f for cell in cells for f in cell if f.reference is not None]
        ref = next((f for f in refs if f.reference.is_file()), refs[0] if refs else None)
        utterances.append(Utterance(
            key, None if ref is None else add(ref.reference, "ref", key, ref.reference_values),
            [[add(f.wav, str(col + 1), f.wav.stem, f.values) for f in cell] for col, cell in enumerate(cells)]))
    return Listening([label for label, _, _ in gen_rows], utterances, len(groups))
