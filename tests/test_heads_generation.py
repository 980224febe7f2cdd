"""The new heads end to end: ``waveform-mdn fit --model.head NAME`` logs bits per sample
beside the NLL; the step-by-step generation of every head equals the teacher-forced
forward pass (mean, mode and every draw from the stream's noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_generate import W, _teacher_forced, _teacher_forced_params, make_model
from test_training import REPO, events, scalars
from waveform_mdn import generate as G
from waveform_mdn.data import PreparedDataset
from waveform_mdn.train import main as fit_main

NEW_HEADS = ["logistic_mixture", "mulaw_softmax"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: one OpenMP thread (conftest)


@pytest.mark.parametrize("head", NEW_HEADS + ["mixture"])
@pytest.mark.parametrize("mode", ["mean", "mode", "sample"])
def test_teacher_forced_generation_equals_forward_pass(prepared, head, mode):
    """Incremental (the engine, one step at a time, rows or tensor sampler) == the head's own
    functions of the forward pass's parameters and the stream's noise."""
    model = make_model(prepared, head)
    if head == "mixture":
        model.net.head.likelihood = "discretised"  # sampling does not depend on the loss
    if head == "mulaw_softmax":  # 256 classes: let the features, not the bias, pick the top one
        with torch.no_grad():
            model.net.head.proj.bias.zero_()
    n, seed = W + 500, 7
    head_fn = model.net.head
    params = tuple(p.float() for p in _teacher_forced_params(model, prepared, 1, n))
    noise = G.StreamNoise(head_fn, [seed], torch.device("cpu")).take(n)[W:, 0]
    with torch.no_grad():
        expect = (head_fn.mean_from_params(params) if mode == "mean" else head_fn.mode_from_params(params)
                  if mode == "mode" else head_fn.sample_from_noise(params, noise))
    for rows in (True, False):
        y = _teacher_forced(model, prepared, [1], [seed], n, mode=mode, row_sampler=rows)
        torch.testing.assert_close(y[0, W:], expect, atol=3e-5, rtol=3e-5)
    if not (mode == "mode" and head == "mulaw_softmax"):  # (an untrained softmax's top class rarely moves)
        assert float(expect.std()) > 1e-3 and np.unique(expect.numpy()).size > 3  # not a constant


@pytest.mark.parametrize("head", NEW_HEADS)
def test_free_running_draws_are_finite_and_vary(prepared, head):
    model = make_model(prepared, head, gain=2.0)
    items = [G.sequence_from_prepared(prepared, i) for i in range(2)]
    n = 400
    prime, _ = G.make_prime("noise", 2, W, prepared.mean, prepared.std, [0, 1])
    y = G.generate(model, G.sequence_contexts(items, n, "target", W), n, prime=prime, seed=[3, 4])
    assert torch.isfinite(y).all() and float(y.std()) > 0.01


@pytest.mark.parametrize("head,extra", [("logistic_mixture", []), ("mulaw_softmax", []),
                                        ("mixture", ["--model.likelihood", "discretised"])])
def test_fit_logs_bits_beside_the_nll(demo_prepared, tmp_path, head, extra):
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
    std = PreparedDataset(demo_prepared).std
    log_bin = math.log(1.0 / (32768 * std))
    # the relation holds for the mean over examples where the density is flat across bins
    assert bits[-1] == pytest.approx((nll[-1] - log_bin) / math.log(2), abs=0.05 if head == "mulaw_softmax" else 0.5)
    assert (run / "checkpoints" / "best.ckpt").is_file()
