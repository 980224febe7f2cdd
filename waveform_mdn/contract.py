"""Names shared by training, generation and comparison: the run contract (docs/comparison.md)."""

METRICS = ("bits_per_sample", "nll", "mse", "mse_sample")  #: logged per epoch, as train/<name> and val/<name>
METRIC_TAGS = tuple(f"{stage}/{name}" for stage in ("train", "val") for name in METRICS)
JUDGE_TAGS = ("audio/dnsmos_ovrl", "audio/phone_error_rate")  #: the audio callback's judges of its clips
MONITOR = "val/nll"  #: what the best checkpoint is chosen by

CHECKPOINT_DIR = "checkpoints"
HPARAMS_FILE = "hparams.yaml"  #: Lightning's, in the run (logger's log_dir) directory
METRICS_FILE = "metrics.csv"  #: the CSVLogger's, beside TensorBoard's: columns epoch, step and the tags
MEASUREMENTS_FILE = "measurements.json"  #: in a generation directory
REFERENCE_DIR = "reference"  #: natural audio beside generated audio
