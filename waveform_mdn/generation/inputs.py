"""What to generate: phone sequences (prepared data, TIMIT ``.PHN``, inline text), their
phone context per position, and the prime (the window before the first generated sample)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from data_prep.audio_io import Normalisation, int16_to_float
from data_prep.errors import InputError
from ..data import CONTEXT_MODES, PreparedDataset, phone_context

PRIMES = ("real", "silence", "noise")
NOISE_RMS = 1e-3  #: raw RMS (full scale 1.0) of the "noise" prime: -60 dBFS
CONTEXT_KEYS = ("phone", "next_phone", "prev_phone", "position")
AUDIO_SUFFIXES = (".wav", ".sph", ".flac", ".nist")


class GenerationError(InputError):
    """Bad input for generation (the message says what to change)."""


@dataclass
class PhoneSequence:
    """What to generate: a phone segment table and, when known, the real audio.

    ``segments``: int64 ``[S, 5]`` (start, end, phone, prev_phone, next_phone) with offsets
    local to the sequence (the first segment starts at 0); ``length`` samples;
    ``reference``: int16 ``[length]`` or None.
    """

    name: str
    segments: np.ndarray
    length: int
    reference: np.ndarray | None = None
    source: str = ""

    def truncated(self, seconds: float | None, sample_rate: int) -> "PhoneSequence":
        if seconds is None:
            return self
        n = max(1, min(self.length, int(round(float(seconds) * sample_rate))))
        if n == self.length:
            return self
        ref = None if self.reference is None else self.reference[:n]
        return PhoneSequence(self.name, self.segments, n, ref, self.source)


def sequence_from_prepared(prepared: PreparedDataset, key: str | int) -> PhoneSequence:
    """Sequence ``key`` (index, ``id`` or utterance id) of a prepared dataset, with its audio."""
    i = int(key) if isinstance(key, (int, np.integer)) else prepared.find(str(key))
    s = prepared.sequences[i]
    return PhoneSequence(
        name=str(s["id"]), segments=prepared.sequence_segments(i), length=int(s["length"]),
        reference=prepared.sequence_wave(i), source=f"{prepared.path}#{s['id']}",
    )


def phone_mapper(prepared: PreparedDataset):
    """label -> phone id of the prepared dataset, folding like ``waveform-mdn prepare`` did
    (``None`` for a label merged into its neighbour, TIMIT ``q`` in the 39-phone set)."""
    from data_prep.phones import MERGE, PhoneSet, UnknownPhoneError

    index = {p: i for i, p in enumerate(prepared.phones)}
    name = prepared.meta.get("phone_set")
    try:
        pset = PhoneSet(name, prepared.meta.get("phone_map") or {}) if name else None
    except ValueError:
        pset = None

    def mapper(label: str) -> int | None:
        sym = label
        if pset is not None:
            try:
                sym = pset.map_label(label)
            except UnknownPhoneError:
                sym = label
            if sym == MERGE:
                return None
        if sym not in index:
            raise GenerationError(f"phone {label!r} is not in the prepared dataset's phone set "
                                  f"({name or 'custom'}: {' '.join(prepared.phones)})")
        return index[sym]

    return mapper


def segments_from_labels(labels: Sequence[tuple[int, int, str]], prepared: PreparedDataset) -> tuple[np.ndarray, int]:
    """``[(start, end, label), ...]`` (samples) -> (local segment table ``[S, 5]``, offset).

    Labels are mapped exactly as ``waveform-mdn prepare`` maps them (the same function,
    ``segment_table``: phone set fold, extra map, merged ``q``, equal neighbours joined,
    gaps absorbed by the segment before); offsets are made relative to the first segment,
    whose start is returned as ``offset``.
    """
    from data_prep.corpus import CorpusError
    from data_prep.sequences import segment_table

    try:
        return segment_table(((a, b, label, f"phone {label!r}") for a, b, label in labels),
                             phone_mapper(prepared), prepared.no_phone)
    except CorpusError as e:
        raise GenerationError(str(e)) from None


def _seconds(item: str, label: str, dur: str) -> float:
    try:
        return float(dur[:-2]) / 1000.0 if dur.endswith("ms") else float(dur.rstrip("s"))
    except ValueError:
        raise GenerationError(f"inline phones: duration {dur!r} of {label!r} is not a number") from None


def phone_durations(from_checkpoint: dict | None, prepared: PreparedDataset) -> tuple[dict[str, float], str | None]:
    """The duration model (each phone's mean duration in seconds over the training split):
    the checkpoint's, else the prepared dataset's ``meta.json``, else computed from its
    segments (data prepared before durations were recorded; returns a note saying so)."""
    if from_checkpoint:
        return {str(k): float(v) for k, v in from_checkpoint.items()}, None
    if prepared.phone_durations:
        return dict(prepared.phone_durations), None
    from data_prep.durations import mean_phone_durations

    durations = mean_phone_durations(prepared.segments, prepared.sequences, prepared.phones, prepared.sample_rate)
    return durations, (f"{prepared.path}: no phone durations recorded (prepared before they were): "
                       "computed from its training split")


def sequence_from_items(items: Sequence[tuple[str, float | None]], prepared: PreparedDataset,
                        durations: dict[str, float] | None = None, name: str = "phones",
                        source: str = "") -> PhoneSequence:
    """``[(label, seconds or None), ...]`` -> a sequence without audio. A phone without
    seconds lasts its mean duration in ``durations`` (keyed by the phone set's symbols,
    after the fold); a run of such phones that fold to one symbol is one segment of that
    mean duration, as the training data joins equal neighbours."""
    mapper = phone_mapper(prepared)
    labels, pos, last_mean = [], 0, None
    for label, seconds in items:
        if seconds is None:
            pid = mapper(label)
            if pid is None or pid == last_mean:
                continue  # merged into its neighbour (q in the 39 set), or the same phone again
            symbol = prepared.phones[pid]
            if not durations or symbol not in durations:
                raise GenerationError(
                    f"phone {label!r} has no mean duration: {symbol!r} never occurs in the training split "
                    f"of this model's data; give its duration ({label}:SECONDS)")
            seconds, last_mean = durations[symbol], pid
        else:
            last_mean = None
        n = int(round(seconds * prepared.sample_rate))
        if n <= 0:
            raise GenerationError(f"phones: {label}:{seconds:g} lasts less than one sample")
        labels.append((pos, pos + n, label))
        pos += n
    if not labels:
        raise GenerationError("phones: empty phone sequence")
    table, _ = segments_from_labels(labels, prepared)
    return PhoneSequence(name, table, pos, None, source)


def sequence_from_inline(text: str, prepared: PreparedDataset, name: str = "phones",
                         durations: dict[str, float] | None = None) -> PhoneSequence:
    """``"h#:0.1 aa:0.3 h#:0.1"``: phones with durations in seconds (``120ms`` also works);
    a phone without ``:SECONDS`` (``"sh iy hh ae d"``) lasts its mean duration in
    ``durations`` (:func:`phone_durations`)."""
    items: list[tuple[str, float | None]] = []
    for item in text.replace(",", " ").split():
        if ":" not in item:
            if item[0].isdigit() or item[0] == ".":
                raise GenerationError(f"inline phones: {item!r} is a number, not a phone "
                                      "(write PHONE:SECONDS, e.g. aa:0.3)")
            items.append((item, None))
            continue
        label, dur = item.rsplit(":", 1)
        items.append((label, _seconds(item, label, dur)))
    return sequence_from_items(items, prepared, durations, name, f"inline: {text}")


def _audio_beside(phn: Path) -> Path | None:
    for p in sorted(phn.parent.iterdir()):
        if p.stem == phn.stem and p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
            return p
    return None


def sequence_from_phn(path: str | Path, prepared: PreparedDataset, audio: str | Path | None = None) -> PhoneSequence:
    """A TIMIT ``.PHN`` file (samples at the audio's rate). The audio file beside it (same
    stem), if any, becomes the reference and the source of the real prime."""
    from data_prep.audio import read_audio
    from data_prep.corpus import read_labels

    path = Path(path)
    sr = prepared.sample_rate
    audio = Path(audio) if audio is not None else _audio_beside(path)
    wave, file_rate = (None, sr)
    if audio is not None:
        wave, file_rate = read_audio(audio, sr, resample=True)
    raw = read_labels(path, "phn", file_rate, sr)
    table, first = segments_from_labels([(a, b, lab) for a, b, lab, _ in raw], prepared)
    length = int(table[-1, 1])
    ref = None
    if wave is not None:
        if first + length > len(wave):
            raise GenerationError(f"{path}: the labels end after the audio ({len(wave)} samples in {audio})")
        ref = np.ascontiguousarray(wave[first : first + length])
    return PhoneSequence(path.stem, table, length, ref, str(path))


def sequence_contexts(
    sequences: Sequence[PhoneSequence], n: int, context: str = "target", window: int = 240
) -> dict[str, Tensor]:
    """Phone context of positions ``0 .. n-1`` of each sequence, ``[N, n]`` per field.

    Uses :func:`waveform_mdn.data.phone_context`, the one definition; positions past a
    sequence's end get its last segment (they are generated only to be cut off).
    """
    if context not in CONTEXT_MODES:
        raise GenerationError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
    t = torch.arange(n, dtype=torch.int64)
    out: dict[str, list[Tensor]] = {k: [] for k in CONTEXT_KEYS}
    for seq in sequences:
        seg = torch.from_numpy(np.ascontiguousarray(seq.segments, dtype=np.int64))
        ctx = phone_context(seg, t, torch.zeros_like(t), context, window)
        for k in CONTEXT_KEYS:
            out[k].append(ctx[k])
    return {k: torch.stack(v) for k, v in out.items()}


def make_prime(
    kind: str, n_streams: int, window: int, mean: float, std: float, seeds: Sequence[int],
    references: Sequence[np.ndarray | None] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(``prime [N, W]``, ``given [N, W]`` or None), normalised, for ``generate``.

    ``real``: the first ``W`` samples of each reference are given (copied to the output),
    generation starts at position ``W``; ``silence``: the window before position 0 is
    silence (raw 0.0); ``noise``: it is Gaussian noise of RMS ``NOISE_RMS`` (-60 dBFS),
    drawn from ``torch.Generator().manual_seed(seed + 2**32)`` of each stream.
    """
    norm = Normalisation(mean, std)
    prime = torch.full((n_streams, window), norm.silence, dtype=torch.float32)
    if kind == "silence":
        return prime, None
    if kind == "noise":
        for k, s in enumerate(seeds):
            g = torch.Generator().manual_seed(int(s) + 2**32)
            prime[k] = norm.normalise(NOISE_RMS * torch.randn(window, generator=g))
        return prime, None
    if kind != "real":
        raise GenerationError(f"prime must be one of {PRIMES}, not {kind!r}")
    refs = list(references or [])
    if len(refs) != n_streams or any(r is None for r in refs):
        raise GenerationError("--prime real needs a reference utterance for every stream "
                              "(use --prime silence or noise for phones without audio)")
    if any(len(r) < window for r in refs):
        raise GenerationError(f"--prime real needs references of at least the window ({window} samples)")
    given = np.stack([int16_to_float(np.asarray(r[:window])) for r in refs])
    return prime, torch.from_numpy(norm.normalise(given).astype(np.float32))
