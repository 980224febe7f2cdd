"""The judges where they run: ``generate`` judges its files against the phones it was asked
to say (recorded beside them), ``evaluate --judges`` reads those phones back (or a ``.PHN``
beside a file), ``--no-judges`` skips them, and ``fit``'s audio callback logs its
free-running clip's scores into TensorBoard and metrics.csv."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from waveform_mdn import train
from waveform_mdn.audio_metrics import JUDGE_KEYS
from waveform_mdn.audio_metrics import judges as J
from waveform_mdn.cli import main as cli_main
from waveform_mdn.models import WaveformPredictor

pytestmark = pytest.mark.usefixtures("one_thread", "judges_loaded")
REPO = Path(__file__).resolve().parent.parent
TEXT = "she had your dark suit"


@pytest.fixture(scope="module")
def generated(prepared, tmp_path_factory) -> Path:
    """``generate --text`` with an untrained MDN (judges on by default), 1 s."""
    torch.manual_seed(0)
    model = WaveformPredictor(head="mixture", components=2, hidden=[16], window=240,
                              n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.normalisation.mean, norm_std=prepared.normalisation.std,
                              sample_rate=prepared.sample_rate, phones=list(prepared.phones),
                              data_fingerprint=prepared.fingerprint)
    tmp = tmp_path_factory.mktemp("judged")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__, "epoch": 0, "global_step": 0}, tmp / "m.ckpt")
    assert cli_main(["generate", "--ckpt", str(tmp / "m.ckpt"), "--data", str(prepared.path), "--text", TEXT,
                     "--seconds", "1.0", "--quiet", "--out", str(tmp / "gen")]) == 0
    return tmp / "gen"


def _files(path: Path) -> list[dict]:
    return json.loads(path.read_text())["files"]


def test_generate_text_is_judged_against_its_recorded_phones_and_evaluate_reads_them_back(generated, tmp_path):
    f = _files(generated / "measurements.json")[0]
    labels = [p["phone"] for p in f["info"]["intended_phones"]]
    assert labels[:3] == ["h#", "sh", "iy"] and f["info"]["intended_phones"][-1]["end"] == 16000
    assert 1.0 <= f["dnsmos_ovrl"] <= 5.0 and f["phone_error_rate"] >= 0
    per = J.phone_error_rate(f["recognised_phones"].split(), J.intended_phones_39(labels))
    assert f["phone_error_rate"] == pytest.approx(per)

    # the generation directory re-measured, and its WAV given alone: the phones from the record
    assert cli_main(["evaluate", str(generated), "--judges", "--quiet", "--out", str(tmp_path / "again.json")]) == 0
    wav = generated / f["wav"]
    assert cli_main(["evaluate", str(wav), "--quiet", "--out", str(tmp_path / "loose.json")]) == 0
    # a copy elsewhere with a .PHN beside it: the phones from the .PHN
    copy = tmp_path / "copy" / "x.wav"
    copy.parent.mkdir()
    shutil.copy(wav, copy)
    copy.with_suffix(".PHN").write_text("".join(f"{p['start']} {p['end']} {p['phone']}\n"
                                                for p in f["info"]["intended_phones"]))
    assert cli_main(["evaluate", str(copy), "--judges", "--quiet", "--out", str(tmp_path / "phn.json")]) == 0
    for name in ("again.json", "loose.json", "phn.json"):
        g = _files(tmp_path / name)[0]
        assert g["recognised_phones"] == f["recognised_phones"], name
        assert g["phone_error_rate"] == pytest.approx(per), name
        assert g["dnsmos_ovrl"] == pytest.approx(f["dnsmos_ovrl"], abs=1e-4), name


def test_a_reference_shared_by_several_files_is_judged_once(generated, tmp_path, monkeypatch):
    from waveform_mdn import audio_metrics as AM

    f = _files(generated / "measurements.json")[0]
    wav, ref = generated / f["wav"], tmp_path / "ref.wav"
    shutil.copy(wav, ref)
    labels = [p["phone"] for p in f["info"]["intended_phones"]]
    expected = AM.measure_files(wav, ref, judges=True, intended_phones=labels)  # the reference judged per file
    names = []
    monkeypatch.setattr(AM, "judge", lambda *a, _real=AM.judge: names.append(a[3] if len(a) > 3 else "audio")
                        or _real(*a))
    assert cli_main(["evaluate", str(wav), str(wav), "--reference", str(ref), "--judges", "--quiet",
                     "--out", str(tmp_path / "e.json")]) == 0
    assert sorted(names) == ["audio", "audio", "reference"]
    for g in _files(tmp_path / "e.json"):
        assert {k: g[k] for k in AM.REF_JUDGE_KEYS} == {k: expected[k] for k in AM.REF_JUDGE_KEYS}
        assert g["ref_dnsmos_ovrl"] is not None and g["ref_phone_error_rate"] is not None


def test_no_judges_leaves_the_judge_keys_out(generated, prepared, tmp_path):
    assert cli_main(["evaluate", str(generated), "--no-judges", "--quiet", "--out", str(tmp_path / "e.json")]) == 0
    f = _files(tmp_path / "e.json")[0]
    assert f["rms_db"] is not None and not set(JUDGE_KEYS) & set(f)
    assert f["info"]["intended_phones"]  # the record is kept
    ckpt = generated.parent / "m.ckpt"
    assert cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.1 aa:0.5",
                     "--no-judges", "--quiet", "--out", str(tmp_path / "g")]) == 0
    f = _files(tmp_path / "g" / "measurements.json")[0]
    assert f["rms_db"] is not None and not set(JUDGE_KEYS) & set(f)


def _fit(demo_prepared, tmp: Path, *args: str) -> Path:
    rc = train.main(["fit", "--config", str(REPO / "recipes/demo/conf/mlp.yaml"), "--data.path", str(demo_prepared),
                     "--trainer.logger.init_args.save_dir", str(tmp), "--trainer.enable_progress_bar", "false",
                     "--model.hidden", "[16]", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                     "--audio.every_n_epochs", "1", "--audio.seconds", "0.6", "--audio.figure", "false", *args])
    assert rc == 0
    return tmp / "mlp" / "run"


def test_fit_logs_the_judges_of_its_free_running_clip(demo_prepared, tmp_path, scalars):
    run = _fit(demo_prepared, tmp_path / "on", "--trainer.max_epochs", "2")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    judged = [r for r in rows if r.get("audio/dnsmos_ovrl")]
    assert [int(r["epoch"]) for r in judged] == [0, 1]
    assert all(1.0 <= float(r["audio/dnsmos_ovrl"]) <= 5.0 and float(r["audio/phone_error_rate"]) >= 0
               for r in judged)
    assert [v for _, v in scalars(run, "audio/dnsmos_ovrl")] == pytest.approx(
        [float(r["audio/dnsmos_ovrl"]) for r in judged])

    run = _fit(demo_prepared, tmp_path / "off", "--trainer.max_epochs", "1", "--audio.judges", "false")
    assert "audio/dnsmos_ovrl" not in (run / "metrics.csv").read_text()
