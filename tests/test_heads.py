"""Output heads and the Predictor: densities against scipy, numerical safety, the plug-in
registry, the split first layer, and each head's sampler (noise -> draw, mean, mode)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import norm

from waveform_mdn.heads import HEADS, GaussianHead, MixtureHead, build_head
from waveform_mdn.models import Predictor, gaussian_epoch_nll

torch.set_default_dtype(torch.float32)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


# -- NLL against an independent computation ---------------------------------------------
def test_gaussian_nll_matches_scipy():
    g = torch.Generator().manual_seed(0)
    head = GaussianHead(16)
    head.var.fill_(0.037)  # the ML variance of the MLP
    feats = torch.randn(500, 16, generator=g)
    target = torch.randn(500, generator=g) * 0.5
    params = head.params(feats)
    mean = _np(params[0])
    expected = -norm.logpdf(_np(target), loc=mean, scale=math.sqrt(0.037))
    np.testing.assert_allclose(_np(head.nll(params, target)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(-head.distribution(feats).log_prob(target)), expected, rtol=1e-5, atol=1e-5)
    # training loss is the squared error, point prediction is the mean
    np.testing.assert_allclose(_np(head.loss(params, target)), (_np(target) - mean) ** 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_np(head.mean_from_params(params)), mean, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_mixture_nll_matches_numpy(k):
    g = torch.Generator().manual_seed(k)
    head = MixtureHead(24, components=k, min_scale=1e-3)
    with torch.no_grad():
        head.proj.weight.normal_(0, 0.5, generator=g)
        head.proj.bias.normal_(0, 0.5, generator=g)
    feats = torch.randn(400, 24, generator=g)
    target = torch.randn(400, generator=g)
    logits, means, scales = head.params(feats)
    # the parameterisation: raw outputs -> softplus + floor
    raw = head.proj(feats).detach().double().numpy()
    np.testing.assert_allclose(_np(logits), raw[:, :k], rtol=1e-6)
    np.testing.assert_allclose(_np(means), raw[:, k : 2 * k], rtol=1e-6)
    np.testing.assert_allclose(_np(scales), np.logaddexp(0, raw[:, 2 * k :]) + 1e-3, rtol=1e-5)
    # independent NLL: -log sum_k w_k N(x; mu_k, s_k), in float64
    lw = _np(logits) - logsumexp(_np(logits), axis=1, keepdims=True)
    comp = norm.logpdf(_np(target)[:, None], loc=_np(means), scale=_np(scales))
    expected = -logsumexp(lw + comp, axis=1)
    np.testing.assert_allclose(_np(head.nll((logits, means, scales), target)), expected, rtol=1e-4, atol=1e-4)
    w = np.exp(lw)
    np.testing.assert_allclose(_np(head.mean_from_params((logits, means, scales))), (w * _np(means)).sum(1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(head.distribution(feats).mean), (w * _np(means)).sum(1), rtol=1e-5, atol=1e-6)


def test_gaussian_epoch_nll_is_the_ml_gaussian():
    """The MLP's training NLL comes from its epoch MSE (``models.gaussian_epoch_nll``)."""
    mse = torch.tensor(0.02, dtype=torch.float64)
    # NLL of residuals with variance = their own MSE: 0.5 log(2 pi v) + 1/2
    e = np.random.default_rng(0).normal(size=10000)
    e *= math.sqrt(0.02) / np.sqrt(np.mean(e**2))
    expected = -norm.logpdf(e, scale=math.sqrt(0.02)).mean()
    assert float(gaussian_epoch_nll(mse, 1e-3, 1e-4)[0]) == pytest.approx(expected, rel=1e-9)
    got = float(gaussian_epoch_nll(torch.tensor(1e-9), 1e-2, 1e-4)[0])  # the floor is the squared min_scale
    assert got == pytest.approx(0.5 * math.log(2 * math.pi * 1e-4) + 0.5, rel=1e-6)


# -- numerical safety --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gaussian", "mixture"])
def test_no_nan_for_extreme_inputs(name):
    head = build_head(name, 8, components=3, min_scale=1e-3)
    with torch.no_grad():
        head.proj.weight.zero_()
        # huge negative raw scales (softplus -> 0, the floor remains), huge logits, large means
        head.proj.bias.copy_(torch.tensor([1e4, -1e4, 0.0, 1e3, -1e3, 0.0, -1e4, -1e4, 50.0][: head.proj.out_features]))
    if name == "gaussian":
        head.var.fill_(1e-12)  # clamped to the floor
    feats = torch.randn(6, 8, requires_grad=True)
    target = torch.tensor([0.0, 1e-6, -3.0, 1e3, -1e4, 1e4])
    params = head.params(feats)
    nll = head.nll(params, target)
    assert torch.isfinite(nll).all(), nll
    loss = head.loss(params, target).mean() + nll.mean()
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    assert torch.isfinite(head.sample_from_params(params)).all()
    assert torch.isfinite(head.mean_from_params(params)).all()
    # the floor: a scale never goes below min_scale
    scale = params[1] if name == "gaussian" else params[2]
    assert float(scale.detach().min()) >= 1e-3 * (1 - 1e-6)


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=9, max_size=9),
    target=st.floats(-1e4, 1e4, allow_nan=False, width=32),
)
def test_mixture_nll_finite_property(raw, target):
    head = MixtureHead(1, components=3, min_scale=1e-3)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor(raw))
    feats = torch.zeros(1, 1, requires_grad=True)
    params = head.params(feats)
    nll = head.nll(params, torch.tensor([target]))
    assert torch.isfinite(nll).all()
    nll.sum().backward()
    assert torch.isfinite(head.proj.weight.grad).all() and torch.isfinite(head.proj.bias.grad).all()


# -- sampling ----------------------------------------------------------------------------
def test_mixture_sampling_moments_and_generator():
    head = MixtureHead(1, components=2)
    logits = torch.log(torch.tensor([[0.3, 0.7]])).expand(200_000, 2)
    means = torch.tensor([[-1.0, 2.0]]).expand(200_000, 2)
    scales = torch.tensor([[0.1, 0.5]]).expand(200_000, 2)
    params = (logits, means, scales)
    x = head.sample_from_params(params, generator=torch.Generator().manual_seed(1))
    mean = 0.3 * -1 + 0.7 * 2
    var = 0.3 * (0.01 + 1) + 0.7 * (0.25 + 4) - mean**2
    assert float(x.mean()) == pytest.approx(mean, abs=0.01)
    assert float(x.var()) == pytest.approx(var, rel=0.01)
    y = head.sample_from_params(params, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, y)  # same generator state, same draws
    mode = head.sample_from_params(tuple(p[:3] for p in params), temperature=0)
    assert torch.equal(mode, torch.full((3,), 2.0))


def test_gaussian_sampling_uses_ml_variance():
    head = GaussianHead(3)
    head.var.fill_(0.04)
    feats = torch.zeros(100_000, 3)
    params = head.params(feats)
    x = head.sample_from_params(params, generator=torch.Generator().manual_seed(0))
    assert float((x - params[0]).detach().std()) == pytest.approx(0.2, rel=0.01)
    assert torch.equal(head.sample_from_params(params, temperature=0), params[0])
    head.valid_mse.fill_(0.09)
    assert head.use_variance("valid") == pytest.approx(0.09)
    assert float(head.scale) == pytest.approx(0.3)


def _mixture_params(n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * 2, torch.randn(n, k, generator=g),
            torch.rand(n, k, generator=g) + 0.05)


@pytest.mark.parametrize("tw,ts", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (3.0, 0.3)])
def test_mixture_sample_from_noise_is_gumbel_max_then_normal(tw, ts):
    """Against a naive loop over the rows in float64: component argmax(logits / T_w + G)
    (T_w = 0: argmax(logits)), value mean + T_s * scale * z."""
    head = MixtureHead(1, components=4)
    params = _mixture_params(300, 4)
    noise = head.draw_noise((300,), torch.Generator().manual_seed(5))
    assert noise.shape == (300, 5)
    x = head.sample_from_noise(params, noise, tw, ts)
    logits, means, scales = (_np(p) for p in params)
    nz = _np(noise)
    for i in range(300):
        k = int(np.argmax(logits[i])) if tw == 0 else int(np.argmax(logits[i] / tw + nz[i, :4]))
        assert float(x[i]) == pytest.approx(means[i, k] + ts * scales[i, k] * nz[i, 4], rel=1e-5, abs=1e-6)
    # sample_from_params is draw_noise then sample_from_noise, from the same generator
    y = head.sample_from_params(params, generator=torch.Generator().manual_seed(5), temperature=1.0)
    assert torch.equal(y, head.sample_from_noise(params, noise))


def test_mixture_noise_is_gumbel_and_normal():
    import scipy.stats

    head = MixtureHead(1, components=3)
    noise = head.draw_noise((40_000,), torch.Generator().manual_seed(1)).numpy()
    assert scipy.stats.kstest(noise[:, :3].ravel(), "gumbel_r").pvalue > 1e-3
    assert scipy.stats.kstest(noise[:, 3], "norm").pvalue > 1e-3


@pytest.mark.parametrize("tw", [0.0, 0.25, 1.0, 4.0])
def test_mixture_mean_and_mode_against_numpy(tw):
    head = MixtureHead(1, components=3)
    params = _mixture_params(200, 3, seed=2)
    logits, means, _ = (_np(p) for p in params)
    top = means[np.arange(200), logits.argmax(1)]
    if tw == 0:
        expect = top
    else:
        w = np.exp(logits / tw - logits.max(1, keepdims=True) / tw)
        expect = (w * means).sum(1) / w.sum(1)
    np.testing.assert_allclose(_np(head.mean_from_params(params, tw)), expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(head.mode_from_params(params)), top)


# -- the plug-in registry ----------------------------------------------------------------
def test_registry_and_new_head_is_one_class(laplace_head):
    assert {"gaussian", "mixture"} <= set(HEADS)
    with pytest.raises(ValueError, match="unknown head"):
        build_head("nope", 4)

    net = Predictor(window=16, n_phone_ids=5, hidden=[8], head="test_laplace")  # the conftest head
    batch = _batch(4, 16, 5)
    d = net.distribution(batch)
    assert d.batch_shape == (4,)
    assert torch.isfinite(net.head.nll(net.params(batch), batch["target"])).all()
    # its sampler, with nothing more written: the inverse CDF at the head's noise
    params = net.params(batch)
    x = net.head.sample_from_params(params, generator=torch.Generator().manual_seed(2))
    assert x.shape == (4,) and torch.equal(x, net.head.sample_from_params(params, torch.Generator().manual_seed(2)))


def test_default_sampler_is_the_inverse_cdf_of_the_distribution(laplace_head):
    """A head with only ``params`` and ``distribution_from_params``: its draws follow the
    distribution (KS against scipy), ``temperature_scales`` scales the distance to the
    mean, and 0 gives the mean."""
    import scipy.stats

    head = laplace_head(1)
    loc, scale = torch.full((50_000,), 0.5), torch.full((50_000,), 2.0)
    noise = head.draw_noise((50_000,), torch.Generator().manual_seed(0))
    assert noise.shape == (50_000, 1) and float(noise.min()) > 0 and float(noise.max()) < 1
    x = head.sample_from_noise((loc, scale), noise)
    assert scipy.stats.kstest(x.numpy(), "laplace", args=(0.5, 2.0)).pvalue > 1e-3
    np.testing.assert_allclose(_np(x), scipy.stats.laplace.ppf(_np(noise[:, 0]), 0.5, 2.0), rtol=1e-4, atol=1e-4)
    x2 = head.sample_from_noise((loc, scale), noise, temperature_scales=0.5)
    torch.testing.assert_close(x2 - 0.5, 0.5 * (x - 0.5))
    assert torch.equal(head.sample_from_noise((loc, scale), noise, temperature_scales=0), loc)
    assert torch.equal(head.mode_from_params((loc, scale)), loc)


# -- the Predictor -----------------------------------------------------------------------
def _batch(b: int, w: int, n_ids: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "window": torch.randn(b, w, generator=g),
        "target": torch.randn(b, generator=g),
        "phone": torch.randint(0, n_ids, (b,), generator=g),
        "next_phone": torch.randint(0, n_ids, (b,), generator=g),
        "prev_phone": torch.randint(0, n_ids, (b,), generator=g),
        "position": torch.rand(b, generator=g),
    }


def test_split_first_layer_equals_onehot_linear():
    w, n_ids, h = 12, 7, 10
    fields = ["phone", "next_phone", "prev_phone", "position"]
    net = Predictor(window=w, n_phone_ids=n_ids, context_fields=fields, hidden=[h, 5], head="mixture")
    batch = _batch(9, w, n_ids)
    # the equivalent nn.Linear over [window, onehot(phone), onehot(next), onehot(prev), position]
    weight = torch.cat(
        [net.window_proj.weight]
        + [net.phone_tables[f].weight.T for f in fields[:3]]
        + [net.position_weight[:, None]],
        dim=1,
    )
    x = torch.cat(
        [batch["window"]] + [F.one_hot(batch[f], n_ids).float() for f in fields[:3]] + [batch["position"][:, None]],
        dim=1,
    )
    pre = x @ weight.T + net.window_proj.bias
    expected = net.head.params(net.trunk(torch.tanh(pre)))
    got = net.params(batch)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # initialised like one Linear layer with the full fan-in
    bound = 1 / math.sqrt(w + 3 * n_ids + 1)
    assert float(weight.detach().abs().max()) <= bound


def test_embedding_encoding_and_context_bias():
    net = Predictor(window=20, n_phone_ids=9, phone_encoding="embedding", embedding_dim=4, head="mixture")
    batch = _batch(6, 20, 9)
    bias = net.context_bias(batch["phone"], batch["next_phone"])
    params = net.head.params(net.features_from_bias(batch["window"], bias))
    for a, b in zip(params, net.params(batch)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="needed"):
        net.context_bias(batch["phone"], None)


def test_predictor_rejects_bad_config():
    with pytest.raises(ValueError):
        Predictor(context_fields=["phone", "speaker"])
    with pytest.raises(ValueError):
        Predictor(phone_encoding="binary")
    with pytest.raises(ValueError):
        Predictor(hidden=[])


def test_head_projection_stays_float32_under_autocast():
    head = MixtureHead(8, components=3)
    feats = torch.randn(5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = head.params(feats.bfloat16())
        assert all(p.dtype == torch.float32 for p in params)
    exact = head.params(feats.bfloat16().float())
    for a, b in zip(params, exact):
        torch.testing.assert_close(a, b)
