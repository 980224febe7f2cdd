"""``waveform-mdn compare`` on runs written by Lightning's own loggers: fake curves through
TensorBoardLogger.log_metrics, event files written record by record with SummaryWriter,
and real tiny Trainer runs (TensorBoardLogger + CSVLogger, resumed runs); the tables are
checked against known answers and against the files read directly."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from waveform_mdn import compare
from waveform_mdn.compare import CompareError, DataMismatchError, compare_runs, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Known validation curves: value per epoch. Minima (value, epoch) are checked below.
MLP = {
    "val/mse": [0.05, 0.03, 0.0222, 0.025, 0.024, 0.026],
    "val/mse_sample": [0.10, 0.07, 0.05, 0.045, 0.044, 0.046],
    "val/nll": [-0.5, -1.0, -1.2, -1.29, -1.25, -1.2],
}
MDN = {
    "val/mse": [0.06, 0.04, 0.035, 0.0324, 0.033, 0.034, 0.0335, 0.034],
    "val/mse_sample": [0.12, 0.09, 0.08, 0.075, 0.07, 0.068, 0.069, 0.07],
    "val/nll": [-0.3, -0.5, -0.6, -0.7, -0.75, -0.77, float("nan"), -0.91],
}
STEPS_PER_EPOCH = 37
FP = "fp-aa-0001"


def _write_run(save_dir: Path, name: str, version: int, hparams: dict, curves: dict,
               epoch_tag: bool = True, train: bool = True) -> Path:
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(save_dir), name=name, version=version,
                               default_hp_metric=False)
    logger.log_hyperparams(hparams)
    n = len(next(iter(curves.values())))
    for e in range(n):
        step = STEPS_PER_EPOCH * (e + 1) - 1
        if train:  # training epoch-level metrics in their own call, like Lightning
            tr = {t.replace("val/", "train/"): c[e] * 0.9 for t, c in curves.items()
                  if t.startswith("val/") and math.isfinite(c[e])}
            logger.log_metrics({**tr, **({"epoch": e} if epoch_tag else {})}, step=step)
        val = {t: c[e] for t, c in curves.items()}
        logger.log_metrics({**val, **({"epoch": e} if epoch_tag else {})}, step=step)
    logger.save()
    logger.finalize("success")
    return Path(logger.log_dir)


def _hp_mlp(fp=FP):
    # top level, no "components" (defaults to 1 for gaussian), a tuple as Lightning writes it
    return {"head": "gaussian", "data_fingerprint": fp, "norm_mean": 0.001, "norm_std": 0.05,
            "hidden": (300, 300), "lr": 1e-3}


def _hp_mdn(fp=FP):
    # nested under "model", as LightningCLI-style configs do
    return {"model": {"head": "mixture", "components": 3, "data_fingerprint": fp,
                      "norm_mean": 0.001, "norm_std": 0.05, "hidden": (300, 300), "lr": 5e-4}}


def _write_generated(gen_dir: Path, ref_dir: Path, head: str, kurt: float, n: int = 2) -> Path:
    import soundfile as sf

    gen_dir.mkdir(parents=True, exist_ok=True)
    ref_dir.mkdir(parents=True, exist_ok=True)
    sr = 16000
    t = np.arange(1600) / sr
    files = []
    for i in range(n):
        wav = gen_dir / f"sample_{i}.wav"
        ref = ref_dir / f"ref_{i}.wav"
        sf.write(wav, 0.3 * np.sin(2 * np.pi * 120 * t), sr)
        if not ref.exists():
            sf.write(ref, 0.3 * np.sin(2 * np.pi * 110 * t), sr)
        files.append({
            "wav": wav.name, "reference": os.path.relpath(ref, gen_dir), "clipped": i,
            "rms_db": -13.0 - i, "kurtosis": kurt + i, "periodicity": 0.8, "f0_mean_hz": 120.0,
            "voiced_fraction": 0.9, "lsd_db": 5.0 + i, "mcd_db": 6.0, "f0_rmse_hz": 10.0,
            "voicing_agreement": 0.95, "f0_corr": None,
            "ref_rms_db": -13.5, "ref_kurtosis": 1.5, "ref_periodicity": 0.85,
            "ref_f0_mean_hz": 110.0, "ref_voiced_fraction": 0.92,
        })
    (gen_dir / "measurements.json").write_text(json.dumps({
        "checkpoint": "last.ckpt", "data_fingerprint": FP, "head": head,
        "settings": {"temperature": 1.0, "seconds": 0.1}, "files": files}))
    return gen_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    logs = root / "logs"
    # mlp: version_2 (older, worse), version_10 (the one to pick: numeric, not lexical order),
    # version_11 (hparams only, no event files: to be skipped)
    _write_run(logs, "mlp", 2, _hp_mlp(), {t: [v + 1 for v in c] for t, c in MLP.items()})
    _write_run(logs, "mlp", 10, _hp_mlp(), MLP)
    (logs / "mlp" / "version_11").mkdir()
    (logs / "mlp" / "version_11" / "hparams.yaml").write_text("head: gaussian\n")
    mdn_v0 = _write_run(logs, "mdn", 0, _hp_mdn(), MDN)
    _write_generated(logs / "mdn" / "generated", root / "refs", "mixture", kurt=9.0)
    gen_mlp = _write_generated(root / "gen_mlp", root / "refs", "gaussian", kurt=3.0)
    other = _write_run(logs, "other", 0, _hp_mlp(fp="fp-other-9999"), MLP)
    return {"root": root, "mlp": logs / "mlp", "mdn": logs / "mdn", "mdn_v0": mdn_v0,
            "gen_mlp": gen_mlp, "other": other, "logs": logs}


def _is_png(path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    if path.read_bytes()[:8] != PNG_MAGIC:
        return False
    img = mpimg.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def _md_links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", md)


def test_resolve_run_dir_picks_highest_numbered_version_with_events(runs):
    chosen, note = compare.resolve_run_dir(runs["mlp"])
    assert chosen.name == "version_10"
    assert "version_10" in note and "version_11 without event files" in note
    chosen, note = compare.resolve_run_dir(runs["mdn_v0"])
    assert chosen == runs["mdn_v0"] and note is None
    with pytest.raises(CompareError, match="no TensorBoard event files"):
        compare.resolve_run_dir(runs["root"] / "refs")


def test_compare_runs_api(runs, tmp_path):
    out = tmp_path / "report"
    res = compare_runs([runs["mlp"], runs["mdn"]], out)
    assert [r["name"] for r in res["runs"]] == ["mlp", "mdn"]
    mlp, mdn = res["runs"]
    assert Path(mlp["version_dir"]).name == "version_10"
    assert (mlp["model"], mlp["components"], mdn["model"], mdn["components"]) == ("MLP", 1, "MDN", 3)
    m = mlp["metrics"]
    assert m["val/mse"]["min"] == pytest.approx(0.0222) and m["val/mse"]["min_epoch"] == 2
    assert m["val/mse_sample"]["min"] == pytest.approx(0.044) and m["val/mse_sample"]["min_epoch"] == 4
    assert m["val/nll"]["min"] == pytest.approx(-1.29) and m["val/nll"]["min_epoch"] == 3
    assert m["val/mse"]["final"] == pytest.approx(0.026) and mlp["epochs"] == 6
    assert m["val/mse"]["min_step"] == STEPS_PER_EPOCH * 3 - 1
    d = mdn["metrics"]
    assert d["val/mse"]["min"] == pytest.approx(0.0324) and d["val/mse"]["min_epoch"] == 3
    assert d["val/mse_sample"]["min"] == pytest.approx(0.068) and d["val/mse_sample"]["min_epoch"] == 5
    assert d["val/nll"]["min"] == pytest.approx(-0.91) and d["val/nll"]["min_epoch"] == 7
    assert d["val/nll"]["nonfinite"] == 1 and mdn["epochs"] == 8
    assert d["train/mse"]["min"] == pytest.approx(0.0324 * 0.9)
    assert any("non-finite" in n for n in mdn["notes"])

    # files: table.csv (one row per run), summary.json, PNGs, report.md
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 2
    assert rows[0]["name"] == "mlp" and float(rows[0]["min_val_mse"]) == pytest.approx(0.0222)
    assert rows[1]["min_val_nll_epoch"] == "7"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 2 and summary["same_data"] is True
    assert _is_png(out / "curves.png") and _is_png(out / "generated.png")

    # printed table: header + rule + one line per run, aligned
    lines = res["table"].splitlines()
    assert len(lines) == 2 + 2 and lines[2].startswith("mlp") and lines[3].startswith("mdn")
    assert "0.0222 (2)" in lines[2] and "-1.29 (3)" in lines[2] and "-0.91 (7)" in lines[3]
    assert len({len(ln) for ln in lines}) == 1  # right-aligned last column: same width

    md = (out / "report.md").read_text()
    assert "![validation and training curves](curves.png)" in md
    assert "version_10" in md and "highest-numbered" in md
    assert "- mlp: no generated audio" in md  # mlp dir holds no measurements.json
    assert "natural speech" in md
    links = _md_links(md)
    wav_links = [ln for ln in links if ln.endswith(".wav")]
    assert len(wav_links) == 2 + 2 + 2  # 2 mdn samples + 2 references inline + reference list
    for ln in links:
        assert not ln.startswith("/") and not re.match(r"\w+://", ln), ln
        assert (out / ln).exists(), ln
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_cli_with_names_and_generated(runs, tmp_path, capsys):
    out = tmp_path / "cli_report"
    rc = main(["compare", str(runs["mlp"]), str(runs["mdn"]), "--out", str(out),
               "--names", "MLP-aa,MDN-aa-K3", "--generated", str(runs["gen_mlp"]), "-"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split()[:3] == ["name", "head", "K"]
    assert lines[2].startswith("MLP-aa") and "0.0222 (2)" in lines[2]
    assert lines[3].startswith("MDN-aa-K3") and "0.0324 (3)" in lines[3]
    assert "report:" in captured.out
    md = (out / "report.md").read_text()
    assert "no generated audio" not in md
    assert "#### MLP-aa" in md and "#### MDN-aa-K3" in md
    gen_section = md.split("## Generated audio")[1].split("### WAV files")[0]
    gen_table = [ln for ln in gen_section.splitlines() if ln.startswith("| ")]
    assert [ln.split("|")[1].strip() for ln in gen_table[1:]] == [
        "MLP-aa", "MDN-aa-K3", "natural speech"]
    nat = next(ln for ln in gen_table if ln.startswith("| natural speech"))
    assert "| 2 |" in nat and "1.5" in nat  # two distinct references, ref kurtosis 1.5
    for ln in _md_links(md):
        assert (out / ln).exists(), ln
    assert _is_png(out / "curves.png")

    # a second run into the same directory replaces the files
    rc = main(["compare", str(runs["mlp"]), str(runs["mdn"]), "--out", str(out)])
    assert rc == 0
    md2 = (out / "report.md").read_text()
    assert "- mlp: no generated audio" in md2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "report.html", "media", "table.csv", "summary.json", "curves.png", "generated.png"])
    # the page now shows only mdn's audio: MLP-aa's copies are gone with the old media/
    assert sorted(p.name for p in (out / "media").iterdir()) == ["1", "ref"]


def test_different_data_refused(runs, tmp_path, capsys):
    from waveform_mdn.cli import main as waveform_mdn_main  # the `waveform-mdn` command

    out = tmp_path / "refused"
    rc = waveform_mdn_main(["compare", str(runs["mlp"]), str(runs["other"]), "--out", str(out),
                            "--names", "mlp,other"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mlp" in err and "other" in err and FP in err and "fp-other-9999" in err
    assert "--allow-different-data" in err
    assert not out.exists()
    with pytest.raises(DataMismatchError):
        compare_runs([runs["mlp"], runs["other"]], out)

    rc = main(["compare", str(runs["mlp"]), str(runs["other"]), "--out", str(out),
               "--allow-different-data"])
    assert rc == 0
    assert "different data or normalisation" in (out / "report.md").read_text()


def test_missing_things_are_clear_errors(runs, tmp_path, capsys):
    logs = tmp_path / "logs"
    # a run without validation scalars
    no_val = _write_run(logs, "trainonly", 0, _hp_mlp(), {"train/nll": [0.1, 0.0]})
    with pytest.raises(CompareError, match=r"run trainonly .*no validation scalars"):
        compare_runs([no_val], tmp_path / "r1", names=["trainonly"])
    rc = main(["compare", str(runs["mlp"]), str(no_val), "--out", str(tmp_path / "r1"),
               "--names", "mlp,trainonly"])
    assert rc == 1 and "trainonly" in capsys.readouterr().err

    # hparams.yaml without the data fingerprint: the error names the file
    bad = _write_run(logs, "nofp", 0, {"model": {"head": "mixture", "components": 2,
                                                  "norm_mean": 0.0, "norm_std": 1.0}}, MLP)
    with pytest.raises(CompareError, match=r"hparams\.yaml: missing hyperparameter\(s\) data_fingerprint"):
        compare_runs([bad], tmp_path / "r2")
    with pytest.raises(CompareError, match="run directory not found"):
        compare_runs([tmp_path / "nope"], tmp_path / "r3")
    assert main(["compare", str(runs["mlp"]), "--out", str(tmp_path / "r4"),
                 "--names", "a,b"]) == 2

    # a report directory that cannot be made (its parent is a file): one line naming it
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main(["compare", str(runs["mlp"]), "--out", str(tmp_path / "afile" / "r")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "afile" in err

    # a CSVLogger dir whose metrics.csv is damaged: one line naming the file, nothing written
    damaged = tmp_path / "csvrun"
    damaged.mkdir()
    (damaged / "hparams.yaml").write_text("head: gaussian\ndata_fingerprint: x\nnorm_mean: 0\nnorm_std: 1\n")
    (damaged / "metrics.csv").write_text("epoch,step,val/nll\n0,9,-0.5\n1,19,oops\n")
    capsys.readouterr()
    assert main(["compare", str(damaged), "--out", str(tmp_path / "r5")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "metrics.csv" in err and "oops" in err
    assert not (tmp_path / "r5").exists()


def test_epoch_falls_back_to_point_index(tmp_path):
    run = _write_run(tmp_path / "logs", "noepoch", 0, _hp_mdn(), MLP, epoch_tag=False)
    res = compare_runs([run], tmp_path / "r")
    m = res["runs"][0]["metrics"]["val/nll"]
    assert m["epoch_source"] == "point index" and m["min_epoch"] == 3
    assert res["runs"][0]["epochs"] == 6
    assert "point indices" in (tmp_path / "r" / "report.md").read_text()


def _write_events(log_dir: Path, calls: list[tuple[int, dict[str, float]]], jumps=None) -> None:
    """One ``SummaryWriter.add_scalar`` per value, as Lightning's TensorBoardLogger writes a
    ``log_metrics`` call: the metrics, then ``epoch``, all at the call's step. Records are
    1 ms apart; ``jumps`` maps a record number to a clock jump (s) before it is written."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    wall, n = 1_000_000.0, 0
    for step, values in calls:
        for tag, value in values.items():
            wall += 0.001 + (jumps or {}).get(n, 0.0)
            writer.add_scalar(tag, value, step, walltime=wall)
            n += 1
    writer.close()


def test_epochs_come_from_the_logged_epoch_not_from_wall_times(tmp_path):
    """Validated epochs 0, 2, 3, 5, 6; epochs 2 and 3 log at the same step (epoch 3 made no
    optimiser step), and so do 5 and 6. Epoch 3's metrics were written 1 ms after epoch 2's
    `epoch` record (3 ms before their own); the clock was set back an hour just before
    epoch 6's `epoch` record. The epoch of each point is the one written in the same call,
    whatever the wall times."""
    from pytorch_lightning.core.saving import save_hparams_to_yaml

    run = tmp_path / "run"
    run.mkdir()
    save_hparams_to_yaml(run / "hparams.yaml", _hp_mlp())
    epochs, steps = [0, 2, 3, 5, 6], [9, 29, 29, 59, 59]
    val = [{"val/nll": -0.5 - 0.1 * i, "val/mse": 0.5 - 0.01 * i, "val/mse_sample": 1.0 - 0.1 * i}
           for i in range(5)]
    val[2]["val/nll"] = -2.0  # the minimum, in epoch 3
    _write_events(run, [(steps[i], {**val[i], "epoch": epochs[i]}) for i in range(5)], jumps={19: -3600.0})
    res = compare_runs([run], tmp_path / "report")
    for tag in ("val/nll", "val/mse", "val/mse_sample"):
        got = res["runs"][0]["curves"][tag]
        assert got["epoch"] == epochs, tag
        assert got["step"] == steps
        assert got["value"] == pytest.approx([v[tag] for v in val])
    m = res["runs"][0]["metrics"]["val/nll"]
    assert (m["min"], m["min_epoch"], m["epoch_source"]) == (pytest.approx(-2.0), 3, "epoch scalar")
    assert res["runs"][0]["epochs"] == 7


# --------------------------------------------------------------- a real tiny Lightning run
VAL_NLL = [-0.5, -0.9, -0.7, -1.1, -1.0, -1.05]  # validated at epochs 1, 3, 5: minimum at epoch 3


def _tiny_module(offset: float = 0.0):
    """A one-parameter LightningModule logging the metric tags at epoch level: val/nll is
    ``VAL_NLL[epoch] + 0.01 * batch_idx + offset``."""
    import pytorch_lightning as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self, head="mixture", components=2, data_fingerprint=FP, norm_mean=0.001,
                     norm_std=0.05):
            super().__init__()
            self.save_hyperparameters()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            loss = (self.w - batch).pow(2).mean()
            self.log("train/nll", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            e = self.current_epoch
            self.log("val/nll", VAL_NLL[e] + 0.01 * batch_idx + offset)  # mean over 3 batches: + 0.01
            self.log("val/mse", (self.w - batch).pow(2).mean())
            self.log("val/mse_sample", 0.3 - 0.02 * (e - 2) ** 2 + 0.001 * e)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def _tiny_fit(model, loggers, ckpt_path=None, **trainer_args) -> None:
    import pytorch_lightning as pl
    import torch

    data = torch.utils.data.DataLoader(torch.arange(6.0).reshape(6, 1) / 6, batch_size=2)
    trainer = pl.Trainer(logger=loggers, accelerator="cpu", devices=1, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                         **trainer_args)
    trainer.fit(model, data, data, ckpt_path=ckpt_path)


def _fit_tiny_run(save_dir: Path) -> tuple[Path, Path]:
    """A real Trainer run of the tiny module, validated every 2nd epoch, into a
    TensorBoardLogger and a CSVLogger at once. Returns both version dirs."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers = [TensorBoardLogger(str(save_dir), name="tb", default_hp_metric=False),
               CSVLogger(str(save_dir), name="csv")]
    _tiny_fit(_tiny_module(), loggers, max_epochs=len(VAL_NLL), check_val_every_n_epoch=2)
    return Path(loggers[0].log_dir), Path(loggers[1].log_dir)


@pytest.mark.parametrize("resume_epoch", [1, 2])
def test_a_run_resumed_from_an_earlier_checkpoint_counts_each_epoch_once(tmp_path, resume_epoch):
    """Trained to epoch 3, then resumed into the same version dir from the checkpoint of
    ``resume_epoch`` (a second event file logs the later epochs again, at the same steps):
    each epoch appears once, with the values of the resumed run."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    def logger():
        return TensorBoardLogger(str(tmp_path), name="run", version=0, default_hp_metric=False)

    ckpts = tmp_path / "ckpts"
    _tiny_fit(_tiny_module(), logger(), max_epochs=4,
              callbacks=[ModelCheckpoint(dirpath=ckpts, filename="{epoch}", save_top_k=-1)])
    _tiny_fit(_tiny_module(offset=10.0), logger(), ckpt_path=ckpts / f"epoch={resume_epoch}.ckpt",
              max_epochs=5, enable_checkpointing=False)
    run = tmp_path / "run" / "version_0"
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    res = compare_runs([run], tmp_path / "report")
    curve = res["runs"][0]["curves"]["val/nll"]
    assert curve["epoch"] == [0, 1, 2, 3, 4]
    expected = [VAL_NLL[e] + 0.01 + (10.0 if e > resume_epoch else 0.0) for e in range(5)]
    assert curve["value"] == pytest.approx(expected, abs=1e-5)
    assert res["runs"][0]["curves"]["train/nll"]["epoch"] == [0, 1, 2, 3, 4]
    assert res["runs"][0]["epochs"] == 5


def _expected_from_event_files(version_dir: Path, tag: str) -> dict:
    """min / epoch of the min / final / epochs, read with TensorBoard's EventAccumulator
    (this run logs one epoch per step, so the epoch at a metric's step is unambiguous)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(version_dir), size_guidance={"scalars": 0})
    acc.Reload()
    epoch_at: dict[int, set] = {}
    for e in acc.Scalars("epoch"):
        epoch_at.setdefault(e.step, set()).add(int(e.value))
    assert all(len(v) == 1 for v in epoch_at.values())
    values = np.array([e.value for e in acc.Scalars(tag)])
    steps = [e.step for e in acc.Scalars(tag)]
    best = int(np.argmin(values))
    return {"min": values[best], "min_epoch": min(epoch_at[steps[best]]), "final": values[-1],
            "epochs": max(max(v) for v in epoch_at.values()) + 1}


def _expected_from_metrics_csv(version_dir: Path, tag: str) -> dict:
    rows = [r for r in csv.DictReader((version_dir / "metrics.csv").open()) if r.get(tag)]
    values = np.array([float(r[tag]) for r in rows])
    best = int(np.argmin(values))
    return {"min": values[best], "min_epoch": int(rows[best]["epoch"]), "final": values[-1],
            "epochs": max(int(r["epoch"]) for r in rows) + 1}


def test_table_matches_event_files_and_metrics_csv_of_a_real_run(tmp_path):
    tb_dir, csv_dir = _fit_tiny_run(tmp_path / "logs")
    gen = _write_generated(tb_dir / "generated", tmp_path / "refs", "mixture", kurt=3.0, n=1)
    meas = json.loads((gen / "measurements.json").read_text())
    meas["checkpoint"] = str(next((tb_dir / "checkpoints").glob("*.ckpt")))
    (gen / "measurements.json").write_text(json.dumps(meas))
    res = compare_runs([tb_dir, csv_dir], tmp_path / "report", names=["tb", "csv"])
    tb, from_csv = res["runs"]
    for run, expected in ((tb, _expected_from_event_files), (from_csv, _expected_from_metrics_csv)):
        for tag in ("val/nll", "val/mse", "val/mse_sample", "train/nll"):
            want = expected(Path(run["version_dir"]), tag)
            got = run["metrics"][tag]
            assert got["min"] == pytest.approx(want["min"], rel=1e-6), (run["name"], tag)
            assert got["min_epoch"] == want["min_epoch"], (run["name"], tag)
            assert got["final"] == pytest.approx(want["final"], rel=1e-6), (run["name"], tag)
            assert got["epoch_source"] == "epoch scalar"
        assert run["epochs"] == want["epochs"] == len(VAL_NLL)
    # known answers: val/nll is VAL_NLL + 0.01 (mean of + 0, 0.01, 0.02 over the 3 batches);
    # val/mse_sample is 0.3 - 0.02 (e - 2)^2 + 0.001 e: smallest at epoch 5 (0.125)
    for run in (tb, from_csv):
        assert run["metrics"]["val/nll"]["min"] == pytest.approx(-1.09, abs=1e-6)
        assert run["metrics"]["val/nll"]["min_epoch"] == 3
        assert run["metrics"]["val/mse_sample"]["min_epoch"] == 5
        assert run["curves"]["val/nll"]["epoch"] == [1, 3, 5]  # not the point indices 0, 1, 2
        assert run["curves"]["train/nll"]["epoch"] == list(range(len(VAL_NLL)))
    assert [(Path(c["path"]).name, c["epoch"], c["step"]) for c in tb["checkpoints"]] == [
        ("epoch=5-step=18.ckpt", 5, 18)]
    assert not from_csv["checkpoints"]
    wavs = (tmp_path / "report" / "report.md").read_text().split("### WAV files")[1]
    assert "epoch=5-step=18.ckpt` (epoch 5, step 18)" in wavs
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "report" / "table.csv").open())}
    assert float(rows["tb"]["min_val_nll"]) == pytest.approx(-1.09, abs=1e-6)
    assert rows["tb"]["min_val_nll_epoch"] == rows["csv"]["min_val_nll_epoch"] == "3"


def test_audio_means_are_over_all_files_of_measurements_json(runs, tmp_path):
    """Per-run means equal numpy means over every file of measurements.json (None skipped);
    the natural speech row averages the distinct references."""
    rng = np.random.default_rng(7)
    gen = _write_generated(tmp_path / "gen", tmp_path / "refs", "mixture", kurt=4.0, n=5)
    file = gen / "measurements.json"
    data = json.loads(file.read_text())
    for i, entry in enumerate(data["files"]):
        for key in ("rms_db", "kurtosis", "periodicity", "lsd_db", "mcd_db", "ref_kurtosis"):
            entry[key] = float(rng.normal(3.0, 2.0))
        entry["f0_corr"] = None if i == 1 else float(rng.uniform())
        entry["clipped"] = int(rng.integers(0, 50))
    data["files"][4]["reference"] = data["files"][0]["reference"]  # 4 distinct references
    data["files"][4]["ref_kurtosis"] = data["files"][0]["ref_kurtosis"]
    file.write_text(json.dumps(data))

    res = compare_runs([runs["mdn"]], tmp_path / "report", generated=[gen])
    got = res["runs"][0]["generated"][0]
    files = data["files"]
    assert got["n_files"] == 5 and got["clipped_total"] == sum(f["clipped"] for f in files)
    for key in ("rms_db", "kurtosis", "periodicity", "lsd_db", "mcd_db", "f0_mean_hz"):
        assert got["means"][key] == pytest.approx(np.mean([f[key] for f in files]), rel=1e-12), key
    assert got["means"]["f0_corr"] == pytest.approx(np.mean([f["f0_corr"] for f in files if f["f0_corr"] is not None]))
    nat = res["natural_speech"]
    assert nat["n_files"] == 4
    assert nat["means"]["kurtosis"] == pytest.approx(np.mean([f["ref_kurtosis"] for f in files[:4]]))
    md = (tmp_path / "report" / "report.md").read_text().split("## Generated audio")[1]
    row = next(ln for ln in md.splitlines() if ln.startswith("| mdn |"))
    assert f"| {np.mean([f['kurtosis'] for f in files]):.4g} |" in row


def test_hparams_from_config_yaml_when_not_in_hparams_yaml(runs, tmp_path):
    """fit may log the data hyperparameters alone (logger.log_hyperparams) while the model's
    are in LightningCLI's config.yaml under model.init_args: both are read."""
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(runs["mdn_v0"], run)
    (run / "hparams.yaml").write_text(yaml.safe_dump({"data_fingerprint": FP, "norm_mean": 0.001,
                                                      "norm_std": 0.05, "window": 240}))
    (run / "config.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "waveform_mdn.models.WaveformPredictor",
                  "init_args": {"head": "mixture", "components": 4, "data_fingerprint": None}},
        "data": {"path": "/data/x", "batch_size": 128}}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "broken.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    hp = compare.read_hparams(run)
    assert (hp.head, hp.components, hp.data_fingerprint, hp.norm_std) == ("mixture", 4, FP, 0.05)
    assert hp.found["batch_size"] == 128 and hp.found["window"] == 240
    res = compare_runs([run, runs["mdn"]], tmp_path / "report", names=["cfg", "mdn"])
    assert [r["components"] for r in res["runs"]] == [4, 3]
    diffs = (tmp_path / "report" / "report.md").read_text().split("## Hyperparameters that differ")[1]
    assert "| components | 4 | 3 |" in diffs
    assert "broken.ckpt (epoch not readable)" in (tmp_path / "report" / "report.md").read_text()


def test_event_files_are_read_in_creation_order(tmp_path):
    """A resumed run's event file (counter .10) comes after the first one (.9) written in
    the same second: its values win, whatever the name's alphabetical order."""
    from pytorch_lightning.core.saving import save_hparams_to_yaml

    run = tmp_path / "run"
    run.mkdir()
    save_hparams_to_yaml(run / "hparams.yaml", _hp_mlp())
    for counter, nll in ((9, [-0.5, -0.6, -0.7]), (10, [-1.6, -1.7])):
        part = tmp_path / f"part{counter}"
        _write_events(part, [(10 * (e + 1), {"val/nll": v, "epoch": e}) for e, v in enumerate(nll, 3 - len(nll))])
        (file,) = part.glob("events.out.tfevents.*")
        file.rename(run / f"events.out.tfevents.1796204356.host.4242.{counter}")
    curve = compare_runs([run], tmp_path / "report")["runs"][0]["curves"]["val/nll"]
    assert (curve["epoch"], curve["value"]) == ([0, 1, 2], [-0.5, -1.6, -1.7])


@pytest.mark.parametrize("head,components,expected", [("mulaw_softmax", 3, (1, "mu-law softmax")),
                                                      ("logistic_mixture", 10, (10, "logistic mixture"))])
def test_new_heads_are_labelled_and_mulaw_has_no_components(runs, tmp_path, head, components, expected):
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(runs["mdn_v0"], run)
    hp = _hp_mdn()
    hp["model"].update(head=head, components=components, hidden=[300, 300])  # mu-law ignores components
    (run / "hparams.yaml").write_text(yaml.safe_dump(hp))
    res = compare_runs([run], tmp_path / "report", names=["x"])
    assert (res["runs"][0]["components"], res["runs"][0]["model"]) == expected
