"""From one utterance (audio + phone labels) to the sequences a prepared dataset stores.

:func:`segment_table` is the one place where corpus labels become phone segments
(preparation and generation both use it); :func:`load_utterance` reads an utterance's
labelled audio and its table; :func:`sequences_of` cuts it into sequences (the whole
utterance, or one per kept phone segment with ``--phone-filter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .audio import read_audio
from .corpus import CorpusError, Utterance, read_labels
from .phones import MERGE, PhoneSet, UnknownPhoneError

#: Seconds by which the last phone of a .lab file may end after the audio (clamped).
LAB_END_TOLERANCE = 0.01


@dataclass
class SequenceAudio:
    """One sequence to store: its id, source utterance, int16 samples, local segment table
    (int64 ``[S, 5]``) and split."""

    id: str
    utt: Utterance
    wave: np.ndarray
    segments: np.ndarray
    split: str = "train"


def segment_table(
    labels: Iterable[tuple[int, int, str, str]],
    to_id: Callable[[str], int | None],
    no_phone: int,
    source: str = "labels",
    mapping: str = "mapping",
) -> tuple[np.ndarray, int]:
    """Mapped phone segments -> (local segment table int64 ``[S, 5]``, offset of the first).

    ``labels``: ``(start, end, label, where)`` in samples, ``where`` naming the file and
    line for messages; ``to_id(label)`` gives the phone id, or ``None`` for a label to merge
    into its neighbour (``q`` in the 39 set); an UnknownPhoneError it raises becomes a
    CorpusError naming ``where``.
    Rules: a gap is given to the segment before it; a merged label joins the segment
    before it (the one after it when first); neighbours that map to the same id are joined.
    Table rows: start, end (relative to the first segment's start), phone, prev, next.
    Raises :class:`CorpusError` for empty or overlapping segments, and for no segments left
    (naming ``source``).
    """
    segs: list[list] = []  # [start, end, id or None (merge)]
    for a, b, label, where in labels:
        a, b = int(a), int(b)
        if b <= a:
            raise CorpusError(f"{where}: segment [{a}, {b}) of {label!r} is empty or negative")
        if segs and a < segs[-1][1]:
            raise CorpusError(f"{where}: {label!r} starts at {a}, before the previous segment ends "
                              f"({segs[-1][1]}): overlap")
        try:
            pid = to_id(label)
        except UnknownPhoneError as e:
            raise CorpusError(f"{where}: {e}") from None
        if segs and a > segs[-1][1]:  # a gap: the previous segment is extended over it
            segs[-1][1] = a
        if pid is None:
            if segs:
                segs[-1][1] = b
            else:
                segs.append([a, b, None])
            continue
        if segs and segs[-1][2] is None:  # a leading merged segment joins this one
            a = segs.pop()[0]
        if segs and segs[-1][2] == pid:  # folding can make neighbours equal: join them
            segs[-1][1] = b
        else:
            segs.append([a, b, pid])
    if not segs or segs[-1][2] is None:
        raise CorpusError(f"{source}: no phone segments left after {mapping}")
    first = segs[0][0]
    table = np.empty((len(segs), 5), dtype=np.int64)
    for k, (a, b, pid) in enumerate(segs):
        table[k] = (a - first, b - first, pid, segs[k - 1][2] if k else no_phone,
                    segs[k + 1][2] if k + 1 < len(segs) else no_phone)
    return table, first


def phone_set_mapper(phone_set: PhoneSet) -> Callable[[str], int | None]:
    """``to_id`` for :func:`segment_table`: label -> id of ``phone_set`` (None: merge)."""

    def to_id(label: str) -> int | None:
        sym = phone_set.map_label(label)
        return None if sym == MERGE else phone_set.id(sym)

    return to_id


def load_utterance(
    u: Utterance, phone_set: PhoneSet, sample_rate: int, resample: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(int16 wave of the labelled region, int64 segments [S,5] local) of one utterance."""
    if u.labels is None:
        raise CorpusError(f"{u.audio}: no phone label file (.PHN beside it, or lab/<utt>.lab)")
    wave, file_rate = read_audio(u.audio, sample_rate, resample)
    raw = read_labels(u.labels, u.label_format, file_rate, sample_rate)
    n = len(wave)
    if u.label_format == "lab" and raw and 0 < raw[-1][1] - n <= LAB_END_TOLERANCE * sample_rate:
        # .lab end times are seconds, rounded: a last phone ending a few ms after the
        # audio is a rounding artefact, not a bad label (CMU ARCTIC has such files)
        a, _, label, line = raw[-1]
        raw[-1] = (a, n, label, line)
    for a, b, label, line in raw:
        if b > n:
            raise CorpusError(
                f"{u.labels}:{line}: segment [{a}, {b}) ends after the audio ({n} samples in {u.audio})"
            )
    table, first = segment_table(
        ((a, b, label, f"{u.labels}:{line}") for a, b, label, line in raw),
        phone_set_mapper(phone_set), len(phone_set), source=u.labels, mapping=f"mapping to {phone_set.name}",
    )
    last = first + int(table[-1, 1])
    return np.ascontiguousarray(wave[first:last]), table


def sequences_of(u: Utterance, wave: np.ndarray, table: np.ndarray,
                 phone_ids: set[int] | None) -> list[SequenceAudio]:
    """The whole utterance as one sequence, or (``phone_ids`` given) one sequence per segment
    of those phones, whose table row keeps its neighbours in the source utterance."""
    if phone_ids is None:
        return [SequenceAudio(u.id, u, wave, table)]
    out = []
    for k, row in enumerate(table):
        if int(row[2]) in phone_ids:
            a, b = int(row[0]), int(row[1])
            seg = row.copy()[None]
            seg[0, 0], seg[0, 1] = 0, b - a
            out.append(SequenceAudio(f"{u.id}_{k:03d}", u, wave[a:b].copy(), seg))
    return out
