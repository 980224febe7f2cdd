"""``waveform-mdn fit``: LightningCLI over :class:`WaveformPredictor` and :class:`WaveformDataModule`.

Usage (see ``docs/training.md``)::

    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --data.path data/demo
    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --print_config
    waveform-mdn fit --config recipes/demo/conf/mdn.yaml --ckpt_path last     # resume
    waveform-mdn validate --config recipes/demo/conf/mdn.yaml --ckpt_path exp/demo/mdn/run/checkpoints/best.ckpt

Besides LightningCLI's ``trainer``, ``model``, ``data``, ``seed_everything`` and
``ckpt_path``, three callbacks are always present and configured in their own sections:
``checkpoint`` (ModelCheckpoint: ``best.ckpt`` by ``val/nll`` and ``last.ckpt``),
``lr_monitor`` (LearningRateMonitor) and ``audio`` (PredictionAudioLogger). The optimizer
and the learning-rate schedule are LightningCLI's own ``optimizer:`` and ``lr_scheduler:``
sections (default: Adam, lr 0.001, constant); gradient clipping is Lightning's
``trainer.gradient_clip_val``. The data's hyperparameters (window, phone set,
normalisation, fingerprint...) are linked from the datamodule to the model's init
arguments, so they are saved in every checkpoint.

Bad input is a one-line error, before any work (exit status 2): an unknown
``--model.head``, a ``--ckpt_path`` that is missing or not a readable checkpoint, a
``--data.path`` that is not prepared data. A non-finite loss exits with status 3.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, LRSchedulerTypeTuple
from torch.optim import Optimizer

from .callbacks import PredictionAudioLogger
from .contract import CHECKPOINT_DIR, LAST_CHECKPOINT, MONITOR
from .datamodule import WaveformDataModule
from .heads import HEADS
from .models import DATA_HPARAMS, ConfigError, NonFiniteLossError, WaveformPredictor

SUBCOMMANDS = ("fit", "validate", "test", "predict")

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "exp", "name": "waveform_mdn", "default_hp_metric": False},
    },
    "log_every_n_steps": 50,
}
#: used when a config has no `optimizer:` section
DEFAULT_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}}
#: --ckpt_path values that Lightning resolves itself
CKPT_NAMES = ("last", "best", "hpc", "registry")


def _data_value(key: str):
    def value(datamodule: WaveformDataModule) -> Any:
        return datamodule.data_hparams()[key]

    return value


def check_checkpoint(ckpt_path: str | None) -> None:
    """``--ckpt_path`` must be a readable checkpoint file (or one of Lightning's names)."""
    if ckpt_path is None or ckpt_path in CKPT_NAMES or str(ckpt_path).startswith("registry:"):
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such checkpoint file")
    try:  # memory-mapped: reads the index, not the tensors; no code runs (weights_only)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 (truncated, not a zip archive, not a torch file...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--ckpt_path {path}: not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")


def ckpt_path_argument(argv: list[str]) -> str | None:
    """The value of ``--ckpt_path`` on the command line (the last one wins), if any."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--ckpt_path" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--ckpt_path="):
            value = arg.split("=", 1)[1]
    return value if value not in ("null", "None", "") else None


class WaveformCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": MONITOR,
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
        # LightningCLI's own optimizer and lr_scheduler sections, with a default optimizer
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        parser.set_defaults({"optimizer": DEFAULT_OPTIMIZER})
        # the data's hyperparameters become the model's init arguments (self-contained checkpoints)
        for key in DATA_HPARAMS:
            parser.link_arguments("data", f"model.{key}", compute_fn=_data_value(key), apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("model.head") not in HEADS:
            raise ConfigError(f"--model.head {cfg.get('model.head')!r}: unknown head; registered: {sorted(HEADS)}")
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))  # the CLI entry's choice; main() restores it
        callbacks = cfg.get("trainer.callbacks")
        if cfg.get("trainer.enable_progress_bar") is False and callbacks:
            # `--trainer.enable_progress_bar false` wins over a progress bar configured in a recipe
            cfg["trainer.callbacks"] = [
                c for c in callbacks if not str(getattr(c, "class_path", "")).endswith("ProgressBar")
            ]

    def before_fit(self) -> None:
        """``--ckpt_path last``: the run's own last.ckpt must be readable too (a killed save)."""
        cfg = self.config[self.subcommand]
        if cfg.get("ckpt_path") != "last" or self.trainer.checkpoint_callback is None:
            return
        dirpath = self.trainer.checkpoint_callback.dirpath
        if dirpath is None and self.trainer.logger is not None and self.trainer.logger.log_dir is not None:
            dirpath = Path(self.trainer.logger.log_dir) / CHECKPOINT_DIR  # where ModelCheckpoint will look
        if dirpath is not None and (Path(dirpath) / LAST_CHECKPOINT).is_file():
            check_checkpoint(str(Path(dirpath) / LAST_CHECKPOINT))


def build_cli(argv: list[str] | None, run: bool = True) -> WaveformCLI:
    return WaveformCLI(
        WaveformPredictor,
        WaveformDataModule,
        args=argv,
        run=run,
        seed_everything_default=1234,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
    )


def _with_subcommand(argv: list[str]) -> list[str]:
    if argv and argv[0] in SUBCOMMANDS:
        return argv
    if argv and argv[0] in ("-h", "--help", "--version"):
        return argv
    return ["fit", *argv]


def user_error(e: BaseException) -> BaseException | None:
    """The user error (a bad setting or file: ConfigError, FileNotFoundError) behind ``e``,
    which may be wrapped by jsonargparse (``raise ... from``); None for anything else."""
    while e is not None:
        if isinstance(e, (ConfigError, FileNotFoundError)):
            return e
        e = e.__cause__
    return None


def _plain_cuda_check_without_gpus() -> None:
    """Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that a CUDA check
    does not initialise CUDA before DDP forks). Without a GPU there is nothing to protect,
    and with a CUDA build of torch every ``torch.cuda.is_available()`` then probes NVML
    again: the optimizers call it on every step (about 0.2 ms, 9% of a batch-128 step on a
    CPU). Only this CLI entry point changes it, and only where no GPU exists."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


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
    _plain_cuda_check_without_gpus()
    try:
        check_checkpoint(ckpt_path_argument(argv))  # before LightningCLI reads the file
        build_cli(argv)
    except NonFiniteLossError as e:
        print(f"waveform-mdn fit: {e}", file=sys.stderr)
        return 3
    except SystemExit as e:  # --help, --print_config, argument errors
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 (only user errors are caught; the rest is re-raised)
        user = user_error(e)
        if user is None:
            raise
        print(f"waveform-mdn fit: error: {user}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Destroy the DDP process group this run created, if any, before the interpreter exits:
    left to interpreter teardown, its store connection can outlive the other node's agent
    and abort the process (``terminate called without an active exception``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
