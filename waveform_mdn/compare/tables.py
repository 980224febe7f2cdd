"""The report's content, built once: its tables, ``table.csv`` and ``summary.json``."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..audio_metrics import finite_or_none
from ..contract import METRIC_TAGS, METRICS
from .measurements import REF_KEYS, Measurements, means
from .runs import VAL_TAGS, Run

NATURAL = "natural speech"
VALIDATION_TEXT = (
    "Minimum over validation epochs, with the epoch of the minimum in parentheses (0-based); final = last "
    "validation point. `bits_per_sample`: -log2 of the probability of the target's 16-bit code, one scale for "
    "every head; NLL in nats per sample (n/a: not logged by that run) and MSE on the normalised signal; `mse` of "
    "the point prediction, `mse_sample` of a value drawn from the predicted distribution. How to read them: "
    "`docs/comparison.md` in the waveform-mdn repository.")
GENERATED_TEXT = (
    "Mean of each measurement over the files of a run; the *natural speech* row measures the reference "
    "recordings (each utterance once). First the judges (when measured): DNSMOS `dnsmos_*` (1 to 5, higher "
    "sounds better) and PocketSphinx's `phone_error_rate` (lower is more intelligible), see `docs/judges.md`; "
    "then the signal measurements of `waveform_mdn/audio_metrics/`. `clipped`: total clipped samples.")


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric_from: int = 1  #: the first right-aligned column


@dataclass
class Report:
    """What ``report.md`` and ``report.html`` show, rendered by each."""

    title: str
    date: str
    warning: list[str]
    runs: list[Run]
    gen_rows: list[tuple[str, Run, Measurements]]
    run_table: Table
    validation: Table
    differ: Table
    generated: Table | None
    have_gen_plot: bool = False  #: generated.png was drawn

    @property
    def notes(self) -> list[str]:
        return [f"{r.name}: {n}" for r in self.runs for n in r.notes]


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def validation_table(runs: list[Run]) -> Table:
    def min_cell(s: dict | None) -> str:
        return "n/a" if s is None else "n/a (no finite value)" if s["min"] is None else f"{fmt(s['min'])} ({s['min_epoch']})"

    header = (["name", "head", "K"] + [f"min val/{m} (epoch)" for m in METRICS]
              + [f"final val/{m}" for m in METRICS] + ["epochs"])
    rows = [[r.name, r.model, str(r.components)] + [min_cell(r.metric(f"val/{m}")) for m in METRICS]
            + [fmt(s["final"]) if (s := r.metric(f"val/{m}")) else "n/a" for m in METRICS] + [fmt(r.n_epochs)]
            for r in runs]
    return Table(header, rows, numeric_from=2)


def run_table(runs: list[Run]) -> Table:
    rows = [[r.name, r.model, r.hparams["head"], str(r.components), f"`{r.hparams['data_fingerprint']}`",
             f"{fmt(r.hparams['norm_mean'])} / {fmt(r.hparams['norm_std'])}", f"`{r.version_dir.resolve()}`",
             ", ".join(f"{c.path.name} ({c.saved_at})" for c in r.checkpoints) or "none"] for r in runs]
    return Table(["name", "model", "head", "K", "data fingerprint", "norm mean / std", "run dir", "checkpoints"],
                 rows, numeric_from=99)


def differ_table(runs: list[Run]) -> Table:
    """The hyperparameters whose values differ between the runs."""
    rows = []
    for key in sorted(set().union(*(r.hparams for r in runs))):
        vals = [r.hparams.get(key, "—") for r in runs]
        if any(repr(v) != repr(vals[0]) for v in vals[1:]):
            rows.append([key] + [v if isinstance(v, str) else fmt(v) for v in vals])
    return Table(["key"] + [r.name for r in runs], rows, numeric_from=99)


def generated_rows(runs: list[Run]) -> list[tuple[str, Run, Measurements]]:
    """One ``(label, run, measurements)`` per measured set; a run's several sets are labelled
    with their subdirectory."""
    return [(run.name if len(run.generated) == 1 else
             f"{run.name} [{Path(os.path.relpath(m.file.parent, run.given)).as_posix()}]", run, m)
            for run in runs for m in run.generated]


def generated_table(gen_rows: list[tuple[str, Run, Measurements]], natural: dict | None) -> Table | None:
    """Mean of each measurement per set (the columns some set or natural speech has), and
    the natural speech row."""
    if not gen_rows:
        return None
    all_means = [means(m.files) for _, _, m in gen_rows] + ([natural["means"]] if natural else [])
    keys = [k for k in dict.fromkeys(k for m in all_means for k in m) if any(m.get(k) is not None for m in all_means)]
    rows = [[label, str(len(m.files)), str(m.clipped_total)] + [fmt(mm.get(k)) for k in keys]
            for (label, _, m), mm in zip(gen_rows, all_means)]
    if natural:
        rows.append([NATURAL, str(natural["n_files"]), "—"] + [fmt(natural["means"].get(k)) if k in REF_KEYS else "—"
                                                              for k in keys])
    return Table(["run", "files", "clipped"] + keys, rows)


def build_report(runs: list[Run], title: str, warning: list[str], natural: dict | None) -> Report:
    gen_rows = generated_rows(runs)
    return Report(title, f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}", warning, runs, gen_rows, run_table(runs),
                  validation_table(runs), differ_table(runs), generated_table(gen_rows, natural))


def run_summary(r: Run) -> dict[str, Any]:
    """A run in ``summary.json``: everything the report shows, the full curves, no NaN."""
    return {
        "name": r.name, "run_dir": str(r.given), "version_dir": str(r.version_dir), "version_note": r.version_note,
        "model": r.model, "head": r.hparams["head"], "components": r.components,
        "data_fingerprint": r.hparams["data_fingerprint"], "norm_mean": r.hparams["norm_mean"],
        "norm_std": r.hparams["norm_std"], "epochs": r.n_epochs, "notes": r.notes,
        "checkpoints": [{"path": str(c.path), "epoch": c.epoch, "step": c.step} for c in r.checkpoints],
        "metrics": {tag: {k: finite_or_none(v) if isinstance(v, float) else v for k, v in c.summary().items()}
                    for tag, c in r.curves.items()},
        "curves": {tag: {"epoch": c.epochs, "step": c.steps, "value": [finite_or_none(v) for v in c.values]}
                   for tag, c in r.curves.items()},
        "generated": [{
            "measurements": str(m.file), "checkpoint": m.checkpoint, "settings": m.settings,
            "n_files": len(m.files), "clipped_total": m.clipped_total, "means": means(m.files),
            "wavs": [f.wav and str(f.wav) for f in m.files], "references": [f.reference and str(f.reference) for f in m.files],
        } for m in r.generated],
    }


def csv_text(runs: list[Run]) -> str:
    """``table.csv``: one row per run (full-precision values, empty when absent): the min
    (with its epoch) and final value of each metric, and ``generated_*``, the means over
    all of the run's generated files."""
    rows = []
    for r in runs:
        row = {"name": r.name, "model": r.model, "head": r.hparams["head"], "components": r.components,
               "data_fingerprint": r.hparams["data_fingerprint"], "version_dir": r.version_dir, "epochs": r.n_epochs,
               "val_points": max((len(r.curves[t].values) for t in VAL_TAGS if t in r.curves), default=0)}
        for tag in METRIC_TAGS:
            s, name = r.metric(tag) or {}, tag.replace("/", "_")
            row |= {f"min_{name}": s.get("min"), f"min_{name}_epoch": s.get("min_epoch"), f"final_{name}": s.get("final")}
        if r.generated:
            row |= {f"generated_{k}": v for k, v in means([f for m in r.generated for f in m.files]).items()}
        rows.append({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(dict.fromkeys(k for row in rows for k in row)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
