"""Generation options: the CLI's ``--phn``, ``--limit``, ``--batch-size`` and
``--gaussian-variance``; seeds of many streams; batches of sequences of different lengths;
``mode=mean`` with a temperature. Each compares with an independent result (the same
sequence another way, a stream alone, a hand-written formula)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.special
import soundfile as sf
import torch

from data_prep import DEMO_CORPUS
from waveform_mdn.cli import main as cli_main
from waveform_mdn.data import phone_context
from waveform_mdn.generation.batching import generate_sequences
from waveform_mdn.generation.engine import GenerationStats, generate
from waveform_mdn.generation.inputs import Streams, make_prime, sequence_contexts, sequence_from_prepared
from waveform_mdn.generation.settings import GenerationSettings as S
from waveform_mdn.models import WaveformPredictor

W = 240


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: one OpenMP thread (conftest)


def make_model(prepared, head="mixture", gain=8.0) -> WaveformPredictor:
    torch.manual_seed(1)
    m = WaveformPredictor(head=head, components=3, hidden=[32, 32], context_fields=["phone", "next_phone"],
                          window=W, n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.normalisation.mean,
                          norm_std=prepared.normalisation.std, sample_rate=prepared.sample_rate, phones=list(prepared.phones),
                          data_fingerprint=prepared.fingerprint)
    with torch.no_grad():
        m.net.head.proj.weight.mul_(gain)
    return m.eval()


def save_ckpt(model, path):
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__, "epoch": 0, "global_step": 0}, path)
    return path


def cli(ckpt, prepared, out, *args) -> dict:
    rc = cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--no-measure", "--quiet",
                 "--out", str(out), *args])
    assert rc == 0
    return json.loads((out / "measurements.json").read_text())


def wavs(out, meas) -> list[np.ndarray]:
    return [sf.read(str(out / f["wav"]), dtype="int16")[0] for f in meas["files"]]


# ------------------------------------------------------------------------------ CLI
def test_cli_phn_file_generates_what_the_prepared_utterance_does(prepared, tmp_path):
    """``--phn`` of the corpus's own .PHN (its .WAV beside: the real prime) gives the same
    audio as ``--utterance`` of the prepared copy of that utterance."""
    ckpt = save_ckpt(make_model(prepared), tmp_path / "m.ckpt")
    phn = DEMO_CORPUS / "TRAIN" / "DR1" / "MKAL0" / "SA1.PHN"
    common = ("--seconds", "0.06", "--seed", "3", "--streams", "2")
    by_phn = cli(ckpt, prepared, tmp_path / "phn", "--phn", str(phn), *common)
    by_id = cli(ckpt, prepared, tmp_path / "id", "--utterance", "MKAL0_SA1", *common)
    assert by_phn["settings"]["prime"] == "real" and by_phn["settings"]["phn"] == [str(phn.resolve())]
    for a, b in zip(wavs(tmp_path / "phn", by_phn), wavs(tmp_path / "id", by_id), strict=True):
        assert len(a) == 960
        np.testing.assert_array_equal(a, b)


def test_cli_limit_and_batch_size(prepared, tmp_path):
    """``--split train --limit 3``: the first 3 training sequences; ``--batch-size 2`` of 6
    streams (3 batches) writes the same audio as one batch of 64."""
    ckpt = save_ckpt(make_model(prepared), tmp_path / "m.ckpt")
    common = ("--split", "train", "--limit", "3", "--streams", "2", "--seconds", "0.03", "--seed", "9")
    small = cli(ckpt, prepared, tmp_path / "b2", *common, "--batch-size", "2")
    whole = cli(ckpt, prepared, tmp_path / "b64", *common)
    first3 = [str(prepared.sequences[i]["id"]) for i in prepared.sequence_indices("train")[:3]]
    assert [f["wav"] for f in small["files"]] == [f"{name}_{k}.wav" for name in first3 for k in (0, 1)]
    assert [f["info"]["seed"] for f in small["files"]] == [9, 10] * 3
    for a, b in zip(wavs(tmp_path / "b2", small), wavs(tmp_path / "b64", whole), strict=True):
        np.testing.assert_allclose(a, b, atol=1)  # batched matrix products round differently
    one = cli(ckpt, prepared, tmp_path / "l1", *common[:2], "--limit", "1", "--seconds", "0.03")
    assert [f["wav"] for f in one["files"]] == [f"{first3[0]}.wav"]


def test_cli_gaussian_variance_sets_the_mlps_noise(prepared, tmp_path):
    """The first generated sample (real prime: the same window in every run) is the mean plus
    sigma * z with the same z: sigma = sqrt(train MSE) = 0.5 against sqrt(valid MSE) = 0.1."""
    model = make_model(prepared, "gaussian", gain=1.0)
    model.net.head.var.fill_(0.25)
    model.net.head.valid_mse.fill_(0.01)
    ckpt = save_ckpt(model, tmp_path / "mlp.ckpt")
    common = ("--utterance", "MKAL0_SA1", "--streams", "6", "--seconds", "0.02", "--seed", "4")
    first = {}
    for name, args in (("mean", ("--mode", "mean")), ("train", ("--gaussian-variance", "train")),
                       ("valid", ("--gaussian-variance", "valid"))):
        meas = cli(ckpt, prepared, tmp_path / name, *common, *args)
        first[name] = np.array([w[W].astype(float) for w in wavs(tmp_path / name, meas)])
        if name != "mean":
            assert meas["settings"]["gaussian_variance"] == name
            assert meas["settings"]["gaussian_scale"] == pytest.approx(0.5 if name == "train" else 0.1)
    d_train, d_valid = first["train"] - first["mean"], first["valid"] - first["mean"]
    big = np.abs(d_valid) > 20  # int16 codes: well above the rounding
    assert big.sum() >= 3
    np.testing.assert_allclose(d_train[big] / d_valid[big], 5.0, rtol=0.08)
    assert np.abs(d_valid).max() < 6 * 0.1 * prepared.normalisation.std * 32768  # std of the signal in [-1, 1]


# ------------------------------------------------------------------------------ engine
def test_more_than_four_streams_are_reproducible_by_seed(prepared):
    """6 streams: the same seeds give the same audio, whatever the chunks;
    stream k of seed s is the stream of seed s + k, also in another batch order."""
    model = make_model(prepared)
    n = 500
    seqs = [sequence_from_prepared(prepared, i % 3) for i in range(6)]
    ctx = sequence_contexts(seqs, n, "target", W)
    stats = GenerationStats()
    a = generate(model, Streams(ctx, n, clip=(-20.0, 20.0)), S(seed=11), stats=stats)
    assert stats.seeds == list(range(11, 17))
    assert torch.equal(generate(model, Streams(ctx, n, clip=(-20.0, 20.0)), S(seed=11, chunk=37)), a)
    assert torch.equal(generate(model, Streams(ctx, n, clip=(-20.0, 20.0)), S(seed=11)), a)
    order = [5, 3, 1, 0, 2, 4]
    b = generate(model, Streams({k: v[order] for k, v in ctx.items()}, n, seeds=[11 + k for k in order], clip=(-20.0, 20.0)))
    torch.testing.assert_close(b, a[order], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a[0], a[3])  # the same sequence with another seed


def test_several_batches_of_sequences_of_different_lengths(prepared):
    """Three sequences of different lengths, 2 streams each, in batches of 4: each stream
    has its sequence's length and is what that stream gives alone."""
    model = make_model(prepared)
    sr = prepared.sample_rate
    seqs = [sequence_from_prepared(prepared, i).truncated(s, sr) for i, s in ((0, 0.03), (4, 0.05), (2, 0.04))]
    batched = generate_sequences(model, seqs, S(streams=2, seed=21, batch_size=4, prime="real").resolved(
        dict(model.hparams)))
    assert [(g.sequence.name, g.stream, g.seed, len(g.audio)) for g in batched] == [
        (s.name, k, 21 + k, s.length) for s in seqs for k in (0, 1)]
    for g in batched:
        alone = generate_sequences(model, [g.sequence], S(streams=2, seed=21, batch_size=1, prime="real").resolved(
            dict(model.hparams)))[g.stream]
        np.testing.assert_allclose(g.audio, alone.audio, atol=1e-4)
        np.testing.assert_allclose(g.audio[:W], g.sequence.reference[:W] / 32768.0, atol=1e-6)  # the real prime


def test_mean_mode_with_a_temperature_many_streams(prepared):
    """``mode="mean"``, ``T_w = 0.5``, 6 streams: the mean of the mixture with weights
    softmax(logits / 0.5) on the generated windows, written here in numpy."""
    model = make_model(prepared)
    n = W + 200
    items = [sequence_from_prepared(prepared, i) for i in range(6)]
    prime, given = make_prime("real", 6, W, prepared.normalisation, range(6), [q.reference for q in items])
    y = generate(model, Streams(sequence_contexts(items, n, "target", W), n, prime, given),
                 S(mode="mean", temperature_weights=0.5))
    full = torch.cat([prime, y], 1)
    t = torch.arange(W, n)
    K = model.net.head.components
    for k, seq in enumerate(items):
        ctx = phone_context(torch.from_numpy(seq.segments), t, torch.zeros_like(t), "target", W)
        with torch.no_grad():
            out = model.net.head.proj(model.net.features(full[k].unfold(0, W, 1)[W:n], **ctx)).double().numpy()
        expect = np.sum(scipy.special.softmax(out[:, :K] / 0.5, axis=1) * out[:, K : 2 * K], axis=1)
        np.testing.assert_allclose(y[k, W:].numpy(), expect, atol=2e-5)
