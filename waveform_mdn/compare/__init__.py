"""``waveform-mdn compare``: training runs side by side (table, plots, Markdown report).

* :mod:`.scalars`: metric curves with the epoch logged with each point (event files or
  a CSVLogger's ``metrics.csv``);
* :mod:`.runs`: a run (:class:`Run`): version directory, hyperparameters, curves, checkpoints;
* :mod:`.measurements`: generated-audio measurements (``measurements.json``);
* :mod:`.tables`, :mod:`.plots`, :mod:`.markdown`: what the report shows;
* :mod:`.report`: :func:`compare_runs`, which writes the report directory;
* :mod:`.cli`: the command line.

How to read the numbers: ``docs/comparison.md``.
"""

from .cli import main
from .report import compare_runs
from .errors import CompareError, DataMismatchError
from .runs import Run, load_run, read_hparams, resolve_run_dir
from .scalars import Curve, read_scalars

__all__ = ["compare_runs", "main", "CompareError", "DataMismatchError", "Run", "load_run",
           "read_hparams", "resolve_run_dir", "Curve", "read_scalars"]
