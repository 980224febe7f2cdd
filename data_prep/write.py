"""Writing the arrays of a prepared dataset (``wave.npy``, ``segments.npy``,
``sequences.json``; format in ``docs/prepared-format.md``).

:class:`DatasetWriter` appends each sequence's samples to ``wave.npy`` as soon as it is
read, so that memory holds one utterance and the (small) segment table, never the corpus.
What the split and the normalisation need is kept per sequence (:class:`StoredSequence`:
place, length, exact integer sums); :meth:`DatasetWriter.finish` writes the rest once the
split is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio_io import FULL_SCALE, Normalisation

from . import PrepareError
from .corpus import Utterance
from .sequences import SequenceAudio


@dataclass
class StoredSequence:
    """A sequence written into ``wave.npy``: where, its integer sums over the raw int16
    samples (exact; no float64 copy), and its split (set by the split rule)."""

    id: str
    utt: Utterance
    start: int
    length: int
    seg_start: int
    seg_count: int
    total: int
    total_sq: int
    split: str = "train"

    def record(self) -> dict:
        """The ``sequences.json`` entry."""
        u = self.utt
        return {
            "id": self.id, "utterance": u.id, "speaker": u.speaker, "sex": u.sex,
            "dialect": u.dialect, "utt_type": u.utt_type, "corpus_split": u.corpus_split,
            "split": self.split, "start": self.start, "length": self.length, "seg_start": self.seg_start,
            "seg_count": self.seg_count, "source": u.audio,
        }


def train_normalisation(stored: list[StoredSequence]) -> Normalisation:
    """Mean and standard deviation of the float signal (full scale 1.0) over the training split."""
    train = [s for s in stored if s.split == "train"]
    count = sum(s.length for s in train)
    mean = sum(s.total for s in train) / count / FULL_SCALE
    std = float(np.sqrt(max(sum(s.total_sq for s in train) / count / FULL_SCALE**2 - mean * mean, 0.0)))
    if not std > 0:
        raise PrepareError("the training split is silent (standard deviation 0): cannot normalise")
    return Normalisation(mean, std)


class DatasetWriter:
    """``with DatasetWriter(directory) as w``: ``w.add(sequence)`` for each sequence, then
    ``w.finish(stored)``. ``wave.npy`` is a plain sequential write, not a memory map (the
    dirty pages of a memory map count in the resident memory of this process); its header
    is written first with length 0 and rewritten in place (numpy pads the header so that
    the length can grow without moving the data)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._wave = open(directory / "wave.npy", "wb")
        self._header_bytes = self._write_header(0)
        self._tables: list[np.ndarray] = []
        self._samples = self._segments = 0

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._wave.close()

    def _write_header(self, n: int) -> int:
        self._wave.seek(0)
        np.lib.format.write_array_header_1_0(self._wave, {"descr": "<i2", "fortran_order": False, "shape": (n,)})
        return self._wave.tell()

    def add(self, s: SequenceAudio) -> StoredSequence:
        """Append ``s`` to the arrays; returns what is kept of it."""
        self._wave.write(np.ascontiguousarray(s.wave, dtype="<i2"))  # little-endian, as the header says
        self._tables.append(s.segments + np.array([self._samples, self._samples, 0, 0, 0]))
        stored = StoredSequence(
            s.id, s.utt, self._samples, len(s.wave), self._segments, len(s.segments),
            int(s.wave.sum(dtype=np.int64)), int(np.square(s.wave, dtype=np.int32).sum(dtype=np.int64)),
        )
        self._samples += len(s.wave)
        self._segments += len(s.segments)
        return stored

    def finish(self, stored: list[StoredSequence]) -> tuple[list[dict], Normalisation]:
        """Complete ``wave.npy``, write ``segments.npy`` and ``sequences.json`` (with each
        sequence's split); returns the records and the training split's normalisation."""
        norm = train_normalisation(stored)
        if self._write_header(self._samples) != self._header_bytes:
            raise AssertionError("the .npy header changed size")
        self._wave.close()
        np.save(self.directory / "segments.npy", np.concatenate(self._tables).astype(np.int64, copy=False))
        records = [s.record() for s in stored]
        with open(self.directory / "sequences.json", "w") as f:
            json.dump(records, f)
        return records, norm
