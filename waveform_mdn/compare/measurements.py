"""Generated-audio measurements of a run (``measurements.json``, written by ``generate``/``evaluate``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..audio_metrics import METRIC_KEYS
from ..contract import MEASUREMENTS_FILE
from .errors import CompareError

GEN_KEYS = tuple(k for k in METRIC_KEYS if not k.startswith("ref_"))  #: shown first, in this order
REF_KEYS = tuple(k[len("ref_"):] for k in METRIC_KEYS if k.startswith("ref_"))  #: also measured on the reference
NOT_MEASURED = {"clipped", "sample_rate", "duration_s", "ref_duration_s", "nonfinite_replaced"}


def numeric(value: Any) -> float | None:
    """A finite number as a float; None for anything else (NaN, inf, None, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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
        return int(sum(numeric(f.values.get("clipped")) or 0 for f in self.files))

    def means(self) -> dict[str, float | None]:
        """Mean of each measurement over all files (files without a finite value skipped)."""
        keys = list(GEN_KEYS)
        for f in self.files:
            keys += [k for k, v in f.values.items() if k not in keys and not k.startswith("ref_")
                     and k not in NOT_MEASURED and numeric(v) is not None]
        return {k: mean(numeric(f.values.get(k)) for f in self.files) for k in keys}


def _audio_path(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    p = Path(str(value))
    if p.is_absolute() or (p.exists() and not (base / p).exists()):
        return p  # absolute, or relative to the working directory as some tools write them
    return base / p


def load_measurements(path: Path, run_name: str) -> Measurements:
    """``path``: a generation directory or its ``measurements.json``."""
    file = path / MEASUREMENTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f"generated audio for run {run_name}: {file} not found")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise CompareError(f"{file}: expected an object with a 'files' list")
    files = [AudioFile(_audio_path(e.get("wav"), file.parent), _audio_path(e.get("reference"), file.parent), e)
             for e in data["files"] if isinstance(e, dict)]
    return Measurements(file, data.get("checkpoint"), data.get("data_fingerprint"), data.get("head"),
                        data.get("settings") or {}, files)


def natural_means(all_meas: Sequence[Measurements]) -> dict[str, Any] | None:
    """Means of the ``ref_*`` values over the distinct references (one per utterance, whatever
    the number of runs and copies of it)."""
    seen: dict[str, AudioFile] = {}
    for meas in all_meas:
        for f in meas.files:
            if any(numeric(f.values.get("ref_" + k)) is not None for k in REF_KEYS):
                seen.setdefault(f.utterance, f)
    if not seen:
        return None
    return {"n_files": len(seen),
            "means": {k: mean(numeric(f.values.get("ref_" + k)) for f in seen.values()) for k in REF_KEYS}}


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
            for what, theirs, ours in (("data_fingerprint", meas.data_fingerprint, run.hparams["data_fingerprint"]),
                                       ("head", meas.head, run.hparams["head"])):
                if theirs is not None and str(theirs) != ours:
                    run.notes.append(f"generated audio {meas.file} has {what} {theirs}, the run has {ours}")
            run.generated.append(meas)
