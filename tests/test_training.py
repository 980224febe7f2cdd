"""Training: the CLI on the demo corpus (both heads), TensorBoard tags, self-contained
checkpoints, exact resume, reproducibility, the NaN policy, learning-rate annealing,
gradient accumulation and clipping, one-line errors, the samplers and the batch loader."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger

from waveform_mdn import callbacks as audio_callbacks
from waveform_mdn import cli, train
from waveform_mdn.batches import IndexBatchSampler
from waveform_mdn.data import PreparedDataset
from waveform_mdn.datamodule import WaveformDataModule
from waveform_mdn.models import NonFiniteLossError, WaveformPredictor
from waveform_mdn.schedules import LinearAnnealLR

REPO = Path(__file__).resolve().parents[1]
SR = 16000
METRIC_TAGS = [f"{s}/{m}" for s in ("train", "val") for m in ("bits_per_sample", "nll", "mse", "mse_sample")]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory, corpora) -> Path:
    return corpora.speech_like_prepared(tmp_path_factory.mktemp("synth"))


def make_trainer(tmp: Path, version: str, max_epochs: int, callbacks=(), limit_train_batches=20, **kw):
    return pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=limit_train_batches,
        logger=TensorBoardLogger(str(tmp), name="runs", version=version, default_hp_metric=False),
        callbacks=[ModelCheckpoint(monitor="val/nll", mode="min", filename="best", save_last=True),
                   LearningRateMonitor(), *callbacks],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=5, **kw,
    )


def make(path: Path, head: str = "mixture", optimizer=torch.optim.Adam, lr: float = 3e-3,
         anneal: tuple[int, int] | None = None, batch_size: int = 32, **model_kw):
    """A small model on ``path`` with the data's hyperparameters, and an optimizer (and LR
    schedule) configured the way LightningCLI's ``optimizer:``/``lr_scheduler:`` do."""
    dm = WaveformDataModule(str(path), batch_size=batch_size, val_batch_size=1000, seed=0)
    model = WaveformPredictor(**dm.data_hparams(), head=head, hidden=[32, 32], **model_kw)
    opt = optimizer(model.parameters(), lr=lr)
    sched = LinearAnnealLR(opt, *anneal) if anneal else None
    model.configure_optimizers = lambda: LightningCLI.configure_optimizers(model, opt, sched)
    return model, dm


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- the CLI on the demo corpus, both heads -----------------------------------------------
@pytest.fixture(scope="module")
def demo_runs(demo_prepared, tmp_path_factory) -> dict[str, Path]:
    """Both recipes through the CLI, shortened; the untrained model is validated first."""
    tmp = tmp_path_factory.mktemp("demo_runs")
    runs = {}
    for name in ("mlp", "mdn"):
        common = [
            "--config", str(REPO / "recipes/demo/conf" / f"{name}.yaml"), "--data.path", str(demo_prepared),
            "--trainer.logger.init_args.save_dir", str(tmp), "--data.val_stride", "16",
            "--trainer.enable_progress_bar", "false",
        ]
        rc = train.main(["validate", *common, "--trainer.logger.init_args.version", "untrained"])
        assert rc == 0
        rc = train.main([
            "fit", *common, "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "100",
            "--lr_scheduler.init_args.start_epoch", "2", "--lr_scheduler.init_args.end_epoch", "4",
            "--audio.every_n_epochs", "2", "--audio.seconds", "0.25",
        ])
        assert rc == 0
        runs[name] = tmp / name / "run"
    return runs


@pytest.mark.parametrize("name", ["mlp", "mdn"])
def test_demo_fit_validation_nll_falls(demo_runs, name, scalars):
    untrained = scalars(demo_runs[name].parent / "untrained", "val/nll")[0][1]
    nll = [v for _, v in scalars(demo_runs[name], "val/nll")]
    assert len(nll) == 4 and all(math.isfinite(v) for v in nll)
    assert nll[-1] < untrained - 0.3, (untrained, nll)
    assert min(nll[1:]) < nll[0], nll
    train_nll = [v for _, v in scalars(demo_runs[name], "train/nll")]
    assert train_nll[-1] < train_nll[0], train_nll


@pytest.mark.parametrize("name", ["mlp", "mdn"])
def test_tensorboard_tags(demo_runs, name, events, scalars):
    accs = events(demo_runs[name])
    tags = {kind: set().union(*(ea.Tags()[kind] for ea in accs)) for kind in ("scalars", "audio", "images")}
    assert set(METRIC_TAGS) <= tags["scalars"]
    assert "lr-Adam" in tags["scalars"] and "epoch" in tags["scalars"]
    # the recipe's optimizer (Adam, its lr) and LinearAnnealLR(start 2, end 4) from the command line
    base = yaml.safe_load((REPO / f"recipes/demo/conf/{name}.yaml").read_text())["optimizer"]["init_args"]["lr"]
    lr = [v for _, v in sorted(scalars(demo_runs[name], "lr-Adam"))]
    assert lr == pytest.approx([base, base, base, base / 2])
    assert {"audio/target", "audio/teacher_forced_mean", "audio/teacher_forced_sample",
            "audio/free_running"} <= tags["audio"]
    assert {"figures/teacher_forced", "figures/free_running"} <= set(tags["images"])
    hp = set().union(*(ea.PluginTagToContent("hparams").keys() for ea in accs))
    assert "_hparams_/experiment" in hp and "_hparams_/session_start_info" in hp
    info = [ea.PluginTagToContent("hparams")["_hparams_/session_start_info"] for ea in accs
            if "_hparams_/session_start_info" in ea.PluginTagToContent("hparams")][0]
    assert (b"mixture" if name == "mdn" else b"gaussian") in info and b"data_fingerprint" in info


def test_checkpoints_are_self_contained(demo_runs, demo_prepared):
    prepared = PreparedDataset(demo_prepared)
    for name in ("mlp", "mdn"):
        ckpts = demo_runs[name] / "checkpoints"
        assert (ckpts / "best.ckpt").exists() and (ckpts / "last.ckpt").exists()
        model = WaveformPredictor.load_from_checkpoint(ckpts / "last.ckpt", map_location="cpu")
        hp = model.hparams
        assert hp.data_fingerprint == prepared.fingerprint
        assert (hp.window, hp.n_phone_ids, hp.sample_rate) == (240, prepared.n_phone_ids, prepared.sample_rate)
        assert hp.norm_mean == pytest.approx(prepared.normalisation.mean) and hp.norm_std == pytest.approx(prepared.normalisation.std)
        assert hp.phones == prepared.phones and hp.phone_context == "target" and hp.pad == "skip"
        assert model.net is not None and model.hparams.head == ("gaussian" if name == "mlp" else "mixture")
        # hparams.yaml (what `waveform-mdn compare` reads) has the data's values too
        logged = yaml.safe_load((demo_runs[name] / "hparams.yaml").read_text())
        assert logged["data_fingerprint"] == prepared.fingerprint and logged["norm_std"] == pytest.approx(prepared.normalisation.std)
        assert logged["head"] == hp.head


@pytest.mark.parametrize("name", ["mlp", "mdn"])
def test_run_folder_has_the_curves_in_metrics_csv(demo_runs, scalars, name):
    """The run contract: the CSVLogger's metrics.csv beside the events, with the same values."""
    rows = list(csv.DictReader((demo_runs[name] / "metrics.csv").open()))
    assert {"epoch", "step", *METRIC_TAGS} <= set(rows[0])
    for tag in METRIC_TAGS:
        logged = [(int(r["step"]), float(r[tag])) for r in rows if r[tag]]
        assert len(logged) == 4, tag
        assert logged == [(step, pytest.approx(v, rel=1e-6)) for step, v in scalars(demo_runs[name], tag)], tag


def test_mlp_nll_uses_the_training_mse(demo_runs, scalars):
    """val/nll of the MLP = NLL of Normal(mean, sqrt(train MSE)), from the logged numbers."""
    run = demo_runs["mlp"]
    model = WaveformPredictor.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    var = float(model.net.head.var)
    train_mse = scalars(run, "train/mse")[-1][1]
    val_mse = scalars(run, "val/mse")[-1][1]
    val_nll = scalars(run, "val/nll")[-1][1]
    assert var == pytest.approx(train_mse, rel=1e-5)
    assert val_nll == pytest.approx(0.5 * math.log(2 * math.pi * var) + val_mse / (2 * var), rel=1e-5)
    assert float(model.net.head.valid_mse) == pytest.approx(val_mse, rel=1e-5)
    train_nll = scalars(run, "train/nll")[-1][1]
    assert train_nll == pytest.approx(0.5 * math.log(2 * math.pi * train_mse) + 0.5, rel=1e-5)


def test_a_nonfinite_or_zero_training_mse_leaves_the_mlp_variance_unchanged():
    """The MLP's noise variance takes the epoch's training MSE only when it is finite and > 0."""
    model = WaveformPredictor(head="gaussian", hidden=[8], window=16, n_phone_ids=5)
    var = model.net.head.var
    for mse, expected in ((float("nan"), 1.0), (float("inf"), 1.0), (0.0, 1.0), (0.25, 0.25),
                          (float("nan"), 0.25), (0.0, 0.25)):
        model.train_metrics["mse"].reset()
        model.train_metrics["mse"].update(torch.full((4,), mse))
        model._set_variance()
        assert float(var) == expected, mse


def test_validate_subcommand_and_print_config(demo_runs, demo_prepared, capsys, tmp_path):
    run = demo_runs["mdn"]
    rc = train.main([
        "validate", "--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--data.path", str(demo_prepared),
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),  # config.yaml goes there
        "--trainer.limit_val_batches", "1", "--data.val_batch_size", "512",
        "--trainer.enable_progress_bar", "false", "--ckpt_path", str(run / "checkpoints" / "best.ckpt"),
    ])
    assert rc == 0
    assert (tmp_path / "config.yaml").exists()
    capsys.readouterr()
    assert train.main(["--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "head: mixture" in out and "monitor: val/nll" in out and "path: data/demo" in out


@pytest.mark.parametrize("conf", sorted(str(p.relative_to(REPO)) for p in REPO.glob("recipes/*/conf/*.yaml")))
def test_recipe_configs_parse(conf, capsys):
    assert train.main(["fit", "--config", str(REPO / conf), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "head:" in out and "lr:" in out


# -- resume, accumulation, clipping, NaN policy, learning rate, audio --------------------------
class _Crash(Exception):
    pass


class _CrashAtEpoch(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise _Crash(f"killed at the start of epoch {self.epoch}")


@pytest.mark.parametrize("head", ["gaussian", "mixture"])
def test_resume_after_kill_continues_the_same_run(synth, tmp_path, head, scalars):
    pl.seed_everything(7)
    model_a, dm = make(synth, head, anneal=(1, 4))
    make_trainer(tmp_path, "straight", 4).fit(model_a, datamodule=dm)

    pl.seed_everything(7)
    model_b, dm = make(synth, head, anneal=(1, 4))
    with pytest.raises(_Crash):
        make_trainer(tmp_path, "killed", 4, callbacks=[_CrashAtEpoch(2)]).fit(model_b, datamodule=dm)
    assert (tmp_path / "runs/killed/checkpoints/last.ckpt").exists()

    pl.seed_everything(123)  # a resumed process does not share the killed one's RNG state
    model_c, dm = make(synth, head, anneal=(1, 4))
    trainer = make_trainer(tmp_path, "killed", 4)
    trainer.fit(model_c, datamodule=dm, ckpt_path="last")
    assert trainer.current_epoch == 4 and trainer.global_step == 4 * 20
    a, c = state(model_a), state(model_c)
    assert a.keys() == c.keys()
    for k in a:
        assert torch.equal(a[k], c[k]), k
    # the resumed run logs the same curves as the uninterrupted one
    for tag in METRIC_TAGS + ["lr-Adam"]:
        straight = dict(scalars(tmp_path / "runs/straight", tag))
        resumed = dict(scalars(tmp_path / "runs/killed", tag))
        assert straight.keys() == resumed.keys(), tag
        for step in straight:
            assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-9), (tag, step)


def test_accumulate_grad_batches_equals_one_larger_batch(synth, tmp_path):
    """trainer.accumulate_grad_batches works: 2 x 16 examples accumulated make the same SGD
    updates as batches of 32 (the same examples: the permutation depends on the seed only)."""
    results = []
    for batch_size, accumulate in ((32, 1), (16, 2)):
        pl.seed_everything(3)
        model, dm = make(synth, "mixture", optimizer=torch.optim.SGD, lr=0.05, batch_size=batch_size)
        trainer = make_trainer(tmp_path, f"acc{accumulate}", 1, limit_train_batches=12 * accumulate,
                               accumulate_grad_batches=accumulate)
        trainer.fit(model, datamodule=dm)
        results.append((state(model), trainer.global_step))
    (a, steps_a), (b, steps_b) = results
    assert steps_a == steps_b == 12
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_gradient_clipping_is_lightnings(synth, tmp_path):
    """trainer.gradient_clip_val reaches the update: one SGD step of lr 1 moves the weights by
    exactly the clipped norm."""
    pl.seed_everything(0)
    model, dm = make(synth, "mixture", optimizer=torch.optim.SGD, lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(tmp_path, "clip", 1, limit_train_batches=1, limit_val_batches=0, gradient_clip_val=1e-3)
    trainer.fit(model, datamodule=dm)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert float(moved) == pytest.approx(1e-3, rel=1e-3)


class _PoisonAtStep(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.net.window_proj.weight[0, 0] = float("nan")


def test_nonfinite_loss_stops_the_run_with_a_message(synth, tmp_path):
    model, dm = make(synth, "mixture")
    trainer = make_trainer(tmp_path, "nan", 3, callbacks=[_PoisonAtStep(25)])
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit(model, datamodule=dm)
    msg = str(e.value)
    assert "epoch 1" in msg and "global step 25" in msg and "last.ckpt" in msg and "--ckpt_path last" in msg


class _PoisonBatchAtStep(pl.Callback):
    """Makes one step non-finite: ``field`` "target" plants ``value`` in the batch (the loss
    is not finite), "grad" in one gradient after the backward pass (the loss is finite);
    records the weights and the optimizer state before that step and after it."""

    def __init__(self, step: int, field: str = "target", value: float = float("nan")):
        self.step, self.field, self.value = step, field, value
        self.before = self.after = None

    @staticmethod
    def snapshot(trainer, pl_module):
        weights = {k: v for k, v in state(pl_module).items() if not k.startswith("train_metrics.")}
        return weights, copy.deepcopy(trainer.optimizers[0].state_dict())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and self.before is None:
            self.before = self.snapshot(trainer, pl_module)
            if self.field == "target":
                batch["target"][0] = self.value

    def on_after_backward(self, trainer, pl_module):
        if self.field == "grad" and trainer.global_step == self.step:
            pl_module.net.window_proj.weight.grad[0, 0] = self.value

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.before is not None and self.after is None:
            self.after = self.snapshot(trainer, pl_module)


def assert_same_state(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}/{i}")
    else:
        assert a == b, where


@pytest.mark.parametrize("field,value,clip", [
    ("target", float("inf"), {}), ("target", float("nan"), {}), ("grad", float("nan"), {}),
    ("grad", float("inf"), {"gradient_clip_val": 1.0}),  # clipping by norm shares the checked norm
    ("grad", float("inf"), {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"}),  # would make it finite
])
def test_a_nonfinite_step_is_never_applied(synth, tmp_path, field, value, clip):
    """A step with a non-finite loss or gradient stops the run before the update, with or
    without clipping: it changes neither the weights nor Adam's moments and step count."""
    model, dm = make(synth, "mixture")
    poison = _PoisonBatchAtStep(3, field, value)
    trainer = make_trainer(tmp_path, f"checked_{field}", 1, callbacks=[poison], limit_train_batches=8, **clip)
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        trainer.fit(model, datamodule=dm)
    weights, opt = poison.before
    assert opt["state"] and all(int(s["step"]) == 3 for s in opt["state"].values())  # Adam had moved before
    assert_same_state(poison.snapshot(trainer, model), poison.before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_learning_rate_anneals_linearly_after_start(synth, tmp_path):
    seen = {}

    class _Rec(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault(trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"])

    model, dm = make(synth, "gaussian", optimizer=torch.optim.SGD, lr=0.01, anneal=(2, 5))
    make_trainer(tmp_path, "lr", 5, callbacks=[_Rec()], limit_train_batches=2).fit(model, datamodule=dm)
    # full rate for epochs 0, 1 and 2, then (5 - e) / (5 - 2) of it: 2/3, 1/3
    assert [seen[e] for e in range(5)] == pytest.approx([0.01, 0.01, 0.01, 0.01 * 2 / 3, 0.01 / 3])
    # the schedule from a config file: LightningCLI builds the same scheduler
    assert [LinearAnnealLR(torch.optim.SGD([torch.zeros(1)], lr=1.0), 2, 5).factor(e) for e in range(7)] == \
        pytest.approx([1, 1, 1, 2 / 3, 1 / 3, 0, 0])


class _RecordingAudioLogger(audio_callbacks.PredictionAudioLogger):
    """Records, when the free-running clip is made, the MSEs the Gaussian head holds."""

    seen: list[tuple[int, float, float]] = []

    def log_free_running(self, writer, dm, pl_module, step):
        head = pl_module.net.head
        self.seen.append((pl_module.current_epoch, float(head.valid_mse), float(head.var)))


def test_free_running_clip_uses_this_validations_mse(synth, tmp_path, scalars):
    """Bug 4: the MLP's free-running clip is generated with the validation MSE just computed
    (and the training MSE of this epoch), not the previous validation's."""
    model, dm = make(synth, "gaussian")
    audio = _RecordingAudioLogger(every_n_epochs=1, seconds=0.02, figure=False)
    audio.seen = []
    make_trainer(tmp_path, "audio", 2, callbacks=[audio], limit_train_batches=4).fit(model, datamodule=dm)
    val_mse = [v for _, v in scalars(tmp_path / "runs/audio", "val/mse")]
    assert [e for e, _, _ in audio.seen] == [0, 1]
    assert [v for _, v, _ in audio.seen] == pytest.approx(val_mse, rel=1e-5)
    assert audio.seen[0][2] != 1.0  # the variance was set from this epoch's training MSE


def test_bf16_mixed_precision_runs(synth, tmp_path):
    model, dm = make(synth, "mixture")
    trainer = make_trainer(tmp_path, "bf16", 1, precision="bf16-mixed", limit_train_batches=5)
    trainer.fit(model, datamodule=dm)
    assert all(math.isfinite(float(trainer.callback_metrics[t])) for t in METRIC_TAGS)


def test_metrics_do_not_depend_on_the_validation_batch_size(synth, tmp_path):
    values = []
    for vbs in (97, 5000):
        pl.seed_everything(0)
        model, dm = make(synth, "mixture")
        dm.hparams.val_batch_size = vbs
        trainer = make_trainer(tmp_path, f"v{vbs}", 1)
        trainer.validate(model, datamodule=dm, verbose=False)
        assert trainer.val_dataloaders.sampler.batch_size == vbs  # the setting reached the loader
        values.append({t: float(trainer.callback_metrics[t]) for t in ("val/nll", "val/mse")})
    for t in values[0]:
        assert values[0][t] == pytest.approx(values[1][t], rel=1e-5)


# -- samplers and the loader --------------------------------------------------------------
def test_train_sampler_shards_and_seeds():
    n, world = 1003, 3
    shards = []
    for rank in range(world):
        s = IndexBatchSampler(n, 50, shuffle=True, seed=5, rank=rank, world_size=world)
        s.set_epoch(2)
        shards.append(torch.cat(list(s)))
        assert len(list(s)) == len(s)
    assert len({len(x) for x in shards}) == 1  # equal length on every rank
    allidx = torch.cat(shards)
    assert len(allidx) == len(set(allidx.tolist())) == (n // world) * world
    s = IndexBatchSampler(n, 50, shuffle=True, seed=5, rank=0, world_size=1)
    s.set_epoch(0)
    e0 = torch.cat(list(s))
    s.set_epoch(1)
    e1 = torch.cat(list(s))
    s.set_epoch(0)
    assert torch.equal(torch.cat(list(s)), e0) and not torch.equal(e0, e1)
    assert sorted(e0.tolist()) == list(range(n))


@pytest.mark.parametrize("n,world,bs,stride", [(1003, 2, 128, 1), (1003, 3, 100, 1), (7, 4, 2, 1),
                                               (4096, 2, 4096, 1), (5, 1, 10, 1), (1003, 2, 50, 7)])
def test_val_sampler_covers_every_example_once(n, world, bs, stride):
    per_rank = []
    for rank in range(world):
        s = IndexBatchSampler(n, bs, shuffle=False, rank=rank, world_size=world, stride=stride)
        batches = list(s)
        assert len(batches) == len(s)
        assert all(len(b) <= bs for b in batches)
        per_rank.append(batches)
    assert len({len(b) for b in per_rank}) == 1  # same number of batches on every rank
    allidx = torch.cat([torch.cat(b) for b in per_rank])
    assert sorted(allidx.tolist()) == list(range(0, n, stride))  # no padding, no duplicates


def test_fit_on_a_path_that_is_not_prepared_data_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["fit", "--config", str(REPO / "recipes" / "demo" / "conf" / "mlp.yaml"),
                     "--data.path", str(tmp_path / "nope"),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'}: not a prepared dataset (no meta.json)" in err


def test_fit_with_an_unknown_head_is_a_clear_error(tmp_path, capsys, synth):
    rc = cli.main(["fit", "--config", str(REPO / "recipes" / "demo" / "conf" / "mlp.yaml"),
                     "--data.path", str(synth), "--model.head", "foo",
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'foo'" in err and "gaussian" in err and "mixture" in err, err
    assert not (tmp_path / "runs").exists()  # before any work


@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint", "missing"])
def test_fit_from_a_bad_checkpoint_is_a_clear_error(tmp_path, capsys, synth, damage):
    ckpt = tmp_path / "broken.ckpt"
    if damage == "truncated":
        model, _ = make(synth, "gaussian")
        torch.save({"state_dict": model.state_dict(), "epoch": 0}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "not_a_checkpoint":
        ckpt.write_text("hello\n")
    rc = cli.main(["fit", "--config", str(REPO / "recipes" / "demo" / "conf" / "mlp.yaml"),
                     "--data.path", str(synth), "--ckpt_path", str(ckpt),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ckpt) in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # before any work


def test_resume_from_a_truncated_last_checkpoint_is_a_clear_error(tmp_path, capsys, synth):
    run = tmp_path / "runs" / "mlp" / "run" / "checkpoints"
    model, _ = make(synth, "gaussian")
    run.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "epoch": 0}, run / "last.ckpt")
    (run / "last.ckpt").write_bytes((run / "last.ckpt").read_bytes()[:1000])  # a save cut short
    rc = cli.main(["fit", "--config", str(REPO / "recipes" / "demo" / "conf" / "mlp.yaml"),
                     "--data.path", str(synth), "--ckpt_path", "last",
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / "last.ckpt") in err, err


def test_a_checkpoint_on_data_with_another_window_is_a_clear_error(demo_runs, demo_prepared, capsys, tmp_path):
    ckpt = demo_runs["mdn"] / "checkpoints" / "best.ckpt"
    rc = cli.main(["validate", "--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--data.path",
                     str(demo_prepared), "--data.window", "120", "--ckpt_path", str(ckpt),
                     "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.enable_progress_bar", "false"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "window=240" in err and "window=120" in err, err
