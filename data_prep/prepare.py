"""``prepare``: a corpus -> a prepared dataset (docs/data.md, docs/prepared-format.md),
built in a hidden directory that is renamed into place when complete."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import DEMO_CORPUS, FORMAT_VERSION, PAD_MODES
from .audio import AudioError
from .audio_io import atomic_directory
from .corpus import CorpusError, Utterance, discover
from .errors import InputError
from .phones import PhoneSet, UnknownPhoneError
from .selection import Selection, SplitRule, split_labels
from .sequences import SequenceAudio, load_utterance, sequences_of
from .write import DatasetWriter, StoredSequence, mean_phone_durations


@dataclass
class Options:
    """How sequences are made and stored."""

    phone_set: PhoneSet
    window: int = 240
    pad: str = "skip"
    sample_rate: int = 16000
    resample: bool = True
    skip_bad: bool = False
    progress: bool = True


def resolve_corpus(corpus_dir: str | Path) -> Path:
    """``demo`` names the shipped demo corpus (unless a folder ``demo`` exists here)."""
    return DEMO_CORPUS if str(corpus_dir) == "demo" and not Path(corpus_dir).exists() else Path(corpus_dir)


def summarise(sequences: list[dict], sample_rate: int, window: int, pad: str) -> dict:
    """Counts per split (sequences, utterances, speakers, samples, examples, hours)."""
    out = {}
    for split in ("train", "valid"):
        ss = [s for s in sequences if s["split"] == split]
        samples = sum(s["length"] for s in ss)
        out[split] = {
            "sequences": len(ss), "utterances": len({s["utterance"] for s in ss}),
            "speakers": len({s["speaker"] for s in ss}), "samples": samples,
            "examples": sum(max(s["length"] - (window if pad == "skip" else 0), 0) for s in ss),
            "hours": samples / sample_rate / 3600.0,
        }
    return out


def format_summary(summary: dict, title: str = "") -> str:
    cols = ("sequences", "utterances", "speakers", "samples", "examples", "hours")
    lines = ([title] if title else []) + [f"{'split':<8}" + "".join(f"{c:>13}" for c in cols)]
    for split, row in summary.items():
        lines.append(f"{split:<8}" + "".join(f"{row[c]:>13.4f}" if c == "hours" else f"{row[c]:>13,}" for c in cols))
    return "\n".join(lines)


def prepare(corpus_dir: str | Path, out_dir: str | Path, *, phone_set: str = "timit61",
            phone_map: dict[str, str] | None = None, selection: Selection | None = None,
            split: SplitRule | None = None, window: int = 240, pad: str = "skip", sample_rate: int = 16000,
            resample: bool = True, skip_bad: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Prepare ``corpus_dir`` into ``out_dir``; returns the written ``meta.json`` dict.
    Every option error is raised before any audio is read."""
    t0 = time.time()
    corpus, out = resolve_corpus(corpus_dir), Path(out_dir)
    selection, split = selection or Selection(), split or SplitRule()
    opts = Options(PhoneSet(phone_set, phone_map), window, pad, sample_rate, resample, skip_bad, progress)
    _check_options(opts, selection, split, out, overwrite)
    chosen = _choose_utterances(corpus, selection)
    filter_ids = _filter_ids(opts.phone_set, selection)
    # the split's errors the chosen utterances already show, before any audio is read
    # (reading only drops utterances; sequences are known only after reading)
    if split.mode in ("none", "official") or split.unit != "sequence":
        split_labels([(u.id, u) for u in chosen], split)
    with atomic_directory(out) as tmp, DatasetWriter(tmp) as writer:
        seqs, skipped = _read_sequences(chosen, opts, filter_ids, selection.max_sequences, writer.add)
        if not seqs:
            raise InputError(f"{corpus}: no usable sequences in the selection ({len(skipped)} skipped)")
        for s, label in zip(seqs, split_labels([(s.id, s.utt) for s in seqs], split)):
            s.split = label
        if not any(s.split == "train" for s in seqs):
            raise InputError("the split leaves no training data")
        records, norm = writer.finish(seqs)
        pset = opts.phone_set
        meta = {
            "format_version": FORMAT_VERSION, "sample_rate": sample_rate, "phone_set": pset.name,
            "phone_map": pset.extra_map, "phones": pset.symbols, "window": window, "pad": pad,
            "normalisation": {"mean": norm.mean, "std": norm.std, "computed_on": "train"},
            "phone_durations": mean_phone_durations(np.load(tmp / "segments.npy"), records, pset.symbols, sample_rate),
            "selection": asdict(selection),
            "split": {**asdict(split), "valid_sequences": [r["id"] for r in records if r["split"] == "valid"]},
            "source": {"corpus": str(Path(corpus).resolve()), "layouts": sorted({s.utt.layout for s in seqs})},
            "skipped": skipped, "summary": summarise(records, sample_rate, window, pad),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(tmp / "meta.json", "w") as f:  # last: a directory without it is no prepared dataset
            json.dump(meta, f, indent=1)
    meta["elapsed_s"] = time.time() - t0
    return meta


def _check_options(opts: Options, selection: Selection, split: SplitRule, out: Path, overwrite: bool) -> None:
    if opts.pad not in PAD_MODES:
        raise InputError(f"pad must be 'skip' or 'zero', not {opts.pad!r}")
    if opts.window < 1:
        raise InputError(f"window must be at least 1 sample, not {opts.window}")
    for name in ("max_utterances", "max_sequences"):
        if (getattr(selection, name) or 0) < 0:
            raise InputError(f"{name} must not be negative, not {getattr(selection, name)}")
    if split.valid < 0:
        raise InputError(f"the number or fraction of validation units must not be negative, not {split.valid}")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")


def _choose_utterances(corpus: Path, selection: Selection) -> list[Utterance]:
    utts, _ = discover(corpus)
    if not utts:
        raise InputError(f"{corpus}: no audio files found (expected a TIMIT-style corpus)")
    chosen = [u for u in utts if selection.matches(u)][: selection.max_utterances]
    if not chosen:
        asked = json.dumps({k: v for k, v in asdict(selection).items() if v is not None})
        raise InputError(f"{corpus}: the selection matched no utterances ({asked}; {len(utts)} utterances in the corpus)")
    return chosen


def _filter_ids(pset: PhoneSet, selection: Selection) -> set[int] | None:
    """Phone ids of ``--phone-filter`` (None: keep whole utterances)."""
    if not selection.phone_filter:
        return None
    try:
        return {pset.id(pset.map_label(p)) for p in selection.phone_filter}
    except (UnknownPhoneError, KeyError):
        raise InputError(f"phone filter {selection.phone_filter}: not all are phones of {pset.name}") from None


def _read_sequences(chosen: list[Utterance], opts: Options, filter_ids: set[int] | None,
                    max_sequences: int | None, store: Callable[[SequenceAudio], StoredSequence],
                    ) -> tuple[list[StoredSequence], list[str]]:
    """Read the chosen utterances and ``store`` each sequence at once; returns (what ``store``
    kept, messages of what was skipped: bad utterances with ``skip_bad``, short phone-filter
    segments always)."""
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
            break
    return seqs, skipped
