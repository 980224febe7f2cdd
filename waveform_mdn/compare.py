"""``waveform-mdn compare``: training runs side by side (table, plots, Markdown report).

Usage::

    waveform-mdn compare RUN_DIR [RUN_DIR ...] --out REPORT_DIR [--names a,b]
                         [--generated DIR [DIR ...]] [--allow-different-data] [--title TEXT]

A RUN_DIR is a TensorBoardLogger version directory (``events.out.tfevents.*`` +
``hparams.yaml``) or a directory holding ``version_*`` subdirectories, of which the
highest-numbered one with event files is used (the report says which).

Writes into REPORT_DIR: ``report.md`` (tables, embedded plots, relative links to the
generated WAVs), ``table.csv`` (one row per run), ``summary.json`` (everything, curves
included), ``curves.png`` (validation and training curves of all runs, three panels:
nll / mse / mse_sample vs epoch) and, when generated audio was measured,
``generated.png``. Files are written into a temporary directory first and renamed into
place, ``report.md`` last. The validation table is printed as aligned plain text.

Python API: :func:`compare_runs`. Errors in the inputs raise :class:`CompareError`
(CLI exit code 1); runs trained on different data or normalisation raise
:class:`DataMismatchError` (exit code 2) unless ``allow_different_data``.
How to read the numbers: ``docs/comparison.md``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

__all__ = [
    "compare_runs",
    "main",
    "CompareError",
    "DataMismatchError",
    "resolve_run_dir",
    "read_hparams",
    "read_scalars",
    "VAL_TAGS",
    "TRAIN_TAGS",
]

VAL_TAGS = ("val/nll", "val/mse", "val/mse_sample")
TRAIN_TAGS = ("train/nll", "train/mse", "train/mse_sample")
EPOCH_TAG = "epoch"
METRICS = ("nll", "mse", "mse_sample")
#: Order of the columns of the validation table (metric names without the "val/").
TABLE_METRICS = ("mse", "mse_sample", "nll")

HEAD_LABELS = {"gaussian": "MLP", "mixture": "MDN"}
MEASUREMENTS_NAME = "measurements.json"
#: Per-file measurements shown side by side, in this order (other numeric keys follow).
GEN_KEYS = (
    "rms_db", "kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction",
    "lsd_db", "mcd_db", "f0_rmse_hz", "voicing_agreement", "f0_corr",
)
#: Single-signal measurements that also exist for the reference as ``ref_<key>``.
REF_KEYS = ("rms_db", "kurtosis", "periodicity", "f0_mean_hz", "voiced_fraction")
#: Numeric per-file keys that are not measurements of the sound.
_GEN_SKIP = {"clipped", "sample_rate", "duration_s", "ref_duration_s"}
#: Every file this command writes; stale ones from an earlier report are removed.
OUTPUT_FILES = ("report.md", "table.csv", "summary.json", "curves.png", "generated.png")
NATURAL = "natural speech"


class CompareError(ValueError):
    """The runs cannot be compared as asked (missing files, tags, keys, bad arguments)."""


class DataMismatchError(CompareError):
    """The runs were trained on different data or normalisation."""


# ----------------------------------------------------------------------------- run dirs
_VERSION_RE = re.compile(r"version_(\d+)")


def _has_events(path: Path) -> bool:
    return any(p.is_file() for p in path.glob("events.out.tfevents.*"))


def resolve_run_dir(path: str | Path) -> tuple[Path, str | None]:
    """The version directory to read for RUN_DIR ``path``, and a note when it was chosen.

    ``path`` itself if it holds event files; otherwise the highest-numbered
    ``version_<N>`` subdirectory that holds event files.
    """
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory not found: {path}")
    if _has_events(path):
        return path, None
    versions = sorted(
        ((int(m.group(1)), p) for p in path.iterdir()
         if p.is_dir() and (m := _VERSION_RE.fullmatch(p.name))),
        key=lambda t: t[0],
    )
    with_events = [p for _, p in versions if _has_events(p)]
    if not with_events:
        if versions:
            raise CompareError(
                f"run directory {path}: none of its version dirs "
                f"({', '.join(p.name for _, p in versions)}) holds TensorBoard event files"
            )
        deeper = sorted({p.parent for p in path.rglob("events.out.tfevents.*")})[:5]
        hint = ("; event files were found in: " + ", ".join(map(str, deeper))) if deeper else ""
        raise CompareError(
            f"run directory {path} holds no TensorBoard event files (events.out.tfevents.*) "
            f"and no version_* subdirectories{hint}"
        )
    chosen = with_events[-1]
    skipped = [p.name for _, p in versions if p not in with_events]
    if len(versions) == 1:
        note = f"`{chosen.name}` (its only version dir)"
    else:
        note = (f"`{chosen.name}` chosen: the highest-numbered of "
                f"{', '.join(p.name for _, p in versions)} with event files")
    if skipped:
        note += f" ({', '.join(skipped)} without event files)"
    return chosen, note


# ----------------------------------------------------------------------------- hparams
class _TolerantLoader(yaml.SafeLoader):
    """Safe YAML loader that reads Lightning's ``!!python/tuple`` & co. as plain data."""


def _construct_any(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_any)
_TolerantLoader.add_multi_constructor("!", _construct_any)


def _find_key(tree: Any, key: str) -> tuple[bool, Any]:
    """Breadth-first search of nested mappings for ``key`` (shallowest match wins)."""
    found, value, _ = _find_key_path(tree, key)
    return found, value


def _find_key_path(tree: Any, key: str) -> tuple[bool, Any, str]:
    """As :func:`_find_key`, plus the dotted prefix of the section holding the key."""
    queue: list[tuple[Any, str]] = [(tree, "")]
    while queue:
        nxt = []
        for node, prefix in queue:
            if isinstance(node, dict):
                if key in node:
                    return True, node[key], prefix
                nxt.extend((v, f"{prefix}{k}.") for k, v in node.items() if isinstance(v, dict))
        queue = nxt
    return False, None, ""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    out[prefix[:-1]] = tree
    return out


def read_hparams(version_dir: str | Path) -> dict[str, Any]:
    """``head``, ``components``, ``data_fingerprint``, ``norm_mean``, ``norm_std`` (and the
    whole file as ``raw``) from ``version_dir/hparams.yaml``, searched at any depth."""
    file = Path(version_dir) / "hparams.yaml"
    if not file.is_file():
        raise CompareError(f"hparams file not found: {file}")
    try:
        raw = yaml.load(file.read_text(), Loader=_TolerantLoader) or {}
    except yaml.YAMLError as exc:
        raise CompareError(f"cannot parse {file}: {exc}") from exc
    if not isinstance(raw, dict):
        raise CompareError(f"{file}: expected a mapping of hyperparameters")
    out: dict[str, Any] = {"file": str(file), "raw": raw}
    missing = []
    for key in ("head", "data_fingerprint", "norm_mean", "norm_std"):
        found, value = _find_key(raw, key)
        if not found or value is None:
            missing.append(key)
        out[key] = value
    found, comps = _find_key(raw, "components")
    if (not found or comps is None) and out["head"] != "gaussian":
        missing.append("components")
    if missing:
        raise CompareError(
            f"{file}: missing hyperparameter(s) {', '.join(missing)} "
            f"(searched at top level and in nested sections)"
        )
    if isinstance(out["head"], (dict, list)):
        raise CompareError(f"{file}: 'head' should be a head name such as gaussian or mixture, "
                           f"got {out['head']!r}")
    out["head"] = str(out["head"])
    out["data_fingerprint"] = str(out["data_fingerprint"])
    try:
        # the Gaussian head is one component whatever `components` says (the model's
        # hparam keeps its default, unused, when head=gaussian)
        out["components"] = 1 if comps is None or out["head"] == "gaussian" else int(comps)
        out["norm_mean"] = _as_floats(out["norm_mean"])
        out["norm_std"] = _as_floats(out["norm_std"])
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{file}: bad components / norm_mean / norm_std: {exc}") from exc
    return out


def _as_floats(value: Any) -> float | list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def _same_norm(a: Any, b: Any) -> bool:
    a_list = a if isinstance(a, list) else [a]
    b_list = b if isinstance(b, list) else [b]
    return len(a_list) == len(b_list) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12) for x, y in zip(a_list, b_list))


# ----------------------------------------------------------------------------- scalars
def _f32(value: float) -> float:
    """Event files store float32: the shortest decimal that reads back as that float32
    (0.0222, not 0.022199999541044235)."""
    import numpy as np

    v = np.float32(value)
    return float(str(v)) if np.isfinite(v) else float(v)


@dataclass
class Curve:
    tag: str
    steps: list[int]
    values: list[float]
    epochs: list[int]
    epoch_source: str  # "epoch tag" or "point index"

    def finite(self) -> list[tuple[int, float, int]]:
        return [(i, v, e) for i, (v, e) in enumerate(zip(self.values, self.epochs))
                if math.isfinite(v)]

    def summary(self) -> dict[str, Any]:
        fin = self.finite()
        best = min(fin, key=lambda t: t[1]) if fin else None
        last = self.values[-1] if self.values else None
        return {
            "min": best[1] if best else None,
            "min_epoch": best[2] if best else None,
            "min_step": self.steps[best[0]] if best else None,
            "final": last,
            "final_epoch": self.epochs[-1] if self.epochs else None,
            "points": len(self.values),
            "nonfinite": len(self.values) - len(fin),
            "epoch_source": self.epoch_source,
        }


def read_scalars(version_dir: str | Path) -> tuple[dict[str, Curve], int | None, list[str]]:
    """The metric curves of a version dir (every tag in VAL_TAGS + TRAIN_TAGS present),
    the number of epochs (max ``epoch`` + 1, None without the tag) and all scalar tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(version_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = list(acc.Tags().get("scalars", []))
    epoch_at: dict[int, list[tuple[float, float]]] = defaultdict(list)
    n_epochs = None
    if EPOCH_TAG in tags:
        ev = acc.Scalars(EPOCH_TAG)
        for e in ev:
            epoch_at[e.step].append((e.wall_time, e.value))
        finite = [e.value for e in ev if math.isfinite(e.value)]
        n_epochs = int(round(max(finite))) + 1 if finite else None
    curves: dict[str, Curve] = {}
    for tag in VAL_TAGS + TRAIN_TAGS:
        if tag not in tags:
            continue
        events = acc.Scalars(tag)
        epochs: list[int] | None = []
        for e in events:
            cands = epoch_at.get(e.step)
            if not cands:
                epochs = None
                break
            # Lightning writes "epoch" in the same log call as the metric: nearest in time.
            _, val = min(cands, key=lambda c: abs(c[0] - e.wall_time))
            epochs.append(int(round(val)) if math.isfinite(val) else -1)
        source = "epoch tag"
        if epochs is None:
            epochs, source = list(range(len(events))), "point index"
        curves[tag] = Curve(tag, [e.step for e in events], [_f32(e.value) for e in events],
                            epochs, source)
    return curves, n_epochs, tags


# ----------------------------------------------------------------------------- generated
def _load_measurements(path: Path, run_name: str) -> dict[str, Any]:
    file = path / MEASUREMENTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f"generated audio for run {run_name}: {file} not found")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise CompareError(f"{file}: expected an object with a 'files' list")
    base = file.parent
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict):
            continue
        item = dict(entry)
        item["_wav_path"] = _resolve_audio(entry.get("wav"), base)
        item["_ref_path"] = _resolve_audio(entry.get("reference"), base)
        files.append(item)
    return {
        "file": file,
        "checkpoint": data.get("checkpoint"),
        "data_fingerprint": data.get("data_fingerprint"),
        "head": data.get("head"),
        "settings": data.get("settings") or {},
        "files": files,
    }


def _resolve_audio(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    p = Path(str(value))
    if p.is_absolute():
        return p
    if (base / p).exists() or not p.exists():
        return base / p
    return p  # relative to the working directory, as some tools write them


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: list[float | None]) -> tuple[float | None, int]:
    vals = [v for v in values if v is not None]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def _gen_summary(meas: dict[str, Any]) -> dict[str, Any]:
    keys = list(GEN_KEYS)
    for entry in meas["files"]:
        for k, v in entry.items():
            if (k not in keys and not k.startswith(("ref_", "_")) and k not in _GEN_SKIP
                    and _numeric(v) is not None):
                keys.append(k)
    means = {}
    for k in keys:
        m, n = _mean([_numeric(e.get(k)) for e in meas["files"]])
        means[k] = m
    clipped = [_numeric(e.get("clipped")) for e in meas["files"]]
    return {
        "n_files": len(meas["files"]),
        "clipped_total": int(sum(c for c in clipped if c is not None)),
        "means": means,
    }


def _natural_summary(all_meas: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Means of the ``ref_*`` values over distinct references of every measured set."""
    seen: dict[str, dict[str, Any]] = {}
    for meas in all_meas:
        for i, e in enumerate(meas["files"]):
            if not any(_numeric(e.get("ref_" + k)) is not None for k in REF_KEYS):
                continue
            ref = e.get("_ref_path")
            key = str(ref.resolve()) if ref is not None else f"{meas['file']}#{i}"
            seen.setdefault(key, e)
    if not seen:
        return None
    means = {k: _mean([_numeric(e.get("ref_" + k)) for e in seen.values()])[0] for k in REF_KEYS}
    return {"n_files": len(seen), "means": means}


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    name: str
    given: Path
    version_dir: Path
    version_note: str | None
    hparams: dict[str, Any]
    curves: dict[str, Curve]
    n_epochs: int | None
    tags: list[str]
    generated: list[dict[str, Any]] = field(default_factory=list)
    generated_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return HEAD_LABELS.get(self.hparams["head"], self.hparams["head"])

    def metric(self, split: str, name: str) -> dict[str, Any] | None:
        curve = self.curves.get(f"{split}/{name}")
        return curve.summary() if curve else None


def _default_names(paths: list[Path]) -> list[str]:
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


def _load_run(name: str, given: Path) -> Run:
    version_dir, note = resolve_run_dir(given)
    hp = read_hparams(version_dir)
    curves, n_epochs, tags = read_scalars(version_dir)
    if not any(t in curves for t in VAL_TAGS):
        raise CompareError(
            f"run {name} ({version_dir}) has no validation scalars "
            f"({', '.join(VAL_TAGS)}); scalar tags found: {', '.join(sorted(tags)) or 'none'}"
        )
    run = Run(name, given, version_dir, note, hp, curves, n_epochs, tags)
    for tag in VAL_TAGS:
        c = curves.get(tag)
        if c is None:
            run.notes.append(f"no `{tag}` scalars")
            continue
        if c.epoch_source != "epoch tag":
            run.notes.append(f"`{tag}`: no `epoch` scalar at its steps, epochs are point indices")
        nf = len(c.values) - len(c.finite())
        if nf:
            run.notes.append(f"`{tag}`: {nf} non-finite value(s) (NaN/inf), ignored by the minimum")
    if n_epochs is None:
        run.n_epochs = max((len(curves[t].values) for t in VAL_TAGS if t in curves), default=0)
        run.notes.append("no `epoch` scalar: number of epochs = number of validation points")
    return run


def _check_same_data(runs: list[Run], allow: bool) -> list[str]:
    first = runs[0]
    differ = any(
        r.hparams["data_fingerprint"] != first.hparams["data_fingerprint"]
        or not _same_norm(r.hparams["norm_mean"], first.hparams["norm_mean"])
        or not _same_norm(r.hparams["norm_std"], first.hparams["norm_std"])
        for r in runs[1:]
    )
    if not differ:
        return []
    lines = [
        f"  {r.name}: data_fingerprint={r.hparams['data_fingerprint']} "
        f"norm_mean={r.hparams['norm_mean']} norm_std={r.hparams['norm_std']} ({r.hparams['file']})"
        for r in runs
    ]
    if not allow:
        raise DataMismatchError(
            "refusing to compare runs trained on different data or normalisation "
            "(their NLL/MSE are not on the same scale):\n" + "\n".join(lines)
            + "\npass --allow-different-data to compare them anyway"
        )
    return ["The runs were trained on **different data or normalisation** "
            "(`--allow-different-data`); their numbers are not directly comparable:"] + [
        "- " + ln.strip() for ln in lines]


def _attach_generated(runs: list[Run], generated: Sequence[str | Path | None] | None,
                      out_dir: Path) -> None:
    generated = list(generated or [])
    if len(generated) > len(runs):
        raise CompareError(f"{len(generated)} --generated dirs given for {len(runs)} runs "
                           "(they are matched to the runs in order)")
    out_res = out_dir.resolve()
    for i, run in enumerate(runs):
        explicit = generated[i] if i < len(generated) else None
        if explicit is not None and str(explicit) not in ("", "-"):
            paths = [Path(explicit)]
            run.generated_source = f"--generated {explicit}"
        else:
            paths = sorted(
                p for p in run.given.rglob(MEASUREMENTS_NAME)
                if out_res not in p.resolve().parents
                and not any(part.startswith(".") for part in p.relative_to(run.given).parts)
            )
            run.generated_source = f"searched {run.given} for {MEASUREMENTS_NAME}"
        for p in paths:
            meas = _load_measurements(p, run.name)
            meas["summary"] = _gen_summary(meas)
            fp = meas.get("data_fingerprint")
            if fp is not None and str(fp) != run.hparams["data_fingerprint"]:
                run.notes.append(f"generated audio {meas['file']} has data_fingerprint {fp}, "
                                 f"the run has {run.hparams['data_fingerprint']}")
            head = meas.get("head")
            if head is not None and str(head) != run.hparams["head"]:
                run.notes.append(f"generated audio {meas['file']} was made by head {head}, "
                                 f"the run has {run.hparams['head']}")
            run.generated.append(meas)


# ----------------------------------------------------------------------------- formatting
def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def _min_cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "n/a"
    if s["min"] is None:
        return "n/a (no finite value)"
    return f"{_fmt(s['min'])} ({s['min_epoch']})"


def _table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    header = ["name", "head", "K"]
    header += [f"min val/{m} (epoch)" for m in TABLE_METRICS]
    header += [f"final val/{m}" for m in TABLE_METRICS]
    header += ["epochs"]
    rows = []
    for r in runs:
        row = [r.name, r.model, str(r.hparams["components"])]
        row += [_min_cell(r.metric("val", m)) for m in TABLE_METRICS]
        row += [_fmt(s["final"]) if (s := r.metric("val", m)) else "n/a" for m in TABLE_METRICS]
        row += [_fmt(r.n_epochs)]
        rows.append(row)
    return header, rows


def format_text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned plain text: text columns left-aligned, the others right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    left = {0, 1}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _link(target: Path, out_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


# ----------------------------------------------------------------------------- plots
_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]


def _plot_x(epochs: list[int]) -> list[float]:
    """Epochs as x positions; n points logged in the same epoch (validation several times
    per epoch, step-level training values) are spread over it: e, e + 1/n, ..."""
    count: dict[int, int] = defaultdict(int)
    for e in epochs:
        count[e] += 1
    seen: dict[int, int] = defaultdict(int)
    xs = []
    for e in epochs:
        xs.append(e + seen[e] / count[e])
        seen[e] += 1
    return xs


def _plot_curves(runs: list[Run], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(15, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharex=True)
    for ax, metric in zip(axes, METRICS):
        positive = True
        for i, run in enumerate(runs):
            color = _COLORS[i % len(_COLORS)]
            for split, style in (("val", "-"), ("train", "--")):
                c = run.curves.get(f"{split}/{metric}")
                if c is None:
                    continue
                pts = [(x, v) for v, x in zip(c.values, _plot_x(c.epochs)) if math.isfinite(v)]
                if not pts:
                    continue
                positive &= all(v > 0 for _, v in pts)
                xs, ys = zip(*pts)
                ax.plot(xs, ys, style, color=color, lw=1.6 if split == "val" else 1.0,
                        alpha=1.0 if split == "val" else 0.55,
                        marker="." if split == "val" and len(xs) < 60 else None,
                        label=f"{run.name} ({run.model}, K={run.hparams['components']})"
                        if split == "val" else None)
                if split == "val":
                    s = c.summary()
                    if s["min"] is not None:
                        i = next(j for j, v in enumerate(c.values) if v == s["min"])
                        ax.plot([_plot_x(c.epochs)[i]], [s["min"]], "o", ms=8, mfc="none",
                                color=color)
        if metric != "nll" and positive and ax.has_data():
            ax.set_yscale("log")
        ax.set_title(f"{metric}" + (" (nats/sample, normalised signal)" if metric == "nll" else
                                    " (normalised signal)"), fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    handles += [Line2D([], [], color="k", ls="-", label="validation"),
                Line2D([], [], color="k", ls="--", alpha=0.55, label="training"),
                Line2D([], [], color="k", ls="", marker="o", mfc="none", label="minimum")]
    labels += ["validation", "training", "validation minimum"]
    axes[0].legend(handles, labels, fontsize=8)
    fig.suptitle("Validation (solid) and training (dashed) curves")
    fig.savefig(path, dpi=110)


def _plot_generated(rows: list[tuple[str, dict[str, Any]]], path: Path) -> bool:
    keys = [k for k in REF_KEYS if any(m.get(k) is not None for _, m in rows)]
    if not keys:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(keys), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    labels = [name for name, _ in rows]
    colors = ["0.55" if name == NATURAL else _COLORS[i % len(_COLORS)]
              for i, (name, _) in enumerate(rows)]
    for ax, k in zip(axes, keys):
        vals = [m.get(k) for _, m in rows]
        xs = range(len(rows))
        if all(v is None or v >= 0 for v in vals):
            ax.bar(xs, [v if v is not None else 0.0 for v in vals], color=colors)
        else:  # levels in dB: points, bars from 0 would mislead
            for x, v, c in zip(xs, vals, colors):
                if v is not None:
                    ax.plot([x], [v], "o", ms=9, color=c)
            ax.set_xlim(-0.6, len(rows) - 0.4)
        for x, v in zip(xs, vals):
            if v is None:
                ax.text(x, 0.5, "n/a", ha="center", va="center", fontsize=8,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(k, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Generated audio (mean over files) vs natural speech")
    fig.savefig(path, dpi=110)
    return True


# ----------------------------------------------------------------------------- outputs
def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _csv_rows(runs: list[Run]) -> str:
    cols = ["name", "model", "head", "components", "data_fingerprint", "version_dir"]
    for m in TABLE_METRICS:
        cols += [f"min_val_{m}", f"min_val_{m}_epoch"]
    cols += [f"final_val_{m}" for m in TABLE_METRICS]
    cols += ["epochs", "val_points"]
    for m in TABLE_METRICS:
        cols += [f"min_train_{m}", f"final_train_{m}"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in runs:
        row: list[Any] = [r.name, r.model, r.hparams["head"], r.hparams["components"],
                          r.hparams["data_fingerprint"], str(r.version_dir)]
        for m in TABLE_METRICS:
            s = r.metric("val", m) or {}
            row += [s.get("min"), s.get("min_epoch")]
        row += [(r.metric("val", m) or {}).get("final") for m in TABLE_METRICS]
        row += [r.n_epochs, max((len(r.curves[t].values) for t in VAL_TAGS if t in r.curves),
                                default=0)]
        for m in TABLE_METRICS:
            s = r.metric("train", m) or {}
            row += [s.get("min"), s.get("final")]
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


def _hparam_diffs(runs: list[Run]) -> list[list[str]]:
    """Hyperparameters whose values differ between runs. Keys are taken relative to the
    section holding ``head`` (so ``model.lr`` in one file matches ``lr`` in another), and
    the resolved head/components are filled in."""
    flat = []
    for r in runs:
        _, _, prefix = _find_key_path(r.hparams["raw"], "head")
        f = {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v
             for k, v in _flatten(r.hparams["raw"]).items()}
        f["components"] = r.hparams["components"]
        flat.append(f)
    keys = sorted(set().union(*flat))
    rows = []
    for k in keys:
        vals = [f.get(k, "—") for f in flat]
        if any(repr(v) != repr(vals[0]) for v in vals[1:]):
            rows.append([k] + [_fmt(v) if not isinstance(v, str) else v for v in vals])
    return rows


def _gen_rows(runs: list[Run]) -> tuple[list[tuple[str, Run, dict[str, Any]]], dict | None]:
    rows = []
    for run in runs:
        for meas in run.generated:
            label = run.name
            if len(run.generated) > 1:
                rel = os.path.relpath(meas["file"].parent, run.given)
                label = f"{run.name} [{Path(rel).as_posix()}]"
            rows.append((label, run, meas))
    natural = _natural_summary([m for _, _, m in rows])
    return rows, natural


def _report(runs: list[Run], out_dir: Path, header: list[str], rows: list[list[str]],
            data_warning: list[str], gen_rows, natural, have_gen_plot: bool,
            title: str) -> str:
    md: list[str] = [f"# {title}", ""]
    md.append(f"Written by `waveform-mdn compare` on "
              f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
              "Files: [table.csv](table.csv), [summary.json](summary.json).")
    md.append("")
    if data_warning:
        md += ["> **Warning.** " + data_warning[0], ">"] + ["> " + ln for ln in data_warning[1:]] + [""]

    md += ["## Runs", ""]
    run_rows = []
    for r in runs:
        hp = r.hparams
        run_rows.append([r.name, r.model, hp["head"], str(hp["components"]),
                         f"`{hp['data_fingerprint']}`", f"{_fmt(hp['norm_mean'])} / "
                         f"{_fmt(hp['norm_std'])}", f"`{r.version_dir.resolve()}`"])
    md.append(_md_table(["name", "model", "head", "K", "data fingerprint", "norm mean / std",
                         "event dir"], run_rows, numeric_from=99))
    md.append("")
    for r in runs:
        if r.version_note:
            md.append(f"- {r.name}: `{r.given}` → {r.version_note}.")
    md.append("")

    md += ["## Validation results", "",
           "Minimum over validation epochs, with the epoch of the minimum in parentheses "
           "(0-based, Lightning's `epoch`); final = last validation point. NLL in nats per "
           "sample, MSE on the normalised signal. `mse` is the point prediction (MLP output, "
           "MDN mixture mean), `mse_sample` the MSE of a value drawn from the predicted "
           "distribution (what the 2014 report calls the MDN's MSE). How to read them: "
           "`docs/comparison.md` in the waveform-mdn repository.", ""]
    md.append(_md_table(header, rows, numeric_from=2))
    md += ["", "![validation and training curves](curves.png)", ""]
    notes = [(r.name, n) for r in runs for n in r.notes]
    if notes:
        md += ["Notes:", ""] + [f"- {name}: {n}" for name, n in notes] + [""]

    diffs = _hparam_diffs(runs)
    md += ["## Hyperparameters that differ", ""]
    if diffs:
        md.append(_md_table(["key"] + [r.name for r in runs], diffs, numeric_from=99))
    else:
        md.append("None: the runs have identical `hparams.yaml` contents.")
    md.append("")

    md += ["## Generated audio", ""]
    if gen_rows:
        keys: list[str] = []
        for _, _, m in gen_rows:
            keys += [k for k in m["summary"]["means"] if k not in keys]
        keys = [k for k in keys if any(m["summary"]["means"].get(k) is not None
                                       for _, _, m in gen_rows)
                or (natural and natural["means"].get(k) is not None)]
        table_rows = []
        for label, _, m in gen_rows:
            s = m["summary"]
            table_rows.append([label, str(s["n_files"]), str(s["clipped_total"])]
                              + [_fmt(s["means"].get(k)) for k in keys])
        if natural:
            table_rows.append([NATURAL, str(natural["n_files"]), "—"]
                              + [_fmt(natural["means"].get(k)) if k in REF_KEYS else "—"
                                 for k in keys])
        md.append("Mean of each measurement over the files of a run (see "
                  "`waveform_mdn/audio_metrics.py`); the *natural speech* row measures the "
                  "reference recordings (distinct references over all runs). `clipped` is the "
                  "total number of clipped samples.")
        md.append("")
        md.append(_md_table(["run", "files", "clipped"] + keys, table_rows, numeric_from=1))
        md.append("")
        if have_gen_plot:
            md += ["![generated audio measurements](generated.png)", ""]
    missing = [r.name for r in runs if not r.generated]
    if missing:
        md += [f"- {name}: no generated audio" for name in missing] + [""]

    if gen_rows:
        md += ["### WAV files", ""]
        refs: dict[str, Path] = {}
        for label, run, m in gen_rows:
            md.append(f"#### {label}")
            md.append("")
            meta = [f"measurements: [{m['file'].name}]({_link(m['file'], out_dir)})"]
            if m.get("checkpoint"):
                meta.append(f"checkpoint: `{m['checkpoint']}`")
            if m["settings"]:
                meta.append("settings: " + ", ".join(f"`{k}={v}`" for k, v in m["settings"].items()))
            md.append("; ".join(meta))
            md.append("")
            for e in m["files"]:
                wav, ref = e.get("_wav_path"), e.get("_ref_path")
                if wav is None:
                    item = "(entry without a wav path)"
                elif wav.exists():
                    item = f"[{wav.name}]({_link(wav, out_dir)})"
                else:
                    item = f"`{wav}` (missing)"
                if ref is not None:
                    refs.setdefault(str(ref.resolve()), ref)
                    item += (f" — reference [{ref.name}]({_link(ref, out_dir)})" if ref.exists()
                             else f" — reference `{ref}` (missing)")
                md.append(f"- {item}")
            md.append("")
        if refs:
            md += ["#### Reference recordings", ""]
            for ref in refs.values():
                md.append(f"- [{ref.name}]({_link(ref, out_dir)})" if ref.exists()
                          else f"- `{ref}` (missing)")
            md.append("")
    return "\n".join(md).rstrip() + "\n"


def _publish(staging: Path, out_dir: Path, produced: list[str]) -> None:
    """Move the staged files into ``out_dir``: one rename of the whole directory when
    ``out_dir`` does not exist yet, else one atomic rename per file, report.md last."""
    if not out_dir.exists():
        try:
            os.rename(staging, out_dir)
            return
        except OSError:
            out_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(produced, key=lambda n: n == "report.md")
    for name in order:
        os.replace(staging / name, out_dir / name)
    for name in OUTPUT_FILES:
        if name not in produced and (out_dir / name).is_file():
            (out_dir / name).unlink()
    shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- API
def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path,
                 names: Sequence[str] | None = None, *,
                 generated: Sequence[str | Path | None] | None = None,
                 allow_different_data: bool = False,
                 title: str = "Run comparison") -> dict[str, Any]:
    """Compare training runs and write the report into ``out_dir``.

    ``run_dirs``: version dirs or dirs holding ``version_*``; ``names``: labels (default:
    directory names); ``generated``: per run (in order) a directory holding
    ``measurements.json`` or the file itself, ``None``/``"-"`` to search the run dir.

    Returns the summary (as in ``summary.json``) plus ``"table"`` (the printed text table)
    and ``"outputs"`` (paths written). Raises :class:`CompareError` /
    :class:`DataMismatchError`.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise CompareError("no run directories given")
    if names is None:
        names = _default_names(paths)
    names = [str(n).strip() for n in names]
    if len(names) != len(paths):
        raise CompareError(f"{len(names)} names given for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise CompareError(f"run names must be distinct: {', '.join(names)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CompareError(f"--out {out_dir} exists and is not a directory")

    runs = [_load_run(n, p) for n, p in zip(names, paths)]
    data_warning = _check_same_data(runs, allow_different_data)
    _attach_generated(runs, generated, out_dir)

    header, rows = _table(runs)
    text = format_text_table(header, rows)
    gen_rows, natural = _gen_rows(runs)

    summary = {
        "title": title,
        "same_data": not data_warning,
        "runs": [],
        "natural_speech": natural,
    }
    for r in runs:
        summary["runs"].append({
            "name": r.name,
            "run_dir": str(r.given),
            "version_dir": str(r.version_dir),
            "version_note": r.version_note,
            "model": r.model,
            "head": r.hparams["head"],
            "components": r.hparams["components"],
            "data_fingerprint": r.hparams["data_fingerprint"],
            "norm_mean": r.hparams["norm_mean"],
            "norm_std": r.hparams["norm_std"],
            "hparams_file": r.hparams["file"],
            "epochs": r.n_epochs,
            "metrics": {tag: c.summary() for tag, c in r.curves.items()},
            "curves": {tag: {"epoch": c.epochs, "step": c.steps, "value": c.values}
                       for tag, c in r.curves.items()},
            "notes": r.notes,
            "generated": [{
                "measurements": str(m["file"]),
                "checkpoint": m.get("checkpoint"),
                "settings": m["settings"],
                "n_files": m["summary"]["n_files"],
                "clipped_total": m["summary"]["clipped_total"],
                "means": m["summary"]["means"],
                "wavs": [str(e["_wav_path"]) if e.get("_wav_path") else None for e in m["files"]],
                "references": [str(e["_ref_path"]) if e.get("_ref_path") else None
                               for e in m["files"]],
            } for m in r.generated],
        })

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        produced = []
        _plot_curves(runs, staging / "curves.png")
        produced.append("curves.png")
        plot_rows = [(label, m["summary"]["means"]) for label, _, m in gen_rows]
        if natural:
            plot_rows.append((NATURAL, natural["means"]))
        have_gen_plot = bool(gen_rows) and _plot_generated(plot_rows, staging / "generated.png")
        if have_gen_plot:
            produced.append("generated.png")
        (staging / "table.csv").write_text(_csv_rows(runs))
        (staging / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
        produced += ["table.csv", "summary.json"]
        (staging / "report.md").write_text(
            _report(runs, out_dir, header, rows, data_warning, gen_rows, natural,
                    have_gen_plot, title))
        produced.append("report.md")
        _publish(staging, out_dir, produced)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    result = _json_safe(summary)
    result["table"] = text
    result["outputs"] = {name: str(out_dir / name) for name in produced}
    return result


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn compare",
        description="Compare training runs (TensorBoard event files + hparams.yaml): table, "
                    "plots of the validation curves, generated-audio measurements side by "
                    "side, Markdown report.",
        epilog="Exit codes: 0 ok, 1 bad input (missing files/tags/keys), 2 bad usage or runs "
               "trained on different data/normalisation.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a version dir (events.out.tfevents.* + hparams.yaml) or a dir holding "
                        "version_* dirs (the highest-numbered one with event files is used)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="where report.md, table.csv, summary.json and the PNGs go")
    p.add_argument("--names", metavar="A,B,...",
                   help="comma-separated run labels, one per RUN_DIR (default: directory names)")
    p.add_argument("--generated", nargs="+", metavar="DIR", default=None,
                   help="per run, in order: a dir holding measurements.json (or the file); "
                        "'-' to search that run's dir (the default for every run)")
    p.add_argument("--allow-different-data", action="store_true",
                   help="compare runs even if their data fingerprint or normalisation differ")
    p.add_argument("--title", default="Run comparison", help="report title")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        argv = argv[1:]
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # -h, or a usage error (already printed)
        return int(exc.code or 0)
    names = None
    if args.names is not None:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(args.run_dirs):
            print(f"waveform-mdn compare: error: --names has {len(names)} names for "
                  f"{len(args.run_dirs)} runs", file=sys.stderr)
            return 2
    try:
        result = compare_runs(args.run_dirs, args.out, names, generated=args.generated,
                              allow_different_data=args.allow_different_data, title=args.title)
    except DataMismatchError as exc:
        print(f"waveform-mdn compare: error: {exc}", file=sys.stderr)
        return 2
    except CompareError as exc:
        print(f"waveform-mdn compare: error: {exc}", file=sys.stderr)
        return 1
    print(result["table"])
    print()
    for run in result["runs"]:
        if run["version_note"]:
            print(f"{run['name']}: using {run['version_dir']}", file=sys.stderr)
        for note in run["notes"]:
            print(f"{run['name']}: note: {note}", file=sys.stderr)
    if not result["same_data"]:
        print("warning: the runs were trained on different data or normalisation",
              file=sys.stderr)
    print(f"report: {result['outputs']['report.md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
