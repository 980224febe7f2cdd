"""The discretised mixture of logistics (PixelCNN++, WaveNet vocoders): K logistic
components over the normalised signal, trained on the mass of the target's 16-bit bin."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (AffineTransform, Categorical, Distribution, MixtureSameFamily, SigmoidTransform,
                                 TransformedDistribution, Uniform)

from .base import _EPS32, _TINY, register_head
from .discretise import logistic_log_mass, logistic_log_pdf, mixture_log_mass
from .mixture import MixtureHead

MAX_LOG_SCALE = 10.0  #: log-scales are clamped to at most this (normalised units; no overflow)


@register_head("logistic_mixture")
class LogisticMixtureHead(MixtureHead):
    """K logistics: ``3 K`` outputs (logits, means, log-scales). The log-scale is clamped
    from below at ``log(min_scale_bins * 2h)``: a floor relative to the bin width ``2h``
    (PixelCNN++ clamps at -7 on 8-bit audio in [-1, 1], about 0.1 bin; 0.1 bin lets one bin
    hold 99 % of a component's mass). The loss is ``-log P(bin)``; the logged NLL is the
    continuous mixture density's. Sampling: component by Gumbel-max, then
    ``mean + T_s scale (log u - log(1 - u))``, clamped to the int16 range."""

    likelihood_options = ("discretised",)

    def __init__(self, in_features: int, components: int = 10, min_scale: float = 1e-3,
                 min_scale_bins: float = 0.1, **kw: object):
        kw.pop("likelihood", None)  # always the discretised likelihood
        super().__init__(in_features, components, min_scale, likelihood="discretised", **kw)
        if not min_scale_bins > 0:
            raise ValueError(f"min_scale_bins must be > 0, not {min_scale_bins}")
        self.min_scale_bins = float(min_scale_bins)
        self.min_log_scale = math.log(self.min_scale_bins * 2 * self.quant.half_width)

    def params(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, means, raw = self.project(features).tensor_split(3, dim=-1)
        return logits, means, raw.clamp(self.min_log_scale, MAX_LOG_SCALE).exp()

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        """The mixture as a torch Distribution (for its ``cdf``; it has no ``mean`` or ``icdf``); the NLL and
        the bits use the stable forms below."""
        logits, means, scales = params
        unit = Uniform(torch.zeros_like(means), torch.ones_like(means), validate_args=False)
        logistic = TransformedDistribution(unit, [SigmoidTransform().inv, AffineTransform(means, scales)],
                                           validate_args=False)
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False), logistic, validate_args=False)

    def nll(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        """``-log sum_k w_k f((x - mu_k) / s_k) / s_k`` by log-sum-exp."""
        logits, means, scales = params
        z = (target.float().unsqueeze(-1) - means) / scales
        return -torch.logsumexp(torch.log_softmax(logits, -1) + logistic_log_pdf(z) - scales.log(), dim=-1)

    def log_bin_mass(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        logits, means, scales = params
        return mixture_log_mass(logits, logistic_log_mass(self.quant, target.float(), means, scales))

    def noise_size(self) -> int:
        return self.components + 1

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """``K`` Gumbel(0, 1) numbers (the component), then one uniform number in (0, 1)
        (the offset within the logistic), per draw."""
        u = torch.rand(*shape, self.components + 1, generator=generator, device=device, dtype=torch.float32).clamp_(_TINY, 1.0 - _EPS32)
        u[..., : self.components].log_().neg_().log_().neg_()
        return u

    def sample_from_noise(self, params, noise, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        logits, means, scales = params
        k = self.component_from_noise(logits, noise, temperature_weights)
        x = means.gather(-1, k).squeeze(-1)
        if temperature_scales != 0:
            u = noise[..., self.components]
            x = x + temperature_scales * scales.gather(-1, k).squeeze(-1) * (u.log() - torch.log1p(-u))
        return x.clamp(self.quant.lowest, self.quant.highest)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", min_scale_bins={self.min_scale_bins}"

