"""The heads' small contracts that the mutation run of the heads found untested: the
registry refuses a second class under a name, the Gaussian ("MLP") head's ``use_variance``, the base class's inverse-CDF
sampler and its error for a distribution without one, the default bits and training sums
of a head that has only a Distribution (against scipy), the logistic mixture's CDF, the
noise sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch.distributions import Distribution, TransformedDistribution, Uniform
from torch.distributions.transforms import AffineTransform, SigmoidTransform

from waveform_mdn.heads import HEADS, GaussianHead, Head, MixtureHead, register_head


def test_a_name_is_registered_once():
    name = "test_contracts_once"

    try:
        @register_head(name)
        class First(Head):
            pass

        assert HEADS[name] is First and First.name == name and First.label == name  # label: the name by default
        assert register_head(name)(First) is First  # the same class again: fine
        with pytest.raises(ValueError, match=r"head 'test_contracts_once' is already registered \(First\)"):
            register_head(name)(type("Second", (Head,), {}))
        assert HEADS[name] is First
    finally:
        HEADS.pop(name, None)  # leave the registry as found


def test_each_head_carries_its_report_label():
    labels = {name: HEADS[name].label for name in ("gaussian", "mixture", "logistic_mixture", "mulaw_softmax")}
    assert labels == {"gaussian": "MLP", "mixture": "MDN", "logistic_mixture": "logistic mixture",
                      "mulaw_softmax": "mu-law softmax"}
    assert [n for n in labels if HEADS[n].uses_components] == ["mixture", "logistic_mixture"]


def test_gaussian_use_variance():
    head = GaussianHead(4)
    head.var.fill_(0.04)
    with pytest.raises(ValueError, match="^no validation MSE recorded in this head$"):
        head.use_variance()  # default "valid", nothing recorded yet
    assert head.use_variance("train") == pytest.approx(0.04)
    head.valid_mse.fill_(0.09)
    assert head.use_variance() == pytest.approx(0.09) and float(head.var) == pytest.approx(0.09)
    with pytest.raises(ValueError, match="which must be 'train' or 'valid', not 'test'"):
        head.use_variance("test")


class _NoInverse(Distribution):
    arg_constraints: dict = {}

    def __init__(self, loc):
        self.loc = loc
        super().__init__(loc.shape, validate_args=False)

    @property
    def mean(self):
        return self.loc


class _HeadWithoutIcdf(Head):
    n_outputs = 1

    def params(self, features):
        return (self.project(features).squeeze(-1),)

    def distribution_from_params(self, params):
        return _NoInverse(params[0])


def test_base_sampler_without_an_icdf_says_what_to_override():
    head = _HeadWithoutIcdf(3)
    params = head.params(torch.randn(5, 3))
    noise = head.draw_noise((5,), torch.Generator().manual_seed(0))
    assert noise.shape == (5, 1) and head.noise_size() == 1
    with pytest.raises(NotImplementedError, match="_HeadWithoutIcdf has no icdf: override draw_noise and "
                                                   "sample_from_noise"):
        head.sample_from_noise(params, noise)
    torch.testing.assert_close(head.sample_from_noise(params, noise, 1.0, 0.0), params[0])  # T_s = 0: the mean
    torch.testing.assert_close(head.mean_from_params(params), params[0])


def test_base_sampler_defaults_are_temperature_one():
    """``sample_from_noise(params, noise)`` is the untempered inverse CDF at the uniform number."""
    class Logistic(Head):
        n_outputs = 1

        def params(self, features):
            return (self.project(features).squeeze(-1),)

        def distribution_from_params(self, params):
            unit = Uniform(torch.zeros_like(params[0]), torch.ones_like(params[0]), validate_args=False)
            return TransformedDistribution(unit, [SigmoidTransform().inv, AffineTransform(params[0], 0.5)],
                                           validate_args=False)

    head = Logistic(3)
    params = head.params(torch.randn(6, 3))
    noise = head.draw_noise((6,), torch.Generator().manual_seed(1))
    u = noise[..., 0]
    expect = params[0] + 0.5 * torch.log(u / (1 - u))
    torch.testing.assert_close(head.sample_from_noise(params, noise), expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head.sample_from_params(params, torch.Generator().manual_seed(1)), expect,
                               atol=1e-5, rtol=1e-5)


def test_noise_sizes():
    """Numbers per draw: the Gaussian's one normal; a mixture's K Gumbel numbers (or K + 1
    uniforms) and one more; the mu-law softmax's 256 Gumbel numbers."""
    head = MixtureHead(4, components=5)
    noise = head.draw_noise((7,), torch.Generator().manual_seed(0))
    assert head.noise_size() == 6 and noise.shape == (7, 6)
    sizes = {name: HEADS[name](4, components=5).noise_size() for name in
             ("gaussian", "mixture", "logistic_mixture", "mulaw_softmax")}
    assert sizes == {"gaussian": 1, "mixture": 6, "logistic_mixture": 6, "mulaw_softmax": 256}


def test_the_gaussians_mode_and_mean_are_its_mean():
    head = GaussianHead(4)
    mean, scale = torch.tensor([0.3, -1.2]), torch.tensor([0.5, 0.5])
    assert torch.equal(head.mode_from_params((mean, scale)), mean)
    assert torch.equal(head.mean_from_params((mean, scale)), mean)


def test_default_bits_are_the_bin_mass_of_the_distributions_cdf(laplace_head):
    """A head with only a Distribution: the mass of the target's 16-bit bin is
    ``F(x + h) - F(x - h)`` (scipy's Laplace CDF, float64; at least 1e-30), the edge bins
    open-ended; its loss is the NLL; bits = -log2 of the mass."""
    std = 0.1
    head = laplace_head(3, norm_mean=0.0, norm_std=std)
    codes = torch.tensor([-32768, -1200, -3, 0, 7, 450, 32767])
    x = codes.double() / 32768 / std
    params = (torch.tensor([-0.4, -0.35, 0.0, 0.001, 0.002, 0.1, 9.9]), torch.full((7,), 0.05))
    h = 0.5 / 32768 / std
    loc, scale = params[0].double().numpy(), params[1].double().numpy()
    upper = np.where(codes.numpy() == 32767, 1.0, scipy.stats.laplace.cdf(x.numpy() + h, loc, scale))
    lower = np.where(codes.numpy() == -32768, 0.0, scipy.stats.laplace.cdf(x.numpy() - h, loc, scale))
    expect = np.log(np.maximum(upper - lower, 1e-30))  # the documented floor of the mass
    got = head.log_bin_mass(params, x.float()).double().numpy()
    np.testing.assert_allclose(got, expect, atol=2e-2)
    np.testing.assert_allclose(head.bits(params, x.float()).double().numpy(), -expect / math.log(2), atol=3e-2)
    nll = -scipy.stats.laplace.logpdf(x.float().double().numpy(), loc, scale)
    np.testing.assert_allclose(head.loss(params, x.float()).double().numpy(), nll, rtol=1e-4, atol=1e-4)
    nll_sum, bits_sum = head.training_sums(params, x.float(), head.loss(params, x.float()))
    assert float(nll_sum) == pytest.approx(nll.sum(), rel=1e-4)
    assert float(bits_sum) == pytest.approx(float(head.bits(params, x.float()).sum()), rel=1e-6)


def test_logistic_mixture_distribution_is_the_mixture_of_logistics():
    """``distribution_from_params`` of the logistic mixture: its cdf is
    ``sum_k w_k F((x - mu_k) / s_k)`` with scipy's logistic CDF."""
    if "logistic_mixture" not in HEADS:
        pytest.skip("no logistic_mixture head")
    head = HEADS["logistic_mixture"](4, components=3)
    logits = torch.tensor([[0.3, -1.0, 1.2], [2.0, 0.0, -2.0]])
    means = torch.tensor([[-0.5, 0.1, 0.4], [0.0, 1.0, -1.0]])
    scales = torch.tensor([[0.05, 0.2, 0.1], [0.3, 0.01, 0.5]])
    d = head.distribution_from_params((logits, means, scales))
    w = torch.softmax(logits, -1).double().numpy()
    for x in (-0.6, -0.1, 0.0, 0.35, 1.1):
        expect = (w * scipy.stats.logistic.cdf((x - means.double().numpy()) / scales.double().numpy())).sum(1)
        np.testing.assert_allclose(d.cdf(torch.full((2,), x)).double().numpy(), expect, atol=1e-6)


@pytest.mark.parametrize("name", ["gaussian", "mixture", "logistic_mixture", "mulaw_softmax"])
def test_each_row_gets_its_own_noise(name):
    """``sample_from_params`` on 400 identical rows: independent draws (many distinct values,
    not one noise shared by the batch)."""
    if name not in HEADS:
        pytest.skip(f"no {name} head")
    torch.manual_seed(0)
    head = HEADS[name](8, components=3, norm_mean=0.0, norm_std=0.1)
    with torch.no_grad():
        head.proj.weight.mul_(0.1)
    params = head.params(torch.randn(1, 8).expand(400, 8))
    draws = head.sample_from_params(params, torch.Generator().manual_seed(3))
    assert draws.shape == (400,)
    assert torch.unique(draws).numel() > 20


@pytest.mark.parametrize("name", sorted(HEADS))
def test_noise_comes_from_the_generator_alone(name):
    """``draw_noise``: ``noise_size()`` numbers per draw, the same for the same seeded
    generator whatever torch's global generator did meanwhile, other numbers for another seed."""
    head = HEADS[name](8, components=3, norm_mean=0.0, norm_std=0.1)
    torch.manual_seed(0)
    a = head.draw_noise((5,), torch.Generator().manual_seed(1))
    torch.manual_seed(99)
    b = head.draw_noise((5,), torch.Generator().manual_seed(1))
    c = head.draw_noise((5,), torch.Generator().manual_seed(2))
    assert a.shape == (5, head.noise_size()) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_sizes_are_input_errors_that_say_so():
    with pytest.raises(ValueError, match="components must be >= 1, not 0"):
        HEADS["mixture"](8, components=0)
    with pytest.raises(ValueError, match="min_scale_bins must be > 0, not 0"):
        HEADS["logistic_mixture"](8, components=2, min_scale_bins=0.0)


@pytest.mark.parametrize("name", ["gaussian", "mixture", "logistic_mixture", "mulaw_softmax"])
def test_checkpoints_hold_what_is_learned_not_derived_tables(name):
    """A head's state: its projection (and the MLP's variances); the mu-law tables are
    rebuilt at construction, so checkpoints stay small and load across versions."""
    head = HEADS[name](8, components=3, norm_mean=0.0, norm_std=0.1)
    assert set(head.state_dict()) <= {"proj.weight", "proj.bias", "var", "valid_mse"}
