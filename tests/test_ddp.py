"""Real DDP: two CPU processes (gloo) train through the CLI on a tiny dataset; the validation
metrics they log must equal a single-process validation of the same weights (sums and
counts reduced across ranks, no padding duplicates); killed inside an epoch and resumed,
they log the training metrics of the uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from waveform_mdn import train
from waveform_mdn.data import NextSampleDataset

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,  # real 2-process gloo runs
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, corpora) -> Path:
    return corpora.speech_like_prepared(tmp_path_factory.mktemp("ddp_data"), n_utts=4)


@pytest.mark.parametrize("name", ["mlp", "mdn"])
def test_ddp_validation_metrics_equal_single_process(tiny, tmp_path, name, scalars):
    n_valid = len(NextSampleDataset(tiny, "valid"))
    assert n_valid % 2 == 1  # uneven shards: a padding sampler would duplicate an example
    common = [
        "--config", str(REPO / "recipes/demo/conf" / f"{name}.yaml"), "--data.path", str(tiny),
        "--data.val_batch_size", "700", "--data.val_stride", "1", "--trainer.enable_progress_bar", "false",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "waveform_mdn.train", "fit", *common,
         "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "12", "--data.batch_size", "32",
         "--trainer.logger.init_args.save_dir", str(tmp_path / "ddp"),
         "--audio.every_n_epochs", "1", "--audio.seconds", "0.05"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log, log[-3000:]
    run = tmp_path / "ddp" / name / "run"
    ddp = {t: scalars(run, t)[-1][1] for t in ("val/nll", "val/mse", "val/mse_sample", "train/nll", "train/mse")}
    assert all(v == v for v in ddp.values())
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.exists()

    rc = train.main(["validate", *common, "--trainer.logger.init_args.save_dir", str(tmp_path / "single"),
                     "--ckpt_path", str(ckpt)])
    assert rc == 0
    single = {t: scalars(tmp_path / "single" / name / "run", t)[-1][1] for t in ("val/nll", "val/mse",
                                                                                  "val/mse_sample")}
    assert single["val/nll"] == pytest.approx(ddp["val/nll"], rel=1e-5, abs=1e-6)
    assert single["val/mse"] == pytest.approx(ddp["val/mse"], rel=1e-5, abs=1e-7)
    # one draw per example, from rank-dependent streams: equal in distribution only
    assert single["val/mse_sample"] == pytest.approx(ddp["val/mse_sample"], rel=0.15)


class KillAtStep(pl.Callback):
    """SIGKILL this process at the end of optimizer step ``step`` (every rank does)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def test_ddp_mid_epoch_resume_keeps_the_epochs_training_sums(tiny, tmp_path, scalars):
    """A checkpoint written inside an epoch holds that epoch's training sums so far, summed
    over the ranks, and the resumed run adds them once (rank 0): train/* of the interrupted
    epoch equal those of the uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}

    def fit(save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "waveform_mdn.train", "fit", "--config", str(REPO / "recipes/demo/conf/mdn.yaml"),
             "--data.path", str(tiny), "--data.batch_size", "32", "--data.val_batch_size", "2048",
             "--model.hidden", "[32, 32]", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "10",
             "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
             "--trainer.enable_progress_bar", "false", "--audio.every_n_epochs", "0",
             "--checkpoint.every_n_train_steps", "5", "--trainer.logger.init_args.save_dir", str(save_dir), *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
        )

    straight = fit(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = fit(tmp_path / "killed", "--trainer.callbacks+=test_ddp.KillAtStep", "--trainer.callbacks.step", "17")
    assert killed.returncode != 0
    ckpt = torch.load(tmp_path / "killed/mdn/run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 15 and ckpt["state_dict"]["train_metrics.mse.weight"] == 5 * 32 * 2  # both ranks
    resumed = fit(tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for tag in ("train/nll", "train/mse", "train/mse_sample", "val/nll"):
        want = dict(scalars(tmp_path / "straight/mdn/run", tag))
        got = dict(scalars(tmp_path / "killed/mdn/run", tag))  # a step logged twice keeps the later value
        assert want.keys() == got.keys() and len(want) == 2, tag
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=1e-6), (tag, step)
