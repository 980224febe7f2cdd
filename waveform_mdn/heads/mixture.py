"""The "MDN" head: a mixture of K Gaussians, trained on the continuous density (the 2014
MDN) or on the mass of the target's 16-bit bin (``likelihood="discretised"``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

from data_prep.errors import InputError

from .base import Head, Params, gumbel_, gumbel_max, register_head, tempered_softmax, uniform
from .discretise import LN2, mixture_log_mass, normal_log_mass


@register_head("mixture")
class MixtureHead(Head):
    """``3 K`` outputs: logits, means, scales ``softplus(raw) + min_scale``. The logged NLL is
    the density's and the bits the bin mass's, whichever of the two ``likelihood`` trains."""

    label = "MDN"
    uses_components = True
    likelihood_options = ("continuous", "discretised")

    def __init__(self, in_features: int, components: int = 3, min_scale: float = 1e-3,
                 likelihood: str = "continuous", **kw: object):
        if int(components) < 1:
            raise InputError(f"components must be >= 1, not {components}")
        if likelihood not in self.likelihood_options:
            raise InputError(f"likelihood must be one of {self.likelihood_options}, not {likelihood!r}")
        super().__init__(in_features, components, min_scale, **kw)
        self.likelihood = likelihood

    def output_size(self) -> int:
        return 3 * self.components

    def scales(self, raw: Tensor) -> Tensor:
        return F.softplus(raw).add_(self.min_scale)

    def params(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, means, raw = self.project(features).tensor_split(3, dim=-1)
        return logits, means, self.scales(raw)

    def distribution_from_params(self, params: Params) -> Distribution:
        logits, means, scales = params
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False),
                                 Normal(means, scales, validate_args=False), validate_args=False)

    def log_bin_mass(self, params: Params, target: Tensor) -> Tensor:
        logits, means, scales = params
        return mixture_log_mass(logits, normal_log_mass(self.norm, target.float(), means, scales))

    def loss(self, params: Params, target: Tensor) -> Tensor:
        return -self.log_bin_mass(params, target) if self.likelihood == "discretised" else self.nll(params, target)

    def training_sums(self, params, target, loss) -> tuple[Tensor, Tensor]:
        """The loss is one of the two; the other is computed."""
        if self.likelihood == "discretised":
            return self.nll(params, target).sum(), loss.sum() / LN2
        return loss.sum(), self.bits(params, target).sum()

    def mean_from_params(self, params: Params, temperature_weights: float = 1.0) -> Tensor:
        """The mean with weights ``softmax(logits / T_w)``; ``T_w = 0``: the mode."""
        if temperature_weights == 0:
            return self.mode_from_params(params)
        return torch.linalg.vecdot(tempered_softmax(params[0], temperature_weights), params[1])

    def mode_from_params(self, params: Params) -> Tensor:
        """The most probable component's mean."""
        logits, means, _ = params
        return means.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """``K`` Gumbel numbers (the component), then one standard normal, per draw."""
        gumbel = gumbel_(uniform(shape, self.components, generator, device))
        z = torch.randn(*shape, 1, generator=generator, device=device, dtype=torch.float32)
        return torch.cat([gumbel, z], dim=-1)

    def sample_from_noise(self, params, noise, temperature_weights=1.0, temperature_scales=1.0) -> Tensor:
        """The component by Gumbel-max over ``logits / T_w``; its mean plus ``T_s`` times its
        scale times the normal number."""
        logits, means, scales = params
        k = gumbel_max(logits, noise[..., : self.components], temperature_weights)
        mean = means.gather(-1, k)
        if temperature_scales == 0:
            return mean.squeeze(-1)
        return mean.addcmul_(scales.gather(-1, k), noise[..., self.components :], value=temperature_scales).squeeze(-1)
