"""``waveform-mdn compare RUN_DIR [RUN_DIR ...] --out REPORT_DIR``: the command line of
:func:`~waveform_mdn.compare.report.compare_runs`. Exit codes: 0 done, 1 bad input,
2 bad usage or runs trained on different data."""

from __future__ import annotations

import argparse
import sys

from .report import PAGE_ROWS, compare_runs
from .errors import CompareError, DataMismatchError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn compare",
        description="Compare training runs (TensorBoard event files or a CSVLogger's metrics.csv, "
                    "hparams.yaml / config.yaml): table, plots of the curves, generated-audio "
                    "measurements side by side, Markdown report and a listening page (report.html).",
        epilog="Exit codes: 0 ok, 1 bad input (missing files/tags/keys), 2 bad usage or runs "
               "trained on different data/normalisation. See docs/comparison.md.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a version dir (events.out.tfevents.* + hparams.yaml) or a dir holding "
                        "version_* dirs (the highest-numbered one with event files is used)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="where report.md, report.html (+ media/), table.csv, summary.json and the PNGs go")
    p.add_argument("--names", metavar="A,B,...",
                   help="comma-separated run labels, one per RUN_DIR (default: directory names)")
    p.add_argument("--generated", nargs="+", metavar="DIR", default=None,
                   help="per run, in order: a dir holding measurements.json (or the file); "
                        "'-' to search that run's dir (the default for every run)")
    p.add_argument("--allow-different-data", action="store_true",
                   help="compare runs even if their data fingerprint or normalisation differ")
    p.add_argument("--title", default="Run comparison", help="report title")
    p.add_argument("--page-rows", type=int, default=PAGE_ROWS, metavar="N",
                   help=f"utterances on report.html, the first found (default {PAGE_ROWS}); their WAVs "
                        "and images are copied into REPORT_DIR/media")
    return p


def _print_result(result: dict) -> None:
    print(result["table"])
    print()
    for run in result["runs"]:
        if run["version_note"]:
            print(f"{run['name']}: using {run['version_dir']}", file=sys.stderr)
        for note in run["notes"]:
            print(f"{run['name']}: note: {note}", file=sys.stderr)
    if not result["same_data"]:
        print("warning: the runs were trained on different data or normalisation", file=sys.stderr)
    print(f"report: {result['outputs']['report.md']}")
    print(f"listening page: {result['outputs']['report.html']}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # -h, or a usage error (already printed)
        return int(exc.code or 0)
    names = None if args.names is None else [n.strip() for n in args.names.split(",")]
    if names is not None and len(names) != len(args.run_dirs):
        print(f"waveform-mdn compare: error: --names has {len(names)} names for "
              f"{len(args.run_dirs)} runs", file=sys.stderr)
        return 2
    if args.page_rows < 0:
        print(f"waveform-mdn compare: error: --page-rows must be 0 or more, got {args.page_rows}", file=sys.stderr)
        return 2
    try:
        result = compare_runs(args.run_dirs, args.out, names, generated=args.generated,
                              allow_different_data=args.allow_different_data, title=args.title,
                              page_rows=args.page_rows)
    except CompareError as exc:
        print(f"waveform-mdn compare: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, DataMismatchError) else 1
    _print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
