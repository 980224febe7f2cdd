"""Training throughput: the Lightning loop vs a bare PyTorch loop, same model, same batches.

    python bench/bench_training.py                       # demo corpus, prepared into a temp dir
    python bench/bench_training.py --data data/demo --batch-sizes 128 4096 --rounds 3

Loops (each one builds a fresh, identically seeded model and optimizer, and walks the same
seeded sequence of batches):

``bare_dl``
    ``for batch in datamodule.train_dataloader(): loss = model.compute(batch, "train");
    opt.zero_grad(); loss.backward(); opt.step()`` -- the loop one would write by hand.
``bare_preloaded``
    the same loop over batches gathered beforehand (no data loading at all: the ceiling).
``lightning``
    ``Trainer.fit`` with what a recipe uses: TensorBoard logger, ModelCheckpoint
    (best by ``val/nll`` + last), LearningRateMonitor, the NaN check, epoch-level metrics;
    validation and the progress bar are off (they are not part of the training loop).

Throughput is examples per second over the steps after ``--warmup``; Lightning is timed
from ``on_train_batch_end`` of the warm-up step to that of the last step, so fetching the
data, every hook and the optimizer step are inside the window. The loops are interleaved
round by round (alternating their order) and the medians are reported, ratios paired
within a round, because a shared machine's speed drifts. Goal: ``lightning / bare_dl >= 0.9``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402

from waveform_mdn.datamodule import WaveformDataModule  # noqa: E402
from waveform_mdn.models import WaveformPredictor  # noqa: E402


def make_model(args, dm: WaveformDataModule) -> WaveformPredictor:
    torch.manual_seed(args.seed)
    model = WaveformPredictor(
        head=args.head, components=args.components, optimizer=args.optimizer, lr=args.lr,
        anneal_start_epoch=None,
    )
    model.set_data_hparams(dm.data_hparams())
    return model


def make_dm(args, batch_size: int) -> WaveformDataModule:
    dm = WaveformDataModule(args.data, batch_size=batch_size, num_workers=args.num_workers,
                            seed=args.seed, persistent_workers=False)
    dm.setup("fit")
    return dm


def bare(args, batch_size: int, preload: bool) -> float:
    dm = make_dm(args, batch_size)
    model = make_model(args, dm)
    model.train()
    opt = model.configure_optimizers()
    loader = dm.train_dataloader()
    batches = loader
    if preload:
        it = iter(loader)
        batches = [next(it) for _ in range(args.steps)]
    stamps = []
    for i, batch in enumerate(batches):
        loss = model.compute(batch, "train")
        if not torch.isfinite(loss):  # the same check the LightningModule makes
            raise RuntimeError("non-finite loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
        if i == args.steps - 1:
            break
    return _rates(stamps, args.warmup, batch_size)


def _rates(stamps: list[float], warmup: int, batch_size: int) -> tuple[float, float]:
    """(mean, median-step) examples/s over the steps after ``warmup``."""
    t = stamps[warmup - 1 :]
    steps = [b - a for a, b in zip(t, t[1:])]
    return batch_size * len(steps) / (t[-1] - t[0]), batch_size / statistics.median(steps)


class _Timer(pl.Callback):
    def __init__(self):
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.stamps.append(time.perf_counter())


def lightning(args, batch_size: int, workdir: str, group: int = 1) -> tuple[float, float]:
    dm = WaveformDataModule(args.data, batch_size=batch_size, num_workers=args.num_workers, seed=args.seed,
                            persistent_workers=False, group_batches=group)
    model = make_model(args, dm)
    timer = _Timer()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=args.steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=TensorBoardLogger(workdir, name="bench", default_hp_metric=False),
        callbacks=[
            timer,
            ModelCheckpoint(monitor="val/nll", mode="min", filename="best", save_last=True),
            LearningRateMonitor(),
        ],
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50,
    )
    trainer.fit(model, datamodule=dm)
    # one stamp per Lightning batch = `group` optimizer steps
    return _rates(timer.stamps, max(args.warmup // group, 1), batch_size * group)


def prepare_demo(tmp: str) -> str:
    from data_prep.prepare import prepare

    out = os.path.join(tmp, "demo")
    prepare("demo", out, progress=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="prepared dataset (default: the demo corpus, prepared into a temp dir)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 4096])
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="steps per run, one per batch size (default 600 at <= 512, else 60)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default: steps // 6)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--head", default="mixture")
    p.add_argument("--components", type=int, default=3)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--group", type=int, default=4,
                   help="also time Lightning with data.group_batches=GROUP (1: skip)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or [600 if b <= 512 else 60 for b in args.batch_sizes]
    if len(steps) == 1:
        steps = steps * len(args.batch_sizes)
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                           "lightning": pl.__version__},
               "config": {k: v for k, v in vars(args).items() if k != "json"}, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            args.data = prepare_demo(tmp)
        user_warmup = args.warmup
        for bs, n in zip(args.batch_sizes, steps):
            args.steps, args.warmup = n, (user_warmup or max(n // 6, 2))
            per = {"bare_dl": [], "bare_preloaded": [], "lightning": []}
            grouped = f"lightning_group{args.group}"
            if args.group > 1:
                per[grouped] = []
            runners = {
                "bare_dl": lambda: bare(args, bs, preload=False),
                "lightning": lambda: lightning(args, bs, tmp),
                "bare_preloaded": lambda: bare(args, bs, preload=True),
                grouped: lambda: lightning(args, bs, tmp, group=args.group),
            }
            for r in range(args.rounds):
                order = [k for k in per] if r % 2 == 0 else [k for k in reversed(per)]  # no position bias
                for k in order:
                    per[k].append(runners[k]())
                print(f"batch {bs} round {r}: " + ", ".join(
                    f"{k} {v[-1][0]:,.0f} (median step {v[-1][1]:,.0f})" for k, v in per.items()), flush=True)
            out = {}
            for i, kind in enumerate(("mean", "median_step")):
                med = {k: statistics.median(x[i] for x in v) for k, v in per.items()}
                # ratios paired within a round (the machine's speed drifts between rounds)
                for k in [k for k in per if k.startswith("lightning")]:
                    ratios = [a[i] / b[i] for a, b in zip(per[k], per["bare_dl"])]
                    med[f"{k}_vs_bare_dl"] = statistics.median(ratios)
                    med[f"{k}_vs_bare_dl_range"] = [min(ratios), max(ratios)]
                med["lightning_vs_bare_preloaded"] = statistics.median(
                    a[i] / b[i] for a, b in zip(per["lightning"], per["bare_preloaded"]))
                out[kind] = med
            results["runs"][str(bs)] = {"examples_per_s": per, **out}
    print(f"\nexamples/s, median over {args.rounds} interleaved rounds; 'mean' = examples / wall time, "
          "'median_step' = batch / median step time (robust to a busy machine); ratios: median "
          "(min-max) of the ratios within each round")
    g = f"lightning_group{args.group}"
    head = f"{'batch':>6} {'measure':>12} {'bare_preloaded':>15} {'bare_dl':>10} {'lightning':>10} "
    head += f"{'L/bare_dl (range)':>22}"
    if args.group > 1:
        head += f" {'L_group' + str(args.group):>10} {'Lg/bare_dl (range)':>22}"
    print(head)
    for bs, r in results["runs"].items():
        for kind in ("mean", "median_step"):
            m = r[kind]
            lo, hi = m["lightning_vs_bare_dl_range"]
            line = (f"{bs:>6} {kind:>12} {m['bare_preloaded']:>15,.0f} {m['bare_dl']:>10,.0f} "
                    f"{m['lightning']:>10,.0f} {m['lightning_vs_bare_dl']:>8.3f} ({lo:.2f}-{hi:.2f})")
            if args.group > 1:
                lo, hi = m[g + "_vs_bare_dl_range"]
                line += f" {m[g]:>10,.0f} {m[g + '_vs_bare_dl']:>8.3f} ({lo:.2f}-{hi:.2f})"
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
