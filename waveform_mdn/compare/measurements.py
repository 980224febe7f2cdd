"""Generated-audio measurements of a run: ``measurements.json``, written by ``generate``/``evaluate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..audio_metrics import JUDGE_KEYS, METRIC_KEYS, REF_JUDGE_KEYS, finite_or_none
from ..contract import MEASUREMENTS_FILE
from ..generation.writers import read_record
from .errors import CompareError

#: The generated-audio table's columns, the judges first (``recognised_phones`` is text).
GEN_KEYS = tuple(k for k in JUDGE_KEYS + METRIC_KEYS if k != "recognised_phones" and not k.startswith("ref_"))
REF_KEYS = tuple(k for k in GEN_KEYS if "ref_" + k in METRIC_KEYS + REF_JUDGE_KEYS)  #: measured on the reference too
NOT_MEASURED = {"clipped", "sample_rate", "duration_s", "nonfinite_replaced"}


def mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


@dataclass
class AudioFile:
    wav: Path | None
    reference: Path | None
    values: dict[str, Any]  #: the file's entry as written

    @property
    def utterance(self) -> str:
        """The sequence it was generated from, else its reference's name, else its own."""
        info = self.values.get("info")
        if isinstance(info, dict) and info.get("sequence"):
            return str(info["sequence"])
        return next((p.stem for p in (self.reference, self.wav) if p is not None), "?")

    @property
    def reference_values(self) -> dict[str, Any]:
        """The ``ref_*`` measurements, named as the generated file's."""
        return {k[len("ref_"):]: v for k, v in self.values.items() if k.startswith("ref_")}


def means(files: Sequence[AudioFile]) -> dict[str, float | None]:
    """Mean of each measurement over ``files`` (files without a finite value for it skipped)."""
    keys = dict.fromkeys(GEN_KEYS)
    for f in files:
        keys.update((k, None) for k, v in f.values.items()
                    if not k.startswith("ref_") and k not in NOT_MEASURED and finite_or_none(v) is not None)
    return {k: mean(finite_or_none(f.values.get(k)) for f in files) for k in keys}


@dataclass
class Measurements:
    file: Path
    checkpoint: str | None
    data_fingerprint: str | None
    head: str | None
    settings: dict[str, Any]
    files: list[AudioFile]

    @property
    def clipped_total(self) -> int:
        return int(sum(finite_or_none(f.values.get("clipped")) or 0 for f in self.files))


def load_measurements(path: Path, run_name: str) -> Measurements:
    """``path``: a generation directory or its ``measurements.json``; paths in it are
    relative to its directory (or absolute)."""
    file, data = read_record(path, CompareError, f"generated audio for run {run_name}: ")
    files = [AudioFile(*(file.parent / e[k] if e.get(k) else None for k in ("wav", "reference")), e)
             for e in data["files"]]
    return Measurements(file, data.get("checkpoint"), data.get("data_fingerprint"), data.get("head"),
                        data.get("settings") or {}, files)


def natural_means(all_meas: Sequence[Measurements]) -> dict[str, Any] | None:
    """Means of the ``ref_*`` values over the distinct references: one per utterance,
    whatever the number of runs and copies of it."""
    refs: dict[str, dict[str, float]] = {}
    for f in (f for meas in all_meas for f in meas.files):
        for k, v in f.reference_values.items():
            if k in REF_KEYS and finite_or_none(v) is not None:
                refs.setdefault(f.utterance, {}).setdefault(k, finite_or_none(v))
    if not refs:
        return None
    return {"n_files": len(refs), "means": {k: mean(r.get(k) for r in refs.values()) for k in REF_KEYS}}


def _search(root: Path, out_dir: Path) -> list[Path]:
    """Every measurements.json under the run dir, outside the report and hidden dirs."""
    out_res = out_dir.resolve()
    return sorted(p for p in root.rglob(MEASUREMENTS_FILE) if out_res not in p.resolve().parents
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def attach_generated(runs: list, generated: Sequence[str | Path | None] | None, out_dir: Path) -> None:
    """Attach to each run its measurements: ``generated[i]`` (a dir or the json), or, when
    absent or ``-``, every ``measurements.json`` found under the run dir."""
    generated = list(generated or [])
    if len(generated) > len(runs):
        raise CompareError(f"{len(generated)} --generated dirs given for {len(runs)} runs "
                           "(they are matched to the runs in order)")
    for i, run in enumerate(runs):
        given = generated[i] if i < len(generated) else None
        paths = [Path(given)] if given is not None and str(given) not in ("", "-") else _search(run.given, out_dir)
        for meas in (load_measurements(p, run.name) for p in paths):
            for what in ("data_fingerprint", "head"):
                theirs, ours = getattr(meas, what), run.hparams[what]
                if theirs is not None and str(theirs) != ours:
                    run.notes.append(f"generated audio {meas.file} has {what} {theirs}, the run has {ours}")
            run.generated.append(meas)
