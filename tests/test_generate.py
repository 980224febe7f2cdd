"""Generation: every generated value is the Predictor's own forward pass on the windows it
generated (mean, mode, and each draw from the stream's noise), seeds, guards, inputs, files,
the CLI."""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.audio_io import Normalisation, write_wav
from waveform_mdn.cli import main as cli_main
from waveform_mdn.data import CONTEXT_FIELDS, NextSampleDataset, PreparedDataset, phone_context
from waveform_mdn.generation.batching import generate_for_sequence
from waveform_mdn.generation.engine import BLOCK, GenerationStats, StreamNoise, generate
from waveform_mdn.generation.inputs import (
    Streams, batch_streams, make_prime, segments_from_labels, sequence_contexts, sequence_from_inline, sequence_from_phn,
    sequence_from_prepared,
)
from waveform_mdn.generation.settings import GenerationError, GenerationSettings as S
from waveform_mdn.models import WaveformPredictor

W = 240
N_STEPS = 900  # generated positions per test stream: enough to cross several phone segments

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(prepared, head="mixture", fields=("phone", "next_phone"), context="target", pad="skip",
               activation="tanh", seed=0, gain=8.0) -> WaveformPredictor:
    """A random predictor whose outputs are O(1) (``gain`` on the head)."""
    torch.manual_seed(seed)
    m = WaveformPredictor(
        head=head, components=3, activation=activation, context_fields=list(fields), window=W,
        n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.normalisation.mean, norm_std=prepared.normalisation.std,
        sample_rate=prepared.sample_rate, phones=list(prepared.phones), data_fingerprint=prepared.fingerprint,
        phone_context=context, pad=pad,
    )
    with torch.no_grad():
        m.net.head.proj.weight.mul_(gain)
        m.net.head.proj.bias.uniform_(-1.0, 1.0)
        if m.net.position_weight is not None:
            m.net.position_weight.mul_(20.0)  # make the position term matter
    return m.eval()


def free_run(model, prepared, seqs, n, s=S(), prime="real", seeds=None, clip=None, stats=None):
    """(sequences, generated ``[N, n]``, prime + generated ``[N, W + n]``)."""
    items = [sequence_from_prepared(prepared, i) for i in seqs]
    seeds = list(range(len(seqs))) if seeds is None else seeds
    p, given_ = make_prime(prime, len(items), W, prepared.normalisation, seeds, [q.reference for q in items])
    y = generate(model, Streams(sequence_contexts(items, n, s.context or "target", W), n, p, given_, seeds, clip), s,
                 stats=stats)
    return items, y, torch.cat([p, y], 1)


def params_on(model, full, seq, t0, n, context="target"):
    """``Predictor.params`` at positions ``t0 .. n-1`` of one stream, on the windows it generated."""
    t = torch.arange(t0, n)
    ctx = phone_context(torch.from_numpy(seq.segments), t, torch.zeros_like(t), context, W)
    with torch.no_grad():
        return model.net.params({"window": full.unfold(0, W, 1)[t0:n], **ctx})


# ------------------------------------------------------------------------------ one forward pass
@pytest.mark.parametrize("head,fields,context,n_streams", [
    ("mixture", ("phone", "next_phone"), "target", 1),
    ("mixture", ("phone", "next_phone", "prev_phone", "position"), "window_start", 6),
    ("gaussian", ("phone", "next_phone", "position"), "target", 1),
    ("gaussian", ("phone", "next_phone"), "window_start", 6),
])
def test_generation_is_the_forward_pass_on_the_dataset_context(prepared, head, fields, context, n_streams):
    """Each generated mean == the model on ``NextSampleDataset``'s batch (what training saw:
    its phone context, its buffer indexing) with the generated windows."""
    model = make_model(prepared, head, fields, context)
    seqs = [i % len(prepared.sequences) for i in range(n_streams)]
    items, y, full = free_run(model, prepared, seqs, W + N_STEPS, S(mode="mean", context=context))
    for k, (i, seq) in enumerate(zip(seqs, items)):
        np.testing.assert_allclose(y[k, :W].numpy(), prepared.normalisation.normalise(seq.reference[:W]), atol=1e-6)
        batch = NextSampleDataset(prepared, split=None, sequences=[i], context=context, pad="skip").get_batch(
            torch.arange(N_STEPS))
        batch["window"] = full[k].unfold(0, W, 1)[W : W + N_STEPS]
        with torch.no_grad():
            expect = model.net.distribution(batch).mean
        assert expect.std() > 1e-3  # not near-constant
        torch.testing.assert_close(y[k, W:], expect, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu"])
def test_other_activations(prepared, activation):
    model = make_model(prepared, "mixture", activation=activation)
    items, y, full = free_run(model, prepared, [0, 2], W + 300, S(mode="mean"))
    for k, seq in enumerate(items):
        torch.testing.assert_close(y[k, W:], model.net.head.mean_from_params(params_on(model, full[k], seq, W, W + 300)),
                                   atol=2e-5, rtol=2e-5)


def test_zero_pad_with_silence_prime(prepared):
    """pad="zero": positions 0 .. W-1 are predicted from a window of silence before the
    sequence, as ``NextSampleDataset(pad="zero")`` builds them."""
    model = make_model(prepared, "mixture", pad="zero")
    n = 600
    _, y, full = free_run(model, prepared, [1], n, S(mode="mean"), prime="silence")
    batch = NextSampleDataset(prepared, split=None, sequences=[1], pad="zero").get_batch(torch.arange(n))
    assert torch.equal(batch["window"][0], full[0, :W])  # the silence prime is the zero pad
    batch["window"] = full[0].unfold(0, W, 1)[:n]
    with torch.no_grad():
        torch.testing.assert_close(y[0], model.net.distribution(batch).mean, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("n_streams", [1, 5])
@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_free_running_mean_from_a_noise_prime(prepared, head, n_streams):
    model = make_model(prepared, head, ("phone", "next_phone", "position"))
    items, y, full = free_run(model, prepared, range(n_streams), 700, S(mode="mean"), prime="noise")
    for k, seq in enumerate(items):
        dist = model.net.head.distribution_from_params(params_on(model, full[k], seq, 0, 700))
        torch.testing.assert_close(y[k], dist.mean, atol=2e-5, rtol=2e-5)
    assert y.std() > 0.05


@pytest.mark.parametrize("n_streams", [1, 5])
def test_mode_is_the_most_probable_components_mean(prepared, n_streams):
    model = make_model(prepared, "mixture")
    items, y, full = free_run(model, prepared, range(n_streams), 500, S(mode="mode", temperature_weights=0.5),
                              prime="silence")
    for k, seq in enumerate(items):
        logits, means, _ = params_on(model, full[k], seq, 0, 500)
        torch.testing.assert_close(y[k], means.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1),
                                   atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("head", ["logistic_mixture", "mulaw_softmax", "mixture", "test_laplace"])
@pytest.mark.parametrize("mode", ["mean", "mode", "sample"])
def test_every_head_generates_through_its_own_functions(prepared, laplace_head, head, mode):
    """The engine's value == the head's own function of the forward pass's parameters and
    the stream's noise, for every head, one a test registers."""
    model = make_model(prepared, head, gain=1.0 if head == "test_laplace" else 8.0)
    if head == "mixture":
        model.net.head.likelihood = "discretised"  # sampling does not depend on the loss
    if head == "mulaw_softmax":  # 256 classes: let the features, not the bias, pick the top one
        with torch.no_grad():
            model.net.head.proj.bias.zero_()
    n, seed, h = W + 500, 7, model.net.head
    items, y, full = free_run(model, prepared, [1], n, S(mode=mode), seeds=[seed])
    params = params_on(model, full[0], items[0], W, n)
    noise = StreamNoise(h, [seed], torch.device("cpu")).take(n)[W:, 0]
    with torch.no_grad():
        expect = {"mean": lambda: h.mean_from_params(params), "mode": lambda: h.mode_from_params(params),
                  "sample": lambda: h.sample_from_noise(params, noise)}[mode]()
    torch.testing.assert_close(y[0, W:], expect, atol=3e-5, rtol=3e-5)
    if head == "test_laplace" and mode == "sample":  # the draws follow the predictive Laplace (PIT)
        assert _ks_uniform(h.distribution_from_params(params).cdf(y[0, W:]).numpy()) > 1e-3
    if not (mode == "mode" and head == "mulaw_softmax"):  # an untrained softmax's top class rarely moves
        assert float(expect.std()) > 1e-3 and np.unique(expect.numpy()).size > 3


@pytest.mark.parametrize("head", ["logistic_mixture", "mulaw_softmax"])
def test_free_running_draws_are_finite_and_vary(prepared, head):
    _, y, _ = free_run(make_model(prepared, head, gain=2.0), prepared, [0, 1], 400, prime="noise", seeds=[3, 4])
    assert torch.isfinite(y).all() and float(y.std()) > 0.01


# ------------------------------------------------------------------------------ sampling
def _ks_uniform(u: np.ndarray) -> float:
    import scipy.stats

    return scipy.stats.kstest(u, "uniform").pvalue


@pytest.mark.parametrize("n_streams", [1, 6])
@pytest.mark.parametrize("tw,ts", [(1.0, 1.0), (0.5, 2.0)])
def test_mixture_draws_follow_the_tempered_predictive_distribution(prepared, n_streams, tw, ts):
    """Draws through the CDF of the tempered mixture (logits / tw, scales * ts) are uniform."""
    from torch.distributions import Categorical, MixtureSameFamily, Normal

    model = make_model(prepared, "mixture")
    n = W + 1500
    items, x, full = free_run(model, prepared, [i % 3 for i in range(n_streams)], n,
                              S(temperature_weights=tw, temperature_scales=ts), seeds=[3 + k for k in range(n_streams)])
    u = []
    for k, seq in enumerate(items):
        logits, means, scales = params_on(model, full[k], seq, W, n)
        u.append(MixtureSameFamily(Categorical(logits=logits / tw), Normal(means, scales * ts)).cdf(x[k, W:]).numpy())
    assert _ks_uniform(np.concatenate(u)) > 1e-3


@pytest.mark.parametrize("tw", [0.0, 0.5, 1.0, 3.0])
def test_mean_mode_uses_the_tempered_weights(prepared, tw):
    """Bug 5: ``mode="mean"`` is the mean of the mixture with weights softmax(logits / T);
    T = 0 is the most probable component's mean."""
    model = make_model(prepared, "mixture")
    n = W + 600
    items, y, full = free_run(model, prepared, [2], n, S(mode="mean", temperature_weights=tw))
    logits, means, _ = (p.double().numpy() for p in params_on(model, full[0], items[0], W, n))
    if tw == 0:
        expect = means[np.arange(len(means)), logits.argmax(1)]
    else:
        w = np.exp(logits / tw - (logits / tw).max(1, keepdims=True))
        expect = (w * means).sum(1) / w.sum(1)
    np.testing.assert_allclose(y[0, W:].numpy(), expect, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
@pytest.mark.parametrize("tw,ts", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.5, 2.0), (1.0, 1.0)])
def test_every_draw_is_the_direct_computation_from_the_streams_noise(prepared, head, tw, ts):
    """Gumbel-max component with logits / T_w, then mean + T_s * scale * normal, written
    here in numpy from the forward pass and the stream's noise (temperature 0 included)."""
    model = make_model(prepared, head)
    n, seed = W + 600, 31
    items, y, full = free_run(model, prepared, [1], n, S(temperature_weights=tw, temperature_scales=ts), seeds=[seed])
    noise = StreamNoise(model.net.head, [seed], torch.device("cpu")).take(n)[W:, 0].double().numpy()
    params = [p.double().numpy() for p in params_on(model, full[0], items[0], W, n)]
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
    assert np.unique(np.round(expect, 4)).size > 100


def test_gaussian_noise_uses_the_validation_mse(prepared):
    """The MLP's noise: sqrt of the validation MSE (default) or of the training MSE, the
    head's own ``var`` left as it was."""
    model = make_model(prepared, "gaussian")
    head = model.net.head
    head.var.fill_(0.5)  # training MSE
    head.valid_mse.fill_(0.09)  # validation MSE: sigma 0.3
    n = W + 3000
    for s, sigma in ((S(temperature_scales=2.0), 0.6), (S(gaussian_variance="train"), math.sqrt(0.5))):
        items, x, full = free_run(model, prepared, [0], n, s)
        mean, _ = params_on(model, full[0], items[0], W, n)
        assert (x[0, W:] - mean).std().item() == pytest.approx(sigma, rel=0.06)
        assert float(head.var) == 0.5
    head.valid_mse.fill_(float("nan"))  # no validation ran: the training MSE
    items, x, full = free_run(model, prepared, [0], n)
    assert (x[0, W:] - params_on(model, full[0], items[0], W, n)[0]).std().item() == pytest.approx(math.sqrt(0.5),
                                                                                                   rel=0.06)


def test_seeds_reproducible_and_independent_of_chunking(prepared):
    """Bug 2: stream k's draws depend only on its seed and the step index, not on the chunks."""
    model = make_model(prepared, "mixture")
    n = 800
    ctx = sequence_contexts([sequence_from_prepared(prepared, 0)] * 3, n, "target", W)
    a = generate(model, Streams(ctx, n), S(seed=7))
    for chunk in (300, 256, 1, 777):
        assert torch.equal(generate(model, Streams(ctx, n), S(seed=7, chunk=chunk)), a), chunk
    c = generate(model, Streams(ctx, n), S(seed=8))
    assert not torch.equal(a[0], a[1])  # streams get seeds 7, 8, 9
    torch.testing.assert_close(a[1], c[0])  # stream 1 of seed 7 is stream 0 of seed 8
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_stream_noise_is_the_heads_noise_by_seed_and_step(prepared, head):
    h = make_model(prepared, head).net.head
    seeds = [5, 11, 12]
    whole = StreamNoise(h, seeds, torch.device("cpu")).take(3 * BLOCK + 10)
    noise = StreamNoise(h, seeds, torch.device("cpu"))
    parts = torch.cat([noise.take(m) for m in (300, 1, 255, 0, 222)])
    assert torch.equal(parts, whole[: len(parts)])
    for k, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        expect = torch.cat([h.draw_noise((BLOCK,), g) for _ in range(4)])
        assert torch.equal(whole[:, k], expect[: len(whole)])


@pytest.mark.parametrize("head", ["mixture", "gaussian", "test_laplace"])
def test_64_streams_draw_each_stream_as_it_draws_alone(prepared, laplace_head, head):
    """Bug 3: stream k of a batch of 64 draws what it draws alone with the same seed."""
    model = make_model(prepared, head, gain=1.0 if head == "test_laplace" else 8.0)
    n, seqs, seeds = W + 400, [k % 4 for k in range(64)], [1000 + 3 * k for k in range(64)]
    stats = GenerationStats()
    _, batch, _ = free_run(model, prepared, seqs, n, seeds=seeds, clip=(-20.0, 20.0), stats=stats)
    assert stats.seeds == seeds and stats.steps == n - W and stats.streams == 64
    for k in (0, 1, 37, 63):
        _, alone, _ = free_run(model, prepared, [seqs[k]], n, seeds=[seeds[k]], clip=(-20.0, 20.0))
        torch.testing.assert_close(batch[k], alone[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batch[0, W:], batch[4, W:])  # same sequence, other seed: other draws


# ------------------------------------------------------------------------------ guards
@pytest.mark.parametrize("n_streams", [1, 6])
def test_replaced_and_clipped_values(prepared, n_streams):
    """NaN -> 0 exactly, +-inf -> the clip bound on its side (each counted as replaced), a
    finite value below or above the clip range -> that bound (counted as clipped), a value
    inside it fed back as it is (neither counted)."""
    ctx = sequence_contexts([sequence_from_prepared(prepared, 0)] * n_streams, 200, "target", W)
    inf = float("inf")
    for bias, expect, replaced, clipped in ((float("nan"), 0.0, 200, 0), (inf, 3.0, 200, 0), (-inf, -2.0, 200, 0),
                                            (-50.0, -2.0, 0, 200), (50.0, 3.0, 0, 200), (0.5, 0.5, 0, 0)):
        model = make_model(prepared, "mixture")
        with torch.no_grad():
            model.net.head.proj.weight[3:6] = 0.0
            model.net.head.proj.bias[3:6] = bias  # every component mean
        stats = GenerationStats()
        y = generate(model, Streams(ctx, 200, clip=(-2.0, 3.0)), S(temperature_scales=0.0), stats=stats)
        assert torch.equal(y, torch.full_like(y, expect)), bias
        assert (stats.nonfinite_replaced, stats.clipped) == ([replaced] * n_streams, [clipped] * n_streams), bias


def test_the_bare_predictor_generates_as_its_module(prepared):
    """``generate`` takes the ``Predictor`` (``.net``) as it takes the Lightning module."""
    model = make_model(prepared, "mixture")
    _, y_module, _ = free_run(model, prepared, [0, 1], 300, S(seed=3))
    _, y_net, _ = free_run(model.net, prepared, [0, 1], 300, S(seed=3))
    assert torch.equal(y_module, y_net)


def test_streams_without_context_or_prime_are_one_silent_started_stream(prepared):
    """A model without context fields and ``Streams({}, n)``: one stream, primed with zeros,
    as the mean of that zero window says; the stats count its steps and time."""
    model = make_model(prepared, "gaussian", fields=())
    stats, t0 = GenerationStats(), time.perf_counter()
    y = generate(model, Streams({}, 50), S(mode="mean"), stats=stats)
    wall = time.perf_counter() - t0
    assert y.shape == (1, 50)
    with torch.no_grad():
        first = model.net.params({"window": torch.zeros(1, W)})[0]
    torch.testing.assert_close(y[0, 0], first.reshape(-1)[0])
    assert (stats.steps, stats.streams) == (50, 1) and 0 < stats.seconds <= wall
    assert stats.samples_per_second == pytest.approx(50 / stats.seconds)
    given = torch.randn(1, 60)  # covers every position: nothing to generate
    y = generate(model, Streams({}, 50, given=given), S(mode="mean"), stats=stats)
    assert torch.equal(y, given[:, :50]) and stats.steps == 0


def test_fed_back_values_are_bounded_by_full_scale_in_float64(prepared):
    """The clip bounds of a batch: float audio -1.0 and 1.0 normalised in double precision
    (a float32 bound would move clipped values by one float32 step)."""
    m, sd = 0.00123, 0.0456
    seq = sequence_from_prepared(prepared, 0)
    s = S(norm=Normalisation(m, sd)).resolved({}, [seq.reference], prepared)
    streams = batch_streams([seq], [0], 300, s, W)
    assert tuple(float(b) for b in streams.clip) == ((-1.0 - m) / sd, (1.0 - m) / sd)


def test_float32_output_whatever_the_default_dtype(prepared):
    model = make_model(prepared)
    for n_streams in (1, 6):
        ctx = sequence_contexts([sequence_from_prepared(prepared, 0)] * n_streams, 300, "target", W)
        for mode in ("mean", "sample"):
            plain = generate(model, Streams(ctx, 300, clip=(-20.0, 20.0)), S(mode=mode, seed=5))
            old = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                wide = generate(model, Streams(ctx, 300, clip=(-20.0, 20.0)), S(mode=mode, seed=5))
            finally:
                torch.set_default_dtype(old)
            assert wide.dtype == torch.float32 and torch.equal(wide, plain), (n_streams, mode)


def test_generation_changes_no_process_wide_setting(prepared, laplace_head):
    """The library leaves torch's thread count and the garbage collector as they are."""
    seen = []

    class Spy(laplace_head):
        def params(self, features):
            seen.append((torch.get_num_threads(), gc.isenabled()))
            return super().params(features)

    model = make_model(prepared, "test_laplace", gain=1.0)
    model.net.head.__class__ = Spy
    torch.set_num_threads(2)
    generate(model, Streams(sequence_contexts([sequence_from_prepared(prepared, 0)], 50, "target", W), 50))
    assert seen and set(seen) == {(2, True)}
    assert torch.get_num_threads() == 2 and gc.isenabled()


def test_bad_settings_are_input_errors():
    for kw in ({"mode": "loud"}, {"temperature_scales": -1.0}, {"prime": "x"}, {"streams": 0},
               {"gaussian_variance": "test"}):
        with pytest.raises(GenerationError):
            S(**kw)


# ------------------------------------------------------------------------------ inputs
def test_phn_file_gives_the_prepared_sequence(prepared):
    rec = prepared.sequences[2]
    seq = sequence_from_phn(Path(rec["source"]).with_suffix(".PHN"), prepared)
    np.testing.assert_array_equal(seq.segments, prepared.sequence_segments(2))
    np.testing.assert_array_equal(seq.reference, prepared.sequence_wave(2))
    assert seq.length == rec["length"]


def test_inline_phones(prepared):
    seq = sequence_from_inline("h#:0.1 aa:300ms aa:0.05 iy:0.2s h#:0.1", prepared)
    assert seq.length == int(0.75 * prepared.sample_rate) and seq.reference is None
    ids = [prepared.phones.index(p) for p in ("h#", "aa", "iy", "h#")]
    np.testing.assert_array_equal(seq.segments[:, 2], ids)  # the two aa are joined
    np.testing.assert_array_equal(seq.segments[:, :2], [[0, 1600], [1600, 7200], [7200, 10400], [10400, 12000]])
    assert seq.segments[0, 3] == prepared.no_phone and seq.segments[-1, 4] == prepared.no_phone
    assert seq.intended_phones(prepared.phones) == [
        {"phone": p, "start": a, "end": b} for p, (a, b) in zip(("h#", "aa", "iy", "h#"), seq.segments[:, :2].tolist())]
    assert seq.truncated(0.2, prepared.sample_rate).intended_phones(prepared.phones)[-1] == {
        "phone": "aa", "start": 1600, "end": 3200}
    with pytest.raises(GenerationError, match="not in the prepared"):
        sequence_from_inline("h#:0.1 xx:0.2", prepared)
    with pytest.raises(GenerationError, match="PHONE:SECONDS"):
        sequence_from_inline("h# 0.1", prepared)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h#", "aa", "iy", "s", "pau"]), st.integers(1, 50)),
                min_size=1, max_size=12))
def test_segment_tables_are_well_formed(demo_prepared, items):
    prepared = PreparedDataset(demo_prepared)
    labels, pos = [], 0
    for lab, dur in items:
        labels.append((pos, pos + dur, lab))
        pos += dur
    table, first = segments_from_labels(labels, prepared)
    assert first == 0 and table[0, 0] == 0 and table[-1, 1] == pos
    np.testing.assert_array_equal(table[1:, 0], table[:-1, 1])  # contiguous
    assert (table[1:, 2] != table[:-1, 2]).all()  # equal neighbours were joined
    np.testing.assert_array_equal(table[1:, 3], table[:-1, 2])  # prev / next labels
    np.testing.assert_array_equal(table[:-1, 4], table[1:, 2])


def test_real_prime_needs_a_reference():
    with pytest.raises(GenerationError, match="reference"):
        make_prime("real", 1, W, Normalisation(0.0, 1.0), [0], [None])


def test_contexts_hold_every_field(prepared):
    ctx = sequence_contexts([sequence_from_prepared(prepared, 0)], 10, "target", W)
    assert set(ctx) == set(CONTEXT_FIELDS) and all(v.shape == (1, 10) for v in ctx.values())


# ------------------------------------------------------------------------------ files, API, CLI
def test_write_wav_is_atomic_and_counts_clipping(tmp_path):
    x = np.array([0.0, 0.5, -1.5, 2.0, 1.0, -1.0], dtype=np.float32)
    path = tmp_path / "a.wav"
    assert write_wav(path, x, 16000) == 2
    data, sr = sf.read(str(path), dtype="int16")
    assert sr == 16000 and sf.info(str(path)).subtype == "PCM_16"
    np.testing.assert_array_equal(data, [0, 16384, -32768, 32767, 32767, -32768])
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temporary file left


def test_generate_for_sequence(prepared):
    model = make_model(prepared, "mixture")
    a = generate_for_sequence(model, prepared, "MKAL0_SA1", S(seed=1, seconds=0.1)).audio
    b = generate_for_sequence(model, prepared, 0, S(seed=1, seconds=0.1)).audio
    assert a.dtype == np.float32 and a.shape == (1600,)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0
    np.testing.assert_allclose(a[:W], prepared.sequence_wave(0)[:W] / 32768.0, atol=1e-6)  # the real prime


def _save_ckpt(model, path: Path) -> Path:
    import pytorch_lightning as pl

    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__, "epoch": 0, "global_step": 0}, path)
    return path


def test_cli_generate_and_evaluate(prepared, tmp_path, capsys):
    ckpt = _save_ckpt(make_model(prepared, "mixture", gain=1.0), tmp_path / "m.ckpt")
    out = tmp_path / "gen"
    rc = cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--utterance", "MKAL0_SA1",
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
        phones = f["info"]["intended_phones"]
        assert phones[0]["start"] == 0 and phones[-1]["end"] == 4000 and phones[0]["phone"] in prepared.phones
    assert [f["info"]["seed"] for f in meas["files"]] == [5, 6]
    ref, _ = sf.read(str(out / "reference" / "MKAL0_SA1.wav"), dtype="int16")
    np.testing.assert_array_equal(ref, prepared.sequence_wave(0)[:4000])

    # inline phones: no reference, silence prime by default; evaluate re-measures in place
    out2 = tmp_path / "gen2"
    assert cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.05 aa:0.2",
                     "--mode", "mean", "--out", str(out2)]) == 0
    meas2 = json.loads((out2 / "measurements.json").read_text())
    assert meas2["settings"]["prime"] == "silence" and meas2["files"][0]["reference"] is None
    assert meas2["files"][0]["lsd_db"] is None
    assert [p["phone"] for p in meas2["files"][0]["info"]["intended_phones"]] == ["h#", "aa"]
    assert cli_main(["evaluate", str(out2)]) == 0
    again = json.loads((out2 / "measurements.json").read_text())
    assert again["files"][0]["rms_db"] == pytest.approx(meas2["files"][0]["rms_db"])
    assert again["files"][0]["info"] == meas2["files"][0]["info"]
    # re-measured into another directory: the paths still lead to the files
    elsewhere = tmp_path / "elsewhere" / "m.json"
    assert cli_main(["evaluate", str(out / "measurements.json"), "--out", str(elsewhere)]) == 0
    moved = json.loads(elsewhere.read_text())
    for f, f0 in zip(moved["files"], meas["files"]):
        assert (elsewhere.parent / f["wav"]).resolve() == (out / f0["wav"]).resolve()
        assert (elsewhere.parent / f["reference"]).resolve() == (out / f0["reference"]).resolve()
        assert f["lsd_db"] == pytest.approx(f0["lsd_db"]) and f["info"] == f0["info"]
    # plain WAV files against one reference
    loose = tmp_path / "loose.json"
    wavs = [str(out / f["wav"]) for f in meas["files"]]
    assert cli_main(["evaluate", *wavs, "--reference", str(out / "reference" / "MKAL0_SA1.wav"),
                     "--out", str(loose)]) == 0
    loose_files = json.loads(loose.read_text())["files"]
    assert [f["lsd_db"] for f in loose_files] == pytest.approx([f["lsd_db"] for f in meas["files"]])

    # bad input: one line, exit 2
    capsys.readouterr()
    rc = cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--utterance", "NOPE",
                   "--out", str(tmp_path / "x")])
    assert rc == 2 and "NOPE" in capsys.readouterr().err
    rc = cli_main(["generate", "--ckpt", str(ckpt), "--data", str(prepared.path), "--phones", "h#:0.1",
                   "--prime", "real", "--out", str(tmp_path / "x")])
    assert rc == 2 and "reference" in capsys.readouterr().err


def test_cli_bad_input_is_one_line_naming_the_file_before_any_work(prepared, tmp_path, capsys):
    """Bug 6: a truncated checkpoint, an ``--out`` that is a file or cannot be made: one line
    naming the file, exit 2, no traceback, nothing generated first."""
    good = _save_ckpt(make_model(prepared, "mixture", gain=1.0), tmp_path / "m.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    base = ["generate", "--data", str(prepared.path), "--utterance", "MKAL0_SA1", "--seconds", "0.05",
            "--no-measure"]
    for extra, named in ((["--ckpt", str(truncated), "--out", str(tmp_path / "o1")], truncated),
                         (["--ckpt", str(good), "--out", str(a_file)], a_file),
                         (["--ckpt", str(good), "--out", str(a_file / "sub")], a_file / "sub")):
        capsys.readouterr()
        rc = cli_main(base + extra)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2, err
        assert len(lines) == 1 and str(named) in lines[0] and "Traceback" not in err, err
    assert a_file.read_text() == "not a directory"
    assert not any((tmp_path / "o1").glob("*.wav"))


@pytest.mark.parametrize("record", [
    "[]", '{"files": {}}', '{"files": [3]}', '{"files": [{"reference": null}]}', '{"files": [{"wav": "a.wav", "info": []}]}',
    '{"files": [{"wav": "a.wav", "info": {"intended_phones": "h# aa"}}]}',
    '{"files": [{"wav": "a.wav", "info": {"intended_phones": [{"start": 0}]}}]}', "{not json"])
def test_evaluate_on_a_malformed_record_is_one_line_naming_it(tmp_path, capsys, record):
    (tmp_path / "measurements.json").write_text(record)
    for path in (tmp_path, tmp_path / "measurements.json"):
        capsys.readouterr()
        assert cli_main(["evaluate", str(path), "--quiet", "--no-judges"]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and str(tmp_path / "measurements.json") in lines[0] and "Traceback" not in err, err
    assert (tmp_path / "measurements.json").read_text() == record


def test_evaluate_reads_the_record_beside_loose_wavs_once(tmp_path, monkeypatch):
    """Each loose WAV is judged against its own recorded phones; the record is read once."""
    from waveform_mdn import audio_metrics
    from waveform_mdn.audio_metrics import JUDGE_KEYS
    from waveform_mdn.generation import writers

    labels = {f"w{i}.wav": ["h#", ph, "h#"] for i, ph in enumerate(("aa", "iy", "sh"))}
    t = np.arange(8000) / 16000
    for i, name in enumerate(labels):
        write_wav(tmp_path / name, 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t), 16000)
    (tmp_path / "measurements.json").write_text(json.dumps({"files": [
        {"wav": n, "info": {"intended_phones": [{"phone": p} for p in ph]}} for n, ph in labels.items()]}))
    reads = []
    monkeypatch.setattr(writers, "read_record", lambda *a, _real=writers.read_record: reads.append(a) or _real(*a))
    monkeypatch.setattr(audio_metrics, "judge", lambda x, sr, phones=None, name="audio": {
        **dict.fromkeys(JUDGE_KEYS), "recognised_phones": " ".join(phones or [])})
    out = tmp_path / "out" / "m.json"
    assert cli_main(["evaluate", *(str(tmp_path / n) for n in labels), "--judges", "--quiet", "--out", str(out)]) == 0
    assert [f["recognised_phones"] for f in json.loads(out.read_text())["files"]] == [" ".join(v) for v in labels.values()]
    assert len(reads) == 1


def test_cli_refuses_other_data(prepared, demo_prepared_all, tmp_path, capsys):
    ckpt = _save_ckpt(make_model(prepared, "gaussian", gain=1.0), tmp_path / "m.ckpt")
    args = ["generate", "--ckpt", str(ckpt), "--data", str(PreparedDataset(demo_prepared_all).path),
            "--utterance", "MKAL0_SA1", "--seconds", "0.05", "--no-measure", "--out", str(tmp_path / "o")]
    assert cli_main(args) == 2
    assert "--allow-different-data" in capsys.readouterr().err
    assert cli_main(args + ["--allow-different-data"]) == 0
    meas = json.loads((tmp_path / "o" / "measurements.json").read_text())
    assert meas["notes"] and "lsd_db" not in meas["files"][0]
