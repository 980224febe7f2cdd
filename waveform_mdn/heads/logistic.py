"""The discretised mixture of logistics (PixelCNN++, WaveNet vocoders), trained on the mass
of the target's 16-bit bin."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (AffineTransform, Categorical, Distribution, MixtureSameFamily, SigmoidTransform,
                                 TransformedDistribution, Uniform)

from data_prep.errors import InputError

from .base import Params, gumbel_, gumbel_max, register_head, uniform
from .discretise import logistic_log_mass, logistic_log_pdf, mixture_log_mass
from .mixture import MixtureHead

MAX_LOG_SCALE = 10.0  #: log-scales are clamped to at most this (no overflow)


@register_head("logistic_mixture")
class LogisticMixtureHead(MixtureHead):
    """K logistics: ``3 K`` outputs (logits, means, log-scales). The log-scale's floor is
    ``log(min_scale_bins * 2h)``, relative to the bin width ``2h``. The loss is
    ``-log P(bin)``; the logged NLL is the continuous mixture density's."""

    label = "logistic mixture"
    likelihood_options = ("discretised",)

    def __init__(self, in_features: int, components: int = 10, min_scale: float = 1e-3,
                 min_scale_bins: float = 0.1, **kw: object):
        kw.pop("likelihood", None)
        super().__init__(in_features, components, min_scale, likelihood="discretised", **kw)
        if not min_scale_bins > 0:
            raise InputError(f"min_scale_bins must be > 0, not {min_scale_bins}")
        self.min_scale_bins = float(min_scale_bins)
        self.min_log_scale = math.log(self.min_scale_bins * 2 * self.norm.half_width)

    def scales(self, raw: Tensor) -> Tensor:
        return raw.clamp(self.min_log_scale, MAX_LOG_SCALE).exp()

    def distribution_from_params(self, params: Params) -> Distribution:
        """For its ``cdf`` (it has no ``mean`` or ``icdf``); the NLL and bits use stable forms."""
        logits, means, scales = params
        unit = Uniform(torch.zeros_like(means), torch.ones_like(means), validate_args=False)
        logistic = TransformedDistribution(unit, [SigmoidTransform().inv, AffineTransform(means, scales)],
                                           validate_args=False)
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False), logistic, validate_args=False)

    def nll(self, params: Params, target: Tensor) -> Tensor:
        logits, means, scales = params
        z = (target.float().unsqueeze(-1) - means) / scales
        return -torch.logsumexp(torch.log_softmax(logits, -1) + logistic_log_pdf(z) - scales.log(), dim=-1)

    def log_bin_mass(self, params: Params, target: Tensor) -> Tensor:
        logits, means, scales = params
        return mixture_log_mass(logits, logistic_log_mass(self.norm, target.float(), means, scales))

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """``K`` Gumbel numbers (the component), then one uniform number, per draw."""
        u = uniform(shape, self.components + 1, generator, device)
        gumbel_(u[..., : self.components])
        return u

    def sample_from_noise(self, params, noise, temperature_weights=1.0, temperature_scales=1.0) -> Tensor:
        """The component's mean plus ``T_s scale (log u - log(1 - u))``, clamped to the int16 range."""
        logits, means, scales = params
        k = gumbel_max(logits, noise[..., : self.components], temperature_weights)
        x = means.gather(-1, k).squeeze(-1)
        if temperature_scales != 0:
            u = noise[..., self.components]
            x = x + temperature_scales * scales.gather(-1, k).squeeze(-1) * (u.log() - torch.log1p(-u))
        return x.clamp(self.norm.lowest, self.norm.highest)
