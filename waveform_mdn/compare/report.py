""":func:`compare_runs`: read and check every run, then write the report (docs/comparison.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from data_prep.audio_io import write_json, write_text
from .errors import CompareError
from .html import report_html
from .markdown import markdown, text_table
from .measurements import attach_generated, natural_means
from .media import MEDIA_DIR, stage_media
from .plots import plot_curves, plot_generated
from .runs import check_same_data, default_names, load_run
from .tables import build_report, csv_text, run_summary

#: Every file the report holds besides ``media/``; stale ones from an earlier report are removed.
OUTPUT_FILES = ("report.md", "report.html", "table.csv", "summary.json", "curves.png", "generated.png")
PAGE_ROWS = 24  #: utterances on report.html unless told otherwise


def publish(staging: Path, out_dir: Path, produced: list[str]) -> None:
    """Move the staged files into ``out_dir``: one rename when it does not exist yet, else
    ``media/`` first, then one atomic rename per file, report.html and report.md last."""
    if not out_dir.exists():
        return os.rename(staging, out_dir)
    if (out_dir / MEDIA_DIR).is_dir():
        os.rename(out_dir / MEDIA_DIR, staging / f"{MEDIA_DIR}.old")  # removed with staging
    if (staging / MEDIA_DIR).is_dir():
        os.rename(staging / MEDIA_DIR, out_dir / MEDIA_DIR)
    for name in sorted(produced, key=lambda n: (n == "report.md", n == "report.html")):
        os.replace(staging / name, out_dir / name)
    for name in set(OUTPUT_FILES) - set(produced):
        (out_dir / name).unlink(missing_ok=True)


def _check_arguments(paths: list[Path], names: Sequence[str] | None, out_dir: Path, page_rows: int) -> list[str]:
    if not paths:
        raise CompareError("no run directories given")
    names = [str(n).strip() for n in (default_names(paths) if names is None else names)]
    if len(names) != len(paths):
        raise CompareError(f"--names: {len(names)} names given for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise CompareError(f"--names: run names must be distinct: {', '.join(names)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise CompareError(f"--out {out_dir} exists and is not a directory")
    if page_rows < 0:
        raise CompareError(f"--page-rows must be 0 or more, got {page_rows}")
    return names


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, names: Sequence[str] | None = None, *,
                 generated: Sequence[str | Path | None] | None = None, allow_different_data: bool = False,
                 title: str = "Run comparison", page_rows: int = PAGE_ROWS) -> dict[str, Any]:
    """Compare training runs and write the report into ``out_dir`` (docs/comparison.md).
    Returns the summary (as in ``summary.json``) plus ``"table"`` (the printed text table)
    and ``"outputs"`` (paths written). Raises :class:`CompareError` before anything is written."""
    paths, out_dir = [Path(p) for p in run_dirs], Path(out_dir)
    names = _check_arguments(paths, names, out_dir, page_rows)
    runs = [load_run(n, p) for n, p in zip(names, paths)]
    warning = check_same_data(runs, allow_different_data)
    attach_generated(runs, generated, out_dir)
    summary = {"title": title, "same_data": not warning, "runs": [run_summary(r) for r in runs],
               "natural_speech": natural_means([m for r in runs for m in r.generated])}
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise CompareError(f"cannot write the report into {out_dir}: {exc}") from exc
    try:  # every file staged, then published
        report = build_report(runs, title, warning, summary["natural_speech"])
        plot_curves(runs, staging / "curves.png")
        report.have_gen_plot = plot_generated(report.gen_rows, summary["natural_speech"], staging / "generated.png")
        write_text(staging / "table.csv", csv_text(runs))
        write_json(staging / "summary.json", summary)
        write_text(staging / "report.md", markdown(report, out_dir))
        write_text(staging / "report.html", report_html(report, stage_media(report.gen_rows, staging, page_rows)))
        produced = [n for n in OUTPUT_FILES if n != "generated.png" or report.have_gen_plot]
        table = text_table(report.validation)
        publish(staging, out_dir, produced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "table": table, "outputs": {n: str(out_dir / n) for n in produced}}
