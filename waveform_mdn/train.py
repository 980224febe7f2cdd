"""``waveform-mdn fit``: LightningCLI over :class:`WaveformPredictor` and :class:`WaveformDataModule`.

Usage (see ``docs/training.md``)::

    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --data.path data/demo
    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --print_config
    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --ckpt_path last     # resume
    waveform-mdn validate --config recipes/demo/conf/mdn.yaml --ckpt_path exp/demo/mdn/run/checkpoints/best.ckpt

Besides LightningCLI's ``trainer``, ``model``, ``data``, ``seed_everything`` and
``ckpt_path``, three callbacks are always present and configured in their own sections:
``checkpoint`` (ModelCheckpoint: ``best.ckpt`` by ``val/nll`` and ``last.ckpt``),
``lr_monitor`` (LearningRateMonitor) and ``audio`` (PredictionAudioLogger).
"""

from __future__ import annotations

import sys
import warnings
from typing import Optional

import torch

from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from .callbacks import PredictionAudioLogger
from .datamodule import WaveformDataModule
from .models import NonFiniteLossError, WaveformPredictor

SUBCOMMANDS = ("fit", "validate", "test", "predict")

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "exp", "name": "waveform_mdn", "default_hp_metric": False},
    },
    "log_every_n_steps": 50,
}


class WaveformCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/nll",
            "checkpoint.mode": "min",
            "checkpoint.filename": "best",
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": True,
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(PredictionAudioLogger, "audio")
        parser.add_argument(
            "--num_threads", type=Optional[int], default=None,
            help="torch intra-op threads (null: torch's default, one per core). 1 is often fastest "
                 "for these small models on a CPU shared with data gathering or other jobs.",
        )

    def before_instantiate_classes(self) -> None:
        # The model optimises manually (several steps per Lightning batch are possible), so
        # Lightning's own clipping is unavailable: trainer.gradient_clip_val is handed to the model.
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))
        callbacks = cfg.get("trainer.callbacks")
        if cfg.get("trainer.enable_progress_bar") is False and callbacks:
            # `--trainer.enable_progress_bar false` wins over a progress bar configured in a recipe
            cfg["trainer.callbacks"] = [
                c for c in callbacks if not str(getattr(c, "class_path", "")).endswith("ProgressBar")
            ]
        clip = cfg.get("trainer.gradient_clip_val")
        if clip:
            if cfg.get("model.gradient_clip_val") is None:
                cfg["model.gradient_clip_val"] = clip
                cfg["model.gradient_clip_algorithm"] = cfg.get("trainer.gradient_clip_algorithm") or "norm"
            cfg["trainer.gradient_clip_val"] = None
            cfg["trainer.gradient_clip_algorithm"] = None


def build_cli(argv: list[str] | None, run: bool = True) -> WaveformCLI:
    return WaveformCLI(
        WaveformPredictor,
        WaveformDataModule,
        args=argv,
        run=run,
        seed_everything_default=1234,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"default_env": False},
    )


def _with_subcommand(argv: list[str]) -> list[str]:
    if argv and argv[0] in SUBCOMMANDS:
        return argv
    if argv and argv[0] in ("-h", "--help", "--version"):
        return argv
    return ["fit", *argv]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``waveform-mdn fit ...``; returns the exit status.

    ``argv`` may start with a LightningCLI subcommand (``fit``, ``validate``); without one
    it means ``fit``.
    """
    argv = _with_subcommand(list(sys.argv[1:] if argv is None else argv))
    # noise: we do pass args (from waveform-mdn's own CLI); a Lightning/torch deprecation
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    threads = torch.get_num_threads()  # `num_threads` changes it for this run only
    try:
        build_cli(argv)
    except NonFiniteLossError as e:
        print(f"waveform-mdn fit: {e}", file=sys.stderr)
        return 3
    except FileNotFoundError as e:  # e.g. --data.path is not a prepared dataset
        print(f"waveform-mdn fit: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --print_config, argument errors
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
