"""A training run as ``compare`` sees it: its version directory, hyperparameters, metric
curves, checkpoints and generated audio (:class:`Run`, built by :func:`load_run`).

Hyperparameters are read from the files ``fit`` writes in the version directory:
``hparams.yaml`` (Lightning's logger, read with Lightning's own loader) and
``config.yaml`` (LightningCLI). Each key is taken from the first of these sections that
holds it (not null): ``hparams.yaml`` top level, its ``model`` and ``model.init_args``,
then ``config.yaml`` ``model.init_args``, ``model``, ``data.init_args``, ``data``.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..contract import CHECKPOINT_DIR, CONFIG_FILE, HPARAMS_FILE, METRIC_TAGS
from .errors import CompareError, DataMismatchError
from .scalars import EVENT_GLOB, INDEX_SOURCE, Curve, has_scalars, read_scalars

VAL_TAGS = tuple(tag for tag in METRIC_TAGS if tag.startswith("val/"))
HEAD_LABELS = {"gaussian": "MLP", "mixture": "MDN", "logistic_mixture": "logistic mixture",
               "mulaw_softmax": "mu-law softmax"}
SINGLE_COMPONENT_HEADS = ("gaussian", "mulaw_softmax")  #: heads whose ``components`` hparam is unused
REQUIRED = ("head", "data_fingerprint", "norm_mean", "norm_std")
_VERSION_RE = re.compile(r"version_(\d+)")


# ----------------------------------------------------------------------------- run dirs
def resolve_run_dir(path: str | Path) -> tuple[Path, str | None]:
    """The version directory to read for RUN_DIR ``path``, and a note when it was chosen:
    ``path`` itself if it holds event files (or a CSVLogger's ``metrics.csv``), else its
    highest-numbered ``version_<N>`` subdirectory that does."""
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory not found: {path}")
    if has_scalars(path):
        return path, None
    versions = sorted(((int(m.group(1)), p) for p in path.iterdir()
                       if p.is_dir() and (m := _VERSION_RE.fullmatch(p.name))), key=lambda t: t[0])
    with_scalars = [p for _, p in versions if has_scalars(p)]
    if not with_scalars:
        if versions:
            raise CompareError(f"run directory {path}: none of its version dirs "
                               f"({', '.join(p.name for _, p in versions)}) holds TensorBoard event files")
        deeper = sorted({p.parent for p in path.rglob(EVENT_GLOB)})[:5]
        hint = ("; event files were found in: " + ", ".join(map(str, deeper))) if deeper else ""
        raise CompareError(f"run directory {path} holds no TensorBoard event files ({EVENT_GLOB}) "
                           f"and no version_* subdirectories{hint}")
    chosen = with_scalars[-1]
    if len(versions) == 1:
        note = f"`{chosen.name}` (its only version dir)"
    else:
        note = (f"`{chosen.name}` chosen: the highest-numbered of "
                f"{', '.join(p.name for _, p in versions)} with event files")
    skipped = [p.name for _, p in versions if p not in with_scalars]
    if skipped:
        note += f" ({', '.join(skipped)} without event files)"
    return chosen, note


# ----------------------------------------------------------------------------- hparams
@dataclass
class Hparams:
    head: str
    components: int  #: 1 for the Gaussian head, whatever its unused `components` says
    data_fingerprint: str
    norm_mean: float | list[float]
    norm_std: float | list[float]
    files: list[str]  #: the files read
    found: dict[str, Any]  #: every key found, first section wins (for the "differ" table)


def _load_yaml(file: Path, lightning: bool) -> dict[str, Any]:
    import yaml
    from pytorch_lightning.core.saving import load_hparams_from_yaml

    try:
        tree = load_hparams_from_yaml(file, use_omegaconf=False) if lightning else yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CompareError(f"cannot read {file}: {str(exc).splitlines()[0]}") from exc
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise CompareError(f"{file}: expected a mapping of hyperparameters")
    return tree


def _sections(hparams: dict[str, Any], config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The sections that may hold model or data hyperparameters, in the order searched."""
    def sub(tree: Any, *keys: str) -> dict[str, Any]:
        for key in keys:
            tree = tree.get(key) if isinstance(tree, dict) else None
        return tree if isinstance(tree, dict) else {}

    yield from (hparams, sub(hparams, "model"), sub(hparams, "model", "init_args"),
                sub(config, "model", "init_args"), sub(config, "model"),
                sub(config, "data", "init_args"), sub(config, "data"))


def read_hparams(version_dir: str | Path) -> Hparams:
    """``head``, ``components``, ``data_fingerprint``, ``norm_mean``, ``norm_std`` of a run
    (see the module docstring for where they are looked up)."""
    version_dir = Path(version_dir)
    hp_file, cfg_file = version_dir / HPARAMS_FILE, version_dir / CONFIG_FILE
    if not hp_file.is_file() and not cfg_file.is_file():
        raise CompareError(f"hparams file not found: {hp_file} (nor {CONFIG_FILE})")
    hparams = _load_yaml(hp_file, lightning=True) if hp_file.is_file() else {}
    config = _load_yaml(cfg_file, lightning=False) if cfg_file.is_file() else {}
    files = [str(f) for f in (hp_file, cfg_file) if f.is_file()]
    found: dict[str, Any] = {}
    for section in _sections(hparams, config):
        for key, value in section.items():
            if value is not None and not isinstance(value, dict) and not str(key).startswith("_"):
                found.setdefault(str(key), list(value) if isinstance(value, tuple) else value)
    where = " and ".join(files)
    missing = [k for k in REQUIRED if k not in found]
    if "components" not in found and found.get("head") not in (None, "gaussian"):
        missing.append("components")
    if missing:
        raise CompareError(f"{where}: missing hyperparameter(s) {', '.join(missing)} "
                           "(searched at top level and in the model/data sections)")
    if not isinstance(found["head"], str):
        raise CompareError(f"{where}: 'head' should be a head name such as gaussian or mixture, "
                           f"got {found['head']!r}")
    try:
        components = 1 if found["head"] in SINGLE_COMPONENT_HEADS else int(found["components"])
        mean, std = _as_floats(found["norm_mean"]), _as_floats(found["norm_std"])
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{where}: bad components / norm_mean / norm_std: {exc}") from exc
    found["components"] = components
    return Hparams(found["head"], components, str(found["data_fingerprint"]), mean, std, files, found)


def _as_floats(value: Any) -> float | list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def same_norm(a: Any, b: Any) -> bool:
    a_list = a if isinstance(a, list) else [a]
    b_list = b if isinstance(b, list) else [b]
    return len(a_list) == len(b_list) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12) for x, y in zip(a_list, b_list))


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    path: Path
    epoch: int | None  #: Lightning's ``epoch`` when it was saved (None: not readable)
    step: int | None  #: its ``global_step``

    @property
    def saved_at(self) -> str:
        return "epoch not readable" if self.epoch is None else f"epoch {self.epoch}, step {self.step}"

    def describe(self) -> str:
        return f"{self.path.name} ({self.saved_at})"


def read_checkpoints(version_dir: Path) -> list[Checkpoint]:
    """The ``*.ckpt`` files in ``<version_dir>/checkpoints`` with the epoch and step they
    were saved at (memory-mapped, weights-only loads: the weights are not read)."""
    import torch

    found = []
    for path in sorted((version_dir / CHECKPOINT_DIR).glob("*.ckpt")):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            found.append(Checkpoint(path, int(ckpt["epoch"]), int(ckpt["global_step"])))
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
            # truncated, foreign, or holding objects a weights-only load refuses: listed, not fatal
            found.append(Checkpoint(path, None, None))
    return found


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    name: str
    given: Path  #: the RUN_DIR as given
    version_dir: Path
    version_note: str | None
    hparams: Hparams
    curves: dict[str, Curve]
    n_epochs: int | None
    tags: list[str]
    checkpoints: list[Checkpoint]
    generated: list[Any] = field(default_factory=list)  #: Measurements, attached later
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return HEAD_LABELS.get(self.hparams.head, self.hparams.head)

    def metric(self, split: str, name: str) -> dict[str, Any] | None:
        curve = self.curves.get(f"{split}/{name}")
        return curve.summary() if curve else None

    @property
    def val_points(self) -> int:
        return max((len(self.curves[t].values) for t in VAL_TAGS if t in self.curves), default=0)


def default_names(paths: list[Path]) -> list[str]:
    """Directory names (``parent/version_N`` for a version dir), made distinct with ``#k``."""
    names = []
    for p in paths:
        parts = p.resolve().parts
        name = parts[-1] if parts else str(p)
        if (_VERSION_RE.fullmatch(name) or name == "lightning_logs") and len(parts) > 1:
            name = f"{parts[-2]}/{name}"
        names.append(name)
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n}#{seen[n]}")
    return out


def load_run(name: str, given: Path) -> Run:
    """Read one run; a run without validation scalars is an error naming the tags it has."""
    version_dir, note = resolve_run_dir(given)
    hp = read_hparams(version_dir)
    scalars = read_scalars(version_dir)
    if not any(t in scalars.curves for t in VAL_TAGS):
        raise CompareError(f"run {name} ({version_dir}) has no validation scalars "
                           f"({', '.join(VAL_TAGS)}); scalar tags found: "
                           f"{', '.join(scalars.tags) or 'none'}")
    run = Run(name, given, version_dir, note, hp, scalars.curves, scalars.n_epochs, scalars.tags,
              read_checkpoints(version_dir))
    for tag in VAL_TAGS:
        curve = scalars.curves.get(tag)
        if curve is None:
            run.notes.append(f"no `{tag}` scalars")
            continue
        if curve.epoch_source == INDEX_SOURCE:
            run.notes.append(f"`{tag}`: no `epoch` scalar logged with it, epochs are point indices")
        nonfinite = curve.summary()["nonfinite"]
        if nonfinite:
            run.notes.append(f"`{tag}`: {nonfinite} non-finite value(s) (NaN/inf), ignored by the minimum")
    if run.n_epochs is None:
        run.n_epochs = run.val_points
        run.notes.append("no `epoch` scalar: number of epochs = number of validation points")
    return run


def check_same_data(runs: list[Run], allow: bool) -> list[str]:
    """Raise :class:`DataMismatchError` when the runs' data or normalisation differ (unless
    ``allow``: then the warning lines for the report)."""
    first = runs[0].hparams
    differ = any(r.hparams.data_fingerprint != first.data_fingerprint
                 or not same_norm(r.hparams.norm_mean, first.norm_mean)
                 or not same_norm(r.hparams.norm_std, first.norm_std) for r in runs[1:])
    if not differ:
        return []
    lines = [f"  {r.name}: data_fingerprint={r.hparams.data_fingerprint} norm_mean={r.hparams.norm_mean} "
             f"norm_std={r.hparams.norm_std} ({r.hparams.files[0]})" for r in runs]
    if not allow:
        raise DataMismatchError("refusing to compare runs trained on different data or normalisation "
                                "(their NLL/MSE are not on the same scale):\n" + "\n".join(lines)
                                + "\npass --allow-different-data to compare them anyway")
    return ["The runs were trained on **different data or normalisation** "
            "(`--allow-different-data`); their numbers are not directly comparable:"] + [
        "- " + ln.strip() for ln in lines]
