"""Metric curves of a run, each point with the epoch Lightning logged with it.

Lightning logs epoch-level metrics through ``logger.log_metrics(metrics, step)``, adding
``epoch`` (:data:`~waveform_mdn.contract.EPOCH_TAG`) to every call, after the metrics.
The two loggers keep what belongs to one call:

* TensorBoard event files hold one record per value, in the order written: a metric's
  epoch is the first ``epoch`` record after it at the same step (read in file order,
  several event files in name order, which is creation order).
* A CSVLogger's ``metrics.csv`` holds one row per call, with an ``epoch`` column.

Wall times are never used. A point whose call holds no ``epoch`` takes the epoch logged
at its step if all records there agree; otherwise its curve falls back to point indices.
A step that goes backwards within a tag (a run resumed from an earlier checkpoint into the
same directory) drops the points from that step on that were logged before, as
TensorBoard does.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..contract import EPOCH_TAG, METRIC_TAGS
from .errors import CompareError

EVENT_GLOB = "events.out.tfevents.*"
CSV_FILE = "metrics.csv"  #: what Lightning's CSVLogger writes in its version directory
EPOCH_SOURCE = "epoch scalar"
INDEX_SOURCE = "point index"


def float32(value: float) -> float:
    """Loggers store float32: the shortest decimal that reads back as that float32
    (0.0222, not 0.022199999541044235)."""
    v = np.float32(value)
    return float(str(v)) if np.isfinite(v) else float(v)


@dataclass
class Point:
    step: int
    value: float
    epoch: int | None


@dataclass
class Curve:
    """One metric tag: steps, values and 0-based epochs, in logging order."""

    tag: str
    steps: list[int]
    values: list[float]
    epochs: list[int]
    epoch_source: str  #: EPOCH_SOURCE, or INDEX_SOURCE when some point had no epoch

    @classmethod
    def from_points(cls, tag: str, points: list[Point]) -> "Curve":
        if all(p.epoch is not None for p in points):
            epochs, source = [int(p.epoch) for p in points], EPOCH_SOURCE
        else:
            epochs, source = list(range(len(points))), INDEX_SOURCE
        return cls(tag, [p.step for p in points], [p.value for p in points], epochs, source)

    def summary(self) -> dict[str, Any]:
        """Minimum over finite values (with its epoch and step), final value, counts."""
        finite = [i for i, v in enumerate(self.values) if math.isfinite(v)]
        best = min(finite, key=lambda i: self.values[i]) if finite else None
        return {
            "min": self.values[best] if best is not None else None,
            "min_epoch": self.epochs[best] if best is not None else None,
            "min_step": self.steps[best] if best is not None else None,
            "final": self.values[-1] if self.values else None,
            "final_epoch": self.epochs[-1] if self.epochs else None,
            "points": len(self.values),
            "nonfinite": len(self.values) - len(finite),
            "epoch_source": self.epoch_source,
        }


@dataclass
class Scalars:
    """What a run logged: the metric curves found, the number of epochs (largest logged
    ``epoch`` + 1; None without an ``epoch`` scalar), every scalar tag, and the files read."""

    curves: dict[str, Curve]
    n_epochs: int | None
    tags: list[str]
    source: str


def has_scalars(directory: Path) -> bool:
    return (directory / CSV_FILE).is_file() or any(p.is_file() for p in directory.glob(EVENT_GLOB))


def read_scalars(version_dir: str | Path, tags: Iterable[str] = METRIC_TAGS) -> Scalars:
    """The curves of ``tags`` in ``version_dir``: from its event files, else its ``metrics.csv``."""
    version_dir = Path(version_dir)
    files = sorted(p for p in version_dir.glob(EVENT_GLOB) if p.is_file())
    if files:
        calls, source = _event_calls(files), f"{len(files)} TensorBoard event file(s)"
    else:
        calls, source = _csv_calls(version_dir / CSV_FILE), CSV_FILE
    return _curves_from_calls(calls, tuple(tags), source)


# A "call" is what one log_metrics call wrote: (step, {tag: value}); for event files the
# calls are rebuilt from the record order (a call ends with its `epoch` record).
Call = tuple[int, dict[str, float]]


def _event_records(files: list[Path]) -> Iterator[tuple[str, int, float]]:
    """(tag, step, value) of every scalar record, in the order written."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    for file in files:
        plugin: dict[str, str] = {}  # the first record of a tag names its plugin
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name:
                    plugin.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                if plugin.get(value.tag) == "scalars" and value.HasField("tensor"):
                    yield value.tag, int(event.step), float(make_ndarray(value.tensor).item())


def _event_calls(files: list[Path]) -> list[Call]:
    calls: list[Call] = []
    current: dict[str, float] = {}
    current_step = None
    for tag, step, value in _event_records(files):
        if current and (step != current_step or tag in current):
            calls.append((current_step, current))  # a call without `epoch` (not Lightning's)
            current = {}
        current_step = step
        current[tag] = value
        if tag == EPOCH_TAG:
            calls.append((step, current))
            current = {}
    if current:
        calls.append((current_step, current))
    return calls


def _csv_calls(file: Path) -> list[Call]:
    calls: list[Call] = []
    try:
        with file.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = row.pop("step", "")
                values = {k: float(v) for k, v in row.items() if k and v not in ("", None)}
                calls.append((int(float(step)) if step else len(calls), values))
    except (OSError, ValueError, csv.Error) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    return calls


def _curves_from_calls(calls: list[Call], tags: tuple[str, ...], source: str) -> Scalars:
    epochs_at: dict[int, set[int]] = defaultdict(set)
    for step, values in calls:
        if EPOCH_TAG in values and math.isfinite(values[EPOCH_TAG]):
            epochs_at[step].add(int(round(values[EPOCH_TAG])))
    points: dict[str, list[Point]] = defaultdict(list)
    for step, values in calls:
        epoch = values.get(EPOCH_TAG)
        if epoch is not None and math.isfinite(epoch):
            epoch = int(round(epoch))
        else:
            at_step = epochs_at.get(step, set())
            epoch = next(iter(at_step)) if len(at_step) == 1 else None
        for tag, value in values.items():
            if tag in tags:
                _append(points[tag], Point(step, float32(value), epoch))
    all_epochs = [e for s in epochs_at.values() for e in s]
    n_epochs = max(all_epochs) + 1 if all_epochs else None
    all_tags = sorted({tag for _, values in calls for tag in values})
    curves = {tag: Curve.from_points(tag, points[tag]) for tag in tags if points.get(tag)}
    return Scalars(curves, n_epochs, all_tags, source)


def _append(points: list[Point], point: Point) -> None:
    """Append, first dropping the points a step regression (a resumed run) supersedes."""
    if points and point.step < points[-1].step:
        points[:] = [p for p in points if p.step < point.step]
    points.append(point)
