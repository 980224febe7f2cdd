"""Exact resume, mid-epoch too: the training loader saves and restores its position.

Unit level: a :class:`ResumableLoader` restored from ``state_dict()`` hands out exactly the
rest of the interrupted epoch (whatever its workers had already prepared), and only for that
epoch; its batches are those of ``get_batch`` per sampler batch; without workers it gathers
in the training thread. End to end: ``waveform-mdn fit`` killed with SIGKILL at a step inside an epoch,
then resumed with ``--ckpt_path last``, ends with the metrics and the weights of the
uninterrupted run.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from waveform_mdn.data import NextSampleDataset
from waveform_mdn.batches import IndexBatchSampler, ResumableLoader
from waveform_mdn.datamodule import WaveformDataModule

REPO = Path(__file__).resolve().parents[1]


class _Indices:
    """A dataset whose batch is its example indices: the order is visible."""

    def __getitem__(self, idx):
        return {"target": idx.clone()}


def _epoch(loader: ResumableLoader, epoch: int, stop: int | None = None) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    out = []
    for i, batch in enumerate(loader):
        out.append(batch["target"].tolist())
        if stop is not None and i + 1 == stop:
            break
    return out


@pytest.mark.parametrize("group,workers", [(1, {}), (6, {}), (6, {"num_workers": 1, "persistent_workers": False}),
                                           (1, {"num_workers": 1, "persistent_workers": True})])
def test_restored_loader_continues_the_interrupted_epoch(group, workers):
    def loader():
        return ResumableLoader(_Indices(), IndexBatchSampler(1003, 50, shuffle=True, seed=7, group=group), **workers)

    straight = loader()
    whole = {e: _epoch(straight, e) for e in (0, 1, 2)}
    assert len(whole[1]) == len(straight) == 21 and whole[1] != whole[2]
    first = loader()
    _epoch(first, 0)
    done = _epoch(first, 1, stop=8)  # the workers have gathered further ahead: not counted
    state = first.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 8)

    resumed = loader()
    resumed.load_state_dict(state)
    rest = _epoch(resumed, 1)
    assert done + rest == whole[1]  # nothing repeated, nothing skipped
    assert len(resumed) == 21  # a whole epoch: Lightning counts the batches done before
    assert _epoch(resumed, 2) == whole[2]  # the next epoch starts at its first batch
    assert resumed.state_dict()["batches"] == 21

    other = loader()
    other.load_state_dict(state)
    assert _epoch(other, 2) == whole[2]  # a saved position is only for its own epoch


def test_a_different_batch_order_restarts_the_epoch_with_a_warning():
    a = ResumableLoader(_Indices(), IndexBatchSampler(1003, 50, shuffle=True, seed=7))
    _epoch(a, 0, stop=3)
    b = ResumableLoader(_Indices(), IndexBatchSampler(1003, 64, shuffle=True, seed=7))
    with pytest.warns(UserWarning, match="restarts from its first batch"):
        b.load_state_dict(a.state_dict())
    assert _epoch(b, 0) == _epoch(ResumableLoader(_Indices(), b.sampler), 0)


def test_a_position_saved_with_the_old_randperm_order_restarts_the_epoch():
    # checkpoints of the versions that shuffled with torch.randperm have no "order" in
    # their layout: the same numbers there meant other batches
    loader = ResumableLoader(_Indices(), IndexBatchSampler(1003, 50, shuffle=True, seed=7))
    old = {k: v for k, v in loader.sampler.layout().items() if k != "order"}
    with pytest.warns(UserWarning, match="restarts from its first batch"):
        loader.load_state_dict({"epoch": 0, "batches": 5, "layout": old})
    assert len(_epoch(loader, 0)) == 21


def test_loader_hands_out_exactly_the_batches_of_the_sampler(tiny):
    # several batches gathered by one get_batch call and cut apart: the same values as one
    # get_batch per batch, batch by batch
    ds = NextSampleDataset(tiny, "train")
    sampler = IndexBatchSampler(len(ds), 37, shuffle=True, seed=3)
    sampler.set_epoch(4)
    want = [ds.get_batch(idx) for idx in sampler]
    sampler.group = 5
    got = list(ResumableLoader(ds, sampler))
    assert len(got) == len(want) == len(sampler)
    for a, b in zip(got, want):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_without_workers_batches_are_gathered_in_the_training_thread(tiny):
    # no second busy thread competing with torch's intra-op threads
    dm = WaveformDataModule(str(tiny), batch_size=64)
    before = threading.active_count()
    it = iter(dm.train_dataloader())
    next(it)
    assert threading.active_count() == before
    it.close()


# -- end to end: SIGKILL inside an epoch, then --ckpt_path last --------------------------------
class KillAtStep(pl.Callback):
    """SIGKILL this process at the end of optimizer step ``step`` (before a checkpoint of that
    step is written: ModelCheckpoint runs after the other callbacks)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SaveFinalWeights(pl.Callback):
    """Saves the module's state when training ends. (last.ckpt is no fair comparison: after a
    resume, val/nll is unknown until the next validation, so ModelCheckpoint defers the
    final step's save to after that validation, whose buffers, e.g. the Gaussian's
    variance, have moved on; the uninterrupted run saved before it.)"""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, self.path)


EPOCH = 10  # batches per epoch (trainer.limit_train_batches)
EVERY = 5  # checkpoint.every_n_train_steps: mid-epoch checkpoints at steps 15 and 25
# ModelCheckpoint defers a step's save to the end of validation before the first validation
# (val/nll unknown) and on the last batch of an epoch (fresh val/nll follows): saves land at
# 10, 15, 20, 25, 30. A kill at a step of the window resumes from the checkpoint of step `from`
KILLS = {"mid epoch 1": (range(16, 20), 15), "mid last epoch": (range(26, 30), 25),
         "epoch 2 after its first checkpoint": (range(21, 25), 20)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, corpora) -> Path:
    return corpora.speech_like_prepared(tmp_path_factory.mktemp("resume_data"), n_utts=4)


def _fit(args: list[str], out: Path, name: str, tiny: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "waveform_mdn.train", "fit", "--config", str(REPO / f"recipes/demo/conf/{name}.yaml"),
           "--data.path", str(tiny), "--data.batch_size", "32", "--data.val_batch_size", "2048",
           "--data.val_stride", "1", "--model.hidden", "[32, 32]", "--num_threads", "1",
           "--trainer.max_epochs", "3", "--trainer.limit_train_batches", str(EPOCH),
           "--trainer.enable_progress_bar", "false", "--audio.every_n_epochs", "0",
           "--checkpoint.every_n_train_steps", str(EVERY), "--trainer.logger.init_args.save_dir", str(out),
           "--trainer.callbacks+=test_resume.SaveFinalWeights", "--trainer.callbacks.path", str(out / "final.pt"),
           *args, *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _ckpt(out: Path, name: str) -> dict:
    return torch.load(out / name / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def straight_runs(tiny, tmp_path_factory) -> dict[str, Path]:
    """The uninterrupted run of each head, made once."""
    runs = {}
    for name in ("mdn", "mlp"):
        out = tmp_path_factory.mktemp(f"straight_{name}")
        proc = _fit([], out, name, tiny)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = out
    return runs


@pytest.fixture(scope="module", params=[("mdn", "mid epoch 1"), ("mlp", "mid last epoch"),
                                        ("mdn", "epoch 2 after its first checkpoint")], ids=lambda p: "-".join(p))
def killed_and_resumed(request, tiny, straight_runs, tmp_path_factory):
    name, case = request.param
    window, resumed_from = KILLS[case]
    out = tmp_path_factory.mktemp(f"killed_{name}")
    kill_at = random.choice(window)
    killed = _fit(["--trainer.callbacks+=test_resume.KillAtStep", "--trainer.callbacks.step", str(kill_at)],
                  out, name, tiny)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-3000:])
    saved = _ckpt(out, name)
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert saved["global_step"] == resumed_from, (kill_at, saved["global_step"])
    epoch, done = divmod(resumed_from - 1, EPOCH)  # the loader's position: batches of its epoch handed out
    assert (loader["epoch"], loader["batches"]) == (epoch, done + 1), (kill_at, loader)
    resumed = _fit(["--ckpt_path", "last"], out, name, tiny)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return name, straight_runs[name], out, kill_at


def _curves(scalars, out: Path, name: str, tags) -> dict[str, dict[int, float]]:
    # the resumed run writes a second event file; a step logged twice keeps the later value
    return {t: dict(scalars(out / name / "run", t)) for t in tags}


def _csv_curves(out: Path, name: str, tags) -> dict[str, dict[int, float]]:
    # metrics.csv (the run contract): the resumed run appends; a step logged twice keeps the later value
    rows = list(csv.DictReader((out / name / "run" / "metrics.csv").open()))
    return {t: {int(r["step"]): float(r[t]) for r in rows if r.get(t)} for t in tags}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights_and_validation(killed_and_resumed, scalars):
    name, straight, killed, kill_at = killed_and_resumed
    assert _ckpt(straight, name)["global_step"] == _ckpt(killed, name)["global_step"] == 3 * EPOCH
    a, b = torch.load(straight / "final.pt"), torch.load(killed / "final.pt")
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), (k, kill_at)
    tags = ["val/nll", "val/mse", "val/mse_sample", "lr-Adam"]
    want, got = _curves(scalars, straight, name, tags), _curves(scalars, killed, name, tags)
    for t in tags:
        assert want[t] and got[t].keys() == want[t].keys(), (t, kill_at)
        for step, value in want[t].items():
            assert got[t][step] == pytest.approx(value, rel=1e-6, abs=1e-9), (t, step, kill_at)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_training_metrics(killed_and_resumed, scalars):
    # the epoch's running sums must be in the checkpoint too, or the interrupted epoch's
    # train/* average only the batches after the resume
    name, straight, killed, kill_at = killed_and_resumed
    tags = ["train/nll", "train/mse", "train/mse_sample"]
    want, got = _curves(scalars, straight, name, tags), _curves(scalars, killed, name, tags)
    want_csv, got_csv = _csv_curves(straight, name, tags + ["val/nll"]), _csv_curves(killed, name, tags + ["val/nll"])
    for t in tags:
        assert want[t] and got[t].keys() == want[t].keys(), (t, kill_at)
        for step, value in want[t].items():
            assert got[t][step] == pytest.approx(value, rel=1e-6, abs=1e-9), (t, step, kill_at)
    for t in want_csv:  # metrics.csv keeps the rows from before the kill
        assert want_csv[t] and got_csv[t] == pytest.approx(want_csv[t], rel=1e-6, abs=1e-9), (t, kill_at)
