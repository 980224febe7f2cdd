"""``waveform-mdn compare`` on runs written by Lightning's own loggers (CSVLogger, as ``fit``
writes them, and real tiny Trainer runs); the tables are checked against known answers and
against the files read directly."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from waveform_mdn.cli import main as waveform_mdn_main
from waveform_mdn.compare import CompareError, DataMismatchError, compare_runs, main
from waveform_mdn.compare.runs import read_hparams, resolve_run_dir

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


def _write_run(save_dir: Path, name: str, version: int, hparams: dict, curves: dict, train: bool = True) -> Path:
    """A run dir as ``fit`` leaves one: hparams.yaml and metrics.csv written by Lightning's CSVLogger."""
    from pytorch_lightning.loggers import CSVLogger

    logger = CSVLogger(str(save_dir), name=name, version=version)
    logger.log_hyperparams(hparams)
    n = len(next(iter(curves.values())))
    for e in range(n):
        step = STEPS_PER_EPOCH * (e + 1) - 1
        if train:  # training epoch-level metrics in their own call, like Lightning
            tr = {t.replace("val/", "train/"): c[e] * 0.9 for t, c in curves.items()
                  if t.startswith("val/") and math.isfinite(c[e])}
            logger.log_metrics({**tr, "epoch": e}, step=step)
        logger.log_metrics({**{t: c[e] for t, c in curves.items()}, "epoch": e}, step=step)
    logger.save()
    logger.finalize("success")
    return Path(logger.log_dir)


def _hp_mlp(fp=FP):
    return {"head": "gaussian", "components": 3, "data_fingerprint": fp, "norm_mean": 0.001, "norm_std": 0.05,
            "hidden": (300, 300), "lr": 1e-3}  # a tuple, as Lightning writes it; components unused


def _hp_mdn(fp=FP):
    return {"head": "mixture", "components": 3, "data_fingerprint": fp, "norm_mean": 0.001, "norm_std": 0.05,
            "hidden": (300, 300), "lr": 5e-4}


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
    # version_11 (hparams only, no metrics.csv: to be skipped)
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
    import matplotlib.image as mpimg

    if path.read_bytes()[:8] != PNG_MAGIC:
        return False
    img = mpimg.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def _md_links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", md)


def test_resolve_run_dir_picks_highest_numbered_version_with_metrics(runs):
    chosen, note = resolve_run_dir(runs["mlp"])
    assert chosen.name == "version_10"
    assert "version_10" in note and "version_11 without metrics.csv" in note
    chosen, note = resolve_run_dir(runs["mdn_v0"])
    assert chosen == runs["mdn_v0"] and note is None
    with pytest.raises(CompareError, match=r"refs/metrics\.csv not found"):
        resolve_run_dir(runs["root"] / "refs")


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
    assert {k: rows[1][k] for k in ("model", "head", "components", "data_fingerprint", "epochs")} == \
        {"model": "MDN", "head": "mixture", "components": "3", "data_fingerprint": FP, "epochs": "8"}
    assert Path(rows[0]["version_dir"]).name == "version_10"
    assert float(rows[1]["generated_kurtosis"]) == pytest.approx(9.5)  # 9.0 and 10.0

    # the report's tables: the runs (what each is, its data, normalisation, checkpoints) and
    # the hyperparameters that differ ("—" where a run has none)
    from waveform_mdn.compare.runs import load_run
    from waveform_mdn.compare.tables import differ_table, run_table

    loaded = [load_run("mlp", runs["mlp"]), load_run("mdn", runs["mdn"])]
    table = run_table(loaded)
    assert table.header == ["name", "model", "head", "K", "data fingerprint", "norm mean / std", "run dir", "checkpoints"]
    assert table.rows[1][:6] == ["mdn", "MDN", "mixture", "3", f"`{FP}`", "0.001 / 0.05"] and table.rows[1][7] == "none"
    loaded[1].hparams["dropout"] = 0.25
    differ = differ_table(loaded)
    assert differ.header == ["key", "mlp", "mdn"]
    assert {row[0]: row[1:] for row in differ.rows} == {"dropout": ["—", "0.25"], "head": ["gaussian", "mixture"],
                                                         "lr": ["0.001", "0.0005"]}
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
    out = tmp_path / "refused"
    rc = waveform_mdn_main(["compare", str(runs["mlp"]), str(runs["other"]), "--out", str(out),
                            "--names", "mlp,other"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1
    assert "mlp" in err and "other" in err and FP in err and "fp-other-9999" in err
    assert "--allow-different-data" in err
    assert not out.exists()
    with pytest.raises(DataMismatchError):
        compare_runs([runs["mlp"], runs["other"]], out)

    rc = main(["compare", str(runs["mlp"]), str(runs["other"]), "--out", str(out), "--allow-different-data"])
    assert rc == 0
    assert "different data or normalisation" in (out / "report.md").read_text()


def _one_error_line(capsys, argv: list[str], *parts: str) -> None:
    """``waveform-mdn compare ARGV`` exits 2 with one line on stderr holding every part."""
    capsys.readouterr()
    assert waveform_mdn_main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("waveform-mdn compare: error: "), err
    assert all(p in err for p in parts), err


def test_missing_things_are_clear_errors(runs, tmp_path, capsys):
    logs = tmp_path / "logs"
    no_val = _write_run(logs, "trainonly", 0, _hp_mlp(), {"train/nll": [0.1, 0.0]})
    with pytest.raises(CompareError, match=r"run trainonly: .*metrics\.csv has no validation metrics"):
        compare_runs([no_val], tmp_path / "r1", names=["trainonly"])
    _one_error_line(capsys, [str(runs["mlp"]), str(no_val), "--out", str(tmp_path / "r1"), "--names", "mlp,trainonly"],
                    "trainonly", "train/nll")

    # hparams.yaml without the data fingerprint, or none at all: the error names the file
    bad = _write_run(logs, "nofp", 0, {"head": "mixture", "components": 2, "norm_mean": 0.0, "norm_std": 1.0}, MLP)
    with pytest.raises(CompareError, match=r"hparams\.yaml: missing hyperparameter\(s\) data_fingerprint"):
        compare_runs([bad], tmp_path / "r2")
    (bad / "hparams.yaml").unlink()
    _one_error_line(capsys, [str(bad), "--out", str(tmp_path / "r2")], str(bad / "hparams.yaml"), "not found")
    with pytest.raises(CompareError, match="run directory not found"):
        compare_runs([tmp_path / "nope"], tmp_path / "r3")
    _one_error_line(capsys, [str(runs["mlp"]), "--out", str(tmp_path / "r4"), "--names", "a,b"], "--names")
    _one_error_line(capsys, [str(runs["mlp"]), "--out", str(tmp_path / "r4"), "--page-rows", "-1"], "--page-rows")
    with pytest.raises(SystemExit) as usage:  # argparse's usage errors: exit 2
        main(["compare", "--out", str(tmp_path / "r4")])
    assert usage.value.code == 2

    # a report directory that cannot be made (its parent is a file): one line naming it
    (tmp_path / "afile").write_text("x")
    _one_error_line(capsys, [str(runs["mlp"]), "--out", str(tmp_path / "afile" / "r")], "afile")

    # a damaged metrics.csv, or one without Lightning's epoch column: one line naming the file, nothing written
    damaged = tmp_path / "csvrun"
    damaged.mkdir()
    (damaged / "hparams.yaml").write_text(yaml.safe_dump(_hp_mlp()))
    (damaged / "metrics.csv").write_text("epoch,step,val/nll\n0,9,-0.5\n1,19,oops\n")
    _one_error_line(capsys, [str(damaged), "--out", str(tmp_path / "r5")], "metrics.csv", "line 3", "oops")
    (damaged / "metrics.csv").write_text("step,val/nll\n9,-0.5\n")
    _one_error_line(capsys, [str(damaged), "--out", str(tmp_path / "r5")], "metrics.csv", "no epoch column")
    assert not (tmp_path / "r5").exists()


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


def test_table_matches_metrics_csv_of_a_real_run(tmp_path):
    """A real Trainer run, validated every 2nd epoch, logging through TensorBoard and a CSVLogger
    into one folder as ``fit`` does; a generation that used its checkpoint."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers = [TensorBoardLogger(str(tmp_path), "run", 0, default_hp_metric=False), CSVLogger(str(tmp_path), "run", 0)]
    _tiny_fit(_tiny_module(), loggers, max_epochs=len(VAL_NLL), check_val_every_n_epoch=2)
    run_dir = Path(loggers[1].log_dir)
    gen = _write_generated(run_dir / "generated", tmp_path / "refs", "mixture", kurt=3.0, n=1)
    meas = json.loads((gen / "measurements.json").read_text())
    meas["checkpoint"] = str(next((run_dir / "checkpoints").glob("*.ckpt")))
    (gen / "measurements.json").write_text(json.dumps(meas))
    res = compare_runs([run_dir], tmp_path / "report", names=["run"])
    (run,) = res["runs"]
    for tag in ("val/nll", "val/mse", "val/mse_sample", "train/nll"):
        rows = [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get(tag)]
        values = np.array([float(r[tag]) for r in rows])
        best = int(np.argmin(values))
        got = run["metrics"][tag]
        assert got["min"] == pytest.approx(values[best], rel=1e-6), tag
        assert got["min_epoch"] == int(rows[best]["epoch"]), tag
        assert got["final"] == pytest.approx(values[-1], rel=1e-6), tag
    assert run["epochs"] == len(VAL_NLL)
    # known answers: val/nll is VAL_NLL + 0.01 (mean of + 0, 0.01, 0.02 over the 3 batches);
    # val/mse_sample is 0.3 - 0.02 (e - 2)^2 + 0.001 e: smallest at epoch 5 (0.125)
    assert run["metrics"]["val/nll"]["min"] == pytest.approx(-1.09, abs=1e-6)
    assert run["metrics"]["val/nll"]["min_epoch"] == 3
    assert run["metrics"]["val/mse_sample"]["min_epoch"] == 5
    assert run["curves"]["val/nll"]["epoch"] == [1, 3, 5]  # not the point indices 0, 1, 2
    assert run["curves"]["train/nll"]["epoch"] == list(range(len(VAL_NLL)))
    assert [(Path(c["path"]).name, c["epoch"], c["step"]) for c in run["checkpoints"]] == [("epoch=5-step=18.ckpt", 5, 18)]
    wavs = (tmp_path / "report" / "report.md").read_text().split("### WAV files")[1]
    assert "epoch=5-step=18.ckpt` (epoch 5, step 18)" in wavs
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "report" / "table.csv").open())}
    assert float(rows["run"]["min_val_nll"]) == pytest.approx(-1.09, abs=1e-6) and rows["run"]["min_val_nll_epoch"] == "3"


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

    # a second run generated the same utterances, with its own copies of the references (as
    # generate writes them into <gen>/reference/): each reference still counts once
    copy = tmp_path / "gen2"
    shutil.copytree(gen, copy)
    shutil.copytree(tmp_path / "refs", copy / "reference")
    for entry in data["files"]:
        entry["reference"] = f"reference/{Path(entry['reference']).name}"
    (copy / "measurements.json").write_text(json.dumps(data))
    res = compare_runs([runs["mdn"], runs["mdn"]], tmp_path / "report2", names=["a", "b"], generated=[gen, copy])
    assert res["natural_speech"] == nat


def test_hparams_that_differ_and_unreadable_checkpoints(runs, tmp_path):
    """The hyperparameters that differ are listed (mappings such as the phone durations are
    not); a checkpoint that cannot be loaded is listed as such."""
    run = tmp_path / "run"
    shutil.copytree(runs["mdn_v0"], run)
    (run / "hparams.yaml").write_text(yaml.safe_dump({**_hp_mdn(), "hidden": [300, 300], "components": 4,
                                                      "optimizer": {"lr": 0.01}}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "broken.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    hp = read_hparams(run)
    assert (hp["head"], hp["components"], hp["data_fingerprint"], hp["norm_std"], hp["hidden"]) == (
        "mixture", 4, FP, 0.05, [300, 300]) and "optimizer" not in hp
    res = compare_runs([run, runs["mdn"]], tmp_path / "report", names=["cfg", "mdn"])
    assert [r["components"] for r in res["runs"]] == [4, 3]
    md = (tmp_path / "report" / "report.md").read_text()
    diffs = md.split("## Hyperparameters that differ")[1].split("##")[0]
    assert "| components | 4 | 3 |" in diffs and "optimizer" not in diffs and "hidden" not in diffs
    assert "broken.ckpt (epoch not readable)" in md


@pytest.mark.parametrize("head,components,expected", [("mulaw_softmax", 3, (1, "mu-law softmax")),
                                                      ("logistic_mixture", 10, (10, "logistic mixture"))])
def test_new_heads_are_labelled_and_mulaw_has_no_components(runs, tmp_path, head, components, expected):
    run = tmp_path / "run"
    shutil.copytree(runs["mdn_v0"], run)
    hp = {**_hp_mdn(), "head": head, "components": components, "hidden": [300, 300]}  # mu-law ignores components
    (run / "hparams.yaml").write_text(yaml.safe_dump(hp))
    res = compare_runs([run], tmp_path / "report", names=["x"])
    assert (res["runs"][0]["components"], res["runs"][0]["model"]) == expected


def test_a_metrics_csv_without_its_first_epochs_is_noted(runs, tmp_path):
    """Lightning's CSVLogger empties metrics.csv when a run resumes into its directory: the
    report says that the curves start late."""
    run = tmp_path / "run"
    shutil.copytree(runs["mdn_v0"], run)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text(lines[0] + "".join(ln for ln in lines[1:] if not ln.startswith(("0,", "1,"))))
    res = compare_runs([run], tmp_path / "report")
    assert res["runs"][0]["curves"]["val/nll"]["epoch"] == list(range(2, 8))
    assert "`metrics.csv` starts at epoch 2" in (tmp_path / "report" / "report.md").read_text()


def test_a_run_written_by_fit_is_read_as_written(demo_prepared, tmp_path, one_thread):
    """The run contract end to end: ``waveform-mdn fit`` (TensorBoard + its CSVLogger in one
    folder), then compare: the table holds fit's metrics.csv, hparams.yaml and checkpoints."""
    conf = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "conf" / "mdn.yaml"
    assert waveform_mdn_main(["fit", "--config", str(conf), "--data.path", str(demo_prepared),
                              "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_epochs", "2",
                              "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                              "--trainer.enable_progress_bar", "false", "--audio.every_n_epochs", "0"]) == 0
    run_dir = tmp_path / "mdn" / "run"
    res = compare_runs([run_dir], tmp_path / "report")
    (run,) = res["runs"]
    assert (run["model"], run["components"], run["epochs"]) == ("MDN", 3, 2)
    from waveform_mdn.data import PreparedDataset

    assert run["data_fingerprint"] == PreparedDataset(demo_prepared).fingerprint
    rows = [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("val/nll")]
    assert run["curves"]["val/nll"]["value"] == pytest.approx([float(r["val/nll"]) for r in rows], rel=1e-6)
    assert run["curves"]["val/nll"]["epoch"] == [0, 1]
    assert {Path(c["path"]).name for c in run["checkpoints"]} == {"best.ckpt", "last.ckpt"}


def test_judges_come_first_in_every_table_and_their_curves_are_drawn(runs, tmp_path):
    """Judge keys written by hand into two runs' measurements.json (the same three references,
    each with its own ``ref_*`` judges) and ``audio/*`` judge curves in metrics.csv: the
    judge columns come first, with the means written, in report.md, table.csv, summary.json
    and report.html; natural speech counts each reference once; curves.png gets a judge row."""
    rng = np.random.default_rng(18)
    judges = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "phone_error_rate")
    gens, written = [], {}
    for name in ("a", "b"):
        gen = _write_generated(tmp_path / name, tmp_path / "refs", "mixture", kurt=4.0, n=3)
        data = json.loads((gen / "measurements.json").read_text())
        for i, entry in enumerate(data["files"]):
            entry |= {k: float(rng.uniform(1, 4)) for k in judges} | {"recognised_phones": "sil aa b"}
            entry |= {f"ref_{k}": 3.0 + 0.1 * i + (k == "phone_error_rate") for k in judges}
        entry["dnsmos_ovrl"] = None  # the last file could not be judged: skipped by the mean
        (gen / "measurements.json").write_text(json.dumps(data))
        gens.append(gen)
        written[name] = data["files"]
    logs = tmp_path / "logs"
    run = _write_run(logs, "judged", 0, _hp_mdn(), MDN)
    ovrl, per = [1.0, 1.2, 1.5], [0.95, 0.9, 0.8]
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0] + ",audio/dnsmos_ovrl,audio/phone_error_rate"
    extra = [",".join([str(e) if c == "epoch" else str(40 * e + 3) if c == "step" else "" for c in lines[0].split(",")])
             + f",{o},{p}" for e, (o, p) in enumerate(zip(ovrl, per))]
    (run / "metrics.csv").write_text("\n".join([header, *(ln + ",," for ln in lines[1:]), *extra]) + "\n")

    res = compare_runs([run, runs["mdn"]], tmp_path / "report", names=["a", "b"], generated=gens)
    out = tmp_path / "report"
    mean = {n: {k: np.mean([f[k] for f in files if f[k] is not None]) for k in judges} for n, files in written.items()}
    natural = {k: np.mean([3.0 + 0.1 * i + (k == "phone_error_rate") for i in range(3)]) for k in judges}

    md = (out / "report.md").read_text().split("## Generated audio")[1]
    table = [ln.split(" | ") for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert [c.strip("| ") for c in table[0][:9]] == ["run", "files", "clipped", *judges, "rms_db"]
    assert "recognised_phones" not in md
    for row in table[1:]:
        name = row[0].strip("| ")
        expected = natural if name == "natural speech" else mean[name]
        assert [float(c) for c in row[3:8]] == [float(f"{expected[k]:.4g}") for k in judges], name
    assert table[3][1] == "3"  # three distinct references, though two runs wrote them
    assert res["natural_speech"]["means"]["dnsmos_ovrl"] == pytest.approx(natural["dnsmos_ovrl"])
    assert res["runs"][0]["generated"][0]["means"]["dnsmos_ovrl"] == pytest.approx(mean["a"]["dnsmos_ovrl"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][1]["generated"][0]["means"]["phone_error_rate"] == pytest.approx(mean["b"]["phone_error_rate"])
    assert summary["runs"][0]["curves"]["audio/dnsmos_ovrl"]["value"] == ovrl
    assert summary["runs"][0]["curves"]["audio/phone_error_rate"]["epoch"] == [0, 1, 2]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert float(rows[0]["generated_dnsmos_ovrl"]) == pytest.approx(mean["a"]["dnsmos_ovrl"], rel=1e-12)
    assert float(rows[1]["generated_dnsmos_p808"]) == pytest.approx(mean["b"]["dnsmos_p808"], rel=1e-12)

    page = (out / "report.html").read_text()
    assert "<th>dnsmos_<wbr>ovrl</th>" in page and f'<td class="num">{mean["a"]["dnsmos_ovrl"]:.4g}</td>' in page
    first = written["a"][0]
    assert f"OVRL {first['dnsmos_ovrl']:.2f} · PER {first['phone_error_rate']:.2f}" in page
    assert "OVRL 3.00 · PER 4.00" in page  # the first reference's own judges
    assert page.count('<div class="judges">') == 3 + 6  # three references, six files
    assert f'<div class="judges">PER {written["b"][2]["phone_error_rate"]:.2f}</div>' in page  # no OVRL: PER alone

    import matplotlib.image as mpimg

    assert mpimg.imread(out / "curves.png").shape[:2] == (2 * 506, 3 * 550)  # two rows of three panels


# -- small pieces, against hand-made inputs ----------------------------------------------------
def test_means_average_the_generated_measurements_only():
    """Per key over the files that have a finite number for it: not the references' ``ref_*``
    values, not the bookkeeping (clipped counts, rates, durations), not text."""
    from waveform_mdn.compare.measurements import AudioFile, means

    files = [AudioFile(None, None, {"rms_db": -20.0, "ref_rms_db": -3.0, "clipped": 7, "duration_s": 2.0,
                                    "recognised_phones": "aa s", "extra_score": 1.0}),
             AudioFile(None, None, {"rms_db": -30.0, "extra_score": "n/a", "periodicity": float("nan")})]
    got = means(files)
    assert got["rms_db"] == pytest.approx(-25.0) and got["extra_score"] == pytest.approx(1.0)
    assert got["periodicity"] is None  # a known key without a finite value: listed, no mean
    assert not {"ref_rms_db", "clipped", "duration_s", "recognised_phones"} & set(got)


def test_generated_audio_is_found_under_the_run_but_not_in_the_report_or_hidden_folders(tmp_path):
    from waveform_mdn.compare.measurements import _search

    run, out = tmp_path / "run", tmp_path / "run" / "report"
    for folder in ("gen", "gen/deeper", "report/media", ".cache/gen"):
        (run / folder).mkdir(parents=True)
        (run / folder / "measurements.json").write_text("{}")
    assert _search(run, out) == [run / "gen" / "deeper" / "measurements.json", run / "gen" / "measurements.json"]


def test_default_names_say_the_run_and_tell_equal_names_apart(tmp_path):
    from waveform_mdn.compare.runs import default_names

    paths = [tmp_path / "a" / "mlp", tmp_path / "b" / "mlp", tmp_path / "exp" / "mdn" / "version_3", tmp_path / "c"]
    assert default_names(paths) == ["mlp#1", "mlp#2", "mdn/version_3", "c"]


def test_a_generation_record_is_read_as_written(tmp_path):
    """Its checkpoint, data, head and settings; each file's WAV and reference beside the
    record (no reference: None); a missing record is one CompareError naming run and file."""
    from waveform_mdn.compare.measurements import load_measurements

    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "measurements.json").write_text(json.dumps({
        "checkpoint": "/runs/mdn/last.ckpt", "data_fingerprint": FP, "head": "mixture",
        "settings": {"mode": "sample", "seed": 3},
        "files": [{"wav": "a.wav", "reference": "reference/a.wav", "rms_db": -20.0}, {"wav": "b.wav", "reference": None}]}))
    m = load_measurements(gen, "mdn")
    assert (m.file, m.checkpoint, m.data_fingerprint, m.head) == (gen / "measurements.json", "/runs/mdn/last.ckpt",
                                                                  FP, "mixture")
    assert m.settings == {"mode": "sample", "seed": 3}
    assert [(f.wav, f.reference) for f in m.files] == [(gen / "a.wav", gen / "reference" / "a.wav"), (gen / "b.wav", None)]
    assert m.files[0].values["rms_db"] == -20.0
    with pytest.raises(CompareError, match=r"^generated audio for run mdn: .*nowhere not found$"):
        load_measurements(tmp_path / "nowhere", "mdn")


def test_the_validation_table_says_what_is_missing(tmp_path):
    """A metric the run never logged: n/a; one logged but never finite: n/a (no finite value);
    else its minimum (epoch) and final value."""
    from waveform_mdn.compare.runs import load_run
    from waveform_mdn.compare.tables import validation_table

    nan = float("nan")
    run_dir = _write_run(tmp_path, "mlp", 0, _hp_mlp(), {"val/nll": [0.5, 0.25, 0.375], "val/mse": [nan, nan, nan]})
    table = validation_table([load_run("mlp", run_dir)])
    row = dict(zip(table.header, table.rows[0]))
    assert row["min val/nll (epoch)"] == "0.25 (1)" and row["final val/nll"] == "0.375"
    assert row["min val/mse (epoch)"] == "n/a (no finite value)"
    assert row["min val/mse_sample (epoch)"] == "n/a" and row["final val/mse_sample"] == "n/a"
    assert row["epochs"] == "3"
