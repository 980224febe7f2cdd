"""Writing the arrays of a prepared dataset (``wave.npy``, ``segments.npy``,
``sequences.json``; format in ``docs/prepared-format.md``) and the training split's
normalisation, streamed sequence by sequence so that memory stays near one copy of the
segment table plus one utterance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from waveform_mdn.audio_io import FULL_SCALE, Normalisation

from . import PrepareError
from .sequences import SequenceAudio


class _TrainStats:
    """Exact integer sums of the raw int16 training samples (no float64 copy, no BLAS dot,
    which made this the slowest part of the preparation on a busy machine)."""

    def __init__(self):
        self.total = self.total_sq = self.count = 0

    def add(self, wave: np.ndarray) -> None:
        self.total += int(wave.sum(dtype=np.int64))
        self.total_sq += int(np.square(wave, dtype=np.int32).sum(dtype=np.int64))
        self.count += len(wave)

    def normalisation(self) -> Normalisation:
        """Mean and standard deviation of the float signal (full scale 1.0)."""
        mean = self.total / self.count / FULL_SCALE
        std = float(np.sqrt(max(self.total_sq / self.count / FULL_SCALE**2 - mean * mean, 0.0)))
        if not std > 0:
            raise PrepareError("the training split is silent (standard deviation 0): cannot normalise")
        return Normalisation(mean, std)


def _record(s: SequenceAudio, start: int, seg_start: int) -> dict:
    """The ``sequences.json`` entry of one sequence."""
    u = s.utt
    return {
        "id": s.id, "utterance": u.id, "speaker": u.speaker, "sex": u.sex,
        "dialect": u.dialect, "utt_type": u.utt_type, "corpus_split": u.corpus_split,
        "split": s.split, "start": start, "length": len(s.wave), "seg_start": seg_start,
        "seg_count": len(s.segments), "source": u.audio,
    }


def write_arrays(directory: Path, seqs: list[SequenceAudio | None]) -> tuple[list[dict], Normalisation]:
    """Write the arrays of ``seqs`` into ``directory``; returns (``sequences.json`` records,
    normalisation of the training split). Each entry of ``seqs`` is set to ``None`` once
    written, so that its audio can be freed."""
    n = sum(len(s.wave) for s in seqs)
    segments = np.empty((sum(len(s.segments) for s in seqs), 5), dtype=np.int64)
    records, stats = [], _TrainStats()
    pos = seg_pos = 0
    # a plain sequential write, not a memory map: the dirty pages of a memory map count in
    # the resident memory of this process (as much again as the array)
    with open(directory / "wave.npy", "wb") as wave:
        _npy_header(wave, "<i2", n)  # little-endian, as written below
        for i, s in enumerate(seqs):
            wave.write(np.ascontiguousarray(s.wave, dtype="<i2"))
            segments[seg_pos : seg_pos + len(s.segments)] = s.segments + [pos, pos, 0, 0, 0]
            if s.split == "train":
                stats.add(s.wave)
            records.append(_record(s, pos, seg_pos))
            pos += len(s.wave)
            seg_pos += len(s.segments)
            seqs[i] = None
    norm = stats.normalisation()
    np.save(directory / "segments.npy", segments)
    with open(directory / "sequences.json", "w") as f:
        json.dump(records, f)
    return records, norm


def _npy_header(f, dtype, n: int) -> None:
    """The ``.npy`` header of a 1-D array of ``n`` items; the data follow it as raw bytes."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (n,)}
    )
