"""Training options set on the ``fit`` command line, checked against what they must do:
AdamW and SGD with momentum (each update recomputed here from the recorded gradients with
the optimizers' published formulas), LinearAnnealLR's learning rate per epoch, activations
other than tanh, exit status 3 on a non-finite loss, ``num_workers > 0`` (the same weights
as in-process loading)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from waveform_mdn import train
from waveform_mdn.data import NextSampleDataset, PreparedDataset

pytestmark = pytest.mark.filterwarnings("ignore:.*LightningCLI's args parameter")


class Recorder(pl.Callback):
    """The parameters and gradients before each optimizer step, the lr of each epoch."""

    def __init__(self):
        self.params, self.grads, self.lrs = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.params.append([p.detach().double().clone() for p in pl_module.parameters()])
        self.grads.append([p.grad.detach().double().clone() for p in pl_module.parameters()])

    def on_train_end(self, trainer, pl_module):
        self.params.append([p.detach().double().clone() for p in pl_module.parameters()])


def fit_in_process(path, tmp, *args: str, steps: int | None = 3, epochs: int = 1):
    """``waveform-mdn fit``'s own LightningCLI with ``args``, a small model, no gradient
    clipping, a Recorder; returns (cli, recorder)."""
    argv = ["--data.path", str(path), "--model.head", "mixture", "--model.hidden", "[16]",
            "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(epochs), "--trainer.limit_val_batches", "0",
            "--trainer.logger.init_args.save_dir", str(tmp), "--trainer.default_root_dir", str(tmp), "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", "--trainer.gradient_clip_val", "null",
            "--num_threads", "1", "--data.batch_size", "32", "--seed_everything", "5", *args]
    if steps is not None:
        argv += ["--trainer.max_steps", str(steps)]
    cli = train.build_cli(argv, run=False)
    rec = Recorder()
    cli.trainer.callbacks.append(rec)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, rec


def test_adamw_from_the_command_line_is_adamw(demo_prepared, tmp_path):
    """Three AdamW steps (lr 0.01, decoupled weight decay 0.1) equal the published update
    computed here from the gradients: p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)."""
    lr, wd, (b1, b2), eps = 0.01, 0.1, (0.9, 0.999), 1e-8
    cli, rec = fit_in_process(demo_prepared, tmp_path, "--optimizer", "torch.optim.AdamW", "--optimizer.lr",
                              str(lr), "--optimizer.weight_decay", str(wd))
    assert type(cli.trainer.optimizers[0]) is torch.optim.AdamW
    p = rec.params[0]
    m = [torch.zeros_like(x) for x in p]
    v = [torch.zeros_like(x) for x in p]
    for t, g in enumerate(rec.grads, start=1):
        new = []
        for i, (x, gi) in enumerate(zip(p, g)):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            step = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
            new.append(x * (1 - lr * wd) - lr * step)
        for a, b in zip(new, rec.params[t]):
            torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
        p = rec.params[t]
    assert len(rec.grads) == 3


def test_sgd_momentum_from_the_command_line(demo_prepared, tmp_path):
    """SGD with momentum 0.9 (lr 0.05): b <- 0.9 b + g (b = g at the first step), p <- p - lr b."""
    lr, mu = 0.05, 0.9
    cli, rec = fit_in_process(demo_prepared, tmp_path, "--optimizer", "torch.optim.SGD", "--optimizer.lr", str(lr),
                              "--optimizer.momentum", str(mu))
    assert type(cli.trainer.optimizers[0]) is torch.optim.SGD
    buf = None
    for t, g in enumerate(rec.grads):
        buf = [gi.clone() for gi in g] if buf is None else [mu * b + gi for b, gi in zip(buf, g)]
        for x, b, after in zip(rec.params[t], buf, rec.params[t + 1]):
            torch.testing.assert_close(after, x - lr * b, atol=1e-6, rtol=1e-5)
    moved = [(a - b).abs().max() for a, b in zip(rec.params[-1], rec.params[-2])]
    assert max(moved) > 1e-4  # the steps did something


def test_linear_anneal_from_the_command_line(demo_prepared, tmp_path):
    """``--lr_scheduler waveform_mdn.schedules.LinearAnnealLR`` start 1, end 3: the lr is
    constant until epoch 1, then falls linearly to 0 at epoch 3."""
    lr = 0.002
    _, rec = fit_in_process(demo_prepared, tmp_path, "--optimizer", "torch.optim.SGD", "--optimizer.lr", str(lr),
                            "--lr_scheduler", "waveform_mdn.schedules.LinearAnnealLR",
                            "--lr_scheduler.start_epoch", "1", "--lr_scheduler.end_epoch", "3",
                            "--trainer.limit_train_batches", "2", steps=None, epochs=4)
    np.testing.assert_allclose(rec.lrs, [lr, lr, lr / 2, 0.0], atol=1e-12)


@pytest.mark.parametrize("activation,module", [("relu", nn.ReLU), ("gelu", nn.GELU), ("sigmoid", nn.Sigmoid)])
def test_activations_other_than_tanh_train(demo_prepared, tmp_path, activation, module):
    """The trunk uses the activation given: after training, the network's mixture mean on
    real examples equals the one written here with that function."""
    cli, rec = fit_in_process(demo_prepared, tmp_path, "--model.activation", activation, "--optimizer.lr", "0.01")
    net = cli.model.net.eval()
    acts = [m for m in net.modules() if isinstance(m, (nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid))]
    assert acts and all(type(m) is module for m in acts)
    assert any((a - b).abs().max() > 0 for a, b in zip(rec.params[0], rec.params[-1]))
    batch = NextSampleDataset(PreparedDataset(demo_prepared), "valid").get_batch(torch.arange(0, 3000, 20))
    f = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "sigmoid": torch.sigmoid}[activation]
    with torch.no_grad():
        y = net.head.mean_from_params(net.params(batch))
        h = f(batch["window"] @ net.window_proj.weight.t() + net.context_bias(batch["phone"], batch["next_phone"]))
        for lin in [m for m in net.trunk if isinstance(m, nn.Linear)]:
            h = f(lin(h))
        out = net.head.proj(h)
    K = net.head.components
    expect = (torch.softmax(out[:, :K], -1) * out[:, K : 2 * K]).sum(-1)
    torch.testing.assert_close(y, expect, atol=2e-5, rtol=2e-5)


def test_fit_exits_with_status_3_on_a_nonfinite_loss(demo_prepared, tmp_path, capsys):
    """An lr of 3e38 (about the float32 maximum) makes the weights overflow at the first
    step: the next step's loss is not finite, ``fit`` says so on stderr and returns 3."""
    rc = train.main(["fit", "--data.path", str(demo_prepared), "--model.hidden", "[16]",
                     "--trainer.accelerator", "cpu", "--trainer.max_steps", "5",
                     "--trainer.limit_val_batches", "0", "--trainer.logger.init_args.save_dir", str(tmp_path),
                     "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", "--num_threads", "1",
                     "--optimizer", "torch.optim.SGD", "--optimizer.lr", "3e38"])
    err = capsys.readouterr().err
    assert rc == 3, err[-2000:]
    assert "non-finite training loss or gradient" in err and "global step 1" in err
    assert "Traceback" not in err


@pytest.mark.slow  # two worker processes are started
def test_num_workers_give_the_same_training(demo_prepared, tmp_path):
    """``--data.num_workers 2`` loads the same batches: the same weights after 4 steps."""
    _, alone = fit_in_process(demo_prepared, tmp_path / "w0", steps=4)
    _, workers = fit_in_process(demo_prepared, tmp_path / "w2", "--data.num_workers", "2", steps=4)
    for a, b in zip(alone.params[-1], workers.params[-1]):
        assert torch.equal(a, b)
    assert math.isfinite(float(sum(p.sum() for p in workers.params[-1])))
