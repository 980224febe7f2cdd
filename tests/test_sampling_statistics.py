"""Each head's draws follow the tempered predictive distribution, for every registered
head, at temperature 1, 0.5 and 0, and with the scales at their floor.

The expected law of each draw is written here by hand from the head's linear projection
(softmax(logits / T), softplus(raw) + floor, scales * T) and tested with scipy: a
Kolmogorov-Smirnov test of the probability integral transform for continuous heads, a
chi-square test of the class counts for a categorical head, exact values at T = 0. A head
registered elsewhere is checked at T = 1 against its own distribution's CDF. The features
are the trunk's at real speech windows; draws are seeded, so every outcome is fixed. A
planted bug such as half the noise or a scale floor of 0 moves the p-values below 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from waveform_mdn.data import NextSampleDataset, PreparedDataset
from waveform_mdn.heads import HEADS
from waveform_mdn.models import WaveformPredictor

W = 240
MIN_SCALE = 1e-3
P_MIN = 1e-3  #: smallest p-value accepted (the outcomes are fixed by the seeds)
N_DRAWS = 7680
LAPLACE = "test_laplace"  #: conftest's laplace_head: it samples through the base class (inverse CDF)
KNOWN = ("gaussian", "mixture", "logistic_mixture", "mulaw_softmax", LAPLACE)  #: heads with a hand-written law here


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: one OpenMP thread (conftest)


def make_model(prepared: PreparedDataset, head: str, at_floor: bool) -> WaveformPredictor:
    """A random predictor with O(1) outputs; ``at_floor``: every scale at its floor (raw
    scale outputs of -40, a Gaussian variance of 0)."""
    torch.manual_seed(0)
    m = WaveformPredictor(head=head, components=3, hidden=[32, 32], context_fields=["phone", "next_phone"],
                          window=W, n_phone_ids=prepared.n_phone_ids, norm_mean=prepared.normalisation.mean,
                          norm_std=prepared.normalisation.std, sample_rate=prepared.sample_rate, phones=list(prepared.phones),
                          data_fingerprint=prepared.fingerprint, min_scale=MIN_SCALE)
    h = m.net.head
    with torch.no_grad():
        h.proj.weight.mul_(8.0)
        h.proj.bias.uniform_(-1.0, 1.0)
        if head == "gaussian":
            h.var.fill_(0.0 if at_floor else 0.25)
        elif at_floor and head == LAPLACE:
            h.proj.weight[1] = 0.0
            h.proj.bias[1] = -40.0
        elif at_floor:
            K = h.components
            h.proj.weight[2 * K : 3 * K] = 0.0
            h.proj.bias[2 * K : 3 * K] = -40.0
    return m.eval()


def draws_at_speech(model, prepared, tw: float, ts: float):
    """(draws [N], the head's linear projection there [N, out], the features [N, H]): one
    seeded draw from the head's sampler at each of N windows of the prepared speech."""
    ds = NextSampleDataset(prepared, split=None, window=W)
    batch = ds.get_batch(torch.linspace(0, len(ds) - 1, N_DRAWS).long())
    h = model.net.head
    with torch.no_grad():
        features = model.net.batch_features(batch)
        noise = h.draw_noise((N_DRAWS,), torch.Generator().manual_seed(100))
        x = h.sample_from_noise(h.params(features), noise, tw, ts)
        return x.double().numpy(), h.project(features).double().numpy(), features


def softplus(v: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, v)


def ks_pvalue_of_mixture(x, weights, cdf_of_standardised, locs, scales) -> float:
    """KS p-value of the PIT of draws ``x [D]`` under mixtures ``sum_k w_k F((x - loc_k) / scale_k)``."""
    u = np.sum(weights * cdf_of_standardised((x[:, None] - locs) / scales), axis=1)
    return scipy.stats.kstest(u, "uniform").pvalue


def tempered_weights(logits: np.ndarray, tw: float) -> np.ndarray:
    return scipy.special.softmax(logits / tw, axis=-1)


def check_law(head: str, model, draws: np.ndarray, proj: np.ndarray, tw: float, ts: float, at_floor: bool):
    """Assert the draws follow the tempered law derived by hand from the projection."""
    x, out = draws.reshape(-1), proj.reshape(-1, proj.shape[-1])
    h = model.net.head
    if head == "gaussian":
        scale = MIN_SCALE if at_floor else 0.5
        if ts == 0:
            np.testing.assert_allclose(x, out[:, 0], atol=2e-5)
            return
        u = scipy.stats.norm.cdf((x - out[:, 0]) / (scale * ts))
        assert scipy.stats.kstest(u, "uniform").pvalue > P_MIN
        return
    if head == LAPLACE:  # the base class's sampler: loc + T_s * (inverse CDF - loc)
        loc, scale = out[:, 0], softplus(out[:, 1]) + MIN_SCALE
        if at_floor:
            np.testing.assert_allclose(scale, MIN_SCALE, rtol=1e-9)
        if ts == 0:
            np.testing.assert_allclose(x, loc, atol=2e-5)
            return
        assert scipy.stats.kstest(scipy.stats.laplace.cdf(x, loc, scale * ts), "uniform").pvalue > P_MIN
        return
    if head in ("mixture", "logistic_mixture"):
        K = h.components
        logits, means, raw = out[:, :K], out[:, K : 2 * K], out[:, 2 * K :]
        if head == "mixture":
            scales, law = softplus(raw) + MIN_SCALE, scipy.stats.norm.cdf
        else:  # log scales, clamped below at the head's floor (a fraction of a 16-bit bin)
            scales, law = np.exp(np.maximum(raw, h.min_log_scale)), scipy.stats.logistic.cdf
        if at_floor:
            floor = MIN_SCALE if head == "mixture" else math.exp(h.min_log_scale)
            np.testing.assert_allclose(scales, floor, rtol=1e-9)
        if tw == 0:
            top = means[np.arange(len(x)), logits.argmax(1)]
            if ts == 0:
                np.testing.assert_allclose(x, top, atol=2e-5)
                return
        if ts == 0:
            pytest.skip("T_w > 0 with T_s = 0: a discrete law over the component means (not parametrised)")
        w = np.eye(K)[logits.argmax(1)] if tw == 0 else tempered_weights(logits, tw)
        assert ks_pvalue_of_mixture(x, w, law, means, scales * ts) > P_MIN
        return
    if head == "mulaw_softmax":
        logits = out
        centres = h.mean_from_params((torch.eye(logits.shape[1], dtype=torch.float32) * 200.0,)).double().numpy()
        if tw == 0:
            np.testing.assert_allclose(x, centres[logits.argmax(1)], atol=2e-5)
            return
        classes = np.abs(x[:, None] - centres[None, :]).argmin(1)
        np.testing.assert_allclose(x, centres[classes], atol=2e-5)  # every draw is a class centre
        expected = tempered_weights(logits, tw).sum(0)
        observed = np.bincount(classes, minlength=len(centres)).astype(float)
        keep = expected >= 5  # the sparse classes pooled into one cell
        obs = np.append(observed[keep], observed[~keep].sum())
        exp = np.append(expected[keep], expected[~keep].sum())
        assert scipy.stats.chisquare(obs, exp).pvalue > P_MIN
        return
    raise AssertionError(head)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("at_floor", [False, True], ids=["scales", "floor"])
@pytest.mark.parametrize("head", sorted({*HEADS, LAPLACE}))
def test_draws_follow_the_tempered_predictive_distribution(prepared, head, at_floor, temperature, laplace_head):
    if head not in KNOWN and (at_floor or temperature != 1.0):
        pytest.skip(f"head {head!r}: no hand-written law here, only its own CDF at T = 1")
    if at_floor and head == "mulaw_softmax":
        pytest.skip("a softmax over classes has no scales")
    model = make_model(prepared, head, at_floor)
    draws, proj, features = draws_at_speech(model, prepared, temperature, temperature)
    assert np.isfinite(draws).all()
    if head in KNOWN:
        check_law(head, model, draws, proj, temperature, temperature, at_floor)
        return
    h = model.net.head  # a head registered elsewhere: the PIT under its own distribution
    with torch.no_grad():
        try:
            u = h.distribution_from_params(h.params(features)).cdf(torch.from_numpy(draws.reshape(-1)).float())
        except NotImplementedError:
            pytest.skip(f"head {head!r} has no hand-written law here and its distribution no CDF")
    assert scipy.stats.kstest(u.double().numpy(), "uniform").pvalue > P_MIN


@pytest.mark.parametrize("head", ["gaussian", "mixture", "logistic_mixture"])
def test_most_probable_component_with_its_noise(prepared, head):
    """T_w = 0, T_s = 1: the most probable component (by hand), plus its full noise."""
    if head not in HEADS:
        pytest.skip(f"head {head!r} is not registered")
    model = make_model(prepared, head, False)
    draws, proj, _ = draws_at_speech(model, prepared, 0.0, 1.0)
    check_law(head, model, draws, proj, 0.0, 1.0, False)


@pytest.mark.parametrize("head", ["gaussian", "mixture"])
def test_spread_of_the_draws_is_the_scale_times_the_temperature(prepared, head):
    """A direct second check of the noise level: at the floor every
    draw is its component's mean plus T_s * 1e-3 * a standard normal number."""
    model = make_model(prepared, head, True)
    draws, proj, _ = draws_at_speech(model, prepared, 0.0, 0.5)
    out = proj.reshape(-1, proj.shape[-1])
    if head == "mixture":
        K = model.net.head.components
        centre = out[:, K : 2 * K][np.arange(len(out)), out[:, :K].argmax(1)]
    else:
        centre = out[:, 0]
    z = (draws.reshape(-1) - centre) / (0.5 * MIN_SCALE)
    assert abs(z.mean()) < 0.05 and 0.95 < z.std() < 1.05
