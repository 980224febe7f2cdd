"""A training run as its directory states it (the run contract, docs/comparison.md)."""

from __future__ import annotations

import bisect
import csv
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import CHECKPOINT_DIR, HPARAMS_FILE, JUDGE_TAGS, METRIC_TAGS, METRICS_FILE
from .errors import CompareError, DataMismatchError

VAL_TAGS = tuple(tag for tag in METRIC_TAGS if tag.startswith("val/"))
NORM = ("norm_mean", "norm_std")
_VERSION_RE = re.compile(r"version_(\d+)")


def float32(value: float) -> float:
    """The shortest decimal that reads back as the float32 the logger held (0.0222, not 0.0221999995);
    nan and +-inf stay as they are."""
    return float(str(np.float32(value)))


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


def resolve_run_dir(path: str | Path) -> tuple[Path, str | None]:
    """``path`` if it holds ``metrics.csv``, else its highest-numbered ``version_<N>`` that
    does, with a note saying which was chosen."""
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory not found: {path}")
    if (path / METRICS_FILE).is_file():
        return path, None
    versions = sorted((int(m[1]), p) for p in path.iterdir() if p.is_dir() and (m := _VERSION_RE.fullmatch(p.name)))
    found = [p for _, p in versions if (p / METRICS_FILE).is_file()]
    names = ", ".join(p.name for _, p in versions)
    if not found:
        raise CompareError(f"{path / METRICS_FILE} not found" + (f", nor in {names}" if versions else ""))
    skipped = [p.name for _, p in versions if p not in found]
    return found[-1], (f"`{found[-1].name}` chosen: the highest-numbered of {names} with {METRICS_FILE}"
                       + (f" ({', '.join(skipped)} without {METRICS_FILE})" if skipped else ""))


def read_hparams(run_dir: str | Path) -> dict[str, Any]:
    """The values of the run's ``hparams.yaml`` (mappings and LightningCLI's ``_`` keys
    skipped), with the keys compare needs checked."""
    import yaml
    from pytorch_lightning.core.saving import load_hparams_from_yaml

    file = Path(run_dir) / HPARAMS_FILE
    if not file.is_file():
        raise CompareError(f"{file} not found")
    try:
        tree = load_hparams_from_yaml(file, use_omegaconf=False)
    except (OSError, yaml.YAMLError) as exc:
        raise CompareError(f"cannot read {file}: {str(exc).splitlines()[0]}") from exc
    hp = {str(k): list(v) if isinstance(v, tuple) else v for k, v in (tree if isinstance(tree, dict) else {}).items()
          if v is not None and not isinstance(v, dict) and not str(k).startswith("_")}
    missing = [k for k in ("head", "data_fingerprint", *NORM) if k not in hp]
    if missing:
        raise CompareError(f"{file}: missing hyperparameter(s) {', '.join(missing)}")
    try:
        for key in NORM:
            hp[key] = [float(v) for v in hp[key]] if isinstance(hp[key], list) else float(hp[key])
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{file}: bad norm_mean / norm_std: {exc}") from exc
    hp["data_fingerprint"] = str(hp["data_fingerprint"])
    return hp


@dataclass
class Checkpoint:
    path: Path
    epoch: int | None  #: Lightning's ``epoch`` when it was saved (None: not readable)
    step: int | None  #: its ``global_step``

    @property
    def saved_at(self) -> str:
        return "epoch not readable" if self.epoch is None else f"epoch {self.epoch}, step {self.step}"


def read_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The ``checkpoints/*.ckpt`` with their epoch and step (memory-mapped: the weights are not read)."""
    import torch

    found = []
    for path in sorted((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            found.append(Checkpoint(path, int(ckpt["epoch"]), int(ckpt["global_step"])))
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
            found.append(Checkpoint(path, None, None))
    return found


@dataclass
class Run:
    name: str
    given: Path  #: the RUN_DIR as given
    version_dir: Path
    version_note: str | None
    hparams: dict[str, Any]
    model: str  #: the head's label
    components: int
    curves: dict[str, Curve]
    n_epochs: int
    checkpoints: list[Checkpoint]
    generated: list[Any] = field(default_factory=list)  #: Measurements, attached later
    notes: list[str] = field(default_factory=list)

    def metric(self, tag: str) -> dict[str, Any] | None:
        return self.curves[tag].summary() if tag in self.curves else None


def default_names(paths: list[Path]) -> list[str]:
    """Directory names (``parent/version_N`` for a version dir), made distinct with ``#k``."""
    names = [p.resolve().name for p in paths]
    names = [f"{p.resolve().parent.name}/{n}" if _VERSION_RE.fullmatch(n) else n
             for p, n in zip(paths, names)]
    return [n if names.count(n) == 1 else f"{n}#{names[:i + 1].count(n)}" for i, n in enumerate(names)]


def load_run(name: str, given: Path) -> Run:
    """Read one run; a run without validation metrics is an error naming the columns it has.
    Its head's label and components come from the head itself."""
    from ..heads import build_head

    version_dir, note = resolve_run_dir(given)
    hp = read_hparams(version_dir)
    try:
        head = build_head(hp["head"], 1, **{k: v for k, v in hp.items() if k != "head"})
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{version_dir / HPARAMS_FILE}: head {hp['head']!r}: {exc}") from exc
    curves, n_epochs, columns = read_curves(version_dir / METRICS_FILE)
    if not any(t in curves for t in VAL_TAGS):
        raise CompareError(f"run {name}: {version_dir / METRICS_FILE} has no validation metrics "
                           f"({', '.join(VAL_TAGS)}); columns: {', '.join(columns) or 'none'}")
    run = Run(name, Path(given), version_dir, note, hp, head.label, head.components, curves, n_epochs,
              read_checkpoints(version_dir))
    first = min(c.epochs[0] for c in curves.values())
    if first > 0:  # Lightning's CSVLogger empties metrics.csv when a run resumes into its directory
        run.notes.append(f"`{METRICS_FILE}` starts at epoch {first}: the earlier epochs are not in it")
    for tag in VAL_TAGS:
        bad = curves[tag].summary()["nonfinite"] if tag in curves else 0
        if tag not in curves or bad:
            run.notes.append(f"`{tag}`: {bad} non-finite value(s) (NaN/inf), ignored by the minimum" if bad
                             else f"no `{tag}` logged")
    return run


def check_same_data(runs: list[Run], allow: bool) -> list[str]:
    """Raise :class:`DataMismatchError` when the runs' data or normalisation differ; with
    ``allow``, the report's warning lines instead."""
    def same(a: dict, b: dict) -> bool:
        return a["data_fingerprint"] == b["data_fingerprint"] and all(
            np.shape(a[k]) == np.shape(b[k]) and np.allclose(a[k], b[k], rtol=1e-6, atol=1e-12) for k in NORM)

    if all(same(r.hparams, runs[0].hparams) for r in runs[1:]):
        return []
    lines = [f"{r.name}: data_fingerprint={r.hparams['data_fingerprint']} norm_mean={r.hparams['norm_mean']} "
             f"norm_std={r.hparams['norm_std']} ({r.version_dir / HPARAMS_FILE})" for r in runs]
    if not allow:
        raise DataMismatchError("refusing to compare runs trained on different data or normalisation "
                                f"(their NLL/MSE are not on the same scale): {'; '.join(lines)}; "
                                "pass --allow-different-data to compare them anyway")
    return ["The runs were trained on **different data or normalisation** "
            "(`--allow-different-data`); their numbers are not directly comparable:"] + [f"- {ln}" for ln in lines]
