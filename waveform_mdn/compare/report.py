"""The comparison (:func:`compare_runs`): read and check every run, then write the report
directory (``report.md``, ``report.html`` and its ``media/``, ``table.csv``,
``summary.json``, ``curves.png``, ``generated.png``) into a temporary directory beside
REPORT_DIR and rename it into place."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from data_prep.audio_io import write_json, write_text
from .errors import CompareError
from .html import report_html
from .measurements import attach_generated, natural_means
from .media import MEDIA_DIR, stage_media
from .plots import plot_curves, plot_generated
from .markdown import markdown
from .runs import Run, check_same_data, default_names, load_run
from .tables import NATURAL, csv_text, generated_rows, text_table, validation_table

#: Every file the report holds (and the directory ``media/``); stale ones from an earlier
#: report are removed.
OUTPUT_FILES = ("report.md", "report.html", "table.csv", "summary.json", "curves.png", "generated.png")
#: Utterances on report.html unless told otherwise.
PAGE_ROWS = 24


def json_safe(obj: Any) -> Any:
    """Plain JSON data: non-finite floats become null, paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _run_summary(r: Run) -> dict[str, Any]:
    hp = r.hparams
    return {
        "name": r.name, "run_dir": r.given, "version_dir": r.version_dir, "version_note": r.version_note,
        "model": r.model, "head": hp.head, "components": hp.components, "data_fingerprint": hp.data_fingerprint,
        "norm_mean": hp.norm_mean, "norm_std": hp.norm_std, "hparams_files": hp.files,
        "checkpoints": [{"path": c.path, "epoch": c.epoch, "step": c.step} for c in r.checkpoints],
        "epochs": r.n_epochs,
        "metrics": {tag: c.summary() for tag, c in r.curves.items()},
        "curves": {tag: {"epoch": c.epochs, "step": c.steps, "value": c.values} for tag, c in r.curves.items()},
        "notes": r.notes,
        "generated": [{
            "measurements": m.file, "checkpoint": m.checkpoint, "settings": m.settings,
            "n_files": m.n_files, "clipped_total": m.clipped_total, "means": m.means(),
            "wavs": [f.wav for f in m.files], "references": [f.reference for f in m.files],
        } for m in r.generated],
    }


def _replace_media(staging: Path, out_dir: Path) -> None:
    """The staged ``media/`` takes the place of the old one (moved into ``staging``, which
    is removed afterwards); without staged media the old one goes."""
    old, new = out_dir / MEDIA_DIR, staging / MEDIA_DIR
    if old.is_dir():
        os.rename(old, staging / f"{MEDIA_DIR}.old")
    if new.is_dir():
        os.rename(new, old)


def publish(staging: Path, out_dir: Path, produced: list[str]) -> None:
    """Move the staged files into ``out_dir``: one rename of the whole directory when
    ``out_dir`` does not exist yet, else ``media/`` first, then one atomic rename per file,
    report.html and report.md last."""
    if not out_dir.exists():
        try:
            os.rename(staging, out_dir)
            return
        except OSError:
            out_dir.mkdir(parents=True, exist_ok=True)
    _replace_media(staging, out_dir)
    for name in sorted(produced, key=lambda n: (n == "report.md", n == "report.html")):
        os.replace(staging / name, out_dir / name)
    for name in OUTPUT_FILES:
        if name not in produced and (out_dir / name).is_file():
            (out_dir / name).unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _check_arguments(paths: list[Path], names: Sequence[str] | None, out_dir: Path) -> list[str]:
    if not paths:
        raise CompareError("no run directories given")
    names = [str(n).strip() for n in (default_names(paths) if names is None else names)]
    if len(names) != len(paths):
        raise CompareError(f"{len(names)} names given for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise CompareError(f"run names must be distinct: {', '.join(names)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise CompareError(f"--out {out_dir} exists and is not a directory")
    return names


def _write_files(staging: Path, out_dir: Path, runs: list[Run], summary: dict[str, Any],
                 table, data_warning: list[str], title: str, page_rows: int) -> list[str]:
    gen_rows = generated_rows(runs)
    natural = summary["natural_speech"]
    plot_curves(runs, staging / "curves.png")
    plot_rows = [(label, m.means()) for label, _, m in gen_rows] + ([(NATURAL, natural["means"])] if natural else [])
    have_gen_plot = bool(gen_rows) and plot_generated(plot_rows, staging / "generated.png")
    write_text(staging / "table.csv", csv_text(runs))
    write_json(staging / "summary.json", summary)
    write_text(staging / "report.md", markdown(runs, out_dir, table, data_warning, gen_rows, natural,
                                               have_gen_plot, title))
    listening = stage_media(gen_rows, staging, page_rows)
    write_text(staging / "report.html", report_html(runs, listening, table, data_warning, gen_rows, natural,
                                                    have_gen_plot, title))
    return (["curves.png"] + (["generated.png"] if have_gen_plot else [])
            + ["table.csv", "summary.json", "report.html", "report.md"])


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, names: Sequence[str] | None = None, *,
                 generated: Sequence[str | Path | None] | None = None, allow_different_data: bool = False,
                 title: str = "Run comparison", page_rows: int = PAGE_ROWS) -> dict[str, Any]:
    """Compare training runs and write the report into ``out_dir``.

    ``run_dirs``: version dirs or dirs holding ``version_*``; ``names``: labels (default:
    directory names); ``generated``: per run (in order) a directory holding
    ``measurements.json`` or the file itself, ``None``/``"-"`` to search the run dir;
    ``page_rows``: how many utterances ``report.html`` shows (the first ones found).

    Returns the summary (as in ``summary.json``) plus ``"table"`` (the printed text table)
    and ``"outputs"`` (paths written). Raises :class:`CompareError` /
    :class:`DataMismatchError` before anything is written.
    """
    paths, out_dir = [Path(p) for p in run_dirs], Path(out_dir)
    names = _check_arguments(paths, names, out_dir)
    runs = [load_run(n, p) for n, p in zip(names, paths)]
    data_warning = check_same_data(runs, allow_different_data)
    attach_generated(runs, generated, out_dir)
    table = validation_table(runs)
    natural = natural_means([m for _, _, m in generated_rows(runs)])
    summary = json_safe({"title": title, "same_data": not data_warning,
                         "runs": [_run_summary(r) for r in runs], "natural_speech": natural})
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise CompareError(f"cannot write the report into {out_dir}: {exc}") from exc
    try:
        produced = _write_files(staging, out_dir, runs, summary, table, data_warning, title, page_rows)
        publish(staging, out_dir, produced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "table": text_table(*table), "outputs": {n: str(out_dir / n) for n in produced}}
