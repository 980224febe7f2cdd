"""Names shared by training, generation and comparison: one place for each.

Metric tags are what the LightningModule logs and what ``compare`` reads; file names are
what ``fit`` and ``generate`` write and what ``compare`` looks for. Change them here only.
"""

from __future__ import annotations

STAGES = ("train", "val")
METRICS = ("bits_per_sample", "nll", "mse", "mse_sample")  #: per stage, epoch level
METRIC_TAGS = tuple(f"{stage}/{name}" for stage in STAGES for name in METRICS)
EPOCH_TAG = "epoch"  #: logged by Lightning with every metric; compare reads epochs from it
MONITOR = "val/nll"  #: what the best checkpoint is chosen by

AUDIO_TAGS = ("audio/target", "audio/teacher_forced_mean", "audio/teacher_forced_sample", "audio/free_running")
FIGURE_TAGS = ("figures/teacher_forced", "figures/free_running")

CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
HPARAMS_FILE = "hparams.yaml"  #: written by Lightning's loggers in the run (version) directory
CONFIG_FILE = "config.yaml"  #: written by LightningCLI
GENERATED_DIR = "generated"  #: <run>/generated/: where recipes generate and compare looks
MEASUREMENTS_FILE = "measurements.json"  #: in a generation directory
REFERENCE_DIR = "reference"  #: natural audio beside generated audio
