"""What generation writes: one WAV per stream (PNG beside it with ``png_label``), the
references in ``reference/``, and ``measurements.json``; every file atomically."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from data_prep.audio_io import int16_to_float, write_json, write_wav
from ..contract import MEASUREMENTS_FILE, REFERENCE_DIR
from .batching import GeneratedAudio
from .settings import GenerationError, GenerationSettings


def safe_name(name: str) -> str:
    """A file name made of ``name``: runs of other characters than ``A-Za-z0-9._+-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "gen"


def measure_entry(wav: Path, reference: Path | None, base: Path, judges: bool = False,
                  intended_phones: Sequence[str] | None = None) -> dict[str, Any]:
    """``audio_metrics.measure_files`` of one file, paths made relative to ``base``."""
    from ..audio_metrics import measure_files

    m = measure_files(wav, reference, judges=judges, intended_phones=intended_phones)
    m.pop("file", None)
    m["wav"] = os.path.relpath(wav, base)
    m["reference"] = None if reference is None else os.path.relpath(reference, base)
    return m


def recorded_phones(entry: dict) -> list[str] | None:
    """The intended phone labels a ``files`` entry records (None: a ``.PHN`` beside the WAV)."""
    rec = (entry.get("info") or {}).get("intended_phones")
    return None if rec is None else [p["phone"] for p in rec]


def read_record(meas: Path) -> dict:
    """A ``measurements.json``, read."""
    try:
        return json.loads(meas.read_text())
    except (OSError, ValueError) as e:
        raise GenerationError(f"{meas}: cannot read the generation record ({e})") from None


def _image(audio, sample_rate: int, png: Path, title: str) -> None:
    from ..figures import audio_image

    audio_image(audio, sample_rate, png, title)


def _reference(g: GeneratedAudio, out: Path, sample_rate: int, png: bool, written: dict[int, Path]) -> Path | None:
    """The reference WAV of ``g``'s sequence (and its PNG), written once per sequence."""
    seq = g.sequence
    if seq.reference is not None and id(seq) not in written:
        written[id(seq)] = out / REFERENCE_DIR / f"{safe_name(seq.name)}.wav"
        write_wav(written[id(seq)], int16_to_float(seq.reference), sample_rate)
        if png:
            _image(int16_to_float(seq.reference), sample_rate, written[id(seq)].with_suffix(".png"),
                   f"{seq.name} (reference)")
    return written.get(id(seq))


def write_streams(out: Path, gens: Sequence[GeneratedAudio], s: GenerationSettings, *,
                  png_label: str | None = None, log=None, phones: Sequence[str] | None = None,
                  record: dict | None = None) -> list[dict[str, Any]]:
    """The WAV of every stream, its reference and PNGs, measured as ``s`` says; returns the
    ``files`` entries, and with ``record`` writes them into ``measurements.json`` (last).
    ``phones``: the phone set, to record each stream's ``intended_phones``."""
    sample_rate = s.sample_rate
    (out / MEASUREMENTS_FILE).unlink(missing_ok=True)  # a stale one must not describe new audio
    refs: dict[int, Path] = {}
    files = []
    for g in gens:
        wav = out / f"{safe_name(g.name)}.wav"
        write_wav(wav, g.audio, sample_rate)
        ref = _reference(g, out, sample_rate, png_label is not None, refs)
        entry: dict[str, Any] = {"wav": os.path.relpath(wav, out),
                                 "reference": None if ref is None else os.path.relpath(ref, out),
                                 "clipped": g.clipped, "nonfinite_replaced": g.nonfinite_replaced}
        if png_label is not None:
            _image(g.audio, sample_rate, wav.with_suffix(".png"), f"{g.name} ({png_label}, seed {g.seed})")
            entry["png"] = os.path.relpath(wav.with_suffix(".png"), out)
        entry["info"] = {"sequence": g.sequence.name, "source": g.sequence.source, "stream": g.stream,
                         "seed": g.seed, "samples": int(len(g.audio)), "generated_from": g.start}
        if phones is not None:
            entry["info"]["intended_phones"] = g.sequence.intended_phones(phones)
        files.append(entry)
        if log is not None:
            log(f"wrote {wav} ({len(g.audio) / sample_rate:.2f} s" + (f", {g.clipped} samples clipped to [-1, 1]"
                if g.clipped else "") + (f", {g.nonfinite_replaced} NON-FINITE draws replaced"
                                         if g.nonfinite_replaced else "") + ")")
    if s.measure:
        from ..audio_metrics import per_file_progress

        for entry in per_file_progress(files, len(files), enabled=log is not None):
            entry.update(measure_entry(out / entry["wav"], out / entry["reference"] if entry["reference"] else None,
                                       out, s.judges, recorded_phones(entry)))
    if record is not None:
        write_json(out / MEASUREMENTS_FILE, {**record, "files": files})
    return files


def remeasure(path: Path, out: Path | None = None, progress: bool = False, judges: bool = False) -> Path:
    """Re-measure the files of a generation directory (or its ``measurements.json``) into
    ``out`` (default: in place), judged against their recorded phones; returns where it went."""
    from ..audio_metrics import per_file_progress

    meas = path / MEASUREMENTS_FILE if path.is_dir() else path
    if not meas.is_file():
        raise GenerationError(f"{meas}: not found")
    data, base = read_record(meas), meas.parent
    out = out or meas
    new_files = []
    for entry in per_file_progress(data.get("files", []), len(data.get("files", [])), enabled=progress):
        ref = base / entry["reference"] if entry.get("reference") else None
        m = measure_entry(base / entry["wav"], ref, out.parent, judges, recorded_phones(entry))
        m.update({k: entry[k] for k in ("clipped", "nonfinite_replaced", "png", "info") if k in entry})
        new_files.append(m)
    write_json(out, {**data, "files": new_files})
    return out


def _phones_on_record(wav: Path) -> list[str] | None:
    """``wav``'s intended phones in the generation record beside it, if it has one."""
    meas = wav.parent / MEASUREMENTS_FILE
    entries = read_record(meas).get("files", []) if meas.is_file() else []
    return next((recorded_phones(e) for e in entries if (wav.parent / e.get("wav", "")).resolve() == wav), None)


def measure_wavs(wavs: Sequence[Path], references: Sequence[Path], out: Path, progress: bool = False,
                 judges: bool = False) -> int:
    """Measure WAV files (against one reference for all, or one each) into ``out``; the
    judges' intended phones from the generation record beside a file, else its ``.PHN``."""
    from ..audio_metrics import per_file_progress

    if references and len(references) not in (1, len(wavs)):
        raise GenerationError(f"{len(references)} references for {len(wavs)} files: give one, or one per file")
    files = []
    for i, wav in per_file_progress(list(enumerate(wavs)), len(wavs), enabled=progress):
        ref = references[0] if len(references) == 1 else (references[i] if references else None)
        wav = wav.resolve()
        files.append(measure_entry(wav, None if ref is None else ref.resolve(), out.resolve().parent, judges,
                                   _phones_on_record(wav) if judges else None))
    write_json(out, {"checkpoint": None, "data_fingerprint": None, "head": None, "settings": {}, "files": files})
    return len(files)
