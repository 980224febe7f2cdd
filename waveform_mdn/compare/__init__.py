"""``waveform-mdn compare``: training runs side by side (docs/comparison.md)."""

from .cli import main
from .errors import CompareError, DataMismatchError
from .report import compare_runs
from .runs import load_run

__all__ = ["compare_runs", "main", "CompareError", "DataMismatchError", "load_run"]
