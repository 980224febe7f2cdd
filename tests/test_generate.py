"""Generation (``waveform_mdn.generate``): the step-by-step loop equals the teacher-forced
forward pass, the sampler draws from the predictive distribution, inputs, guards, files,
the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from waveform_mdn import generate as G
from data_prep.audio_io import write_wav
from waveform_mdn.data import NextSampleDataset, PreparedDataset, phone_context
from test_heads import LaplaceHead
from waveform_mdn.heads import register_head
from waveform_mdn.models import WaveformPredictor

W = 240
N_STEPS = 900  # generated positions per test stream: enough to cross several phone segments


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: one OpenMP thread (conftest)


def make_model(prepared, head="mixture", fields=("phone", "next_phone"), context="target", pad="skip",
               activation="tanh", seed=0, gain=8.0) -> WaveformPredictor:
    """A randomly initialised predictor whose outputs are O(1) (``gain`` on the head), so
    that equality tests compare meaningful numbers."""
    torch.manual_seed(seed)
    m = WaveformPredictor(
        head=head, components=3, activation=activation, context_fields=list(fields), window=W,
        n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.mean, norm_std=prepared.std,
        sample_rate=prepared.sample_rate, phones=list(prepared.phones), data_fingerprint=prepared.fingerprint,
        phone_context=context, pad=pad,
    )
    with torch.no_grad():
        m.net.head.proj.weight.mul_(gain)
        m.net.head.proj.bias.uniform_(-1.0, 1.0)
        if m.net.position_weight is not None:
            m.net.position_weight.mul_(20.0)  # make the position term matter
    return m.eval()


def forward_on(model, windows: torch.Tensor, ctx: dict[str, torch.Tensor]):
    """Teacher-forced forward pass: the model's Distribution for a batch."""
    with torch.no_grad():
        return model.distribution({"window": windows, **ctx})


def streams_for(prepared, seqs, n):
    items = [G.sequence_from_prepared(prepared, i) for i in seqs]
    ref = torch.stack([torch.from_numpy(prepared.normalise(s.reference[:n])) for s in items])
    return items, ref


# ------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize(
    "head,fields,context,fold,n_streams",
    [
        ("mixture", ("phone", "next_phone"), "target", True, 1),
        ("mixture", ("phone", "next_phone", "prev_phone", "position"), "window_start", True, 6),
        ("gaussian", ("phone", "next_phone", "position"), "target", False, 1),
        ("gaussian", ("phone", "next_phone"), "window_start", True, 6),
    ],
)
def test_teacher_forced_generation_equals_forward_pass(prepared, head, fields, context, fold, n_streams):
    """Step-by-step with the mean instead of a draw == the model on the dataset's batches:
    the buffer indexing, the phone context at every step and the normalisation agree with
    ``NextSampleDataset`` (what training saw), for one stream and for six."""
    model = make_model(prepared, head, fields, context)
    seqs = [i % len(prepared.sequences) for i in range(n_streams)]
    n = W + N_STEPS
    items, ref = streams_for(prepared, seqs, n)
    ctx = G.sequence_contexts(items, n, context, W)
    pred = G.generate(model, ctx, n, given=ref[:, :W], teacher=ref, mode="mean", fold_tanh=fold)
    assert torch.equal(pred[:, :W], ref[:, :W])
    for k, i in enumerate(seqs):
        ds = NextSampleDataset(prepared, split=None, sequences=[i], context=context, pad="skip")
        batch = ds.get_batch(torch.arange(N_STEPS))
        expect = forward_on(model, batch["window"], {f: batch[f] for f in G.CONTEXT_KEYS}).mean
        assert expect.abs().max() > 0.05 and expect.std() > 1e-3  # not near-constant, not near-zero
        torch.testing.assert_close(pred[k, W:], expect, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu"])
def test_teacher_forced_generation_equals_forward_pass_other_activations(prepared, activation):
    model = make_model(prepared, "mixture", activation=activation)
    n = W + 300
    items, ref = streams_for(prepared, [0, 2], n)
    pred = G.generate(model, G.sequence_contexts(items, n, "target", W), n, given=ref[:, :W], teacher=ref,
                      mode="mean")
    for k, i in enumerate([0, 2]):
        batch = NextSampleDataset(prepared, split=None, sequences=[i]).get_batch(torch.arange(300))
        expect = forward_on(model, batch["window"], {f: batch[f] for f in G.CONTEXT_KEYS}).mean
        torch.testing.assert_close(pred[k, W:], expect, atol=2e-5, rtol=2e-5)


def test_teacher_forced_zero_pad_with_silence_prime(prepared):
    """pad="zero": positions 0 .. W-1 are predicted from a window of silence before the
    sequence, exactly as ``NextSampleDataset(pad="zero")`` builds them."""
    model = make_model(prepared, "mixture", pad="zero")
    n = 600
    items, ref = streams_for(prepared, [1], n)
    prime, given_ = G.make_prime("silence", 1, W, prepared.mean, prepared.std, [0])
    assert given_ is None
    pred = G.generate(model, G.sequence_contexts(items, n, "target", W), n, prime=prime, teacher=ref, mode="mean")
    batch = NextSampleDataset(prepared, split=None, sequences=[1], pad="zero").get_batch(torch.arange(n))
    expect = forward_on(model, batch["window"], {f: batch[f] for f in G.CONTEXT_KEYS}).mean
    torch.testing.assert_close(pred[0], expect, atol=2e-5, rtol=2e-5)


def _free_running_check(model, y, prime, items, n, context):
    """Each generated value is the model's point prediction given the previously
    generated values: rebuild the windows from the output and run the forward pass."""
    full = torch.cat([prime, y], dim=1)
    t = torch.arange(n)
    for k, seq in enumerate(items):
        windows = full[k].unfold(0, W, 1)[:n]
        ctx = phone_context(torch.from_numpy(seq.segments), t, torch.zeros_like(t), context, W)
        dist = forward_on(model, windows, ctx)
        yield k, dist


@pytest.mark.parametrize("n_streams", [1, 5])
@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_free_running_mean_is_consistent_with_forward_pass(prepared, head, n_streams):
    model = make_model(prepared, head, ("phone", "next_phone", "position"))
    n = 700
    items = [G.sequence_from_prepared(prepared, i) for i in range(n_streams)]
    prime, _ = G.make_prime("noise", n_streams, W, prepared.mean, prepared.std, list(range(n_streams)))
    y = G.generate(model, G.sequence_contexts(items, n, "target", W), n, prime=prime, mode="mean")
    for k, dist in _free_running_check(model, y, prime, items, n, "target"):
        torch.testing.assert_close(y[k], dist.mean, atol=2e-5, rtol=2e-5)
    assert y.std() > 0.05  # it did not trivially stay constant


@pytest.mark.parametrize("n_streams", [1, 5])
def test_free_running_mode_is_most_probable_components_mean(prepared, n_streams):
    model = make_model(prepared, "mixture")
    n = 500
    items = [G.sequence_from_prepared(prepared, i) for i in range(n_streams)]
    prime, _ = G.make_prime("silence", n_streams, W, prepared.mean, prepared.std, [0] * n_streams)
    y = G.generate(model, G.sequence_contexts(items, n, "target", W), n, prime=prime, mode="mode",
                   temperature_weights=0.5)  # the temperature does not change the argmax
    for k, dist in _free_running_check(model, y, prime, items, n, "target"):
        comp = dist.mixture_distribution.logits.argmax(-1, keepdim=True)
        expect = dist.component_distribution.loc.gather(-1, comp).squeeze(-1)
        torch.testing.assert_close(y[k], expect, atol=2e-5, rtol=2e-5)


# ------------------------------------------------------------------------------ sampling
def _ks_uniform(u: np.ndarray) -> float:
    import scipy.stats

    return scipy.stats.kstest(u, "uniform").pvalue


@pytest.mark.parametrize("n_streams", [1, 6])
@pytest.mark.parametrize("tw,ts", [(1.0, 1.0), (0.5, 2.0)])
def test_mixture_draws_follow_the_tempered_predictive_distribution(prepared, n_streams, tw, ts):
    """Teacher-forced draws, mapped through the CDF of the tempered mixture (logits / tw,
    scales * ts), are uniform (probability integral transform)."""
    from torch.distributions import Categorical, MixtureSameFamily, Normal

    model = make_model(prepared, "mixture")
    n = W + 1500
    items, ref = streams_for(prepared, [i % 3 for i in range(n_streams)], n)
    x = G.generate(model, G.sequence_contexts(items, n, "target", W), n, given=ref[:, :W], teacher=ref,
                   mode="sample", temperature_weights=tw, temperature_scales=ts, seed=3)
    u = []
    for k, seq in enumerate(items):
        windows = ref[k].unfold(0, W, 1)[: n - W]
        t = torch.arange(W, n)
        ctx = phone_context(torch.from_numpy(seq.segments), t, torch.zeros_like(t), "target", W)
        with torch.no_grad():
            logits, means, scales = model.net.head.params(model.net.features(windows, **ctx))
        d = MixtureSameFamily(Categorical(logits=logits / tw), Normal(means, scales * ts))
        u.append(d.cdf(x[k, W:]).numpy())
    assert _ks_uniform(np.concatenate(u)) > 1e-3


def _teacher_forced_params(model, prepared, seq, n):
    """The head's parameters at positions W .. n-1 of sequence ``seq``, from the forward pass."""
    items, ref = streams_for(prepared, [seq], n)
    windows = ref[0].unfold(0, W, 1)[: n - W]
    t = torch.arange(W, n)
    ctx = phone_context(torch.from_numpy(items[0].segments), t, torch.zeros_like(t), "target", W)
    with torch.no_grad():
        return [p.double() for p in model.net.head.params(model.net.features(windows, **ctx))]


@pytest.mark.parametrize("tw", [0.0, 0.5, 1.0, 3.0])
def test_mean_mode_uses_the_tempered_weights(prepared, tw):
    """Bug 5: ``mode="mean"`` is the mean of the mixture with weights softmax(logits / T);
    T = 0 is the most probable component's mean (it used to ignore T)."""
    model = make_model(prepared, "mixture")
    n = W + 600
    y = _teacher_forced(model, prepared, [2], [0], n, mode="mean", temperature_weights=tw)
    logits, means, _ = (p.numpy() for p in _teacher_forced_params(model, prepared, 2, n))
    if tw == 0:
        expect = means[np.arange(len(means)), logits.argmax(1)]
    else:
        w = np.exp(logits / tw - (logits / tw).max(1, keepdims=True))
        expect = (w * means).sum(1) / w.sum(1)
    np.testing.assert_allclose(y[0, W:].numpy(), expect, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
@pytest.mark.parametrize("tw,ts", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.5, 2.0), (1.0, 1.0)])
def test_every_draw_is_the_direct_computation_from_the_streams_noise(prepared, head, tw, ts):
    """Each generated value equals a direct computation from the forward pass's parameters
    and the stream's noise (Gumbel-max component with logits / T_w, then mean + T_s * scale
    * normal), temperature 0 included: T_w = 0 is the most probable component, T_s = 0
    its mean."""
    model = make_model(prepared, head)
    n, seed = W + 600, 31
    y = _teacher_forced(model, prepared, [1], [seed], n, temperature_weights=tw, temperature_scales=ts)
    noise = G.StreamNoise(model.net.head, [seed], torch.device("cpu")).take(n)[W:, 0].double().numpy()
    params = [p.numpy() for p in _teacher_forced_params(model, prepared, 1, n)]
    rows = np.arange(n - W)
    if head == "mixture":
        logits, means, scales = params
        K = logits.shape[1]
        k = logits.argmax(1) if tw == 0 else (logits / tw + noise[:, :K]).argmax(1)
        expect = means[rows, k] + ts * scales[rows, k] * noise[:, K]
    else:
        mean, scale = params
        expect = mean + ts * scale * noise[:, 0]
    np.testing.assert_allclose(y[0, W:].numpy(), expect, atol=2e-5, rtol=2e-5)
    assert np.unique(np.round(expect, 4)).size > 100  # not a constant


def test_gaussian_noise_uses_the_validation_mse(prepared):
    model = make_model(prepared, "gaussian")
    model.net.head.var.fill_(0.5)  # training MSE
    model.net.head.valid_mse.fill_(0.09)  # validation MSE: sigma 0.3
    n = W + 3000
    items, ref = streams_for(prepared, [0], n)
    ctx = G.sequence_contexts(items, n, "target", W)
    mean = G.generate(model, ctx, n, given=ref[:, :W], teacher=ref, mode="mean")
    draw = G.generate(model, ctx, n, given=ref[:, :W], teacher=ref, mode="sample", temperature_scales=2.0)
    assert (draw - mean)[0, W:].std().item() == pytest.approx(0.6, rel=0.06)
    draw_train = G.generate(model, ctx, n, given=ref[:, :W], teacher=ref, gaussian_variance="train")
    assert (draw_train - mean)[0, W:].std().item() == pytest.approx(math.sqrt(0.5), rel=0.06)
    assert G.gaussian_scale(model.net.head, "valid") == pytest.approx(0.3)


def test_seeds_reproducible_and_independent_of_chunking(prepared):
    """Bug 2: stream k's draws depend only on its seed and the step index, not on how the
    steps are cut into chunks (chunks of 300 and 256 used to diverge at step 300)."""
    model = make_model(prepared, "mixture")
    n = 800
    items = [G.sequence_from_prepared(prepared, 0)] * 3
    ctx = G.sequence_contexts(items, n, "target", W)
    a = G.generate(model, ctx, n, seed=7)
    for chunk in (300, 256, 1, 777):
        assert torch.equal(G.generate(model, ctx, n, seed=7, chunk=chunk), a), chunk
    c = G.generate(model, ctx, n, seed=8)
    assert not torch.equal(a[0], a[1])  # streams get seeds 7, 8, 9
    torch.testing.assert_close(a[1], c[0])  # stream 1 of seed 7 is stream 0 of seed 8
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_stream_noise_is_the_heads_noise_by_seed_and_step(prepared, head):
    """The noise of stream k, however it is taken, is ``head.draw_noise`` of blocks of
    ``BLOCK`` steps from a generator seeded with the stream's seed."""
    h = make_model(prepared, head).net.head
    seeds = [5, 11, 12]
    whole = G.StreamNoise(h, seeds, torch.device("cpu")).take(3 * G.BLOCK + 10)
    noise = G.StreamNoise(h, seeds, torch.device("cpu"))
    parts = torch.cat([noise.take(m) for m in (300, 1, 255, 0, 222)])
    assert torch.equal(parts, whole[: len(parts)])
    for k, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        expect = torch.cat([h.draw_noise((G.BLOCK,), g) for _ in range(4)])
        assert torch.equal(whole[:, k], expect[: len(whole)])


def _teacher_forced(model, prepared, seqs, seeds, n, **kw):
    items, ref = streams_for(prepared, seqs, n)
    ctx = G.sequence_contexts(items, n, "target", W)
    return G.generate(model, ctx, n, given=ref[:, :W], teacher=ref, seed=seeds, **kw)


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_64_streams_draw_each_stream_as_it_draws_alone(prepared, head):
    """Stream k of a batch of 64 draws exactly what it draws alone with the same seed (the
    same noise, see above): teacher-forced (every step's draw compared) and free-running.
    Alone, the head's row sampler (Python floats) draws; in the batch, its tensor functions."""
    model = make_model(prepared, head)
    n = W + 400
    seqs = [k % 4 for k in range(64)]
    seeds = [1000 + 3 * k for k in range(64)]
    used = [G.GenerationStats(), G.GenerationStats()]
    batch = _teacher_forced(model, prepared, seqs, seeds, n, stats=used[0])
    _teacher_forced(model, prepared, [seqs[0]], [seeds[0]], W + 1, stats=used[1])
    assert [u.sampler for u in used] == ["tensor", "rows"]
    items = [G.sequence_from_prepared(prepared, i) for i in seqs]
    prime, _ = G.make_prime("noise", 64, W, prepared.mean, prepared.std, seeds)
    ctx = G.sequence_contexts(items, n, "target", W)
    free = G.generate(model, ctx, n, prime=prime, seed=seeds, clip=(-20.0, 20.0))
    for k in (0, 1, 37, 63):
        alone = _teacher_forced(model, prepared, [seqs[k]], [seeds[k]], n)
        # same noise, same component; the values agree to float rounding (a batched matrix
        # product rounds differently from a single row's)
        torch.testing.assert_close(batch[k], alone[0], atol=1e-5, rtol=1e-5)
        one_ctx = {f: v[k : k + 1] for f, v in ctx.items()}
        free_alone = G.generate(model, one_ctx, n, prime=prime[k : k + 1], seed=[seeds[k]], clip=(-20.0, 20.0))
        torch.testing.assert_close(free[k], free_alone[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batch[0, W:], batch[4, W:])  # same sequence, other seed: other draws


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
@pytest.mark.parametrize("mode,tw,ts", [("sample", 1.0, 1.0), ("sample", 0.5, 2.0), ("sample", 0.0, 1.0),
                                        ("sample", 2.0, 0.0), ("mean", 0.5, 1.0), ("mode", 1.0, 1.0)])
def test_row_sampler_and_tensor_functions_generate_the_same_audio(prepared, head, mode, tw, ts):
    """The two ways the engine takes the head's sampler (its row sampler in Python floats,
    for a few streams on CPU; its tensor functions) generate the same free-running audio
    from the same seeds, for every mode and temperature (to float rounding)."""
    model = make_model(prepared, head)
    n, seeds = W + 500, [3, 4, 5]
    items = [G.sequence_from_prepared(prepared, i) for i in (0, 1, 2)]
    prime, _ = G.make_prime("noise", 3, W, prepared.mean, prepared.std, seeds)
    ctx = G.sequence_contexts(items, n, "target", W)
    out = {}
    for rows in (True, False):
        used = G.GenerationStats()
        y = G.generate(model, ctx, n, prime=prime, seed=seeds, mode=mode, temperature_weights=tw,
                       temperature_scales=ts, clip=(-20.0, 20.0), row_sampler=rows, stats=used)
        out[used.sampler] = y
        assert used.sampler == ("rows" if rows else "tensor")
    torch.testing.assert_close(out["rows"], out["tensor"], atol=1e-4, rtol=1e-4)
    assert out["rows"][:, W + 100 :].std() > 0.01


# ------------------------------------------------------------------------------ guards
def test_nonfinite_draws_are_replaced_and_counted(prepared):
    model = make_model(prepared, "mixture")
    with torch.no_grad():
        model.net.head.proj.bias[3:6] = float("nan")  # every component mean is NaN
    n = 400
    for n_streams in (1, 5):
        items = [G.sequence_from_prepared(prepared, 0)] * n_streams
        st_ = G.GenerationStats()
        lo, hi = -3.0, 3.0
        y = G.generate(model, G.sequence_contexts(items, n, "target", W), n, clip=(lo, hi), stats=st_)
        assert torch.isfinite(y).all()
        assert st_.nonfinite_replaced == [n] * n_streams


def test_out_of_range_values_are_clipped_and_counted(prepared):
    model = make_model(prepared, "gaussian")
    with torch.no_grad():
        model.net.head.proj.bias.fill_(50.0)
    n = 300
    items = [G.sequence_from_prepared(prepared, 0)]
    st_ = G.GenerationStats()
    y = G.generate(model, G.sequence_contexts(items, n, "target", W), n, clip=(-2.0, 2.0), mode="mean", stats=st_)
    assert y.max().item() == pytest.approx(2.0)
    assert st_.clipped[0] > n // 2 and st_.nonfinite_replaced == [0]


# ------------------------------------------------------------------------------ inputs
def test_phn_file_gives_the_prepared_sequence(prepared):
    i = 2
    rec = prepared.sequences[i]
    phn = Path(rec["source"]).with_suffix(".PHN")
    seq = G.sequence_from_phn(phn, prepared)
    np.testing.assert_array_equal(seq.segments, prepared.sequence_segments(i))
    np.testing.assert_array_equal(seq.reference, prepared.sequence_wave(i))
    assert seq.length == rec["length"]


def test_inline_phones(prepared):
    seq = G.sequence_from_inline("h#:0.1 aa:300ms aa:0.05 iy:0.2s h#:0.1", prepared)
    sr = prepared.sample_rate
    assert seq.length == int(0.75 * sr)
    assert seq.reference is None
    ids = [prepared.phones.index(p) for p in ("h#", "aa", "iy", "h#")]
    np.testing.assert_array_equal(seq.segments[:, 2], ids)  # the two aa are joined
    np.testing.assert_array_equal(seq.segments[:, :2], [[0, 1600], [1600, 7200], [7200, 10400], [10400, 12000]])
    assert seq.segments[0, 3] == prepared.no_phone and seq.segments[-1, 4] == prepared.no_phone
    with pytest.raises(G.GenerationError, match="not in the prepared"):
        G.sequence_from_inline("h#:0.1 xx:0.2", prepared)
    with pytest.raises(G.GenerationError, match="PHONE:SECONDS"):
        G.sequence_from_inline("h# 0.1", prepared)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h#", "aa", "iy", "s", "pau"]), st.integers(1, 50)),
                min_size=1, max_size=12))
def test_segment_tables_are_well_formed(demo_prepared, items):
    prepared = PreparedDataset(demo_prepared)
    labels, pos = [], 0
    for lab, dur in items:
        labels.append((pos, pos + dur, lab))
        pos += dur
    table, first = G.segments_from_labels(labels, prepared)
    assert first == 0 and table[0, 0] == 0 and table[-1, 1] == pos
    np.testing.assert_array_equal(table[1:, 0], table[:-1, 1])  # contiguous
    assert (table[1:, 2] != table[:-1, 2]).all()  # equal neighbours were joined
    np.testing.assert_array_equal(table[1:, 3], table[:-1, 2])  # prev / next labels
    np.testing.assert_array_equal(table[:-1, 4], table[1:, 2])


def test_real_prime_needs_a_reference(prepared):
    with pytest.raises(G.GenerationError, match="reference"):
        G.make_prime("real", 1, W, 0.0, 1.0, [0], [None])


# ------------------------------------------------------------------------------ files, API, CLI
def test_write_wav_is_atomic_and_counts_clipping(tmp_path):
    x = np.array([0.0, 0.5, -1.5, 2.0, 1.0, -1.0], dtype=np.float32)
    path = tmp_path / "a.wav"
    assert write_wav(path, x, 16000) == 2
    data, sr = sf.read(str(path), dtype="int16")
    info = sf.info(str(path))
    assert sr == 16000 and info.subtype == "PCM_16"
    np.testing.assert_array_equal(data, [0, 16384, -32768, 32767, 32767, -32768])
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temporary file left


def test_generate_for_sequence(prepared):
    model = make_model(prepared, "mixture")
    a = G.generate_for_sequence(model, prepared, "MKAL0_SA1", seconds=0.1, mode="sample", seed=1)
    b = G.generate_for_sequence(model, prepared, 0, seconds=0.1, mode="sample", seed=1)
    assert a.dtype == np.float32 and a.shape == (1600,)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0
    # the real prime: the first window is the utterance itself
    np.testing.assert_allclose(a[:W], prepared.sequence_wave(0)[:W] / 32768.0, atol=1e-6)


def _save_ckpt(model, path: Path) -> Path:
    import pytorch_lightning as pl

    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


def test_cli_generate_and_evaluate(prepared, tmp_path, capsys):
    ckpt = _save_ckpt(make_model(prepared, "mixture", gain=1.0), tmp_path / "m.ckpt")
    out = tmp_path / "gen"
    rc = G.main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--utterance", "MKAL0_SA1",
                 "--streams", "2", "--seconds", "0.25", "--seed", "5", "--png", "--out", str(out)])
    assert rc == 0
    meas = json.loads((out / "measurements.json").read_text())
    assert meas["head"] == "mixture" and meas["data_fingerprint"] == prepared.fingerprint
    assert meas["settings"]["prime"] == "real" and meas["settings"]["mode"] == "sample"
    assert [f["wav"] for f in meas["files"]] == ["MKAL0_SA1_0.wav", "MKAL0_SA1_1.wav"]
    for f in meas["files"]:
        assert f["reference"] == "reference/MKAL0_SA1.wav"
        assert f["clipped"] == 0 and f["nonfinite_replaced"] == 0
        assert {"lsd_db", "mcd_db", "rms_db", "kurtosis", "periodicity", "voicing_agreement"} <= set(f)
        data, sr = sf.read(str(out / f["wav"]), dtype="int16")
        assert sr == prepared.sample_rate and len(data) == 4000
        assert (out / f["png"]).stat().st_size > 1000
    assert [f["info"]["seed"] for f in meas["files"]] == [5, 6]
    ref, _ = sf.read(str(out / "reference" / "MKAL0_SA1.wav"), dtype="int16")
    np.testing.assert_array_equal(ref, prepared.sequence_wave(0)[:4000])

    # inline phones: no reference, silence prime by default; evaluate re-measures in place
    out2 = tmp_path / "gen2"
    rc = G.main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.05 aa:0.2",
                 "--mode", "mean", "--out", str(out2)])
    assert rc == 0
    meas2 = json.loads((out2 / "measurements.json").read_text())
    assert meas2["settings"]["prime"] == "silence" and meas2["files"][0]["reference"] is None
    assert meas2["files"][0]["lsd_db"] is None
    assert G.main(["evaluate", str(out2)]) == 0
    again = json.loads((out2 / "measurements.json").read_text())
    assert again["files"][0]["rms_db"] == pytest.approx(meas2["files"][0]["rms_db"])
    assert again["files"][0]["info"] == meas2["files"][0]["info"]
    # re-measured into another directory: the paths still lead to the files
    elsewhere = tmp_path / "elsewhere" / "m.json"
    assert G.main(["evaluate", str(out / "measurements.json"), "--out", str(elsewhere)]) == 0
    moved = json.loads(elsewhere.read_text())
    for f, f0 in zip(moved["files"], meas["files"]):
        assert (elsewhere.parent / f["wav"]).resolve() == (out / f0["wav"]).resolve()
        assert (elsewhere.parent / f["reference"]).resolve() == (out / f0["reference"]).resolve()
        assert f["lsd_db"] == pytest.approx(f0["lsd_db"]) and f["info"] == f0["info"]
    # plain WAV files against one reference
    loose = tmp_path / "loose.json"
    wavs = [str(out / f["wav"]) for f in meas["files"]]
    assert G.main(["evaluate", *wavs, "--reference", str(out / "reference" / "MKAL0_SA1.wav"),
                   "--out", str(loose)]) == 0
    loose_files = json.loads(loose.read_text())["files"]
    assert [f["lsd_db"] for f in loose_files] == pytest.approx([f["lsd_db"] for f in meas["files"]])

    # errors are reported, not raised
    capsys.readouterr()
    rc = G.main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--utterance", "NOPE",
                 "--out", str(tmp_path / "x")])
    assert rc == 1 and "NOPE" in capsys.readouterr().err
    rc = G.main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.1",
                 "--prime", "real", "--out", str(tmp_path / "x")])
    assert rc == 1 and "reference" in capsys.readouterr().err


def test_cli_bad_input_is_one_line_naming_the_file_before_any_work(prepared, tmp_path, capsys):
    """Bug 6: a truncated checkpoint, an ``--out`` that is a file, an ``--out`` that cannot
    be made: one line on stderr naming the file, exit code 1, no traceback, and nothing
    generated first (no "[generate]" progress line before the error)."""
    from waveform_mdn.cli import main as cli_main

    good = _save_ckpt(make_model(prepared, "mixture", gain=1.0), tmp_path / "m.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    base = ["generate", "--data", str(prepared.path), "--utterance", "MKAL0_SA1", "--seconds", "0.05",
            "--no-measure"]
    cases = [
        (["--ckpt", str(truncated), "--out", str(tmp_path / "o1")], truncated),
        (["--ckpt", str(good), "--out", str(a_file)], a_file),
        (["--ckpt", str(good), "--out", str(a_file / "sub")], a_file / "sub"),
    ]
    for extra, named in cases:
        capsys.readouterr()
        rc = cli_main(base + extra)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 1, err
        assert len(lines) == 1 and str(named) in lines[0] and "Traceback" not in err, err
    assert a_file.read_text() == "not a directory"
    assert not (tmp_path / "o1").exists() or not any((tmp_path / "o1").glob("*.wav"))


def test_cli_refuses_other_data(prepared, demo_prepared_all, tmp_path, capsys):
    ckpt = _save_ckpt(make_model(prepared, "gaussian", gain=1.0), tmp_path / "m.ckpt")
    other = PreparedDataset(demo_prepared_all)
    args = ["generate", "--ckpt", str(ckpt), "--data", str(other.path), "--utterance", "MKAL0_SA1",
            "--seconds", "0.05", "--no-measure", "--out", str(tmp_path / "o")]
    assert G.main(args) == 1
    assert "--allow-different-data" in capsys.readouterr().err
    assert G.main(args + ["--allow-different-data"]) == 0
    meas = json.loads((tmp_path / "o" / "measurements.json").read_text())
    assert meas["notes"] and "lsd_db" not in meas["files"][0]


@register_head("test_generate_laplace")
class GenerationLaplaceHead(LaplaceHead):
    """The Laplace head of test_heads (``params`` and ``distribution_from_params`` only)."""


def test_a_new_head_generates_through_its_own_functions(prepared):
    """Bug 3: a head the engine knows nothing about is sampled with its own functions and
    per-stream noise: stream k's output is the same alone and in a batch (it used to draw
    from one generator for the batch, seeded with the first stream's seed)."""
    model = make_model(prepared, "test_generate_laplace", gain=1.0)
    n = W + 300
    pred = _teacher_forced(model, prepared, [0, 1], [0, 1], n, mode="mean")
    batch = NextSampleDataset(prepared, split=None, sequences=[1]).get_batch(torch.arange(300))
    expect = forward_on(model, batch["window"], {f: batch[f] for f in G.CONTEXT_KEYS})
    torch.testing.assert_close(pred[1, W:], expect.mean, atol=2e-5, rtol=2e-5)
    seeds = [4, 9, 2]
    together = _teacher_forced(model, prepared, [0, 1, 2], seeds, n)
    for k in range(3):
        alone = _teacher_forced(model, prepared, [k], [seeds[k]], n)
        torch.testing.assert_close(together[k], alone[0], atol=1e-5, rtol=1e-5)
    # the draws follow the predictive Laplace (probability integral transform)
    x = _teacher_forced(model, prepared, [1], [123], W + 2000)
    batch = NextSampleDataset(prepared, split=None, sequences=[1]).get_batch(torch.arange(2000))
    d = forward_on(model, batch["window"], {f: batch[f] for f in G.CONTEXT_KEYS})
    assert _ks_uniform(d.cdf(x[0, W:]).numpy()) > 1e-3


def test_generation_changes_no_process_wide_setting(prepared):
    """The library leaves torch's thread count and the garbage collector as they are, also
    during the loop (only the CLI entry point sets them)."""
    import gc

    seen = []

    class Spy(GenerationLaplaceHead):
        def params(self, features):
            seen.append((torch.get_num_threads(), gc.isenabled()))
            return super().params(features)

    model = make_model(prepared, "test_generate_laplace", gain=1.0)
    model.net.head.__class__ = Spy
    torch.set_num_threads(2)
    assert gc.isenabled()
    items = [G.sequence_from_prepared(prepared, 0)]
    G.generate(model, G.sequence_contexts(items, 50, "target", W), 50)
    assert seen and set(seen) == {(2, True)}
    assert torch.get_num_threads() == 2 and gc.isenabled()
