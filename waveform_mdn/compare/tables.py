"""The tables of a comparison: the validation table (text and Markdown), ``table.csv``,
the generated-audio table and the hyperparameters that differ."""

from __future__ import annotations

import csv
import io
import math
import os
import urllib.parse
from pathlib import Path
from typing import Any

from .measurements import REF_KEYS, Measurements
from .runs import Run

#: Order of the columns of the validation table (metric names without the "val/").
TABLE_METRICS = ("bits_per_sample", "nll", "mse", "mse_sample")
NATURAL = "natural speech"


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def _min_cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "n/a"
    if s["min"] is None:
        return "n/a (no finite value)"
    return f"{fmt(s['min'])} ({s['min_epoch']})"


def validation_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: min of each val metric (with its epoch), final values, epochs."""
    header = (["name", "head", "K"] + [f"min val/{m} (epoch)" for m in TABLE_METRICS]
              + [f"final val/{m}" for m in TABLE_METRICS] + ["epochs"])
    rows = []
    for r in runs:
        row = [r.name, r.model, str(r.hparams.components)]
        row += [_min_cell(r.metric("val", m)) for m in TABLE_METRICS]
        row += [fmt(s["final"]) if (s := r.metric("val", m)) else "n/a" for m in TABLE_METRICS]
        rows.append(row + [fmt(r.n_epochs)])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned plain text: the first two columns left-aligned, the others right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(out + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def link(target: Path, out_dir: Path) -> str:
    """``target`` relative to the report directory, URL-quoted for Markdown."""
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def csv_text(runs: list[Run]) -> str:
    """``table.csv``: one row per run (full-precision values, empty when absent)."""
    cols = ["name", "model", "head", "components", "data_fingerprint", "version_dir"]
    for m in TABLE_METRICS:
        cols += [f"min_val_{m}", f"min_val_{m}_epoch"]
    cols += [f"final_val_{m}" for m in TABLE_METRICS] + ["epochs", "val_points"]
    for m in TABLE_METRICS:
        cols += [f"min_train_{m}", f"final_train_{m}"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in runs:
        row: list[Any] = [r.name, r.model, r.hparams.head, r.hparams.components,
                          r.hparams.data_fingerprint, str(r.version_dir)]
        for m in TABLE_METRICS:
            s = r.metric("val", m) or {}
            row += [s.get("min"), s.get("min_epoch")]
        row += [(r.metric("val", m) or {}).get("final") for m in TABLE_METRICS]
        row += [r.n_epochs, r.val_points]
        for m in TABLE_METRICS:
            s = r.metric("train", m) or {}
            row += [s.get("min"), s.get("final")]
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


def hparam_diffs(runs: list[Run]) -> list[list[str]]:
    """Rows ``[key, value per run]`` for the hyperparameters whose values differ."""
    flat = [r.hparams.found for r in runs]
    rows = []
    for key in sorted(set().union(*flat)):
        vals = [f.get(key, "—") for f in flat]
        if any(repr(v) != repr(vals[0]) for v in vals[1:]):
            rows.append([key] + [v if isinstance(v, str) else fmt(v) for v in vals])
    return rows


def generated_rows(runs: list[Run]) -> list[tuple[str, Run, Measurements]]:
    """One ``(label, run, measurements)`` per measured set; a run with several sets gets
    its sets labelled with their subdirectory."""
    rows = []
    for run in runs:
        for meas in run.generated:
            label = run.name
            if len(run.generated) > 1:
                rel = os.path.relpath(meas.file.parent, run.given)
                label = f"{run.name} [{Path(rel).as_posix()}]"
            rows.append((label, run, meas))
    return rows


def generated_table(gen_rows: list[tuple[str, Run, Measurements]],
                    natural: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """Mean of each measurement per set, and the natural speech row (references)."""
    means = [m.means() for _, _, m in gen_rows]
    keys: list[str] = []
    for m in means:
        keys += [k for k in m if k not in keys]
    keys = [k for k in keys if any(m.get(k) is not None for m in means)
            or (natural and natural["means"].get(k) is not None)]
    rows = [[label, str(m.n_files), str(m.clipped_total)] + [fmt(mm.get(k)) for k in keys]
            for (label, _, m), mm in zip(gen_rows, means)]
    if natural:
        rows.append([NATURAL, str(natural["n_files"]), "—"]
                    + [fmt(natural["means"].get(k)) if k in REF_KEYS else "—" for k in keys])
    return ["run", "files", "clipped"] + keys, rows
