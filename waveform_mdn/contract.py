"""Names shared by training, generation and comparison: the run contract (docs/comparison.md)."""

STAGES = ("train", "val")
METRICS = ("bits_per_sample", "nll", "mse", "mse_sample")  #: per stage, epoch level
METRIC_TAGS = tuple(f"{stage}/{name}" for stage in STAGES for name in METRICS)
EPOCH_TAG, STEP_TAG = "epoch", "step"  #: columns Lightning writes into metrics.csv with every row
MONITOR = "val/nll"  #: what the best checkpoint is chosen by

CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
HPARAMS_FILE = "hparams.yaml"  #: Lightning's, in the run (logger's log_dir) directory
METRICS_FILE = "metrics.csv"  #: the CSVLogger's, beside TensorBoard's event files
GENERATED_DIR = "generated"  #: <run>/generated/: where recipes generate and compare looks
MEASUREMENTS_FILE = "measurements.json"  #: in a generation directory
REFERENCE_DIR = "reference"  #: natural audio beside generated audio
