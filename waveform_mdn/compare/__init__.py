"""``waveform-mdn compare``: training runs side by side (docs/comparison.md)."""

from .cli import main
from .errors import CompareError, DataMismatchError
from .report import compare_runs
from .runs import Run, load_run, read_hparams, resolve_run_dir

__all__ = ["compare_runs", "main", "CompareError", "DataMismatchError", "Run", "load_run", "read_hparams",
           "resolve_run_dir"]
