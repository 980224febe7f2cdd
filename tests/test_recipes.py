"""Smoke tests of every recipe: the real run.sh, stages chained through the real CLI, on tiny
data (the demo corpus, or fixtures written in each recipe's corpus layout), a few training
steps. Checks: the stages chain, the outputs exist, the report's table has one row per run,
and each model's validation NLL fell."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import DEMO_CORPUS

pytestmark = pytest.mark.slow  # each runs a recipe's run.sh end to end

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Few steps, but enough for the NLL to fall; the MLP/MDN configs of each recipe otherwise.
FIT_ARGS = (
    "--trainer.max_epochs 3 --trainer.limit_train_batches 40 --data.val_stride 16 "
    "--trainer.log_every_n_steps 10 --data.val_batch_size 2048"
)
GEN_ARGS = "--seconds 0.1"


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TIMIT_DIR", None)
    return env


def run_recipe(name: str, exp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(REPO / "recipes" / name / "run.sh"), "--exp", str(exp),
           "--fit-args", FIT_ARGS, "--gen-args", GEN_ARGS, *args]
    proc = subprocess.run(cmd, cwd=exp.parent, env=_env(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{name} recipe failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-3000:]}")
    return proc


def check_outputs(exp: Path, proc: subprocess.CompletedProcess) -> None:
    assert (exp / "data" / "meta.json").is_file()
    for run in ("mlp", "mdn"):
        rd = exp / "runs" / run / "run"
        assert (rd / "checkpoints" / "best.ckpt").is_file()
        assert list(rd.glob("events.out.tfevents.*"))
        wavs = list((rd / "generated").glob("*.wav"))
        assert wavs, f"no generated audio for {run}"
        info = sf.info(str(wavs[0]))
        assert info.samplerate == 16000 and info.subtype == "PCM_16"
        meas = json.loads((rd / "generated" / "measurements.json").read_text())
        assert len(meas["files"]) == len(wavs)
    report = exp / "report"
    assert (report / "report.md").is_file() and (report / "curves.png").is_file()
    assert (report / "report.html").is_file()
    with open(report / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2, rows
    assert {(r["name"], r["head"], r["components"]) for r in rows} == {("MLP", "gaussian", "1"),
                                                                        ("MDN", "mixture", "3")}
    summary = json.loads((report / "summary.json").read_text())
    runs = summary["runs"]
    assert len(runs) == 2
    for r in runs:
        nll = [v for v in r["curves"]["val/nll"]["value"] if v is not None and np.isfinite(v)]
        assert len(nll) >= 2, r["name"]
        assert nll[-1] < nll[0], f"{r['name']}: validation NLL did not fall: {nll}"
    # the closing message says where things are
    assert "tensorboard --logdir" in proc.stdout
    assert str(report / "report.md") in proc.stdout
    assert f"listening page:      {report / 'report.html'}" in proc.stdout


def _phn_to_lab(phn: Path, lab: Path, sr: int = 16000) -> None:
    lines = ["#"]
    for line in phn.read_text().splitlines():
        a, b, p = line.split()
        lines.append(f"{int(b) / sr:.5f} 125 {'pau' if p == 'h#' else p}")
    lab.write_text("\n".join(lines) + "\n")


@pytest.fixture
def workdir(tmp_path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def test_demo_recipe(workdir):
    exp = workdir / "exp_demo"
    proc = run_recipe("demo", exp)
    check_outputs(exp, proc)
    # stages are selectable: rerunning only "compare" works on the outputs above
    proc2 = run_recipe("demo", exp, "--stage", "5", "--stop-stage", "5")
    assert "stage 5" in proc2.stderr and "stage 2" not in proc2.stderr
    # training again never mixes with the earlier run: that one is kept aside, whole
    first_events = sorted(p.name for p in (exp / "runs" / "mlp" / "run").glob("events.out.tfevents.*"))
    proc3 = run_recipe("demo", exp, "--stage", "2", "--stop-stage", "2")
    kept = list((exp / "runs" / "mlp").glob("run.*"))
    assert len(kept) == 1 and "kept as" in proc3.stderr
    assert sorted(p.name for p in kept[0].glob("events.out.tfevents.*")) == first_events
    assert (kept[0] / "generated" / "measurements.json").is_file()
    new = exp / "runs" / "mlp" / "run"
    assert len(list(new.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (new / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_demo_recipe_every_head(workdir):
    """--models heads: five heads trained on the same data, one report whose table has
    bits per sample for each, chosen by val/bits_per_sample; each head generated audio."""
    exp = workdir / "exp_heads"
    proc = run_recipe("demo", exp, "--models", "heads")
    with open(exp / "report" / "table.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"MLP", "MDN", "MDN-discretised", "logistic-mixture", "mu-law-softmax"}
    assert {r["head"] for r in rows.values()} == {"gaussian", "mixture", "logistic_mixture", "mulaw_softmax"}
    for name, r in rows.items():
        assert 0 < float(r["final_val_bits_per_sample"]) < 16, name
        assert r["final_val_nll"] != "" and r["final_val_mse"] != "", name
    for run in ("mlp", "mdn", "mdn_discretised", "logistic_mixture", "mulaw_softmax"):
        assert list((exp / "runs" / run / "run" / "generated").glob("*.wav")), run
        config = (exp / "runs" / run / "run" / "config.yaml").read_text()
        assert "monitor: val/bits_per_sample" in config, run
    assert "likelihood: discretised" in (exp / "runs" / "mdn_discretised" / "run" / "hparams.yaml").read_text()
    assert str(exp / "report" / "report.md") in proc.stdout


def test_timit_recipe_one_speaker(workdir):
    """A TIMIT-layout fixture where the demo voice MKAL0 plays speaker FCLT0."""
    timit = workdir / "TIMIT"
    shutil.copytree(DEMO_CORPUS, timit, ignore=shutil.ignore_patterns("NOTICE", "README.md"))
    (timit / "TRAIN" / "DR1" / "MKAL0").rename(timit / "TRAIN" / "DR1" / "FCLT0")
    exp = workdir / "exp_timit"
    proc = run_recipe("timit", exp, "--timit", str(timit), "--setup", "fclt0")
    check_outputs(exp, proc)
    meta = json.loads((exp / "data" / "meta.json").read_text())
    assert meta["summary"]["train"]["utterances"] == 11 and meta["summary"]["valid"]["utterances"] == 1
    assert meta["summary"]["train"]["speakers"] == 1


def test_timit_recipe_aa_prepare(workdir):
    """The /aa/ setup's preparation: TRAIN only, one sequence per /aa/ segment, 10 valid."""
    exp = workdir / "exp_aa"
    proc = run_recipe("timit", exp, "--timit", str(DEMO_CORPUS), "--setup", "aa", "--stop-stage", "1")
    meta = json.loads((exp / "data" / "meta.json").read_text())
    seqs = json.loads((exp / "data" / "sequences.json").read_text())
    assert meta["summary"]["valid"]["sequences"] == 10
    assert all(s["corpus_split"] == "train" for s in seqs)
    aa = meta["phones"].index("aa")
    segs = np.load(exp / "data" / "segments.npy")
    assert set(segs[:, 2].tolist()) == {aa}
    assert "stage 2" not in proc.stderr


def test_timit_sample_recipe(workdir):
    """An NLTK-layout fixture (lower case, RIFF) written from the demo corpus."""
    corpus = workdir / "nltk_timit"
    src = DEMO_CORPUS / "TRAIN" / "DR2" / "FSLT0"
    spk = corpus / "dr2-faem0"
    spk.mkdir(parents=True)
    for wav in sorted(src.glob("*.WAV")):
        data, sr = sf.read(str(wav), dtype="int16")
        sf.write(str(spk / (wav.stem.lower() + ".wav")), data, sr, format="WAV", subtype="PCM_16")
        shutil.copy(wav.with_suffix(".PHN"), spk / (wav.stem.lower() + ".phn"))
    exp = workdir / "exp_sample"
    proc = run_recipe("timit_sample", exp, "--corpus", str(corpus), "--setup", "one_speaker")
    check_outputs(exp, proc)
    meta = json.loads((exp / "data" / "meta.json").read_text())
    assert meta["source"]["layouts"] == ["nltk"]


def test_cmu_arctic_recipe(workdir):
    """An ARCTIC-layout fixture (wav/ + Festival lab/), skipping the download stage."""
    voice = workdir / "ARCTIC" / "cmu_us_slt_arctic"
    (voice / "wav").mkdir(parents=True)
    (voice / "lab").mkdir()
    src = DEMO_CORPUS / "TRAIN" / "DR2" / "FSLT0"
    for i, wav in enumerate(sorted(src.glob("*.WAV"))):
        name = f"arctic_a{i + 1:04d}"
        data, sr = sf.read(str(wav), dtype="int16")
        sf.write(str(voice / "wav" / f"{name}.wav"), data, sr, format="WAV", subtype="PCM_16")
        _phn_to_lab(wav.with_suffix(".PHN"), voice / "lab" / f"{name}.lab")
    exp = workdir / "exp_arctic"
    proc = run_recipe("cmu_arctic", exp, "--corpus", str(workdir / "ARCTIC"), "--stage", "1")
    check_outputs(exp, proc)
    meta = json.loads((exp / "data" / "meta.json").read_text())
    assert meta["source"]["layouts"] == ["arctic"]
    assert "stage 0" not in proc.stderr
