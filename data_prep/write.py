"""Writing a prepared dataset's arrays (docs/prepared-format.md) and the training split's
statistics: normalisation and phone durations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio_io import FULL_SCALE, Normalisation
from .corpus import Utterance
from .errors import InputError
from .sequences import SequenceAudio


@dataclass
class StoredSequence:
    """A sequence written into ``wave.npy``: where, its exact integer sums over the int16
    samples, and its split (set by the split rule)."""

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
        return {"id": self.id, "utterance": u.id, "speaker": u.speaker, "sex": u.sex, "dialect": u.dialect,
                "utt_type": u.utt_type, "corpus_split": u.corpus_split, "split": self.split, "start": self.start,
                "length": self.length, "seg_start": self.seg_start, "seg_count": self.seg_count, "source": u.audio}


def train_normalisation(stored: list[StoredSequence]) -> Normalisation:
    """Mean and standard deviation of the float signal over the training split."""
    train = [s for s in stored if s.split == "train"]
    count = sum(s.length for s in train)
    mean = sum(s.total for s in train) / count / FULL_SCALE
    std = float(np.sqrt(max(sum(s.total_sq for s in train) / count / FULL_SCALE**2 - mean * mean, 0.0)))
    if not std > 0:
        raise InputError("the training split is silent (standard deviation 0): cannot normalise")
    return Normalisation(mean, std)


def mean_phone_durations(segments: np.ndarray, sequences: Sequence[dict], phones: Sequence[str],
                         sample_rate: int) -> dict[str, float]:
    """``{phone: mean seconds}`` over the segments of the training sequences (``sequences.json``
    records): the duration model of ``generate --text``. Phones never seen have no entry."""
    rows = [np.arange(s["seg_start"], s["seg_start"] + s["seg_count"]) for s in sequences if s["split"] == "train"]
    if not rows:
        return {}
    train = segments[np.concatenate(rows)]
    ids, lengths = train[:, 2].astype(np.int64), (train[:, 1] - train[:, 0]).astype(np.float64)
    n = len(phones)
    total, count = np.bincount(ids, weights=lengths, minlength=n)[:n], np.bincount(ids, minlength=n)[:n]
    return {phones[i]: float(total[i] / count[i] / sample_rate) for i in range(n) if count[i] > 0}


class DatasetWriter:
    """``with DatasetWriter(directory) as w``: ``w.add(sequence)`` for each, then ``w.finish(stored)``.
    Each sequence is appended to ``wave.npy`` as it is read (memory holds one utterance); the
    header is written with length 0 and rewritten in place at the end (numpy pads it)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._wave = open(directory / "wave.npy", "wb")
        self._write_header(0)
        self._tables: list[np.ndarray] = []
        self._samples = self._segments = 0

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._wave.close()

    def _write_header(self, n: int) -> None:
        self._wave.seek(0)
        np.lib.format.write_array_header_1_0(self._wave, {"descr": "<i2", "fortran_order": False, "shape": (n,)})

    def add(self, s: SequenceAudio) -> StoredSequence:
        """Append ``s`` to the arrays; returns what is kept of it."""
        self._wave.write(np.ascontiguousarray(s.wave, dtype="<i2"))
        self._tables.append(s.segments + np.array([self._samples, self._samples, 0, 0, 0]))
        stored = StoredSequence(
            s.id, s.utt, self._samples, len(s.wave), self._segments, len(s.segments),
            int(s.wave.sum(dtype=np.int64)), int(np.square(s.wave, dtype=np.int32).sum(dtype=np.int64)))
        self._samples += len(s.wave)
        self._segments += len(s.segments)
        return stored

    def finish(self, stored: list[StoredSequence]) -> tuple[list[dict], Normalisation]:
        """Complete ``wave.npy``, write ``segments.npy`` and ``sequences.json``; returns the
        records and the training split's normalisation."""
        norm = train_normalisation(stored)
        self._write_header(self._samples)
        self._wave.close()
        np.save(self.directory / "segments.npy", np.concatenate(self._tables).astype(np.int64, copy=False))
        records = [s.record() for s in stored]
        with open(self.directory / "sequences.json", "w") as f:
            json.dump(records, f)
        return records, norm
