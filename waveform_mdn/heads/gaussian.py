"""The "MLP" head: one output, the mean; the variance is the maximum-likelihood estimate."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from data_prep.errors import InputError

from .base import Head, register_head
from .discretise import LN2, normal_log_mass


@register_head("gaussian")
class GaussianHead(Head):
    """``Normal(mean, sqrt(var))``, trained on the squared error; buffer ``var`` is the ML
    variance (the training MSE; 1 until measured), ``valid_mse`` the last validation MSE."""

    label = "MLP"
    n_outputs = 1

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3, **kw: object):
        super().__init__(in_features, 1, min_scale, **kw)
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("valid_mse", torch.full((), float("nan")))

    @property
    def scale(self) -> Tensor:
        return self.var.clamp(min=self.min_scale**2).sqrt()

    def params(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.project(features).squeeze(-1)
        return mean, self.scale.expand_as(mean)

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        return Normal(*params, validate_args=False)

    def loss(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        return (target.float() - params[0]).square()

    def log_bin_mass(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        return normal_log_mass(self.norm, target.float(), *params)

    def training_sums(self, params, target, loss) -> tuple[None, None]:
        """None, None: both come from the epoch's MSE (:meth:`epoch_nll`, :meth:`epoch_bits`)."""
        return None, None

    def batch_shape(self, params: tuple[Tensor, ...]) -> torch.Size:
        return params[0].shape

    def mean_from_params(self, params: tuple[Tensor, ...], temperature_weights: float = 1.0) -> Tensor:
        return params[0]

    def mode_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        return params[0]

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """One standard normal number per draw."""
        return torch.randn(*shape, 1, generator=generator, device=device, dtype=torch.float32)

    def sample_from_noise(self, params, noise, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        mean, scale = params
        if temperature_scales == 0:
            return mean
        return torch.addcmul(mean, scale, noise[..., 0], value=temperature_scales)

    def observe_training_mse(self, mse: float) -> None:
        if math.isfinite(mse) and mse > 0:
            self.var.fill_(mse)

    def observe_validation_mse(self, mse: float) -> None:
        self.valid_mse.fill_(mse)

    def epoch_nll(self, mean_nll: Tensor, mse: Tensor) -> Tensor:
        # NLL of Normal(mean, sqrt(v)) with v = the MSE itself: 0.5 log(2 pi v) + 1/2
        v = mse.clamp(min=self.min_scale**2)
        return 0.5 * torch.log(2 * math.pi * v) + 0.5

    def epoch_bits(self, mean_bits: Tensor, epoch_nll: Tensor) -> Tensor:
        """``(NLL - log 2h) / ln 2`` from the epoch NLL: the bin mass of a Gaussian whose
        scale (the ML one, about 0.1 here) is hundreds of bins wide is its density times
        the bin width (relative error about ``(h / scale)^2``)."""
        return (epoch_nll - math.log(2 * self.norm.half_width)) / LN2

    def use_variance(self, which: str = "valid") -> float:
        """Generation's noise variance: ``"valid"`` (the last validation MSE) or ``"train"``
        (``var`` as it is); returns it. The one place where it is chosen."""
        if which == "valid":
            if not torch.isfinite(self.valid_mse):
                raise InputError("no validation MSE recorded in this head")
            self.var.copy_(self.valid_mse)
        elif which != "train":
            raise InputError(f"which must be 'train' or 'valid', not {which!r}")
        return float(self.var)
