"""From one utterance (audio + phone labels) to the sequences a prepared dataset stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .audio import read_audio
from .corpus import CorpusError, Utterance, read_labels
from .phones import PhoneSet, UnknownPhoneError

LAB_END_TOLERANCE = 0.01  #: seconds a .lab file's last phone may end after the audio (clamped)


@dataclass
class SequenceAudio:
    """One sequence to store: int16 samples and local segment table (int64 ``[S, 5]``)."""

    id: str
    utt: Utterance
    wave: np.ndarray
    segments: np.ndarray


def segment_table(labels: Iterable[tuple[int, int, str, str]], to_id: Callable[[str], int | None],
                  no_phone: int, source: str = "labels", mapping: str = "mapping") -> tuple[np.ndarray, int]:
    """Labelled segments ``(start, end, label, where)`` -> (local table int64 ``[S, 5]``: start,
    end, phone, prev, next; offset of the first segment), for preparation and generation;
    ``to_id(label)`` None merges a label (rules: docs/data.md). Errors name ``where``."""
    segs: list[list] = []  # [start, end, id or None (merge)]
    for a, b, label, where in labels:
        a, b = int(a), int(b)
        if a < 0 or b <= a:
            raise CorpusError(f"{where}: segment [{a}, {b}) is empty or negative")
        if segs and a < segs[-1][1]:
            raise CorpusError(f"{where}: segment starts at {a}, before the previous one ends ({segs[-1][1]}): overlap")
        try:
            pid = to_id(label)
        except UnknownPhoneError as e:
            raise CorpusError(f"{where}: {e}") from None
        if segs:
            segs[-1][1] = max(segs[-1][1], a)  # a gap joins the segment before it
        if pid is None:
            if segs:
                segs[-1][1] = b
            else:
                segs.append([a, b, None])
            continue
        if segs and segs[-1][2] is None:  # a leading merged segment joins this one
            a = segs.pop()[0]
        if segs and segs[-1][2] == pid:
            segs[-1][1] = b
        else:
            segs.append([a, b, pid])
    if not segs or segs[-1][2] is None:
        raise CorpusError(f"{source}: no phone segments left after {mapping}")
    first, ids = segs[0][0], [no_phone] + [s[2] for s in segs] + [no_phone]
    table = np.array([(a - first, b - first, pid, ids[k], ids[k + 2]) for k, (a, b, pid) in enumerate(segs)],
                     dtype=np.int64)
    return table, first


def load_utterance(u: Utterance, phone_set: PhoneSet, sample_rate: int, resample: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(int16 wave of the labelled region, local segment table) of one utterance."""
    if u.labels is None:
        raise CorpusError(f"{u.audio}: no phone label file (.PHN beside it, or lab/<utt>.lab)")
    wave, file_rate = read_audio(u.audio, sample_rate, resample)
    raw = read_labels(u.labels, u.label_format, file_rate, sample_rate)
    n = len(wave)
    if u.label_format == "lab" and 0 < raw[-1][1] - n <= LAB_END_TOLERANCE * sample_rate:
        raw[-1] = (raw[-1][0], n, *raw[-1][2:])  # seconds rounded past the audio's end (CMU ARCTIC)
    for a, b, label, line in raw:
        if b > n:
            raise CorpusError(f"{u.labels}:{line}: segment [{a}, {b}) ends after the audio ({n} samples in {u.audio})")
    table, first = segment_table(((a, b, label, f"{u.labels}:{line}") for a, b, label, line in raw),
                                 phone_set.to_id, len(phone_set), source=u.labels,
                                 mapping=f"mapping to {phone_set.name}")
    return np.ascontiguousarray(wave[first:first + int(table[-1, 1])]), table


def sequences_of(u: Utterance, wave: np.ndarray, table: np.ndarray, phone_ids: set[int] | None
                 ) -> list[SequenceAudio]:
    """The whole utterance as one sequence, or (``phone_ids`` given) one sequence per segment
    of those phones, whose table row keeps its neighbours in the source utterance."""
    if phone_ids is None:
        return [SequenceAudio(u.id, u, wave, table)]
    out = []
    for k, row in enumerate(table):
        if int(row[2]) in phone_ids:
            a, b = int(row[0]), int(row[1])
            seg = row.copy()[None]
            seg[0, :2] = 0, b - a
            out.append(SequenceAudio(f"{u.id}_{k:03d}", u, wave[a:b].copy(), seg))
    return out
