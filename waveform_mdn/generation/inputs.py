"""What to generate: phone sequences, their phone context per position, and the prime."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from data_prep.audio_io import Normalisation, int16_to_float
from ..data import CONTEXT_FIELDS, PreparedDataset, phone_context
from .settings import GenerationError, GenerationSettings

NOISE_RMS = 1e-3  #: raw RMS (full scale 1.0) of the "noise" prime: -60 dBFS


@dataclass
class PhoneSequence:
    """A phone segment table (int64 ``[S, 5]``: start, end, phone, prev_phone, next_phone,
    local offsets), its ``length`` in samples and, when known, its int16 ``reference`` audio."""

    name: str
    segments: np.ndarray
    length: int
    reference: np.ndarray | None = None
    source: str = ""

    def truncated(self, seconds: float | None, sample_rate: int) -> "PhoneSequence":
        n = self.length if seconds is None else max(1, min(self.length, int(round(float(seconds) * sample_rate))))
        ref = None if self.reference is None else self.reference[:n]
        return self if n == self.length else replace(self, length=n, reference=ref)

    def intended_phones(self, phones: Sequence[str]) -> list[dict]:
        """The phones this sequence asks for: label and start/end sample, up to its length."""
        return [{"phone": phones[int(p)], "start": int(a), "end": int(min(b, self.length))}
                for a, b, p, _, _ in self.segments if a < self.length]


@dataclass(frozen=True)
class Streams:
    """``N`` streams for ``engine.generate``: phone context ``[N, n]`` per field, the ``prime``
    ``[N, W]`` before position 0 (None: zeros), ``given`` ``[N, P]`` copied to positions
    ``0 .. P-1``, one seed each (None: ``settings.seed + k``), the bounds of what is fed back."""

    contexts: dict[str, Tensor]
    n: int
    prime: Tensor | None = None
    given: Tensor | None = None
    seeds: Sequence[int] | None = None
    clip: tuple[float, float] | None = None


def sequence_from_prepared(prepared: PreparedDataset, key: str | int) -> PhoneSequence:
    """Sequence ``key`` (index, ``id`` or utterance id) of a prepared dataset, with its audio."""
    i = int(key) if isinstance(key, (int, np.integer)) else prepared.find(str(key))
    s = prepared.sequences[i]
    return PhoneSequence(str(s["id"]), prepared.sequence_segments(i), int(s["length"]), prepared.sequence_wave(i),
                         f"{prepared.path}#{s['id']}")


def phone_mapper(prepared: PreparedDataset):
    """label -> phone id, folded as ``waveform-mdn prepare`` folds (``None``: merged away)."""
    from data_prep.phones import MERGE, PhoneSet, UnknownPhoneError

    index = {p: i for i, p in enumerate(prepared.phones)}
    name = prepared.meta.get("phone_set")
    pset = PhoneSet(name, prepared.meta.get("phone_map") or {}) if name else None

    def mapper(label: str) -> int | None:
        try:
            sym = label if pset is None else pset.map_label(label)
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
    """``[(start, end, label), ...]`` -> (local segment table, offset of the first segment),
    mapped by ``prepare``'s own ``segment_table``."""
    from data_prep.corpus import CorpusError
    from data_prep.sequences import segment_table

    try:
        return segment_table(((a, b, label, f"phone {label!r}") for a, b, label in labels),
                             phone_mapper(prepared), prepared.no_phone)
    except CorpusError as e:
        raise GenerationError(str(e)) from None


def phone_durations(from_checkpoint: dict | None, prepared: PreparedDataset) -> tuple[dict[str, float], str | None]:
    """Each phone's mean duration (s) in the training split: the checkpoint's, the data's,
    or computed from its segments (with a note saying so)."""
    if from_checkpoint:
        return {str(k): float(v) for k, v in from_checkpoint.items()}, None
    if prepared.phone_durations:
        return dict(prepared.phone_durations), None
    from data_prep.write import mean_phone_durations

    durations = mean_phone_durations(prepared.segments, prepared.sequences, prepared.phones, prepared.sample_rate)
    return durations, (f"{prepared.path}: no phone durations recorded (prepared before they were): "
                       "computed from its training split")


def sequence_from_items(items: Sequence[tuple[str, float | None]], prepared: PreparedDataset,
                        durations: dict[str, float] | None = None, name: str = "phones",
                        source: str = "") -> PhoneSequence:
    """``[(label, seconds or None), ...]`` -> a sequence without audio; a phone without
    seconds lasts its mean duration (a run folding to one symbol is one segment)."""
    mapper = phone_mapper(prepared)
    labels, pos, last_mean = [], 0, None
    for label, seconds in items:
        if seconds is None:
            pid = mapper(label)
            if pid is None or pid == last_mean:
                continue
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
    return PhoneSequence(name, segments_from_labels(labels, prepared)[0], pos, None, source)


def _seconds(label: str, dur: str) -> float:
    try:
        return float(dur[:-2]) / 1000.0 if dur.endswith("ms") else float(dur.rstrip("s"))
    except ValueError:
        raise GenerationError(f"inline phones: duration {dur!r} of {label!r} is not a number") from None


def sequence_from_inline(text: str, prepared: PreparedDataset, name: str = "phones",
                         durations: dict[str, float] | None = None) -> PhoneSequence:
    """``"h#:0.1 aa:300ms h#:0.1"``; a phone without ``:SECONDS`` lasts its mean duration."""
    items: list[tuple[str, float | None]] = []
    for item in text.replace(",", " ").split():
        if ":" in item:
            label, dur = item.rsplit(":", 1)
            items.append((label, _seconds(label, dur)))
        elif item[0].isdigit() or item[0] == ".":
            raise GenerationError(f"inline phones: {item!r} is a number, not a phone "
                                  "(write PHONE:SECONDS, e.g. aa:0.3)")
        else:
            items.append((item, None))
    return sequence_from_items(items, prepared, durations, name, f"inline: {text}")


def sequence_from_phn(path: str | Path, prepared: PreparedDataset) -> PhoneSequence:
    """A TIMIT ``.PHN`` file; the audio file beside it (same stem) is the reference."""
    from data_prep.audio import read_audio
    from data_prep.corpus import AUDIO_EXTS, read_labels

    path, sr = Path(path), prepared.sample_rate
    audio = next((p for p in sorted(path.parent.iterdir())
                  if p.stem == path.stem and p.suffix.lower() in AUDIO_EXTS and p.is_file()), None)
    wave, file_rate = read_audio(audio, sr, resample=True) if audio is not None else (None, sr)
    table, first = segments_from_labels([(a, b, lab) for a, b, lab, _ in read_labels(path, "phn", file_rate, sr)],
                                        prepared)
    length = int(table[-1, 1])
    if wave is not None and first + length > len(wave):
        raise GenerationError(f"{path}: the labels end after the audio ({len(wave)} samples in {audio})")
    ref = None if wave is None else np.ascontiguousarray(wave[first : first + length])
    return PhoneSequence(path.stem, table, length, ref, str(path))


def sequence_contexts(sequences: Sequence[PhoneSequence], n: int, context: str = "target",
                      window: int = 240) -> dict[str, Tensor]:
    """Phone context (``data.phone_context``, the one definition) of positions ``0 .. n-1``,
    ``[N, n]`` per field; positions past a sequence's end get its last segment."""
    t = torch.arange(n, dtype=torch.int64)
    ctx = [phone_context(torch.from_numpy(np.ascontiguousarray(s.segments, dtype=np.int64)), t,
                         torch.zeros_like(t), context, window) for s in sequences]
    return {k: torch.stack([c[k] for c in ctx]) for k in CONTEXT_FIELDS}


def make_prime(kind: str, n_streams: int, window: int, norm: Normalisation, seeds: Sequence[int],
               references: Sequence[np.ndarray | None] | None = None) -> tuple[Tensor, Tensor | None]:
    """(``prime [N, W]``, ``given [N, W]`` or None), normalised: ``real`` gives each
    reference's first window, ``silence`` a silent window, ``noise`` -60 dBFS Gaussian noise
    from ``Generator().manual_seed(seed + 2**32)``."""
    prime = torch.full((n_streams, window), norm.silence, dtype=torch.float32)
    for k, s in enumerate(seeds if kind == "noise" else []):
        prime[k] = norm.normalise(NOISE_RMS * torch.randn(window, generator=torch.Generator().manual_seed(s + 2**32)))
    if kind != "real":
        return prime, None
    refs = list(references or [])
    if len(refs) != n_streams or any(r is None for r in refs):
        raise GenerationError("--prime real needs a reference utterance for every stream "
                              "(use --prime silence or noise for phones without audio)")
    if any(len(r) < window for r in refs):
        raise GenerationError(f"--prime real needs references of at least the window ({window} samples)")
    given = np.stack([int16_to_float(np.asarray(r[:window])) for r in refs])
    return prime, torch.from_numpy(norm.normalise(given).astype(np.float32))


def batch_streams(seqs: Sequence[PhoneSequence], seeds: Sequence[int], n: int, s: GenerationSettings,
                  window: int) -> Streams:
    """A batch of streams of ``n`` steps, clipped to full scale (the normalised [-1, 1])."""
    prime, given = make_prime(s.prime, len(seqs), window, s.norm, seeds, [q.reference for q in seqs])
    if given is not None and n <= window:
        raise GenerationError(f"sequences must be longer than the window ({window} samples) with --prime real")
    return Streams(sequence_contexts(seqs, n, s.context, window), n, prime, given, list(seeds),
                   s.norm.full_scale)
