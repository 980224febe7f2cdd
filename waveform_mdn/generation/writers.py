"""What generation writes: one WAV per stream, the reference audio in ``reference/``, and
``measurements.json`` (settings, notes, one entry per file with its measurements); with a
``png_label``, one PNG beside every WAV (references included): that signal's waveform and
spectrogram (:func:`waveform_mdn.figures.audio_image`, the image ``compare``'s
``report.html`` shows under each player). Every file is written atomically
(:mod:`data_prep.audio_io`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from data_prep.audio_io import int16_to_float, write_json, write_wav
from ..contract import MEASUREMENTS_FILE, REFERENCE_DIR
from ..figures import audio_image
from .batching import GeneratedAudio
from .inputs import GenerationError


def safe_name(name: str) -> str:
    """A file name made of ``name``: runs of other characters than ``A-Za-z0-9._+-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "gen"


def check_output_directory(out: str | Path) -> Path:
    """Make ``out`` (a directory) and prove it writable, before any long work; a clear
    :class:`GenerationError` naming it otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise GenerationError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def measure_entry(wav: Path, reference: Path | None, base: Path) -> dict[str, Any]:
    """``audio_metrics.measure_files`` of one file, paths made relative to ``base``."""
    from ..audio_metrics import measure_files

    m = measure_files(wav, reference)
    m.pop("file", None)
    m["wav"] = os.path.relpath(wav, base)
    m["reference"] = None if reference is None else os.path.relpath(reference, base)
    return m


def _reference_of(g: GeneratedAudio, out: Path, sample_rate: int, written: dict[int, Path]) -> Path | None:
    seq = g.sequence
    if seq.reference is None:
        return None
    if id(seq) not in written:
        written[id(seq)] = out / REFERENCE_DIR / f"{safe_name(seq.name)}.wav"
        write_wav(written[id(seq)], int16_to_float(seq.reference), sample_rate)
    return written[id(seq)]


def write_streams(out: Path, gens: Sequence[GeneratedAudio], sample_rate: int, *, measure: bool = True,
                  png_label: str | None = None, log=None) -> list[dict[str, Any]]:
    """The WAV of every stream (and its reference, once per sequence), and a PNG beside each
    of them when ``png_label`` is given; returns the ``files`` entries of ``measurements.json``."""
    # The WAVs are replaced one by one; measurements.json is written last. A stale one
    # must not describe new audio if this run stops half-way: remove it first.
    (out / MEASUREMENTS_FILE).unlink(missing_ok=True)
    refs: dict[int, Path] = {}
    ref_pngs: set[int] = set()
    files = []
    for g in gens:
        wav = out / f"{safe_name(g.name)}.wav"
        write_wav(wav, g.audio, sample_rate)
        ref = _reference_of(g, out, sample_rate, refs)
        entry: dict[str, Any] = {"wav": os.path.relpath(wav, out),
                                 "reference": None if ref is None else os.path.relpath(ref, out)}
        if measure:
            entry.update(measure_entry(wav, ref, out))
        entry["clipped"], entry["nonfinite_replaced"] = g.clipped, g.nonfinite_replaced
        if png_label is not None:
            png = wav.with_suffix(".png")
            audio_image(g.audio, sample_rate, png, f"{g.name} ({png_label}, seed {g.seed})")
            entry["png"] = os.path.relpath(png, out)
            if ref is not None and id(g.sequence) not in ref_pngs:
                audio_image(int16_to_float(g.sequence.reference), sample_rate, ref.with_suffix(".png"),
                            f"{g.sequence.name} (reference)")
                ref_pngs.add(id(g.sequence))
        entry["info"] = {"sequence": g.sequence.name, "source": g.sequence.source, "stream": g.stream,
                         "seed": g.seed, "samples": int(len(g.audio)), "generated_from": g.start}
        files.append(entry)
        if log is not None:
            log(_wrote(wav, g, sample_rate))
    return files


def _wrote(wav: Path, g: GeneratedAudio, sample_rate: int) -> str:
    msg = f"wrote {wav} ({len(g.audio) / sample_rate:.2f} s"
    if g.clipped:
        msg += f", {g.clipped} samples clipped to [-1, 1]"
    if g.nonfinite_replaced:
        msg += f", {g.nonfinite_replaced} NON-FINITE draws replaced"
    return msg + ")"


def remeasure(path: Path, out: Path | None = None, progress: bool = False) -> Path:
    """Re-measure the files of a generation directory (or its ``measurements.json``) and
    write the result to ``out`` (default: in place); returns where it went. ``progress``: a
    bar per file on stderr."""
    from ..audio_metrics import per_file_progress

    meas = path / MEASUREMENTS_FILE if path.is_dir() else path
    if not meas.is_file():
        raise GenerationError(f"{meas}: not found")
    data = json.loads(meas.read_text())
    base = meas.parent
    new_files = []
    entries = data.get("files", [])
    for entry in per_file_progress(entries, len(entries), enabled=progress):
        ref = base / entry["reference"] if entry.get("reference") else None
        m = measure_entry(base / entry["wav"], ref, base)
        m.update({k: entry[k] for k in ("clipped", "nonfinite_replaced", "png", "info") if k in entry})
        new_files.append(m)
    out = out or meas
    if out.resolve().parent != base.resolve():
        for m in new_files:  # keep the paths valid relative to the new file
            m["wav"] = os.path.relpath(base / m["wav"], out.parent)
            if m["reference"]:
                m["reference"] = os.path.relpath(base / m["reference"], out.parent)
    data["files"] = new_files
    write_json(out, data)
    return out


def measure_wavs(wavs: Sequence[Path], references: Sequence[Path], out: Path, progress: bool = False) -> int:
    """Measure WAV files (against one reference for all, or one each) into ``out``;
    ``progress``: a bar per file on stderr."""
    from ..audio_metrics import per_file_progress

    if references and len(references) not in (1, len(wavs)):
        raise GenerationError(f"{len(references)} references for {len(wavs)} files: give one, or one per file")
    base = out.resolve().parent
    files = []
    for i, wav in per_file_progress(list(enumerate(wavs)), len(wavs), enabled=progress):
        ref = references[0] if len(references) == 1 else (references[i] if references else None)
        files.append(measure_entry(wav.resolve(), None if ref is None else ref.resolve(), base))
    write_json(out, {"checkpoint": None, "data_fingerprint": None, "head": None, "settings": {}, "files": files})
    return len(files)
