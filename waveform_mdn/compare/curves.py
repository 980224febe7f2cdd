"""A run's curves, read from its CSVLogger ``metrics.csv`` (docs/comparison.md)."""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import JUDGE_TAGS, METRIC_TAGS
from .errors import CompareError


def float32(value: float) -> float:
    """The shortest decimal that reads back as the float32 the logger held (0.0222, not 0.0221999995)."""
    v = np.float32(value)
    return float(str(v)) if np.isfinite(v) else float(v)


@dataclass
class Curve:
    """One tag's points in logging order, each with its step and 0-based epoch."""

    tag: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)

    def add(self, step: int, value: float, epoch: int) -> None:
        """A point at or before the last (step, epoch) comes from a run resumed from an earlier
        checkpoint: the points from there on are dropped."""
        if self.steps and (step, epoch) <= (self.steps[-1], self.epochs[-1]):
            n = bisect.bisect_left(list(zip(self.steps, self.epochs)), (step, epoch))
            del self.steps[n:], self.values[n:], self.epochs[n:]
        self.steps.append(step)
        self.values.append(value)
        self.epochs.append(epoch)

    def summary(self) -> dict[str, Any]:
        """Minimum over the finite values (with its epoch and step), final value, counts."""
        finite = [i for i, v in enumerate(self.values) if math.isfinite(v)]
        best = min(finite, key=self.values.__getitem__) if finite else None
        at = (lambda seq: None) if best is None else (lambda seq: seq[best])
        return {"min": at(self.values), "min_epoch": at(self.epochs), "min_step": at(self.steps),
                "final": self.values[-1], "final_epoch": self.epochs[-1],
                "points": len(self.values), "nonfinite": len(self.values) - len(finite)}


def read_curves(file: Path) -> tuple[dict[str, Curve], int, list[str]]:
    """The curves of the contract's metric and judge tags in ``file``, the number of epochs
    (largest epoch + 1) and every other column."""
    try:
        with file.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows, columns = list(reader), list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    missing = [c for c in ("epoch", "step") if c not in columns]
    if missing:
        raise CompareError(f"{file}: no {' or '.join(missing)} column (a CSVLogger writes both)")
    curves: dict[str, Curve] = {}
    n_epochs = 0
    for line, row in enumerate(rows, 2):
        logged = [(tag, row[tag]) for tag in METRIC_TAGS + JUDGE_TAGS if row.get(tag)]
        if not logged:
            continue
        try:
            epoch, step = int(float(row["epoch"])), int(float(row["step"]))
            for tag, text in logged:
                curves.setdefault(tag, Curve(tag)).add(step, float32(float(text)), epoch)
        except ValueError as exc:
            raise CompareError(f"{file}, line {line}: {exc}") from exc
        n_epochs = max(n_epochs, epoch + 1)
    return curves, n_epochs, [c for c in columns if c not in ("epoch", "step")]
