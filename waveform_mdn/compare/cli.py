"""``waveform-mdn compare RUN_DIR [RUN_DIR ...] --out REPORT_DIR`` (docs/comparison.md)."""

from __future__ import annotations

import argparse
import sys

from .report import PAGE_ROWS, compare_runs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="waveform-mdn compare", epilog="Exit codes: 0 ok, 2 bad input. See docs/comparison.md.",
                                description="Compare training runs: tables, curves, generated audio, report.md and "
                                            "a listening page (report.html).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a run dir (metrics.csv + hparams.yaml) or a dir of version_* dirs (the highest with metrics.csv)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="where the report goes")
    p.add_argument("--names", metavar="A,B,...", help="comma-separated run labels, one per RUN_DIR (default: dir names)")
    p.add_argument("--generated", nargs="+", metavar="DIR", default=None,
                   help="per run, in order: a dir holding measurements.json (or the file); '-' to search the run dir")
    p.add_argument("--allow-different-data", action="store_true",
                   help="compare runs even if their data fingerprint or normalisation differ")
    p.add_argument("--title", default="Run comparison", help="report title")
    p.add_argument("--page-rows", type=int, default=PAGE_ROWS, metavar="N",
                   help=f"utterances on report.html, the first found (default {PAGE_ROWS})")
    return p


def main(argv: list[str]) -> int:
    """``argv``: ``compare`` and its arguments, as :mod:`waveform_mdn.cli` passes them."""
    args = _parser().parse_args(argv[1:])
    result = compare_runs(args.run_dirs, args.out, args.names and args.names.split(","),
                          generated=args.generated, allow_different_data=args.allow_different_data,
                          title=args.title, page_rows=args.page_rows)
    print(result["table"] + "\n")
    for run in result["runs"]:
        if run["version_note"]:
            print(f"{run['name']}: using {run['version_dir']}", file=sys.stderr)
        for note in run["notes"]:
            print(f"{run['name']}: note: {note}", file=sys.stderr)
    if not result["same_data"]:
        print("warning: the runs were trained on different data or normalisation", file=sys.stderr)
    print(f"report: {result['outputs']['report.md']}\nlistening page: {result['outputs']['report.html']}")
    return 0
