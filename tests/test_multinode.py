"""More than one machine: ``waveform-mdn fit`` under ``torchrun`` as 2 nodes x 1 process on
localhost (two torchrun launches, c10d rendezvous, gloo, loopback only). Both launches
must join one 2-process job; its validation metrics must equal a single-process validation
of the weights it saved (the method of tests/test_ddp.py), and its training must equal a
single process's with the global batch (same weights, same train and val metrics)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from waveform_mdn import train
from waveform_mdn.data import NextSampleDataset

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(node_rank: int, port: int, fit_args: list[str], log: Path) -> subprocess.Popen:
    """One "node": the command docs/training.md shows, on the loopback interface only."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
           "--rdzv_id", "waveform-mdn-test", "--local_addr", "127.0.0.1", "--max_restarts", "0",
           "-m", "waveform_mdn.cli", "fit", *fit_args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _two_nodes(fit_args: list[str], logs: Path) -> tuple[list[int], str]:
    """Both launches to the end: their exit codes and their output."""
    port = _free_port()
    logs.parent.mkdir(parents=True, exist_ok=True)
    paths = [logs.with_name(f"{logs.name}_node{r}.log") for r in (0, 1)]
    nodes = [_torchrun(r, port, fit_args, paths[r]) for r in (0, 1)]
    try:
        codes = [p.wait(timeout=400) for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    return codes, "\n".join(p.read_text() for p in paths)


class KillNodeAtStep(pl.Callback):
    """SIGKILL this node (its torchrun and its process) at the end of optimizer step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getppid(), signal.SIGKILL)  # the node's torchrun agent
            os.kill(os.getpid(), signal.SIGKILL)


def test_two_nodes_under_torchrun_give_the_single_process_metrics(tmp_path, corpora, scalars):
    tiny = corpora.speech_like_prepared(tmp_path, n_utts=4)
    assert len(NextSampleDataset(tiny, "valid")) % 2 == 1  # uneven shards: a padding sampler would duplicate one
    common = ["--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--data.path", str(tiny),
              "--data.val_batch_size", "700", "--data.val_stride", "1", "--trainer.enable_progress_bar", "false"]
    fit = [*common, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "1",
           "--trainer.num_nodes", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "12",
           "--data.batch_size", "32", "--model.hidden", "[32, 32]", "--audio.every_n_epochs", "0",
           "--trainer.logger.init_args.save_dir", str(tmp_path / "nodes")]
    codes, both = _two_nodes(fit, tmp_path / "fit")
    assert codes == [0, 0], both[-6000:]
    assert "distributed_backend=gloo" in both and "Starting with 2 processes" in both, both[-3000:]
    assert "MEMBER: 1/2" in both and "MEMBER: 2/2" in both, both[-3000:]  # one process per launch, one job

    run = tmp_path / "nodes" / "mdn" / "run"
    nodes_metrics = {t: scalars(run, t)[-1][1] for t in ("val/nll", "val/mse")}
    assert [s for s, _ in scalars(run, "val/nll")] == [11]  # 12 steps of a global batch of 2 x 32
    rc = train.main(["validate", *common, "--model.hidden", "[32, 32]",
                     "--ckpt_path", str(run / "checkpoints/last.ckpt"),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "single")])
    assert rc == 0
    single = {t: scalars(tmp_path / "single" / "mdn" / "run", t)[-1][1] for t in ("val/nll", "val/mse")}
    assert single["val/nll"] == pytest.approx(nodes_metrics["val/nll"], rel=1e-5, abs=1e-6)
    assert single["val/mse"] == pytest.approx(nodes_metrics["val/mse"], rel=1e-5, abs=1e-7)

    # and the training itself: rank r takes every 2nd example of the epoch's permutation from
    # r on, so the 2 x 32 examples of a step are those of one process's batch of 64
    one = tmp_path / "one"
    rc = train.main(["fit", *common, "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                     "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "12", "--data.batch_size", "64", "--model.hidden", "[32, 32]",
                     "--audio.every_n_epochs", "0", "--trainer.logger.init_args.save_dir", str(one)])
    assert rc == 0
    for t in ("val/nll", "val/mse", "train/nll", "train/mse"):
        assert scalars(one / "mdn" / "run", t) == [(11, pytest.approx(scalars(run, t)[-1][1], rel=1e-5, abs=1e-6))], t
    a = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(one / "mdn/run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    for k in a:  # the weights and the epoch's training sums; mse_sample draws from per-rank streams
        if not k.startswith("train_metrics.mse_sample."):
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_nodes_killed_inside_an_epoch_resume_exactly(tmp_path, corpora, scalars):
    # both nodes SIGKILLed at a random step inside epoch 1, then both relaunched with
    # --ckpt_path last: the same end as the uninterrupted 2-node run
    tiny = corpora.speech_like_prepared(tmp_path, n_utts=4)
    fit = ["--config", str(REPO / "recipes/demo/conf/mdn.yaml"), "--data.path", str(tiny),
           "--data.val_batch_size", "700", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
           "--trainer.strategy", "ddp", "--trainer.devices", "1", "--trainer.num_nodes", "2",
           "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "10", "--data.batch_size", "32",
           "--model.hidden", "[32, 32]", "--audio.every_n_epochs", "0", "--checkpoint.every_n_train_steps", "5"]

    def run(out: Path, *extra: str) -> tuple[list[int], str]:
        return _two_nodes([*fit, "--trainer.logger.init_args.save_dir", str(out),
                           "--trainer.callbacks+=test_resume.SaveFinalWeights",
                           "--trainer.callbacks.path", str(out / "final.pt"), *extra], out / "log")

    codes, log = run(tmp_path / "straight")
    assert codes == [0, 0], log[-6000:]
    kill_at = random.choice(range(16, 20))  # the checkpoint of step 15 (epoch 1, batch 5) is the last one
    codes, log = run(tmp_path / "killed", "--trainer.callbacks+=test_multinode.KillNodeAtStep",
                     "--trainer.callbacks.step", str(kill_at))
    # each node kills its torchrun agent and its process; an agent whose peer's store went
    # first may exit with an error instead: either way both nodes ended at that step
    assert 0 not in codes and -signal.SIGKILL in codes, (codes, kill_at, log[-6000:])
    saved = torch.load(tmp_path / "killed/mdn/run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (saved["global_step"], loader["epoch"], loader["batches"]) == (15, 1, 5), kill_at
    codes, log = run(tmp_path / "killed", "--ckpt_path", "last")
    assert codes == [0, 0], (kill_at, log[-6000:])

    a, b = torch.load(tmp_path / "straight/final.pt"), torch.load(tmp_path / "killed/final.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), (k, kill_at)
    for t in ("val/nll", "val/mse", "train/nll", "train/mse"):
        want, got = dict(scalars(tmp_path / "straight/mdn/run", t)), dict(scalars(tmp_path / "killed/mdn/run", t))
        assert got.keys() == want.keys() == {9, 19}, t
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-9), (t, step, kill_at)
