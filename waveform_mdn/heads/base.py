"""The head interface and the registry (docs/heads.md: the heads, how to add one)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from data_prep.audio_io import Normalisation
from data_prep.errors import InputError

from .discretise import LN2, generic_log_mass

HEADS: dict[str, type["Head"]] = {}
Params = tuple[Tensor, ...]
_TINY, _EPS32 = 1e-20, 1e-7  #: uniform numbers stay in [_TINY, 1 - _EPS32]: finite logs and inverse CDFs


def register_head(name: str) -> Callable[[type["Head"]], type["Head"]]:
    """Class decorator: make a :class:`Head` subclass available under ``name`` (also its
    ``label`` unless the class sets one)."""

    def deco(cls: type[Head]) -> type[Head]:
        if name in HEADS and HEADS[name] is not cls:
            raise ValueError(f"head {name!r} is already registered ({HEADS[name].__name__})")
        cls.name = name
        cls.label = vars(cls).get("label", name)
        HEADS[name] = cls
        return cls

    return deco


def build_head(name: str, in_features: int, **kwargs) -> "Head":
    """The head registered as ``name``; keyword arguments it does not use are ignored."""
    if name not in HEADS:
        raise InputError(f"unknown head {name!r}; registered: {sorted(HEADS)}")
    return HEADS[name](in_features, **kwargs)


def uniform(shape: Sequence[int], n: int, generator: torch.Generator | None, device) -> Tensor:
    """``[*shape, n]`` float32 uniform numbers in (0, 1)."""
    return torch.rand(*shape, n, generator=generator, device=device, dtype=torch.float32).clamp_(_TINY, 1 - _EPS32)


def gumbel_(u: Tensor) -> Tensor:
    """Uniform numbers -> Gumbel(0, 1) numbers, in place."""
    return u.log_().neg_().log_().neg_()


def gumbel_max(logits: Tensor, gumbel: Tensor, temperature: float) -> Tensor:
    """``argmax(logits / T + gumbel)``, ``[..., 1]``: drawn with ``softmax(logits / T)``; ``T = 0``: the top one."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    return (logits.add(gumbel) if temperature == 1 else gumbel.add(logits, alpha=1 / temperature)).argmax(-1, True)


def tempered_softmax(logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)


class Head(nn.Module):
    """A linear projection of the features, then a distribution over the normalised next sample.
    Subclasses set ``n_outputs`` (or :meth:`output_size`) and ``label``, and implement :meth:`params` and :meth:`distribution_from_params`; the other methods go
    through the Distribution unless a head has a faster or exact form."""

    name: str = "?"
    label: str = "?"  #: the name in reports
    n_outputs: int = 1
    uses_components: bool = False  #: whether ``components`` (K) means anything to this head
    likelihood_options: tuple[str, ...] = ()  #: values of ``model.likelihood`` this head reads

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3,
                 norm_mean: float | None = None, norm_std: float | None = None, **_: object):
        super().__init__()
        self.in_features, self.components, self.min_scale = int(in_features), int(components), float(min_scale)
        self.norm = Normalisation.of(norm_mean, norm_std)  #: places the 16-bit bins of the bits per sample
        self.proj = nn.Linear(self.in_features, self.output_size())

    def output_size(self) -> int:
        return self.n_outputs

    def project(self, features: Tensor) -> Tensor:
        """``proj(features)`` in float32, also under autocast (a mean rounded to bfloat16 is off
        by more than the scale floor)."""
        if torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self.proj(features.float())
        return self.proj(features).float()

    def params(self, features: Tensor) -> Params:
        raise NotImplementedError

    def distribution_from_params(self, params: Params) -> Distribution:
        raise NotImplementedError

    def distribution(self, features: Tensor) -> Distribution:
        return self.distribution_from_params(self.params(features))

    def nll(self, params: Params, target: Tensor) -> Tensor:
        """Per-example negative log-density (nats), ``[B]``."""
        return -self.distribution_from_params(params).log_prob(target.float())

    def loss(self, params: Params, target: Tensor) -> Tensor:
        """Per-example training loss, ``[B]`` (default: the NLL)."""
        return self.nll(params, target)

    def log_bin_mass(self, params: Params, target: Tensor) -> Tensor:
        """Per-example log-probability of the target's 16-bit code, ``[B]``. Default: the
        Distribution's ``cdf`` difference; heads override it with a stable form."""
        return generic_log_mass(self.norm, self.distribution_from_params(params).cdf, target.float())

    def bits(self, params: Params, target: Tensor) -> Tensor:
        """Per-example ``-log2 P(code)``, ``[B]``."""
        return self.log_bin_mass(params, target) * (-1.0 / LN2)

    def training_sums(self, params: Params, target: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
        """(NLL sum, bits sum) of a training batch, given its per-example (detached) ``loss``
        (the metrics reuse the loss where it is one of them). Default: the loss is the NLL."""
        return loss.sum(), self.bits(params, target).sum()

    def mean_from_params(self, params: Params, temperature_weights: float = 1.0) -> Tensor:
        """The point prediction; ``temperature_weights`` matters to mixtures only."""
        return self.distribution_from_params(params).mean

    def mode_from_params(self, params: Params) -> Tensor:
        d = self.distribution_from_params(params)
        try:
            return d.mode
        except NotImplementedError:
            return d.mean

    def batch_shape(self, params: Params) -> torch.Size:
        """Shape of one draw per row of ``params``."""
        return self.distribution_from_params(params).batch_shape

    def noise_size(self) -> int:
        """Random numbers per draw: the last dimension of :meth:`draw_noise`."""
        return self.draw_noise((0,), torch.Generator()).shape[-1]

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None = None, device=None) -> Tensor:
        """``[*shape, noise_size()]`` (default: one uniform number, for the inverse CDF)."""
        return uniform(shape, 1, generator, device)

    def sample_from_noise(self, params: Params, noise: Tensor, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        """The draw ``noise`` gives. Default: the inverse CDF, its distance to the mean times
        ``temperature_scales``."""
        d = self.distribution_from_params(params)
        if temperature_scales == 0:
            return d.mean
        try:
            x = d.icdf(noise[..., 0])
        except NotImplementedError:
            raise NotImplementedError(f"{type(self).__name__} has no icdf: override draw_noise and "
                                      "sample_from_noise") from None
        return x if temperature_scales == 1 else d.mean + temperature_scales * (x - d.mean)

    def sample_from_params(self, params: Params, generator: torch.Generator | None = None,
                           temperature: float = 1.0) -> Tensor:
        """One draw per row (``temperature`` for both the weights and the scales)."""
        noise = self.draw_noise(self.batch_shape(params), generator, params[0].device)
        return self.sample_from_noise(params, noise, temperature, temperature)
