"""The "MLP" head: one output, the mean; the variance is the maximum-likelihood estimate."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from data_prep.errors import InputError

from .base import Head, Params, register_head
from .discretise import normal_log_mass


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

    def distribution_from_params(self, params: Params) -> Distribution:
        return Normal(*params, validate_args=False)

    def loss(self, params: Params, target: Tensor) -> Tensor:
        return (target.float() - params[0]).square()

    def log_bin_mass(self, params: Params, target: Tensor) -> Tensor:
        return normal_log_mass(self.norm, target.float(), *params)

    def mean_from_params(self, params: Params, temperature_weights: float = 1.0) -> Tensor:
        return params[0]

    def mode_from_params(self, params: Params) -> Tensor:
        return params[0]

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """One standard normal number per draw."""
        return torch.randn(*shape, 1, generator=generator, device=device, dtype=torch.float32)

    def sample_from_noise(self, params, noise, temperature_weights=1.0, temperature_scales=1.0) -> Tensor:
        mean, scale = params
        return mean if temperature_scales == 0 else torch.addcmul(mean, scale, noise[..., 0], value=temperature_scales)

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
