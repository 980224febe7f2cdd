"""What generation writes: one WAV per stream (PNG beside it with ``png_label``) and the
references in ``reference/``, every file atomically; the measuring loop and the reader of
``measurements.json`` (which ``cli`` writes)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from data_prep.audio_io import int16_to_float, write_wav
from data_prep.errors import InputError
from ..contract import MEASUREMENTS_FILE, REFERENCE_DIR
from ..figures import audio_image
from .batching import GeneratedAudio
from .settings import GenerationError, GenerationSettings


def safe_name(name: str) -> str:
    """A file name made of ``name``: runs of other characters than ``A-Za-z0-9._+-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "gen"


KEPT = ("clipped", "nonfinite_replaced", "png", "info")  #: what re-measuring keeps of a ``files`` entry


def recorded_phones(entry: dict) -> list[str] | None:
    """The intended phone labels a ``files`` entry records (None: a ``.PHN`` beside the WAV)."""
    rec = (entry.get("info") or {}).get("intended_phones")
    return None if rec is None else [p["phone"] for p in rec]


def _record_problem(data: Any) -> str | None:
    """What is wrong with the shape of a parsed ``measurements.json`` (None: nothing)."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return "expected an object with a 'files' list"
    for i, e in enumerate(data["files"]):
        if not isinstance(e, dict) or not isinstance(e.get("wav"), str) or not e["wav"]:
            return f"files[{i}]: expected an object with a 'wav' path"
        if not isinstance(e.get("reference"), (str, type(None))):
            return f"files[{i}]: 'reference' must be a path or null"
        info = e.get("info")
        if not isinstance(info, (dict, type(None))):
            return f"files[{i}]: 'info' must be an object"
        phones = (info or {}).get("intended_phones")
        if phones is not None and not (isinstance(phones, list) and all(
                isinstance(p, dict) and isinstance(p.get("phone"), str) for p in phones)):
            return f"files[{i}]: 'info.intended_phones' must be a list of objects with a 'phone'"
    return None


def read_record(path: Path, error: type[InputError] = GenerationError, context: str = "") -> tuple[Path, dict]:
    """The ``measurements.json`` of a generation directory (or that file itself): its path and
    its content, checked to be an object with a ``files`` list of entries with a ``wav``.
    Bad input raises ``error``, naming the file (after ``context``)."""
    meas = path / MEASUREMENTS_FILE if path.is_dir() else path
    if not meas.is_file():
        raise error(f"{context}{meas} not found")
    try:
        data = json.loads(meas.read_text())
    except (OSError, ValueError) as e:
        raise error(f"{meas}: cannot read the generation record ({e})") from None
    problem = _record_problem(data)
    if problem is not None:
        raise error(f"{meas}: {problem}")
    return meas, data


def _reference(g: GeneratedAudio, out: Path, sample_rate: int, png: bool, written: dict[int, Path]) -> Path | None:
    """The reference WAV of ``g``'s sequence (and its PNG), written once per sequence."""
    seq = g.sequence
    if seq.reference is not None and id(seq) not in written:
        written[id(seq)] = out / REFERENCE_DIR / f"{safe_name(seq.name)}.wav"
        write_wav(written[id(seq)], int16_to_float(seq.reference), sample_rate)
        if png:
            audio_image(int16_to_float(seq.reference), sample_rate, written[id(seq)].with_suffix(".png"),
                   f"{seq.name} (reference)")
    return written.get(id(seq))


def write_streams(out: Path, gens: Sequence[GeneratedAudio], s: GenerationSettings, *,
                  png_label: str | None = None, log=None, phones: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The WAV of every stream, its reference and PNGs, measured as ``s`` says; returns the
    ``files`` entries for ``measurements.json`` (the caller writes it last; a stale one goes first).
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
            audio_image(g.audio, sample_rate, wav.with_suffix(".png"), f"{g.name} ({png_label}, seed {g.seed})")
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
        files = measured(files, out, out, s.judges, log is not None)
    return files


def measured(entries: Sequence[dict], base: Path, out_dir: Path, judges: bool, progress: bool) -> list[dict]:
    """``entries`` (``wav``, ``reference`` under ``base``) measured by ``audio_metrics``, their
    paths made relative to ``out_dir``, what is not a measurement (:data:`KEPT`) kept. The
    judges' intended phones: the entry's, those of the record beside its WAV, else a ``.PHN``'s."""
    from ..audio_metrics import intended_phones_beside, measure_files, per_file_progress, reference_judges

    records: dict[Path, dict[Path, list[str] | None]] = {}  # each directory's record, read once
    ref_judges: dict[tuple, dict] = {}  # each (reference, intended phones) judged once
    files = []
    for e in per_file_progress(entries, len(entries), enabled=progress):
        wav, ref = base / e["wav"], base / e["reference"] if e.get("reference") else None
        phones = recorded_phones(e) if "info" in e else _phones_on_record(wav, records) if judges else None
        if judges and phones is None:
            phones = intended_phones_beside(wav, ref)
        m = measure_files(wav, ref, judges=judges, intended_phones=phones, judge_reference=False)
        if judges and ref is not None:
            key = (ref.resolve(), None if phones is None else tuple(phones))
            if key not in ref_judges:
                ref_judges[key] = reference_judges(ref, phones)
            m.update(ref_judges[key])
        del m["file"]
        files.append({**m, "wav": os.path.relpath(wav, out_dir), "reference": ref and os.path.relpath(ref, out_dir),
                      **{k: e[k] for k in KEPT if k in e}})
    return files


def _phones_on_record(wav: Path, records: dict[Path, dict[Path, list[str] | None]]) -> list[str] | None:
    """``wav``'s intended phones in the generation record beside it, if it has one; ``records``
    (directory -> resolved WAV -> phones) keeps each directory's record once read."""
    folder = wav.parent.resolve()
    if folder not in records:
        meas = wav.parent / MEASUREMENTS_FILE
        records[folder] = {}
        for e in read_record(meas)[1]["files"] if meas.is_file() else []:
            records[folder].setdefault((folder / e["wav"]).resolve(), recorded_phones(e))
    return records[folder].get(wav.resolve())
