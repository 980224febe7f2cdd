"""Training throughput: ``waveform-mdn fit`` as users run it vs a truly plain PyTorch loop.

    python bench/bench_training.py                        # demo corpus, prepared into a temp dir
    python bench/bench_training.py --data data/timit_sample --config recipes/timit_sample/conf/mlp.yaml

``plain``
    Written without the project's classes: the prepared files read with numpy, the train
    split's normalised waveform as one flat float32 tensor, per batch one index gather of the
    windows (a strided view of the waveform) and a one-hot of the phone context, an
    ``nn.Sequential`` MLP (``hidden`` x tanh, the config's sizes) on the same inputs, fused
    Adam, the MSE (Gaussian head) or the mixture NLL by log-sum-exp (mixture head). Nothing
    else per step.
``fit``
    ``waveform_mdn.train`` (LightningCLI) with the config, as a user runs it, with validation
    and the progress bar off and ``limit_train_batches``/``max_steps`` set to the steps timed;
    ``num_threads`` and ``data.batch_size`` from the command line. A callback added through
    ``--trainer.callbacks+=`` stamps ``on_train_batch_end``: fetching the data, every hook,
    logging and the optimizer step are inside the window.

``floor`` (``--floor``)
    The plain loop's net, loss and batches in a bare ``pl.Trainer`` (no logger, checkpoints
    or callbacks): the part of the gap that is Lightning's own loop.

Throughput is examples per second over the steps after the warm-up, at each thread setting
(``--threads``, default 1 and 2); the loops alternate round by round and medians are
reported. The figure of merit is the ratio of each loop's *best* thread setting:
goal >= 0.8 at batch 128 and >= 0.95 at batch 4096. On a shared machine the numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import pytorch_lightning as pl  # noqa: E402

DEFAULT_CONFIG = ROOT / "recipes/demo/conf/mlp.yaml"
# wall time; "thread": the training thread's CPU time, which leaves out the time the thread
# waits for a core on a busy machine (and the work of other threads: use with 1 thread only)
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


# -- the plain loop --------------------------------------------------------------------------
class PlainData:
    """The train split of a prepared directory as flat tensors (see docs/prepared-format.md)."""

    def __init__(self, path: str, window: int, fields: list[str]):
        p = Path(path)
        meta = json.loads((p / "meta.json").read_text())
        seqs = [s for s in json.loads((p / "sequences.json").read_text()) if s["split"] == "train"]
        wave = np.load(p / "wave.npy", mmap_mode="r")
        seg = np.load(p / "segments.npy")
        mean, std = meta["normalisation"]["mean"], meta["normalisation"]["std"]
        self.n_ids = len(meta["phones"]) + 1
        self.window = window
        columns = {"phone": 2, "prev_phone": 3, "next_phone": 4}
        waves, labels, targets, offset = [], [], [], 0
        for s in seqs:
            a, n = s["start"], s["length"]
            waves.append((np.asarray(wave[a : a + n], dtype=np.float32) / 32768.0 - mean) / std)
            rows = seg[s["seg_start"] : s["seg_start"] + s["seg_count"]]
            lengths = rows[:, 1] - rows[:, 0]
            labels.append(np.stack([np.repeat(rows[:, columns[f]], lengths) for f in fields], 1))
            targets.append(np.arange(offset + window, offset + n))
            offset += n
        self.wave = torch.from_numpy(np.concatenate(waves))
        self.labels = torch.from_numpy(np.concatenate(labels))  # [N, fields], the phone context of each sample
        self.targets = torch.from_numpy(np.concatenate(targets))
        self.windows = self.wave.unfold(0, window, 1)  # [N - W + 1, W] view: row i = wave[i : i + W]
        self.eye = torch.eye(self.n_ids)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.targets[idx]
        onehot = self.eye[self.labels[t]].flatten(1)
        return torch.cat([self.windows[t - self.window], onehot], 1), self.wave[t]


def plain_model(inputs: int, hidden: list[int], outputs: int) -> torch.nn.Sequential:
    layers, width = [], inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, outputs))


def mixture_nll(out: torch.Tensor, y: torch.Tensor, min_scale: float) -> torch.Tensor:
    logits, mu, raw = out.chunk(3, dim=1)
    scale = torch.nn.functional.softplus(raw) + min_scale
    comp = -0.5 * ((y[:, None] - mu) / scale) ** 2 - scale.log() - 0.5 * np.log(2 * np.pi)
    return -torch.logsumexp(torch.log_softmax(logits, 1) + comp, 1).mean()


class PlainSetup:
    """The plain net, its loss, fused Adam and the batches, from the config and the data."""

    def __init__(self, cfg: dict, data: PlainData, batch_size: int, steps: int, seed: int):
        model_cfg = cfg["model"]
        self.mixture = model_cfg.get("head", "gaussian") == "mixture"
        k = int(model_cfg.get("components", 3))
        torch.manual_seed(seed)
        inputs = data.window + len(data.labels[0]) * data.n_ids
        self.net = plain_model(inputs, model_cfg.get("hidden", [300, 300]), 3 * k if self.mixture else 1)
        self.lr = cfg.get("optimizer", {}).get("init_args", {}).get("lr", 1e-3)
        order = torch.randperm(len(data.targets), generator=torch.Generator().manual_seed(seed))
        self.batches = (data.batch(order[i * batch_size : (i + 1) * batch_size]) for i in range(steps))

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr, fused=True)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return mixture_nll(out, y, 1e-3) if self.mixture else torch.nn.functional.mse_loss(out[:, 0], y)


def plain(cfg: dict, data: PlainData, batch_size: int, steps: int, seed: int, clock: str = "wall") -> list[float]:
    """The plain loop; returns the time stamps after each step."""
    setup = PlainSetup(cfg, data, batch_size, steps, seed)
    opt = setup.optimizer()
    stamps, now = [], CLOCKS[clock]
    for x, y in setup.batches:
        loss = setup.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(now())
    return stamps


class _FloorModule(pl.LightningModule):
    def __init__(self, setup: PlainSetup):
        super().__init__()
        self.setup_ = setup
        self.net = setup.net

    def training_step(self, batch, batch_idx):
        return self.setup_.loss(*batch)

    def configure_optimizers(self):
        return self.setup_.optimizer()


class _Batches:
    def __init__(self, setup: PlainSetup, steps: int):
        self.setup, self.steps = setup, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return self.setup.batches


def lightning_floor(cfg: dict, data: PlainData, batch_size: int, steps: int, seed: int,
                    clock: str = "wall") -> list[float]:
    """The plain loop's net, loss and batches in a bare ``pl.Trainer`` (no logger, no
    checkpoints, no callbacks but the time stamps): what Lightning's own loop costs."""
    setup = PlainSetup(cfg, data, batch_size, steps, seed)
    stamps = StepStamps(os.devnull, clock)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[stamps])
    trainer.fit(_FloorModule(setup), train_dataloaders=_Batches(setup, steps))
    return stamps.stamps


# -- fit, the subject ------------------------------------------------------------------------
class StepStamps(pl.Callback):
    """Appends a time stamp per training batch; writes them to ``out`` when training ends."""

    def __init__(self, out: str, clock: str = "wall"):
        self.out = out
        self.now = CLOCKS[clock]
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.stamps.append(self.now())

    def on_train_end(self, trainer, pl_module):
        Path(self.out).write_text(json.dumps(self.stamps))


def fit(config: str, data: str, batch_size: int, steps: int, threads: int, workdir: str,
        clock: str = "wall", extra: list[str] = ()) -> list[float]:
    from waveform_mdn import train

    out = Path(workdir) / "stamps.json"
    out.unlink(missing_ok=True)
    rc = train.main([
        "fit", "--config", config, "--data.path", data, "--data.batch_size", str(batch_size),
        "--num_threads", str(threads), "--trainer.max_epochs", "1", "--trainer.max_steps", str(steps),
        "--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", workdir,
        "--trainer.callbacks+=bench_training.StepStamps", "--trainer.callbacks.out", str(out),
        "--trainer.callbacks.clock", clock, *extra,
    ])
    if rc != 0:
        raise SystemExit(f"waveform-mdn fit failed (exit {rc})")
    return json.loads(out.read_text())


def baseline_fit(tree: str, config: str, data: str, batch_size: int, steps: int, threads: int, workdir: str,
                 clock: str = "wall", extra: list[str] = ()) -> list[float]:
    """``fit`` of another checkout (``--baseline``, e.g. a ``git worktree`` of the previous
    revision) in a subprocess, with that checkout's own bench: before and after in one run."""
    code = ("import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']; import bench_training as b; "
            "a = sys.argv; "
            "print('STAMPS', json.dumps(b.fit(a[2], a[3], int(a[4]), int(a[5]), int(a[6]), a[7], a[8], a[9:])))")
    out = subprocess.run([sys.executable, "-c", code, tree, config, data, str(batch_size), str(steps), str(threads),
                          workdir, clock, *extra], capture_output=True, text=True, cwd=tree,
                         env={**os.environ, "PYTHONPATH": tree})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("STAMPS ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the baseline's fit failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1][len("STAMPS "):])


def rate(stamps: list[float], warmup: int, batch_size: int) -> float:
    """Examples/s at the median step time after ``warmup`` steps: robust to a shared machine's
    hiccups (the JSON also has the mean over the run)."""
    t = stamps[warmup - 1 :]
    return batch_size / statistics.median(b - a for a, b in zip(t, t[1:]))


def mean_rate(stamps: list[float], warmup: int, batch_size: int) -> float:
    t = stamps[warmup - 1 :]
    return batch_size * (len(t) - 1) / (t[-1] - t[0])


def prepare_demo(tmp: str) -> str:
    out = os.path.join(tmp, "demo")
    subprocess.run([sys.executable, "-m", "waveform_mdn.cli", "prepare", "demo", out], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    return out


def measure(args, cfg: dict, plain_data: PlainData, tmp: str) -> dict:
    results = {}
    for bs, steps in zip(args.batch_sizes, args.steps):
        warmup = max(steps // 6, 2)
        loops = ("plain", "fit", "floor") if args.floor else ("plain", "fit")
        loops += ("base",) if args.baseline else ()
        runs = {f"{loop}@{t}": [] for t in args.threads for loop in loops}
        means = {k: [] for k in runs}
        for r in range(args.rounds):
            for key in (list(runs) if r % 2 == 0 else list(reversed(runs))):  # no position bias
                loop, threads = key.split("@")
                torch.set_num_threads(int(threads))
                if loop == "base":
                    stamps = baseline_fit(args.baseline, args.config, args.data, bs, steps, int(threads), tmp,
                                          args.clock, shlex.split(args.fit_args))
                elif loop in ("plain", "floor"):
                    stamps = (plain if loop == "plain" else lightning_floor)(cfg, plain_data, bs, steps, args.seed,
                                                                             args.clock)
                else:
                    stamps = fit(args.config, args.data, bs, steps, int(threads), tmp, args.clock,
                                 shlex.split(args.fit_args))
                runs[key].append(rate(stamps, warmup, bs))
                means[key].append(mean_rate(stamps, warmup, bs))
            print(f"batch {bs} round {r}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in runs.items()), flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        best = {loop: max((k for k in med if k.startswith(loop)), key=med.get) for loop in ("plain", "fit")}
        results[str(bs)] = {"examples_per_s": runs, "mean_examples_per_s": means, "median": med, "best": best,
                            "ratio": med[best["fit"]] / med[best["plain"]]}
        for other in ("floor", "base"):
            if other in loops:
                best[other] = max((k for k in med if k.startswith(other)), key=med.get)
                results[str(bs)][f"fit/{other}"] = med[best["fit"]] / med[best[other]]
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="prepared dataset (default: the demo corpus, prepared into a temp dir)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="the recipe config fit runs (default: %(default)s)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 4096])
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="timed steps per run, one per batch size (default 600 at <= 512, else 40)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread settings to try")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=["wall", "thread"], default="wall",
                   help="wall time, or the training thread's CPU time (a shared machine; with --threads 1)")
    p.add_argument("--fit-args", default="", help="more arguments for fit, e.g. '--trainer.gradient_clip_val null'")
    p.add_argument("--floor", action="store_true",
                   help="also time the plain net and batches in a bare pl.Trainer (Lightning's own cost)")
    p.add_argument("--baseline", help="also time fit of this checkout (e.g. a git worktree of the previous revision)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.clock == "thread" and args.threads != [1]:
        p.error("--clock thread counts one thread's CPU time: use it with --threads 1")
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    args.steps = args.steps or [600 if b <= 512 else 40 for b in args.batch_sizes]
    if len(args.steps) == 1:
        args.steps = args.steps * len(args.batch_sizes)
    cfg = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            args.data = prepare_demo(tmp)
        data_cfg = cfg.get("data", {})
        window = data_cfg.get("window") or json.loads((Path(args.data) / "meta.json").read_text()).get("window", 240)
        fields = cfg["model"].get("context_fields", ["phone", "next_phone"])
        if data_cfg.get("context", "target") != "target" or data_cfg.get("pad", "skip") not in (None, "skip") \
                or set(fields) - {"phone", "prev_phone", "next_phone"}:
            raise SystemExit("the plain loop does context 'target', pad 'skip' and phone fields only")
        plain_data = PlainData(args.data, int(window), list(fields))
        results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                               "torch": torch.__version__, "lightning": pl.__version__},
                   "config": {**{k: v for k, v in vars(args).items() if k != "json"}},
                   "runs": measure(args, cfg, plain_data, tmp)}
    print("\nexamples/s at the median step time, median over rounds (noisy on a busy machine)")
    print(f"{'batch':>6} " + " ".join(f"{k:>10}" for k in next(iter(results['runs'].values()))["median"])
          + f" {'fit/plain (best of each)':>26}")
    for bs, r in results["runs"].items():
        line = f"{bs:>6} " + " ".join(f"{v:>10,.0f}" for v in r["median"].values())
        print(line + f" {r['ratio']:>12.3f} ({r['best']['fit']} / {r['best']['plain']})"
              + "".join(f"  fit/{o} {r[f'fit/{o}']:.3f}" for o in ("floor", "base") if f"fit/{o}" in r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
