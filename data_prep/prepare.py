"""Turn a corpus into a prepared dataset (format in ``docs/prepared-format.md``).

``prepare(corpus_dir, out_dir, ...)`` checks its options, selects utterances
(:mod:`data_prep.selection`), reads audio and labels into sequences
(:mod:`data_prep.sequences`; optionally only the segments of chosen phones) and appends
each to the arrays as it is read (:mod:`data_prep.write`), then splits train/valid
(seeded, recorded) and writes the index, the normalisation of the training split and
``meta.json``, all in a hidden directory that is renamed into place when complete
(:func:`data_prep.audio_io.atomic_directory`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .audio_io import atomic_directory

from . import DEMO_CORPUS, FORMAT_VERSION, PrepareError
from .audio import AudioError
from .corpus import CorpusError, Utterance, discover
from .durations import mean_phone_durations
from .phones import PhoneSet, UnknownPhoneError
from .selection import Selection, SplitRule, assign_split, check_split
from .sequences import SequenceAudio, load_utterance, sequences_of
from .write import DatasetWriter, StoredSequence


@dataclass
class Options:
    """How sequences are made and stored (the parts of ``prepare``'s arguments after the
    selection and the split)."""

    phone_set: PhoneSet
    window: int = 240
    pad: str = "skip"
    sample_rate: int = 16000
    resample: bool = True
    skip_bad: bool = False
    progress: bool = True


def resolve_corpus(corpus_dir: str | Path) -> Path:
    """``demo`` names the shipped demo corpus (unless a folder ``demo`` exists here)."""
    p = Path(corpus_dir)
    if str(corpus_dir) == "demo" and not p.exists():
        return DEMO_CORPUS
    return p


def summarise(sequences: list[dict], sample_rate: int, window: int, pad: str) -> dict:
    """Counts per split (sequences, utterances, speakers, samples, examples, hours)."""
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
    corpus, out = resolve_corpus(corpus_dir), Path(out_dir)
    selection, split = selection or Selection(), split or SplitRule()
    try:
        pset = PhoneSet(phone_set, phone_map)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    opts = Options(pset, window, pad, sample_rate, resample, skip_bad, progress)
    _check_options(opts, selection, split, out, overwrite)
    chosen = _choose_utterances(corpus, selection)
    filter_ids = _filter_ids(pset, selection)
    check_split(chosen, split)
    with atomic_directory(out) as tmp, DatasetWriter(tmp) as writer:
        seqs, skipped = _read_sequences(chosen, opts, filter_ids, selection.max_sequences, writer.add)
        if not seqs:
            raise PrepareError(f"{corpus}: no usable sequences in the selection ({len(skipped)} skipped)")
        assign_split(seqs, split)
        if not any(s.split == "train" for s in seqs):
            raise PrepareError("the split leaves no training data")
        records, norm = writer.finish(seqs)
        durations = mean_phone_durations(np.load(tmp / "segments.npy"), records, pset.symbols, sample_rate)
        source = {"corpus": str(Path(corpus).resolve()), "layouts": sorted({s.utt.layout for s in seqs})}
        meta = _meta(records, norm, opts, {"selection": asdict(selection), "split": asdict(split),
                                           "source": source, "skipped": skipped}, durations)
        # meta.json last: a directory without it is never taken for a prepared dataset
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1)
    meta["elapsed_s"] = time.time() - t0
    return meta


def _check_options(opts: Options, selection: Selection, split: SplitRule, out: Path, overwrite: bool) -> None:
    """Every option error, before any audio is read."""
    if opts.pad not in ("skip", "zero"):
        raise PrepareError(f"pad must be 'skip' or 'zero', not {opts.pad!r}")
    if opts.window < 1:
        raise PrepareError(f"window must be at least 1 sample, not {opts.window}")
    for name in ("max_utterances", "max_sequences"):
        if (getattr(selection, name) or 0) < 0:
            raise PrepareError(f"{name} must not be negative, not {getattr(selection, name)}")
    if split.valid < 0:
        raise PrepareError(f"the number or fraction of validation units must not be negative, not {split.valid}")
    if out.exists() and not overwrite:
        raise PrepareError(f"{out}: already exists (pass --overwrite to replace it)")


def _choose_utterances(corpus: Path, selection: Selection) -> list[Utterance]:
    utts, _ = discover(corpus)
    if not utts:
        raise PrepareError(f"{corpus}: no audio files found (expected a TIMIT-style corpus)")
    chosen = [u for u in utts if selection.matches(u)][: selection.max_utterances]
    if not chosen:
        raise PrepareError(
            f"{corpus}: the selection matched no utterances "
            f"({json.dumps({k: v for k, v in asdict(selection).items() if v is not None})}; "
            f"{len(utts)} utterances in the corpus)"
        )
    return chosen


def _filter_ids(pset: PhoneSet, selection: Selection) -> set[int] | None:
    """Phone ids of ``--phone-filter`` (None: keep whole utterances)."""
    if not selection.phone_filter:
        return None
    try:
        return {pset.id(pset.map_label(p)) for p in selection.phone_filter}
    except (UnknownPhoneError, KeyError):
        raise PrepareError(f"phone filter {selection.phone_filter}: not all are phones of {pset.name}") from None


def _read_sequences(chosen: list[Utterance], opts: Options, filter_ids: set[int] | None,
                    max_sequences: int | None, store: Callable[[SequenceAudio], StoredSequence],
                    ) -> tuple[list[StoredSequence], list[str]]:
    """Read the chosen utterances and ``store`` each sequence at once (memory holds one
    utterance); returns (what ``store`` kept, messages of what was skipped). A bad
    utterance stops the preparation, or with ``skip_bad`` is skipped; short phone-filter
    segments are always skipped."""
    if opts.progress:
        from tqdm import tqdm

        chosen = tqdm(chosen, desc="reading", unit="utt", file=sys.stderr, disable=None)
    min_len = opts.window + 1 if opts.pad == "skip" else 2
    seqs: list[StoredSequence] = []
    skipped: list[str] = []
    for u in chosen:
        try:
            wave, table = load_utterance(u, opts.phone_set, opts.sample_rate, opts.resample)
        except (AudioError, CorpusError) as e:
            if not opts.skip_bad:
                raise
            skipped.append(str(e))
            continue
        for s in sequences_of(u, wave, table, filter_ids):
            if max_sequences is not None and len(seqs) >= max_sequences:
                return seqs, skipped
            if len(s.wave) >= min_len:
                seqs.append(store(s))
                continue
            msg = (f"{u.labels}: sequence {s.id} has {len(s.wave)} samples, shorter than "
                   f"the window + 1 ({min_len}); use --pad zero or --skip-bad")
            if filter_ids is None and not opts.skip_bad:
                raise CorpusError(msg)
            skipped.append(msg)
        if max_sequences is not None and len(seqs) >= max_sequences:
            return seqs, skipped
    return seqs, skipped


def _meta(records: list[dict], norm, opts: Options, described: dict, durations: dict[str, float]) -> dict:
    """``meta.json``; ``described``: its ``selection``, ``split``, ``source`` and ``skipped``;
    ``durations``: each phone's mean duration in seconds over the training split."""
    pset = opts.phone_set
    return {
        "format_version": FORMAT_VERSION,
        "sample_rate": opts.sample_rate,
        "phone_set": pset.name,
        "phone_map": pset.extra_map,
        "phones": pset.symbols,
        "window": opts.window,
        "pad": opts.pad,
        "normalisation": {"mean": norm.mean, "std": norm.std, "computed_on": "train"},
        "phone_durations": durations,
        "selection": described["selection"],
        "split": {**described["split"], "valid_sequences": [r["id"] for r in records if r["split"] == "valid"]},
        "source": described["source"],
        "summary": summarise(records, opts.sample_rate, opts.window, opts.pad),
        "skipped": described["skipped"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
