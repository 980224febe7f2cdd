"""``waveform-mdn fit`` / ``validate``: LightningCLI over the model and the datamodule (docs/training.md)."""

from __future__ import annotations

import csv
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, LRSchedulerTypeTuple
from pytorch_lightning.loggers import CSVLogger
from torch.optim import Optimizer

from .callbacks import PredictionAudioLogger
from .cli import EXIT_NON_FINITE
from .contract import CHECKPOINT_DIR, MONITOR
from .data import PreparedDataset
from .datamodule import WaveformDataModule
from .heads import HEADS
from .models import DATA_HPARAMS, ConfigError, NonFiniteLossError, WaveformPredictor

TRAINER_DEFAULTS = {
    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "exp", "name": "waveform_mdn", "default_hp_metric": False}},
    "use_distributed_sampler": False,  # the datamodule's sampler shares the data out by rank
}
CHECKPOINT_DEFAULTS = {"monitor": MONITOR, "mode": "min", "filename": "best", "save_top_k": 1, "save_last": True,
                       "auto_insert_metric_name": False}


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` whose resumed run keeps the rows before the resume (CSVLogger deletes an
    existing metrics.csv): the curves in metrics.csv, like those in TensorBoard, span the run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._opened = False

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._opened:
            return super().experiment
        path = Path(self.log_dir) / "metrics.csv"
        rows = list(csv.DictReader(path.read_text().splitlines())) if path.is_file() else []
        writer, self._opened = super().experiment, True
        if rows:
            writer.metrics_keys = sorted(rows[0])
            with path.open("w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=writer.metrics_keys)
                out.writeheader()
                out.writerows(rows)
        return writer


class WaveformCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(PredictionAudioLogger, "audio")
        parser.add_argument("--num_threads", type=Optional[int], default=None,
                            help="torch intra-op threads (null: torch's default)")
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        parser.set_defaults({"optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}}})
        for key in DATA_HPARAMS:  # the data's hyperparameters: self-contained checkpoints
            parser.link_arguments("data", f"model.{key}", compute_fn=lambda dm, k=key: dm.data_hparams()[k],
                                  apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("model.head") not in HEADS:
            raise ConfigError(f"--model.head {cfg.get('model.head')!r}: unknown head; registered: {sorted(HEADS)}")
        PreparedDataset(cfg["data.path"])  # bad data is a one-line error, not a wrapped link failure
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))  # main() restores it
        if cfg.get("trainer.enable_progress_bar") is False and cfg.get("trainer.callbacks"):
            cfg["trainer.callbacks"] = [c for c in cfg["trainer.callbacks"]
                                        if not str(getattr(c, "class_path", "")).endswith("ProgressBar")]

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if self.subcommand in (None, "fit") and trainer.loggers:  # the run contract: metrics.csv beside the events
            first = trainer.loggers[0]
            run_csv = RunCSVLogger(first.save_dir or trainer.default_root_dir, name=first.name, version=first.version)
            trainer.loggers = [*trainer.loggers, run_csv]
        return trainer

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)  # LightningCLI reads --ckpt_path's hparams next: check it first
        path = self.config[self.config["subcommand"]].get("ckpt_path") if self.config.get("subcommand") else None
        if path and path not in ("best", "last", "hpc") and not path.startswith("registry"):
            _check_checkpoint(Path(path))

    def before_fit(self) -> None:
        """``--ckpt_path last``: the run's own last.ckpt must be readable too (a save cut short)."""
        callback, log_dir = self.trainer.checkpoint_callback, self.trainer.log_dir
        if self.config["fit"].get("ckpt_path") == "last" and callback is not None and log_dir is not None:
            last = Path(callback.dirpath or Path(log_dir) / CHECKPOINT_DIR)
            if (last / "last.ckpt").exists():
                _check_checkpoint(last / "last.ckpt")


def _check_checkpoint(path: Path) -> None:
    if not path.is_file() or not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise ConfigError(f"--ckpt_path {path}: no such file, or not a readable checkpoint")


def build_cli(argv: list[str] | None, run: bool = True) -> WaveformCLI:
    return WaveformCLI(WaveformPredictor, WaveformDataModule, args=argv, run=run, seed_everything_default=1234,
                       trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True},
                       parser_kwargs={"default_env": False})


def main(argv: list[str] | None = None) -> int:
    """``waveform-mdn fit ...``; ``argv`` may start with a subcommand (default ``fit``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("fit", "validate", "test", "predict", "-h", "--help", "--version"):
        argv = ["fit", *argv]
    for noise in ("LightningCLI's args parameter", r"isinstance\(treespec, LeafSpec\)", "does not have many workers",
                  "Experiment logs directory .* exists and is not empty"):  # RunCSVLogger keeps the rows
        warnings.filterwarnings("ignore", message=".*" + noise)
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]  # set by Lightning; without a GPU it costs 0.2 ms a step
    threads = torch.get_num_threads()
    try:
        build_cli(argv)
    except NonFiniteLossError as e:
        print(f"waveform-mdn fit: error: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except SystemExit as e:  # --help, --print_config, usage errors (2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    finally:
        torch.set_num_threads(threads)
        if dist.is_available() and dist.is_initialized():  # before teardown: a 2-node run once aborted there
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
