"""Metric curves of a run, each point with the epoch Lightning logged with it.

Lightning logs epoch-level metrics through ``logger.log_metrics(metrics, step)``, adding
``epoch`` (:data:`~waveform_mdn.contract.EPOCH_TAG`) to every call, after the metrics.
The two loggers keep what belongs to one call:

* TensorBoard event files hold one record per value, in the order written: a metric's
  epoch is the first ``epoch`` record after it at the same step (read in file order,
  several event files in creation order: the time, then the counter in their names).
* A CSVLogger's ``metrics.csv`` holds one row per call, with an ``epoch`` column.

Wall times are never used. A point whose call holds no ``epoch`` takes the epoch logged
at its step if all records there agree; otherwise its curve falls back to point indices.
A run resumed into the same directory from an earlier checkpoint logs some steps again:
a step that goes backwards within a tag, or a later event file that logs a step already
seen, drops the points logged before from that step on.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

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
    file: int
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
    ``epoch`` + 1; None without an ``epoch`` scalar) and every scalar tag."""

    curves: dict[str, Curve]
    n_epochs: int | None
    tags: list[str]


def _creation_order(path: Path) -> list:
    """Event files are named ``events.out.tfevents.<time>.<host>.<pid>.<n>``: compare the
    numbers as numbers (``.10`` comes after ``.9``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def has_scalars(directory: Path) -> bool:
    return (directory / CSV_FILE).is_file() or any(p.is_file() for p in directory.glob(EVENT_GLOB))


def read_scalars(version_dir: str | Path, tags: Iterable[str] = METRIC_TAGS) -> Scalars:
    """The curves of ``tags`` in ``version_dir``: from its event files, else its ``metrics.csv``."""
    version_dir = Path(version_dir)
    files = sorted((p for p in version_dir.glob(EVENT_GLOB) if p.is_file()), key=_creation_order)
    calls = _event_calls(files) if files else _csv_calls(version_dir / CSV_FILE)
    return _curves_from_calls(calls, tuple(tags))


class Call(NamedTuple):
    """What one ``log_metrics`` call wrote; for event files the calls are rebuilt from the
    record order (a call ends with its ``epoch`` record)."""

    file: int  #: which event file (0 for metrics.csv)
    step: int
    values: dict[str, float]


def _event_records(files: list[Path]) -> Iterator[tuple[int, str, int, float]]:
    """(file number, tag, step, value) of every scalar record, in the order written."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    for number, file in enumerate(files):
        plugin: dict[str, str] = {}  # the first record of a tag names its plugin
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name:
                    plugin.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                if plugin.get(value.tag) == "scalars" and value.HasField("tensor"):
                    yield number, value.tag, int(event.step), float(make_ndarray(value.tensor).item())


def _event_calls(files: list[Path]) -> list[Call]:
    calls: list[Call] = []
    current: Call | None = None
    for number, tag, step, value in _event_records(files):
        if current is not None and ((number, step) != (current.file, current.step) or tag in current.values):
            calls.append(current)  # it ended without `epoch` (not written by Lightning)
            current = None
        if current is None:
            current = Call(number, step, {})
        current.values[tag] = value
        if tag == EPOCH_TAG:
            calls.append(current)
            current = None
    return calls + ([current] if current is not None else [])


def _csv_calls(file: Path) -> list[Call]:
    calls: list[Call] = []
    try:
        with file.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = row.pop("step", "")
                values = {k: float(v) for k, v in row.items() if k and v not in ("", None)}
                calls.append(Call(0, int(float(step)) if step else len(calls), values))
    except (OSError, ValueError, csv.Error) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    return calls


def _epoch_of(call: Call, epochs_at: dict[int, set[int]]) -> int | None:
    """The call's own ``epoch``; else the one logged at its step, if all records agree."""
    epoch = call.values.get(EPOCH_TAG)
    if epoch is not None and math.isfinite(epoch):
        return int(round(epoch))
    at_step = epochs_at.get(call.step, set())
    return next(iter(at_step)) if len(at_step) == 1 else None


def _curves_from_calls(calls: list[Call], tags: tuple[str, ...]) -> Scalars:
    epochs_at: dict[int, set[int]] = defaultdict(set)
    for call in calls:
        if EPOCH_TAG in call.values and math.isfinite(call.values[EPOCH_TAG]):
            epochs_at[call.step].add(int(round(call.values[EPOCH_TAG])))
    points: dict[str, list[Point]] = defaultdict(list)
    for call in calls:
        epoch = _epoch_of(call, epochs_at)
        for tag, value in call.values.items():
            _append(points[tag], Point(call.file, call.step, float32(value), epoch))
    epochs = [p.epoch for kept in points.values() for p in kept if p.epoch is not None]
    curves = {tag: Curve.from_points(tag, points[tag]) for tag in tags if points.get(tag)}
    return Scalars(curves, max(epochs) + 1 if epochs else None, sorted(points))


def _append(points: list[Point], point: Point) -> None:
    """Append ``point`` to its tag's points. A run resumed into the same directory from an
    earlier checkpoint logs some steps again: a step that goes backwards, or a later event
    file that logs a step already seen, drops the earlier points from that step on."""
    if points and (point.step < points[-1].step or point.file > points[-1].file and point.step <= points[-1].step):
        points[:] = [p for p in points if p.step < point.step]
    points.append(point)
