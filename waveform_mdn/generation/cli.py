"""``waveform-mdn generate`` and ``waveform-mdn evaluate`` (see ``docs/generation.md``).

Everything that can be wrong with the input (the output directory, the data, the
checkpoint, the sequences) is checked before the first sample is generated, and reported
as one line naming the file or value (exit code 1). ``--threads`` is applied here, the
entry point: the library changes no process-wide setting.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from ..contract import MEASUREMENTS_FILE
from ..data import PreparedDataset
from .batching import generate_sequences, hparam, normalisation_of
from .checkpoint import check_data, load_model
from .engine import MODES
from .inputs import (
    PRIMES, GenerationError, phone_durations, sequence_from_inline, sequence_from_phn, sequence_from_prepared,
)
from .network import gaussian_scale
from .writers import check_output_directory, measure_entry, measure_wavs, remeasure, write_streams


def _log(msg: str) -> None:
    print(f"[generate] {msg}", file=sys.stderr, flush=True)


def parser_generate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="waveform-mdn generate",
                                description="Generate audio sample by sample from a checkpoint and a phone sequence.")
    p.add_argument("--ckpt", required=True, help="Lightning checkpoint of a WaveformPredictor")
    p.add_argument("--data", required=True, help="prepared dataset (phone set, utterances, normalisation)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--utterance", nargs="+", metavar="ID", help="sequence or utterance id(s) of --data")
    src.add_argument("--split", choices=("train", "valid"), help="every sequence of this split of --data")
    src.add_argument("--phn", nargs="+", metavar="FILE", help="TIMIT .PHN file(s); audio beside = reference")
    src.add_argument("--phones", help='inline phones, with durations in seconds ("h#:0.1 aa:0.3 h#:0.1") or '
                                      'without (each its mean duration in the training data: "sh iy hh ae d")')
    src.add_argument("--text", help='words to say ("she had your dark suit"): CMU dictionary pronunciations, '
                                    "TIMIT phones, mean durations of the training data")
    p.add_argument("--limit", type=int, default=None, help="at most this many sequences (with --split)")
    p.add_argument("--prime", choices=PRIMES, default=None,
                   help="first window: real (default with a reference), silence (default otherwise), noise")
    p.add_argument("--mode", choices=MODES, default="sample",
                   help="sample (default), mean (predictive mean), mode (most probable component's mean)")
    p.add_argument("--temperature-weights", type=float, default=1.0,
                   help="divides the mixture logits, in sample and mean modes (0: the most probable component)")
    p.add_argument("--temperature-scales", type=float, default=1.0, help="multiplies the scales (0: no noise)")
    p.add_argument("--gaussian-variance", choices=("valid", "train"), default="valid",
                   help="noise of the MLP (gaussian head) in sample mode: validation MSE (default) or training MSE")
    p.add_argument("--streams", type=int, default=1, help="streams per sequence (seeds SEED .. SEED+N-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1; 2+ help only for many streams on idle cores)")
    p.add_argument("--batch-size", type=int, default=64, help="streams generated together (default 64)")
    p.add_argument("--seconds", type=float, default=None, help="generate at most this many seconds per sequence")
    p.add_argument("--png", action="store_true", help="also write OUT/<name>.png (waveform + spectrogram)")
    p.add_argument("--no-measure", action="store_true", help="skip the measurements (still writes the JSON)")
    p.add_argument("--allow-different-data", action="store_true",
                   help="generate even if --data is not the data the checkpoint was trained on")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (generation, measurements) and no progress lines on stderr")
    p.add_argument("--out", required=True, help="output directory")
    return p


def _check_arguments(a: argparse.Namespace) -> None:
    if a.streams < 1 or a.batch_size < 1 or a.threads < 1:
        raise GenerationError("--streams, --batch-size and --threads must be at least 1")
    if not (a.temperature_weights >= 0 and a.temperature_scales >= 0):
        raise GenerationError("--temperature-weights and --temperature-scales must be >= 0")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationError("--device cuda: no CUDA device is available here")


def _durations(a: argparse.Namespace, model, prepared: PreparedDataset, notes: list[str]) -> dict | None:
    """The duration model, when ``--text`` or ``--phones`` without durations needs it."""
    if not (a.text or (a.phones and any(":" not in item for item in a.phones.replace(",", " ").split()))):
        return None
    durations, note = phone_durations(hparam(model, "phone_durations"), prepared)
    if note:
        notes.append(note)
    return durations


def _sequences(a: argparse.Namespace, prepared: PreparedDataset, durations: dict | None) -> tuple[list, dict]:
    """The selected sequences (names made unique) and how they were selected."""
    if a.utterance:
        seqs, how = [sequence_from_prepared(prepared, u) for u in a.utterance], {"utterances": list(a.utterance)}
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
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        for i, s in enumerate(seqs):
            s.name = f"{s.name}_{i}"
    return seqs, how


def run_generate(a: argparse.Namespace) -> int:
    _check_arguments(a)
    out = check_output_directory(a.out)
    prepared = PreparedDataset(a.data)
    model = load_model(a.ckpt, a.device)
    notes = check_data(model, prepared, a.allow_different_data)
    seqs, selection = _sequences(a, prepared, _durations(a, model, prepared, notes))
    log = None if a.quiet else _log
    head = model.net.head
    head_name = hparam(model, "head", getattr(head, "name", "?"))
    norm = normalisation_of(model) if hparam(model, "norm_mean") is not None else prepared.normalisation
    sr = int(hparam(model, "sample_rate", prepared.sample_rate))
    context = hparam(model, "phone_context", "target")
    prime = a.prime or ("real" if all(s.reference is not None for s in seqs) else "silence")
    gscale = gaussian_scale(head, a.gaussian_variance) if hasattr(head, "valid_mse") else None
    if gscale is not None and a.mode == "sample" and a.gaussian_variance == "valid" \
            and not math.isfinite(float(head.valid_mse)):
        notes.append("the checkpoint holds no validation MSE: the MLP's noise uses the training MSE")
    for note in notes:
        _log(f"note: {note}")
    if log is not None:
        log(f"{len(seqs)} sequence(s) x {a.streams} stream(s), head {head_name}, mode {a.mode}, prime {prime}, "
            f"device {a.device}" + (f"; phones {selection['phones']}" if a.text else ""))
    t0 = time.perf_counter()
    gens = generate_sequences(
        model, seqs, streams=a.streams, prime=prime, seed=a.seed, seconds=a.seconds, batch_size=a.batch_size,
        norm=(norm.mean, norm.std), context=context, log=log, progress=not a.quiet, mode=a.mode, device=a.device,
        temperature_weights=a.temperature_weights, temperature_scales=a.temperature_scales,
        gaussian_variance=a.gaussian_variance,
    )
    t_gen = time.perf_counter() - t0
    files = write_streams(out, gens, sr, measure=False, log=log, png_label=f"{head_name}, {a.mode}" if a.png else None)
    if not a.no_measure:
        from ..audio_metrics import per_file_progress

        for entry in per_file_progress(files, len(files), enabled=not a.quiet):
            entry.update(measure_entry(out / entry["wav"], out / entry["reference"] if entry["reference"] else None,
                                       out))
    settings = {
        "mode": a.mode, "prime": prime, "temperature_weights": a.temperature_weights,
        "temperature_scales": a.temperature_scales, "gaussian_variance": a.gaussian_variance,
        "streams": a.streams, "seed": a.seed, "seconds": a.seconds, "device": a.device,
        "sample_rate": sr, "window": int(model.net.window), "context": context,
        "norm_mean": norm.mean, "norm_std": norm.std, "gaussian_scale": gscale, **selection,
    }
    from data_prep.audio_io import write_json

    write_json(out / MEASUREMENTS_FILE, {
        "checkpoint": str(Path(a.ckpt).resolve()), "data_fingerprint": hparam(model, "data_fingerprint",
                                                                              prepared.fingerprint),
        "data": str(Path(a.data).resolve()), "head": head_name, "components": int(getattr(head, "components", 1)),
        "settings": settings, "notes": notes, "generation_seconds": round(t_gen, 3), "files": files,
    })
    print(f"{len(files)} file(s) in {out}; measurements in {out / MEASUREMENTS_FILE}; "
          f"clipped samples: {sum(f['clipped'] for f in files)}; "
          f"non-finite draws replaced: {sum(f['nonfinite_replaced'] for f in files)}")
    return 0


def parser_evaluate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn evaluate",
        description="Measure WAV files (optionally against references) with waveform_mdn.audio_metrics. "
                    "Given a generation directory (or its measurements.json), re-measure its files in place.",
    )
    p.add_argument("paths", nargs="+", help="a generation directory / measurements.json, or WAV files")
    p.add_argument("--reference", nargs="+", default=None, help="reference WAV(s): one for all files, or one per file")
    p.add_argument("--out", default=None, help="JSON to write (default: the directory's measurements.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run_evaluate(a: argparse.Namespace) -> int:
    paths = [Path(x) for x in a.paths]
    out = Path(a.out) if a.out else None
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix == ".json"):
        written = remeasure(paths[0], out, progress=not a.quiet)
        print(f"re-measured the files of {paths[0]} -> {written}")
        return 0
    out = out or Path(MEASUREMENTS_FILE)
    n = measure_wavs(paths, [Path(r) for r in (a.reference or [])], out, progress=not a.quiet)
    print(f"measured {n} file(s) -> {out}")
    return 0


def _user_errors() -> tuple[type[Exception], ...]:
    from data_prep.audio import AudioError
    from data_prep.corpus import CorpusError

    return (GenerationError, FileNotFoundError, KeyError, ValueError, AudioError, CorpusError)


def main(argv: list[str]) -> int:
    """``argv[0]`` is the subcommand, ``generate`` or ``evaluate``."""
    argv = list(argv)
    cmd = argv[0] if argv else "generate"
    try:
        if cmd == "generate":
            a = parser_generate().parse_args(argv[1:])
            torch.set_num_threads(max(1, a.threads))  # the entry point owns the process settings
            return run_generate(a)
        if cmd == "evaluate":
            return run_evaluate(parser_evaluate().parse_args(argv[1:]))
        print(f"waveform-mdn: {cmd!r} is not handled by waveform_mdn.generation", file=sys.stderr)
        return 2
    except _user_errors() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"waveform-mdn {cmd}: error: {msg}", file=sys.stderr)
        return 1
