"""The new heads end to end: ``waveform-mdn fit --model.head NAME`` logs bits per sample
beside the NLL (their generation: ``test_generate.py``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from waveform_mdn.data import PreparedDataset
from waveform_mdn.train import main as fit_main

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("head,extra", [("logistic_mixture", []), ("mulaw_softmax", []),
                                        ("mixture", ["--model.likelihood", "discretised"])])
def test_fit_logs_bits_beside_the_nll(demo_prepared, tmp_path, events, scalars, head, extra):
    """A real `waveform-mdn fit` of each head: bits per sample fall, lie in (0, 16], and
    for a density much wider than a bin equal (NLL - ln 2h) / ln 2."""
    rc = fit_main(["fit", "--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--data.path", str(demo_prepared),
                   "--model.head", head, *extra, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "40",
                   "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", head,
                   "--trainer.enable_progress_bar", "false", "--audio.every_n_epochs", "100",
                   "--data.val_stride", "16", "--checkpoint.monitor", "val/bits_per_sample"])
    assert rc == 0
    run = tmp_path / head / "run"
    tags = set().union(*(ea.Tags()["scalars"] for ea in events(run)))
    assert {"train/bits_per_sample", "val/bits_per_sample", "val/nll", "train/nll"} <= tags
    bits = [v for _, v in scalars(run, "val/bits_per_sample")]
    nll = [v for _, v in scalars(run, "val/nll")]
    assert 0 < bits[-1] < 16 and bits[-1] < bits[0]
    std = PreparedDataset(demo_prepared).normalisation.std
    log_bin = math.log(1.0 / (32768 * std))
    # the relation holds for the mean over examples where the density is flat across bins
    assert bits[-1] == pytest.approx((nll[-1] - log_bin) / math.log(2), abs=0.05 if head == "mulaw_softmax" else 0.5)
    assert (run / "checkpoints" / "best.ckpt").is_file()
