"""``waveform-mdn generate`` and ``evaluate`` (``docs/generation.md``); ``--threads`` is
applied here: the library changes no process setting."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from data_prep.audio_io import write_json
from ..contract import MEASUREMENTS_FILE
from ..data import PreparedDataset
from .batching import generate_sequences
from .checkpoint import load_model
from .engine import noise_variance
from .inputs import phone_durations, sequence_from_inline, sequence_from_phn, sequence_from_prepared
from .settings import MODES, PRIMES, VARIANCES, GenerationError, GenerationSettings
from .writers import measured, read_record, write_streams


def _log(msg: str) -> None:
    print(f"[generate] {msg}", file=sys.stderr, flush=True)


def parser_generate() -> argparse.ArgumentParser:
    """The ``generate`` options (``docs/generation.md`` explains each)."""
    p = argparse.ArgumentParser(prog="waveform-mdn generate",
                                description="Generate audio sample by sample from a checkpoint and a phone sequence.")
    add, D = p.add_argument, GenerationSettings
    add("--ckpt", required=True, help="Lightning checkpoint of a WaveformPredictor")
    add("--data", required=True, help="prepared dataset (phone set, utterances, normalisation)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--utterance", nargs="+", metavar="ID", help="sequence or utterance id(s) of --data")
    src.add_argument("--split", choices=("train", "valid"), help="every sequence of this split of --data")
    src.add_argument("--phn", nargs="+", metavar="FILE", help="TIMIT .PHN file(s); audio beside = reference")
    src.add_argument("--phones", help='inline phones with durations ("h#:0.1 aa:0.3") or without ("sh iy")')
    src.add_argument("--text", help='words to say ("she had your dark suit")')
    add("--limit", type=int, default=None, help="at most this many sequences (with --split)")
    add("--prime", choices=PRIMES, default=None, help="first window (default: real with a reference, else silence)")
    add("--mode", choices=MODES, default=D.mode, help="a draw (default), the mean, the top component's mean")
    add("--temperature-weights", type=float, default=D.temperature_weights,
        help="divides the mixture logits (0: the top component)")
    add("--temperature-scales", type=float, default=D.temperature_scales, help="multiplies the scales (0: no noise)")
    add("--gaussian-variance", choices=VARIANCES, default=D.gaussian_variance,
        help="the MLP's noise: validation or training MSE")
    add("--streams", type=int, default=D.streams, help="streams per sequence (seeds SEED .. SEED+N-1)")
    add("--seed", type=int, default=D.seed)
    add("--device", default=D.device, help="cpu (default), cuda, cuda:1, ...")
    add("--threads", type=int, default=1, help="CPU threads (default 1; 2+ help only many streams on idle cores)")
    add("--batch-size", type=int, default=D.batch_size, help=f"streams generated together (default {D.batch_size})")
    add("--seconds", type=float, default=None, help="generate at most this many seconds per sequence")
    add("--png", action="store_true", help="also write OUT/<name>.png (waveform + spectrogram)")
    add("--no-measure", dest="measure", action="store_false", help="skip the measurements (still writes the JSON)")
    _judges_flag(p)
    add("--allow-different-data", action="store_true", help="generate even if --data is not the checkpoint's data")
    add("--quiet", dest="progress", action="store_false", help="no progress bars and no progress lines on stderr")
    add("--out", required=True, help="output directory")
    return p


def settings_of(a: argparse.Namespace) -> GenerationSettings:
    """The one settings object of a ``generate`` command line (checked): the options named
    like its fields."""
    if a.threads < 1:
        raise GenerationError("--threads must be at least 1")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationError("--device cuda: no CUDA device is available here")
    return GenerationSettings(**{f.name: getattr(a, f.name) for f in fields(GenerationSettings) if hasattr(a, f.name)})


def _sequences(a: argparse.Namespace, prepared: PreparedDataset, hp: dict, notes: list[str]) -> tuple[list, dict]:
    """The selected sequences (names made unique) and how they were selected."""
    durations = None
    if a.text or (a.phones and any(":" not in item for item in a.phones.replace(",", " ").split())):
        durations, note = phone_durations(hp.get("phone_durations"), prepared)
        notes += [note] if note else []
    if a.utterance:
        try:
            seqs, how = [sequence_from_prepared(prepared, u) for u in a.utterance], {"utterances": list(a.utterance)}
        except KeyError as e:
            raise GenerationError(e.args[0]) from None
    elif a.split:
        idx = prepared.sequence_indices(a.split)[: a.limit]
        seqs, how = [sequence_from_prepared(prepared, i) for i in idx], {"split": a.split, "limit": a.limit}
    elif a.phn:
        seqs, how = [sequence_from_phn(f, prepared) for f in a.phn], {"phn": [str(Path(f).resolve()) for f in a.phn]}
    elif a.text:
        from .text import sequence_from_text

        seqs = [sequence_from_text(a.text, prepared, durations or {})]
        how = {"text": a.text, "phones": seqs[0].source.split(" = ", 1)[1]}
    else:
        seqs, how = [sequence_from_inline(a.phones, prepared, durations=durations)], {"phones": a.phones}
    if not seqs:
        raise GenerationError("no sequence selected")
    if len({s.name for s in seqs}) != len(seqs):
        for i, s in enumerate(seqs):
            s.name = f"{s.name}_{i}"
    return seqs, how


def run_generate(a: argparse.Namespace) -> int:
    """Generate and write what ``a`` asks; ``--out`` made and proven writable before any long work."""
    settings = settings_of(a)
    out = Path(a.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file there, or above it
        raise GenerationError(f"--out {out}: cannot make the directory ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise GenerationError(f"--out {out}: cannot write there")
    prepared = PreparedDataset(a.data)
    model, hp, notes = load_model(a.ckpt, prepared, settings.device, a.allow_different_data)
    seqs, selection = _sequences(a, prepared, hp, notes)
    s = settings.resolved(hp, [q.reference for q in seqs], prepared)
    head = model.net.head
    head_name = hp.get("head") or getattr(head, "name", "?")
    if hasattr(head, "valid_mse") and s.mode == "sample" and s.gaussian_variance == "valid" \
            and not torch.isfinite(head.valid_mse):
        notes.append("the checkpoint holds no validation MSE: the MLP's noise uses the training MSE")
    for note in notes:
        _log(f"note: {note}")
    log = _log if s.progress else None
    if log is not None:
        log(f"{len(seqs)} sequence(s) x {s.streams} stream(s), head {head_name}, mode {s.mode}, prime {s.prime}, "
            f"device {s.device}" + (f"; phones {selection['phones']}" if a.text else ""))
    t0 = time.perf_counter()
    gens = generate_sequences(model, seqs, s, log)
    record = {
        "checkpoint": str(Path(a.ckpt).resolve()), "data_fingerprint": hp.get("data_fingerprint") or prepared.fingerprint,
        "data": str(Path(a.data).resolve()), "head": head_name, "components": int(getattr(head, "components", 1)),
        "settings": {**_recorded(s, model), **selection}, "notes": notes,
        "generation_seconds": round(time.perf_counter() - t0, 3),
    }
    files = write_streams(out, gens, s, log=log, phones=prepared.phones,
                          png_label=f"{head_name}, {s.mode}" if a.png else None)
    write_json(out / MEASUREMENTS_FILE, {**record, "files": files})
    print(f"{len(files)} file(s) in {out}; measurements in {out / MEASUREMENTS_FILE}; clipped samples: {sum(f['clipped'] for f in files)}; "
          f"non-finite draws replaced: {sum(f['nonfinite_replaced'] for f in files)}")
    return 0


def _recorded(s: GenerationSettings, model) -> dict:
    """The settings as ``measurements.json`` records them."""
    head, scale = model.net.head, None
    if hasattr(head, "use_variance"):
        with noise_variance(head, s.gaussian_variance):
            scale = float(head.scale)
    kept = {k: v for k, v in asdict(s).items()
            if k not in ("norm", "batch_size", "progress", "chunk", "measure", "judges")}
    return {**kept, "window": int(model.net.window), "norm_mean": s.norm.mean, "norm_std": s.norm.std,
            "gaussian_scale": scale}


def _judges_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judges", action=argparse.BooleanOptionalAction, default=GenerationSettings.judges,
                   help="also the judges: DNSMOS and the phone error rate (docs/judges.md; default on)")


def parser_evaluate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn evaluate",
        description="Measure WAV files (optionally against references) with waveform_mdn.audio_metrics. "
                    "Given a generation directory (or its measurements.json), re-measure its files in place.",
    )
    p.add_argument("paths", nargs="+", help="a generation directory / measurements.json, or WAV files")
    p.add_argument("--reference", nargs="+", default=None, help="reference WAV(s): one for all files, or one per file")
    p.add_argument("--out", default=None, help="JSON to write (default: the directory's measurements.json)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    _judges_flag(p)
    return p


def run_evaluate(a: argparse.Namespace) -> int:
    """Re-measure the files of a generation directory (or its ``measurements.json``) into
    ``--out`` (default: in place), or measure WAV files (against one reference for all, or
    one each) into ``--out`` (default: ``measurements.json`` here)."""
    paths, out = [Path(x) for x in a.paths], Path(a.out) if a.out else None
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix == ".json"):
        meas, data = read_record(paths[0])
        out = out or meas
        write_json(out, {**data, "files": measured(data["files"], meas.parent, out.parent, a.judges, a.progress)})
        print(f"re-measured the files of {paths[0]} -> {out}")
        return 0
    out = out or Path(MEASUREMENTS_FILE)
    refs = [Path(r) for r in (a.reference or [])]
    if refs and len(refs) not in (1, len(paths)):
        raise GenerationError(f"{len(refs)} references for {len(paths)} files: give one, or one per file")
    refs = refs * len(paths) if len(refs) == 1 else refs or [None] * len(paths)
    entries = [{"wav": str(w), "reference": r and str(r)} for w, r in zip(paths, refs)]
    files = measured(entries, Path(), out.parent, a.judges, a.progress)
    write_json(out, {"checkpoint": None, "data_fingerprint": None, "head": None, "settings": {}, "files": files})
    print(f"measured {len(files)} file(s) -> {out}")
    return 0


def main(argv: list[str]) -> int:
    """``argv[0]`` is the subcommand, ``generate`` or ``evaluate``; bad input raises InputError."""
    cmd, rest = argv[0], argv[1:]
    if cmd == "evaluate":
        return run_evaluate(parser_evaluate().parse_args(rest))
    a = parser_generate().parse_args(rest)
    torch.set_num_threads(max(1, a.threads))  # the entry point owns the process settings
    return run_generate(a)
