"""Progress on the long steps: the engine reports once per chunk of steps; ``generate``
shows a bar per batch of streams (samples, samples/s, steps, times real time) and a bar
over the measured files, both on stderr; ``--quiet`` silences them."""

from __future__ import annotations

import json
import re

import pytest
import torch

from waveform_mdn.audio_metrics import per_file_progress
from waveform_mdn.cli import main as cli_main
from waveform_mdn.generation.engine import generate
from waveform_mdn.generation.inputs import Streams, sequence_contexts, sequence_from_prepared
from waveform_mdn.generation.settings import GenerationSettings
from waveform_mdn.models import WaveformPredictor


def make_model(prepared) -> WaveformPredictor:
    torch.manual_seed(0)
    return WaveformPredictor(head="mixture", components=3, hidden=[32], window=240,
                             n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.normalisation.mean, norm_std=prepared.normalisation.std,
                             sample_rate=prepared.sample_rate, phones=list(prepared.phones),
                             data_fingerprint=prepared.fingerprint).eval()


@pytest.fixture(scope="module")
def ckpt(prepared, tmp_path_factory):
    import pytorch_lightning as pl

    model, path = make_model(prepared), tmp_path_factory.mktemp("progress") / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__, "epoch": 0, "global_step": 0}, path)
    return path


@pytest.mark.parametrize("n_streams,chunk", [(1, 100), (6, 64), (6, None)])
def test_engine_reports_each_chunk_once(prepared, n_streams, chunk):
    model = make_model(prepared)
    n, s = 1000, GenerationSettings(seed=3, chunk=chunk)
    ctx = sequence_contexts([sequence_from_prepared(prepared, 0)] * n_streams, n, "target", 240)
    calls: list[int] = []
    ref = generate(model, Streams(ctx, n), s)
    out = generate(model, Streams(ctx, n), s, progress=calls.append)
    assert sum(calls) == n and len(calls) >= 1
    if chunk is not None:
        assert calls == [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the callback changes nothing


def _generate(ckpt, prepared, out, *extra):
    return cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.05 aa:0.1 s:0.05",
                   "--streams", "2", "--batch-size", "1", "--out", str(out), *extra])


def test_generate_shows_a_bar_per_batch_and_per_measured_file(ckpt, prepared, tmp_path, capsys):
    capsys.readouterr()
    assert _generate(ckpt, prepared, tmp_path / "o") == 0
    err = capsys.readouterr().err
    steps = int(0.2 * prepared.sample_rate)
    for b in (1, 2):  # one bar per batch (a batch of one stream each here)
        final = [line for line in re.split(r"[\r\n]", err) if line.startswith(f"batch {b}/2 (1 stream)")][-1]
        assert "100%|" in final and f"{steps / 1000:.2f}k/{steps / 1000:.2f}k" in final and "sample/s" in final, final
        assert f"step {steps:,}/{steps:,}" in final and re.search(r"\d+\.\dx real time", final), final
    measured = [line for line in re.split(r"[\r\n]", err) if line.startswith("measuring")][-1]
    assert "2/2" in measured and "file" in measured


def test_quiet_silences_the_bars(ckpt, prepared, tmp_path, capsys):
    capsys.readouterr()
    assert _generate(ckpt, prepared, tmp_path / "q", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "2 file(s)" in captured.out  # the closing line still says what was written


def test_per_file_progress_disabled_is_the_items_themselves(capsys):
    items = [1, 2, 3]
    assert per_file_progress(items, enabled=False) is items
    assert list(per_file_progress(items, desc="measuring")) == items
    assert "3/3" in capsys.readouterr().err


def test_evaluate_shows_a_bar_per_file_and_quiet_silences_it(ckpt, prepared, tmp_path, capsys):
    assert _generate(ckpt, prepared, tmp_path / "e", "--quiet") == 0
    before = json.loads((tmp_path / "e" / "measurements.json").read_text())
    capsys.readouterr()
    assert cli_main(["evaluate", str(tmp_path / "e")]) == 0  # re-measure in place
    measured = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("measuring")]
    assert measured and "2/2" in measured[-1]
    assert cli_main(["evaluate", str(tmp_path / "e"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    wavs = sorted((tmp_path / "e").glob("*.wav"))
    assert cli_main(["evaluate", *map(str, wavs), "--out", str(tmp_path / "m.json")]) == 0
    measured = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("measuring")]
    assert measured and f"{len(wavs)}/{len(wavs)}" in measured[-1]
    assert json.loads((tmp_path / "e" / "measurements.json").read_text()) == before  # re-measured: same numbers
