"""Bits per sample: the 16-bit bin masses of every head against independent computations
(all 65,536 codes summed in float64, scipy's CDFs in float64 at chosen bins and in the far
tails, the density-times-width limit), the mu-law tables against a naive loop, and the new
heads' samplers and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from scipy.special import logsumexp

from data_prep.audio_io import Normalisation
from waveform_mdn.heads import HEADS, build_head
from waveform_mdn.heads.discretise import normal_log_mass
from waveform_mdn.heads.mulaw import mulaw_class, mulaw_decode

torch.set_default_dtype(torch.float32)

MEAN, STD = 0.0012, 0.047  # a demo-like normalisation (float units): h = 3.2e-4 normalised
Q = Normalisation(MEAN, STD)
H = Q.half_width
NEW_AND_OLD = ["gaussian", "mixture", "logistic_mixture", "mulaw_softmax"]


def make_head(name: str, k: int = 3, seed: int = 0, **kw):
    head = build_head(name, 6, components=k, norm_mean=MEAN, norm_std=STD, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.proj.weight.normal_(0, 1.0, generator=g)
        head.proj.bias.normal_(0, 1.0, generator=g)
    if name == "gaussian":
        head.var.fill_(0.05)
    return head


def every_code(head, params):
    """Log-mass of every one of the 65,536 codes under the first row of ``params``."""
    x = Q.value(torch.arange(-32768, 32768)).float()
    rows = tuple(p[:1].expand(len(x), *p.shape[1:]) for p in params)
    with torch.no_grad():
        return head.log_bin_mass(rows, x).double()


@pytest.mark.parametrize("name", NEW_AND_OLD)
@pytest.mark.parametrize("width", ["wide", "narrow"])
def test_bin_masses_over_every_code_sum_to_one(name, width):
    """Sum over all codes of exp(log-mass) == 1 (edges open-ended), for wide components and
    for components a few bins wide (scales near the floor), placed anywhere in the range."""
    head = make_head(name, seed=3)
    feats = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        params = list(head.params(feats))
    if width == "narrow" and name in ("mixture", "logistic_mixture"):
        params[2] = torch.full_like(params[2], 3 * H)  # a few bins
        params[1] = params[1] * 0.01 + Q.value(torch.tensor([-32768, 5, 32767])).float()  # incl. both edges
    elif width == "narrow" and name == "gaussian":
        params[1] = torch.full_like(params[1], 0.7 * H)
    total = every_code(head, tuple(params)).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-4)


def _scipy_mixture_log_mass(family, logits, locs, scales, codes):
    """Naive float64: log sum_k w_k (F_k(x + h) - F_k(x - h)), edges open, with scipy's
    ``logcdf``/``logsf`` for each end so that far-tail bins keep their digits."""
    x = (codes / 32768.0 - MEAN) / STD
    lw = logits - logsumexp(logits)
    out = []
    for xi, c in zip(x, codes):
        comps = []
        for k in range(len(locs)):
            a, b = (xi - H - locs[k]) / scales[k], (xi + H - locs[k]) / scales[k]
            if c == -32768:
                lm = family.logcdf(b)
            elif c == 32767:
                lm = family.logsf(a)
            elif a > 0:  # the upper tail: survival functions
                lm = family.logsf(a) + np.log1p(-np.exp(family.logsf(b) - family.logsf(a)))
            else:
                lm = family.logcdf(b) + np.log1p(-np.exp(family.logcdf(a) - family.logcdf(b)))
            comps.append(lw[k] + lm)
        out.append(logsumexp(comps))
    return np.array(out)


@pytest.mark.parametrize("name,family", [("mixture", scipy.stats.norm), ("logistic_mixture", scipy.stats.logistic)])
def test_log_mass_matches_scipy_including_far_tails(name, family):
    head = make_head(name)
    logits = torch.tensor([[0.3, -1.0, 1.2]])
    locs = torch.tensor([[-0.5, 0.2, 1.5]])
    scales = torch.tensor([[0.3, 2e-3, 0.05]])
    codes = np.array([-32768, -32767, -20000, -3000, -10, 0, 1, 2, 37, 500, 1600, 25000, 32766, 32767])
    x = torch.from_numpy((codes / 32768.0 - MEAN) / STD).float()
    params = tuple(p.expand(len(codes), 3) for p in (logits, locs, scales))
    got = head.log_bin_mass(params, x).double().numpy()
    expect = _scipy_mixture_log_mass(family, logits[0].double().numpy(), locs[0].double().numpy(),
                                     scales[0].double().numpy(), codes)
    assert np.all(np.isfinite(got))
    assert expect.min() < (-100 if name == "mixture" else -60)  # far-tail bins are among them
    np.testing.assert_allclose(got, expect, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("likelihood", ["continuous", "discretised"])
def test_the_mdn_trains_on_its_likelihood_and_logs_nll_and_bits_either_way(likelihood):
    """``loss``: the density's NLL (continuous) or minus the log mass of the target's bin
    (discretised), each against scipy; ``training_sums``: (NLL sum, bits sum) whichever it trains."""
    head = make_head("mixture", likelihood=likelihood)
    codes = np.array([-32768, -3000, -10, 0, 37, 1600, 32767])
    x = torch.from_numpy((codes / 32768.0 - MEAN) / STD).float()
    with torch.no_grad():
        params = head.params(torch.randn(len(codes), 6, generator=torch.Generator().manual_seed(4)))
        loss = head.loss(params, x)
        nll_sum, bits_sum = head.training_sums(params, x, loss)
    logits, locs, scales = (p.double().numpy() for p in params)
    w = scipy.special.softmax(logits, axis=1)
    nll = -np.log((w * scipy.stats.norm.pdf(x.double().numpy()[:, None], locs, scales)).sum(1))
    log_mass = np.array([_scipy_mixture_log_mass(scipy.stats.norm, logits[i], locs[i], scales[i], codes[i:i + 1])[0]
                         for i in range(len(codes))])
    np.testing.assert_allclose(loss.double().numpy(), -log_mass if likelihood == "discretised" else nll, rtol=1e-4)
    assert float(nll_sum) == pytest.approx(nll.sum(), rel=1e-4)
    assert float(bits_sum) == pytest.approx(-log_mass.sum() / math.log(2), rel=1e-4)


def test_gaussian_head_log_mass_matches_scipy():
    head = make_head("gaussian")
    mean = torch.tensor([0.0, 0.4, -3.0, 10.0, 0.1])
    scale = torch.full((5,), math.sqrt(0.05))
    codes = np.array([0, 300, -32768, 32767, 29000])
    x = torch.from_numpy((codes / 32768.0 - MEAN) / STD).float()
    got = head.log_bin_mass((mean, scale), x).double().numpy()
    expect = [_scipy_mixture_log_mass(scipy.stats.norm, np.zeros(1), np.array([m]), np.array([math.sqrt(0.05)]),
                                      np.array([c]))[0] for m, c in zip(mean.tolist(), codes)]
    np.testing.assert_allclose(got, expect, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name", ["gaussian", "mixture", "logistic_mixture", "mulaw_softmax"])
def test_wide_distribution_bits_are_nll_minus_log_bin_width(name):
    """bits = (NLL_nats - ln 2h) / ln 2 when the density is flat across a bin: exact for
    the mu-law's piecewise-uniform density, to about (h / scale)^2 for the others."""
    head = make_head(name, seed=5)
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(300, 6, generator=g)
    codes = torch.randint(-3000, 3000, (300,), generator=g)
    x = Q.value(codes).float()
    with torch.no_grad():
        params = head.params(feats)
        if name in ("mixture", "logistic_mixture"):
            params = (params[0], params[1], params[2].clamp(min=0.05))
        bits = head.bits(params, x).double()
        nll = head.nll(params, x).double()
    np.testing.assert_allclose(bits.numpy(), ((nll - math.log(2 * H)) / math.log(2)).numpy(), rtol=1e-4, atol=1e-3)
    assert float(bits.min()) > 3 and float(bits.std()) > 1  # many different, wide-bin values


def test_gaussian_epoch_bits_follow_from_its_epoch_nll():
    """The MLP's training bits come from its epoch NLL (``models.gaussian_epoch_nll``); they
    equal the exact mean bits of Gaussian residuals with the ML variance."""
    from waveform_mdn.models import gaussian_epoch_nll

    head = make_head("gaussian")
    rng = np.random.default_rng(0)
    mean = torch.from_numpy(rng.normal(size=20000) * 0.3).float()
    codes = Q.codes(mean + torch.from_numpy(rng.normal(size=20000) * 0.15).float())
    x = Q.value(codes).float()
    mse = torch.tensor(float(((x - mean) ** 2).mean()), dtype=torch.float64)
    head.var.fill_(float(mse))
    exact = head.bits((mean, head.scale.expand_as(mean)), x).double().mean()
    derived = gaussian_epoch_nll(mse, head.min_scale, H)[1]
    assert float(derived) == pytest.approx(float(exact), abs=1e-3)


# -- mu-law ------------------------------------------------------------------------------
def test_mulaw_classes_against_a_naive_loop():
    count = np.bincount(mulaw_class(np.arange(-32768, 32768)), minlength=256)
    counts = [0] * 256
    for v in range(-32768, 32768, 1):
        x = v / 32768
        y = math.copysign(math.log(1 + 255 * abs(x)) / math.log(256), x)
        counts[int(math.floor((y + 1) / 2 * 255 + 0.5))] += 1
    assert count.tolist() == counts and sum(counts) == 65536
    assert min(counts) >= 1
    # each class's centre decodes inside the class's own codes
    centre_codes = np.round(mulaw_decode(np.arange(256)) * 32768).clip(-32768, 32767)
    assert mulaw_class(centre_codes).tolist() == list(range(256))


def test_mulaw_bits_are_class_probability_spread_over_its_codes():
    head = make_head("mulaw_softmax")
    feats = torch.randn(50, 6, generator=torch.Generator().manual_seed(4))
    codes = torch.randint(-32768, 32768, (50,), generator=torch.Generator().manual_seed(5))
    x = Q.value(codes).float()
    with torch.no_grad():
        (logits,) = head.params(feats)
        got = head.bits((logits,), x).double().numpy()
        loss = head.loss((logits,), x).double().numpy()
    cls = mulaw_class(codes.numpy())
    count = np.bincount(mulaw_class(np.arange(-32768, 32768)), minlength=256)
    p = scipy.special.softmax(logits.double().numpy(), axis=1)[np.arange(50), cls]
    np.testing.assert_allclose(got, -np.log2(p) + np.log2(count[cls]), rtol=1e-5)
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-5)
    np.testing.assert_allclose(head.nll((logits,), x).double().numpy(), got * math.log(2) + math.log(2 * H),
                               rtol=1e-5, atol=1e-5)
    # the density is the Distribution's (piecewise uniform over the classes' intervals)
    np.testing.assert_allclose(-head.distribution_from_params((logits,)).log_prob(x).double().numpy(),
                               head.nll((logits,), x).double().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tw", [0.0, 0.5, 1.0])
def test_mulaw_point_prediction_and_gumbel_max_draws(tw):
    head = make_head("mulaw_softmax")
    centres = (mulaw_decode(np.arange(256)) - MEAN) / STD
    logits = torch.randn(1, 256, generator=torch.Generator().manual_seed(0)) * 2
    noise = head.draw_noise((40000,), torch.Generator().manual_seed(1))
    draws = head.sample_from_noise((logits.expand(40000, 256),), noise, tw, 1.0).double().numpy()
    lg = logits[0].double().numpy()
    if tw == 0:  # the most probable class's centre, drawn and as the point prediction
        assert np.all(draws == np.float32(centres[lg.argmax()]))
        assert head.mean_from_params((logits,), 0.0).item() == head.mode_from_params((logits,)).item() \
            == pytest.approx(centres[lg.argmax()], rel=1e-6)
        return
    p = scipy.special.softmax(lg / tw)
    np.testing.assert_allclose(head.mean_from_params((logits,), tw).item(), p @ centres, rtol=1e-5, atol=1e-5)
    idx = np.searchsorted(np.float32(centres), np.float32(draws))
    freq = np.bincount(idx, minlength=256) / len(draws)
    assert np.abs(freq - p).max() < 0.01  # a class drawn with its tempered probability


# -- gradients and samplers of the new heads --------------------------------------------
@pytest.mark.parametrize("name,kw", [("mixture", {"likelihood": "discretised"}), ("logistic_mixture", {}),
                                     ("mulaw_softmax", {})])
def test_discretised_losses_have_finite_gradients_for_extreme_inputs(name, kw):
    head = build_head(name, 8, components=3, norm_mean=MEAN, norm_std=STD, **kw)
    with torch.no_grad():
        head.proj.weight.zero_()
        bias = torch.tensor([1e4, -1e4, 0.0, 1e3, -1e3, 0.0, -1e4, 1e4, 50.0])  # raw scales: -1e4, 1e4, 50
        head.proj.bias.copy_(bias.repeat(head.proj.out_features // 9 + 1)[: head.proj.out_features])
    feats = torch.randn(7, 8, requires_grad=True)
    target = Q.value(torch.tensor([-32768, -32767, 0, 1, 3000, 32766, 32767])).float()
    params = head.params(feats)
    loss = head.loss(params, target)
    assert torch.isfinite(loss).all() and (loss >= -1e-4).all()  # a probability: -log P >= 0
    (loss.sum() + head.nll(params, target).sum()).backward()
    assert torch.isfinite(feats.grad).all() and all(torch.isfinite(p.grad).all() for p in head.parameters())
    assert torch.isfinite(head.sample_from_params(params)).all()


def test_logistic_scale_floor_is_relative_to_the_bin_width():
    head = build_head("logistic_mixture", 4, components=2, norm_mean=MEAN, norm_std=STD, min_scale_bins=0.25)
    with torch.no_grad():
        head.proj.bias.fill_(-50.0)
        head.proj.weight.zero_()
        scales = head.params(torch.zeros(1, 4))[2]
    torch.testing.assert_close(scales, torch.full_like(scales, 0.25 * 2 * H))


def test_logistic_draws_follow_the_logistic():
    head = make_head("logistic_mixture", k=2)
    n = 50000
    params = (torch.tensor([[0.0, -30.0]]).expand(n, 2), torch.tensor([[0.7, 0.0]]).expand(n, 2),
              torch.tensor([[0.2, 1.0]]).expand(n, 2))
    x = head.sample_from_params(params, generator=torch.Generator().manual_seed(3))
    assert scipy.stats.kstest(x.numpy(), "logistic", args=(0.7, 0.2)).pvalue > 1e-3
    assert head.mean_from_params(params)[0].item() == pytest.approx(0.7, abs=1e-5)


def test_heads_are_registered_and_likelihood_is_checked():
    assert set(NEW_AND_OLD) <= set(HEADS)
    with pytest.raises(ValueError, match="likelihood"):
        build_head("mixture", 4, likelihood="exact")
    assert normal_log_mass(Q, torch.zeros(1), torch.zeros(1), torch.ones(1)).item() < 0


@pytest.mark.parametrize("head,likelihood", [("gaussian", "discretised"), ("mulaw_softmax", "discretised"),
                                             ("mixture", "exact")])
def test_a_likelihood_the_head_is_not_trained_on_is_a_config_error(head, likelihood):
    from waveform_mdn.models import ConfigError, WaveformPredictor

    with pytest.raises(ConfigError, match="model.likelihood"):
        WaveformPredictor(head=head, likelihood=likelihood, window=16, n_phone_ids=5)
    WaveformPredictor(head="mixture", likelihood="discretised", window=16, n_phone_ids=5)  # the one that reads it


@pytest.mark.parametrize("name,kw", [("mixture", {}), ("mixture", {"likelihood": "discretised"}),
                                     ("logistic_mixture", {}), ("mulaw_softmax", {})])
def test_training_sums_are_the_batchs_nll_and_bits(name, kw):
    """What the training metrics add per batch, computed from the loss each head trains on,
    equals the sums of its NLL and bits (each checked against scipy or a naive loop above)."""
    head = make_head(name, **kw)
    codes = torch.tensor([-32768, -5000, -7, 0, 1, 240, 9000, 32767])
    x = Q.value(codes).float()
    with torch.no_grad():
        params = head.params(torch.randn(len(codes), 6, generator=torch.Generator().manual_seed(6)))
        nll_sum, bits_sum = head.training_sums(params, x, head.loss(params, x))
        expect = head.nll(params, x).double().sum(), head.bits(params, x).double().sum()
    assert float(nll_sum) == pytest.approx(float(expect[0]), rel=1e-5)
    assert float(bits_sum) == pytest.approx(float(expect[1]), rel=1e-5)


def test_logistic_draws_stay_on_the_16_bit_range():
    """Means far outside the int16 range: every draw is the range's edge (the logistic tails
    are wide; the discretised likelihood has no mass beyond the edges)."""
    head = make_head("logistic_mixture")
    n, k = 500, head.components
    for side, edge in ((1.0, Q.highest), (-1.0, Q.lowest)):
        means = torch.full((n, k), side * 1e3)
        params = (torch.zeros(n, k), means, torch.full((n, k), 0.1))
        draws = head.sample_from_params(params, torch.Generator().manual_seed(2))
        assert torch.equal(draws, torch.full((n,), float(edge), dtype=draws.dtype)), side
