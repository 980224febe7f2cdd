"""``waveform-mdn prepare`` and ``waveform-mdn corpus-info``; errors propagate to
:func:`waveform_mdn.cli.main` (one line, exit 2)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import fields
from pathlib import Path

import soundfile as sf

from . import FORMAT_VERSION, PAD_MODES
from .corpus import discover
from .errors import InputError
from .phones import PHONE_SETS, parse_phone_map
from .prepare import format_summary, prepare, resolve_corpus
from .selection import Selection, SplitRule


def _csv(value: str) -> list[str]:
    return [v for v in (x.strip() for x in value.split(",")) if v]


def add_prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", help="corpus directory (TIMIT, NLTK sample, ARCTIC-style or plain); "
                   "'demo' is the shipped demo corpus")
    p.add_argument("out", help="output directory of the prepared dataset (written atomically)")
    g = p.add_argument_group("selection")
    g.add_argument("--speakers", type=_csv, help="comma-separated speaker ids, e.g. FCLT0,MKAL0")
    g.add_argument("--dialects", type=_csv, help="dialect regions, e.g. DR1,DR2")
    g.add_argument("--utt-types", type=_csv, help="utterance types: SA,SI,SX")
    g.add_argument("--utterances", type=_csv, help="utterance ids (SPEAKER_UTT or UTT)")
    g.add_argument("--corpus-split", choices=["train", "test"], help="only the official TIMIT train or test part")
    g.add_argument("--max-utterances", type=int, help="keep at most this many utterances (sorted by id)")
    g.add_argument("--phone-filter", type=_csv,
                   help="keep only segments of these phones, each as its own sequence (e.g. aa)")
    g.add_argument("--max-sequences", type=int, help="keep at most this many sequences")
    g = p.add_argument_group("train/validation split")
    g.add_argument("--split", choices=["per_speaker", "total", "official", "none"], default="per_speaker",
                   help="per_speaker: --valid units from each speaker; total: --valid units overall; "
                        "official: TIMIT TEST becomes validation; none: all training (default per_speaker)")
    g.add_argument("--valid", type=float, default=1,
                   help="validation units: a count (>= 1) or a fraction (< 1) (default 1)")
    g.add_argument("--split-by", choices=["utterance", "sequence"], default="utterance",
                   help="unit of the split (default utterance)")
    g.add_argument("--seed", type=int, default=0, help="seed of the split (recorded in meta.json)")
    g = p.add_argument_group("phones and audio")
    g.add_argument("--phone-set", choices=PHONE_SETS, default="timit61")
    g.add_argument("--phone-map", action="append", metavar="LABEL=SYMBOL",
                   help="extra label mapping, e.g. brth=pau (repeatable, or comma-separated)")
    g.add_argument("--window", type=int, default=240, help="window length in samples (default 240)")
    g.add_argument("--pad", choices=PAD_MODES, default="skip",
                   help="first `window` samples of a sequence: skip them as targets, or zero-pad")
    g.add_argument("--sample-rate", type=int, default=16000)
    g.add_argument("--no-resample", action="store_true", help="refuse audio at another sample rate")
    g = p.add_argument_group("behaviour")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip bad utterances (listed in the summary) instead of stopping")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(a: argparse.Namespace) -> int:
    sel = Selection(**{f.name: getattr(a, f.name) for f in fields(Selection)})  # the options of the same names
    meta = prepare(a.corpus, a.out, phone_set=a.phone_set, phone_map=parse_phone_map(a.phone_map), selection=sel,
                   split=SplitRule(mode=a.split, valid=a.valid, unit=a.split_by, seed=a.seed), window=a.window,
                   pad=a.pad, sample_rate=a.sample_rate, resample=not a.no_resample, skip_bad=a.skip_bad,
                   overwrite=a.overwrite, progress=not a.quiet)
    print(format_summary(meta["summary"], f"prepared {a.out} in {meta['elapsed_s']:.1f} s "
                         f"({meta['phone_set']}, window {meta['window']}, pad {meta['pad']})"))
    if meta["skipped"]:
        print(f"skipped {len(meta['skipped'])}:\n" + "\n".join(f"  {s}" for s in meta["skipped"]))
    return 0


def prepared_info(p: Path) -> str:
    """Summary of the prepared dataset ``p`` (from its ``meta.json``)."""
    meta = json.loads((p / "meta.json").read_text())
    n = meta["normalisation"]
    lines = [format_summary(meta["summary"], f"prepared dataset {p}"),
             f"sample rate {meta['sample_rate']} Hz, phone set {meta['phone_set']} "
             f"({len(meta['phones'])} phones), window {meta['window']}, pad {meta.get('pad')}",
             f"normalisation (train): mean {n['mean']:.6g}, std {n['std']:.6g}",
             f"source: {meta['source']['corpus']}"]
    if meta.get("skipped"):
        lines.append(f"skipped at preparation: {len(meta['skipped'])}")
    if meta.get("format_version") != FORMAT_VERSION:
        lines.append(f"format_version {meta.get('format_version')!r}: this waveform-mdn reads version "
                     f"{FORMAT_VERSION}; prepare the data again to use it")
    return "\n".join(lines)


def corpus_info(path: str | Path) -> str:
    """Summary of a prepared dataset, or of a corpus: counts per part, problems found."""
    p = resolve_corpus(path)
    if (p / "meta.json").is_file():
        return prepared_info(p)
    utts, problems = discover(p)
    if not utts:
        raise InputError(f"{p}: neither a prepared dataset (meta.json) nor a corpus with audio files")
    rows: dict[str, dict] = {}
    for u in utts:
        try:
            info = sf.info(u.audio)
        except Exception as e:  # soundfile raises several types; listed with the other problems
            problems.append(f"{u.audio}: unreadable audio ({e})")
            continue
        r = rows.setdefault(u.corpus_split or "all", {"utterances": 0, "speakers": set(), "seconds": 0.0,
                                                     "rates": Counter()})
        r["utterances"] += 1
        r["speakers"].add(u.speaker)
        r["seconds"] += info.frames / info.samplerate
        r["rates"][info.samplerate] += 1
    layouts = Counter(u.layout for u in utts)
    lines = [f"corpus {p} (layout: {', '.join(f'{k} x{v}' for k, v in layouts.items())})",
             f"{'part':<8}{'utterances':>12}{'speakers':>10}{'hours':>10}  sample rates"]
    for key, r in sorted(rows.items()):
        rates = ", ".join(f"{k} Hz x{v}" for k, v in sorted(r["rates"].items()))
        lines.append(f"{key:<8}{r['utterances']:>12,}{len(r['speakers']):>10,}{r['seconds'] / 3600:>10.4f}  {rates}")
    types = Counter(u.utt_type for u in utts if u.utt_type)
    sexes = Counter(u.sex for u in {u.speaker: u for u in utts}.values() if u.sex)
    for title, counts in (("utterance types", types), ("speakers by sex", sexes)):
        if counts:
            lines.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines + [f"problem: {msg}" for msg in problems])


def main(argv: list[str] | None = None) -> int:
    """``argv``: the command name, then its arguments."""
    parser = argparse.ArgumentParser(prog="waveform-mdn")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_prepare_args(sub.add_parser("prepare", help="prepare a corpus"))
    sub.add_parser("corpus-info").add_argument("path")
    a = parser.parse_args(argv)
    if a.cmd == "prepare":
        return run_prepare(a)
    print(corpus_info(a.path))
    return 0
