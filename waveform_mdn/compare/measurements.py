"""Generated-audio measurements (``measurements.json``, written by ``waveform-mdn
generate``/``evaluate``) of a run: per-file values, their means over all files, and the
*natural speech* means of the reference recordings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..audio_metrics import METRIC_KEYS
from ..contract import MEASUREMENTS_FILE
from .errors import CompareError
from .runs import Run

#: Per-file measurements shown side by side, in this order (other numeric keys follow).
GEN_KEYS = tuple(k for k in METRIC_KEYS if not k.startswith("ref_"))
#: Single-signal measurements that also exist for the reference as ``ref_<key>``.
REF_KEYS = tuple(k[len("ref_"):] for k in METRIC_KEYS if k.startswith("ref_"))
#: Numeric per-file keys that are not measurements of the sound.
NOT_MEASURED = {"clipped", "sample_rate", "duration_s", "ref_duration_s", "nonfinite_replaced"}


@dataclass
class AudioFile:
    wav: Path | None
    reference: Path | None
    values: dict[str, Any]  #: the file's entry as written


@dataclass
class Measurements:
    file: Path
    checkpoint: str | None
    data_fingerprint: str | None
    head: str | None
    settings: dict[str, Any]
    files: list[AudioFile]

    @property
    def n_files(self) -> int:
        return len(self.files)

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


def numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _audio_path(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    p = Path(str(value))
    if p.is_absolute():
        return p
    if (base / p).exists() or not p.exists():
        return base / p
    return p  # relative to the working directory, as some tools write them


def load_measurements(path: Path, run_name: str) -> Measurements:
    """``path``: a generation directory or its ``measurements.json``."""
    file = path / MEASUREMENTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f"generated audio for run {run_name}: {file} not found")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise CompareError(f"{file}: expected an object with a 'files' list")
    files = [AudioFile(_audio_path(e.get("wav"), file.parent), _audio_path(e.get("reference"), file.parent), e)
             for e in data["files"] if isinstance(e, dict)]
    return Measurements(file, data.get("checkpoint"), data.get("data_fingerprint"), data.get("head"),
                        data.get("settings") or {}, files)


def natural_means(all_meas: Sequence[Measurements]) -> dict[str, Any] | None:
    """Means of the ``ref_*`` values over the distinct references of every measured set."""
    seen: dict[str, AudioFile] = {}
    for meas in all_meas:
        for i, f in enumerate(meas.files):
            if any(numeric(f.values.get("ref_" + k)) is not None for k in REF_KEYS):
                key = str(f.reference.resolve()) if f.reference is not None else f"{meas.file}#{i}"
                seen.setdefault(key, f)
    if not seen:
        return None
    means = {k: mean(numeric(f.values.get("ref_" + k)) for f in seen.values()) for k in REF_KEYS}
    return {"n_files": len(seen), "means": means}


def _search(run: Run, out_dir: Path) -> list[Path]:
    """Every measurements.json under the run dir, outside the report and hidden dirs."""
    out_res = out_dir.resolve()
    return sorted(p for p in run.given.rglob(MEASUREMENTS_FILE)
                  if out_res not in p.resolve().parents
                  and not any(part.startswith(".") for part in p.relative_to(run.given).parts))


def attach_generated(runs: list[Run], generated: Sequence[str | Path | None] | None, out_dir: Path) -> None:
    """Attach to each run its measurements: ``generated[i]`` (a dir or the json), or, when
    absent or ``-``, every ``measurements.json`` found under the run dir."""
    generated = list(generated or [])
    if len(generated) > len(runs):
        raise CompareError(f"{len(generated)} --generated dirs given for {len(runs)} runs "
                           "(they are matched to the runs in order)")
    for i, run in enumerate(runs):
        explicit = generated[i] if i < len(generated) else None
        given = explicit is not None and str(explicit) not in ("", "-")
        for path in [Path(explicit)] if given else _search(run, out_dir):
            meas = load_measurements(path, run.name)
            if meas.data_fingerprint is not None and str(meas.data_fingerprint) != run.hparams.data_fingerprint:
                run.notes.append(f"generated audio {meas.file} has data_fingerprint {meas.data_fingerprint}, "
                                 f"the run has {run.hparams.data_fingerprint}")
            if meas.head is not None and str(meas.head) != run.hparams.head:
                run.notes.append(f"generated audio {meas.file} was made by head {meas.head}, "
                                 f"the run has {run.hparams.head}")
            run.generated.append(meas)
