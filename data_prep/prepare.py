"""Turn a corpus into a prepared dataset (format in ``docs/prepared-format.md``).

``prepare(corpus_dir, out_dir, ...)`` selects utterances, reads audio and labels, optionally
keeps only the segments of chosen phones as separate sequences, splits train/valid per
speaker (seeded, recorded), computes normalisation on the training split only, and writes
the flat arrays into a temporary directory that is renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import DEMO_CORPUS, FORMAT_VERSION
from .audio import AudioError, read_audio
from .corpus import CorpusError, Utterance, discover, read_labels
from .phones import MERGE, PhoneSet, UnknownPhoneError



#: Seconds by which the last phone of a .lab file may end after the audio (clamped).
LAB_END_TOLERANCE = 0.01


class PrepareError(ValueError):
    pass


@dataclass
class Selection:
    """Which utterances (and segments) to keep. ``None`` means no restriction."""

    speakers: list[str] | None = None
    dialects: list[str] | None = None
    utt_types: list[str] | None = None
    utterances: list[str] | None = None
    corpus_split: str | None = None  # "train" / "test": the official TIMIT split
    max_utterances: int | None = None
    phone_filter: list[str] | None = None  # keep only segments of these phones, one sequence each
    max_sequences: int | None = None

    def matches(self, u: Utterance) -> bool:
        def _in(value, allowed):
            return allowed is None or (value is not None and value.upper() in {a.upper() for a in allowed})

        if self.utterances is not None:
            keys = {k.upper() for k in self.utterances}
            stem = Path(u.audio).stem.upper()
            if u.id.upper() not in keys and stem not in keys:
                return False
        return (
            _in(u.speaker, self.speakers)
            and _in(u.dialect, self.dialects)
            and _in(u.utt_type, self.utt_types)
            and (self.corpus_split is None or u.corpus_split == self.corpus_split.lower())
        )

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class SplitRule:
    """How to choose validation data.

    ``mode``: ``"per_speaker"`` takes ``valid`` units (a count if >= 1, else a fraction)
    from each speaker; ``"total"`` takes ``valid`` units from the whole pool; ``"official"``
    uses the corpus's own train/test split (test becomes valid); ``"none"`` puts everything
    in train. ``unit``: ``"utterance"`` or ``"sequence"`` (they differ with a phone filter).
    """

    mode: str = "per_speaker"
    valid: float = 1
    unit: str = "utterance"
    seed: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Seq:
    id: str
    utt: Utterance
    wave: np.ndarray  # int16
    segments: np.ndarray  # int64 [S,5], local offsets
    split: str = "train"


@dataclass
class Report:
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def resolve_corpus(corpus_dir: str | Path) -> Path:
    """``demo`` names the shipped demo corpus (unless a folder ``demo`` exists here)."""
    p = Path(corpus_dir)
    if str(corpus_dir) == "demo" and not p.exists():
        return DEMO_CORPUS
    return p


def segment_table(
    labels: Iterable[tuple[int, int, str, str]],
    to_id: Callable[[str], int | None],
    no_phone: int,
    source: str = "labels",
    mapping: str = "mapping",
) -> tuple[np.ndarray, int]:
    """Mapped phone segments -> (local segment table int64 ``[S, 5]``, offset of the first).

    The one place where corpus labels become segments (preparation and generation both
    use it). ``labels``: ``(start, end, label, where)`` in samples, ``where`` naming the
    file and line for messages; ``to_id(label)`` gives the phone id, or ``None`` for a
    label to merge into its neighbour (``q`` in the 39 set); an UnknownPhoneError it raises
    becomes a CorpusError naming ``where``.
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


def _load_utterance(
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


def _sequences_of(u: Utterance, wave: np.ndarray, table: np.ndarray, phone_ids: set[int] | None) -> list[_Seq]:
    if phone_ids is None:
        return [_Seq(u.id, u, wave, table)]
    out = []
    for k, row in enumerate(table):
        if int(row[2]) in phone_ids:
            a, b = int(row[0]), int(row[1])
            seg = row.copy()[None]
            seg[0, 0], seg[0, 1] = 0, b - a
            out.append(_Seq(f"{u.id}_{k:03d}", u, wave[a:b].copy(), seg))
    return out


def _assign_split(seqs: list[_Seq], rule: SplitRule) -> None:
    if rule.mode == "none":
        return
    if rule.mode == "official":
        for s in seqs:
            if s.utt.corpus_split is None:
                raise PrepareError(
                    f"{s.utt.audio}: the official split needs the TIMIT layout (TRAIN/TEST folders)"
                )
            s.split = "valid" if s.utt.corpus_split == "test" else "train"
        return
    if rule.unit not in ("utterance", "sequence"):
        raise PrepareError(f"split unit must be 'utterance' or 'sequence', not {rule.unit!r}")
    key = (lambda s: s.utt.id) if rule.unit == "utterance" else (lambda s: s.id)
    if rule.mode == "per_speaker":
        groups: dict[str, list[str]] = {}
        for s in seqs:
            groups.setdefault(s.utt.speaker or "", [])
            if key(s) not in groups[s.utt.speaker or ""]:
                groups[s.utt.speaker or ""].append(key(s))
    elif rule.mode == "total":
        groups = {"": list(dict.fromkeys(key(s) for s in seqs))}
    else:
        raise PrepareError(f"unknown split mode {rule.mode!r}")
    valid: set[str] = set()
    for name in sorted(groups):
        units = sorted(groups[name])
        n = int(rule.valid) if rule.valid >= 1 else int(round(rule.valid * len(units)))
        if n >= len(units) and len(units) > 0:
            raise PrepareError(
                f"speaker {name or '(all)'} has {len(units)} {rule.unit}(s): cannot take {n} for "
                "validation and keep any for training"
            )
        rng = random.Random(f"{rule.seed}:{name}")
        valid.update(rng.sample(units, n))
    if not valid:
        raise PrepareError(
            f"the split takes no validation data ({rule.mode}, --valid {rule.valid:g} of "
            f"{sum(len(g) for g in groups.values())} {rule.unit}s); use a larger --valid, or --split none"
        )
    for s in seqs:
        s.split = "valid" if key(s) in valid else "train"


def summarise(sequences: list[dict], sample_rate: int, window: int, pad: str) -> dict:
    out = {}
    for split in ("train", "valid"):
        ss = [s for s in sequences if s["split"] == split]
        samples = sum(s["length"] for s in ss)
        offset = window if pad == "skip" else 0
        out[split] = {
            "sequences": len(ss),
            "utterances": len({s["utterance"] for s in ss}),
            "speakers": len({s["speaker"] for s in ss}),
            "samples": samples,
            "examples": sum(max(s["length"] - offset, 0) for s in ss),
            "hours": samples / sample_rate / 3600.0,
        }
    return out


def format_summary(summary: dict, title: str = "") -> str:
    cols = ("sequences", "utterances", "speakers", "samples", "examples", "hours")
    lines = [title] if title else []
    lines.append(f"{'split':<8}" + "".join(f"{c:>13}" for c in cols))
    for split, row in summary.items():
        cells = "".join(
            f"{row[c]:>13.4f}" if c == "hours" else f"{row[c]:>13,}" for c in cols
        )
        lines.append(f"{split:<8}{cells}")
    return "\n".join(lines)


def prepare(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    phone_set: str = "timit61",
    phone_map: dict[str, str] | None = None,
    selection: Selection | None = None,
    split: SplitRule | None = None,
    window: int = 240,
    pad: str = "skip",
    sample_rate: int = 16000,
    resample: bool = True,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Prepare ``corpus_dir`` into ``out_dir``; returns the written ``meta.json`` dict."""
    t0 = time.time()
    corpus = resolve_corpus(corpus_dir)
    out = Path(out_dir)
    selection = selection or Selection()
    split = split or SplitRule()
    try:
        pset = PhoneSet(phone_set, phone_map)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if pad not in ("skip", "zero"):
        raise PrepareError(f"pad must be 'skip' or 'zero', not {pad!r}")
    if window < 1:
        raise PrepareError(f"window must be at least 1 sample, not {window}")
    for name in ("max_utterances", "max_sequences"):
        if (getattr(selection, name) or 0) < 0:
            raise PrepareError(f"{name} must not be negative, not {getattr(selection, name)}")
    if split.valid < 0:
        raise PrepareError(f"the number or fraction of validation units must not be negative, not {split.valid}")
    if out.exists() and not overwrite:
        raise PrepareError(f"{out}: already exists (pass --overwrite to replace it)")
    report = Report()

    utts, problems = discover(corpus)
    if not utts:
        raise PrepareError(f"{corpus}: no audio files found (expected a TIMIT-style corpus)")
    chosen = [u for u in utts if selection.matches(u)]
    if selection.max_utterances is not None:
        chosen = chosen[: selection.max_utterances]
    if not chosen:
        raise PrepareError(
            f"{corpus}: the selection matched no utterances "
            f"({json.dumps({k: v for k, v in selection.to_json().items() if v is not None})}; "
            f"{len(utts)} utterances in the corpus)"
        )
    filter_ids = None
    if selection.phone_filter:
        try:
            filter_ids = {pset.id(pset.map_label(p)) for p in selection.phone_filter}
        except (UnknownPhoneError, KeyError):
            raise PrepareError(f"phone filter {selection.phone_filter}: not all are phones of {pset.name}") from None

    seqs: list[_Seq] = []
    iterator = chosen
    if progress:
        from tqdm import tqdm

        iterator = tqdm(chosen, desc="reading", unit="utt", file=sys.stderr, disable=None)
    min_len = window + 1 if pad == "skip" else 2
    for u in iterator:
        try:
            wave, table = _load_utterance(u, pset, sample_rate, resample)
        except (AudioError, CorpusError) as e:
            if not skip_bad:
                raise
            report.skipped.append(str(e))
            continue
        for s in _sequences_of(u, wave, table, filter_ids):
            if len(s.wave) < min_len:
                msg = (f"{u.labels}: sequence {s.id} has {len(s.wave)} samples, shorter than "
                       f"the window + 1 ({min_len}); use --pad zero or --skip-bad")
                if filter_ids is None and not skip_bad:
                    raise CorpusError(msg)
                report.skipped.append(msg)
                continue
            seqs.append(s)
        if selection.max_sequences is not None and len(seqs) >= selection.max_sequences:
            seqs = seqs[: selection.max_sequences]
            break
    if not seqs:
        raise PrepareError(f"{corpus}: no usable sequences in the selection ({len(report.skipped)} skipped)")
    _assign_split(seqs, split)
    if not any(s.split == "train" for s in seqs):
        raise PrepareError("the split leaves no training data")

    source = {"corpus": str(Path(corpus).resolve()), "layouts": sorted({s.utt.layout for s in seqs})}
    meta = _write(out, seqs, pset, window, pad, sample_rate, source, selection, split, report)
    meta["elapsed_s"] = time.time() - t0
    return meta


def _write(out, seqs, pset, window, pad, sample_rate, source, selection, split, report) -> dict:
    n = sum(len(s.wave) for s in seqs)
    n_seg = sum(len(s.segments) for s in seqs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    wave = phones = None
    try:
        # plain sequential writes, not memory maps: the dirty pages of a memory map count in
        # the resident memory of this process (as much again as the arrays)
        wave = open(tmp / "wave.npy", "wb")
        phones = open(tmp / "phones.npy", "wb")
        _npy_header(wave, "<i2", n)  # little-endian, as written below
        _npy_header(phones, np.uint8, n)
        segments = np.empty((n_seg, 5), dtype=np.int64)
        records = []
        pos = seg_pos = 0
        total = total_sq = count = 0  # exact integer sums of the raw int16 training samples
        for i, s in enumerate(seqs):
            L = len(s.wave)
            wave.write(np.ascontiguousarray(s.wave, dtype="<i2"))
            seg = s.segments.copy()
            phones.write(np.repeat(seg[:, 2].astype(np.uint8), seg[:, 1] - seg[:, 0]))
            seg[:, :2] += pos
            segments[seg_pos : seg_pos + len(seg)] = seg
            if s.split == "train":
                # integer arithmetic: exact, and no float64 copy or (multi-threaded) BLAS dot,
                # which made this loop the slowest part of the preparation on a busy machine
                total += int(s.wave.sum(dtype=np.int64))
                total_sq += int(np.square(s.wave, dtype=np.int32).sum(dtype=np.int64))
                count += L
            u = s.utt
            records.append({
                "id": s.id, "utterance": u.id, "speaker": u.speaker, "sex": u.sex,
                "dialect": u.dialect, "utt_type": u.utt_type, "corpus_split": u.corpus_split,
                "split": s.split, "start": pos, "length": L, "seg_start": seg_pos,
                "seg_count": len(seg), "source": u.audio,
            })
            pos += L
            seg_pos += len(seg)
            seqs[i] = None  # free the per-utterance copy as soon as it is written
        mean = total / count / 32768.0
        std = float(np.sqrt(max(total_sq / count / 32768.0**2 - mean * mean, 0.0)))
        if not std > 0:
            raise PrepareError("the training split is silent (standard deviation 0): cannot normalise")
        wave.close()
        phones.close()
        if pos != n:
            raise AssertionError(f"wrote {pos} samples, expected {n}")
        np.save(tmp / "segments.npy", segments)
        with open(tmp / "sequences.json", "w") as f:
            json.dump(records, f)
        summary = summarise(records, sample_rate, window, pad)
        meta = {
            "format_version": FORMAT_VERSION,
            "sample_rate": sample_rate,
            "phone_set": pset.name,
            "phone_map": pset.extra_map,
            "phones": pset.symbols,
            "window": window,
            "pad": pad,
            "normalisation": {"mean": mean, "std": std, "computed_on": "train"},
            "selection": selection.to_json(),
            "split": {**split.to_json(),
                      "valid_sequences": [r["id"] for r in records if r["split"] == "valid"]},
            "source": source,
            "summary": summary,
            "skipped": report.skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # meta.json last: a directory without it is never taken for a prepared dataset
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)  # put the previous dataset back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        for f in (wave, phones):
            if f is not None:
                f.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _npy_header(f, dtype, n: int) -> None:
    """The ``.npy`` header of a 1-D array of ``n`` items; the data follow it as raw bytes."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (n,)}
    )
