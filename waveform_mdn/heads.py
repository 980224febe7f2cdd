"""Output heads: the distribution of the next (normalised) sample given trunk features.

A head turns the trunk's features ``[B, H]`` into a :class:`torch.distributions.Distribution`
with batch shape ``[B]`` over the normalised next sample. NLL, means and samples all come
from ``torch.distributions`` (``Normal``, ``MixtureSameFamily`` + ``Categorical`` with
logits), never from hand-written densities.

Heads are registered by name; the model builds one with :func:`build_head`. Adding an
output distribution (mu-law softmax, mixture of logistics, ...) means writing one new
subclass of :class:`Head` decorated with ``@register_head("name")``; nothing else changes:

>>> @register_head("laplace")                                    # doctest: +SKIP
... class LaplaceHead(Head):
...     n_outputs = 2
...     def params(self, features):
...         loc, raw = self.project(features).unbind(-1)
...         return loc, F.softplus(raw) + self.min_scale
...     def distribution_from_params(self, params):
...         return torch.distributions.Laplace(*params, validate_args=False)

Registered heads
----------------
``gaussian`` ("MLP")
    One output: the mean. Trained with the squared error (the maximum-likelihood solution
    of a Gaussian with a fixed variance). Its variance is *not* predicted: it is the
    maximum-likelihood estimate, the training MSE, kept in the buffer ``var`` (so it is
    saved in checkpoints). :class:`~waveform_mdn.models.WaveformPredictor` sets it from the
    training residuals of the current epoch before each validation (and at the end of each
    training epoch), so the validation NLL of the MLP is that of
    ``Normal(mean, sqrt(training MSE))``. The buffer ``valid_mse``
    holds the MSE of the last validation; ``use_variance("valid")`` copies it into ``var``
    (e.g. before generation, to sample with the held-out residual variance).
``mixture`` ("MDN")
    ``3 K`` outputs: mixing logits, means, and raw scales mapped through
    ``softplus(raw) + min_scale`` (a floor that keeps the density bounded; on the
    normalised signal, whose std is 1). The NLL is ``-MixtureSameFamily.log_prob``,
    which sums log-probabilities with log-sum-exp.

Fast path for generation
------------------------
Building ``torch.distributions`` objects costs tens of microseconds; one generation step
should not. Every head therefore also offers plain-tensor functions:

* ``head.params(features) -> tuple[Tensor, ...]`` raw parameters in float32 (the head's
  projection runs in float32 even under bf16 autocast)
  (gaussian: ``(mean [B], scale [B])``; mixture: ``(logits [B,K], means [B,K], scales [B,K])``).
* ``head.sample_from_params(params, generator=None, temperature=1.0) -> Tensor [B]``:
  one draw per row, using ``generator`` if given (reproducible streams). ``temperature``
  multiplies the scales (and divides the mixture logits); ``temperature=0`` gives the
  most probable component's mean (the mean, for the Gaussian).
* ``head.mean_from_params(params) -> Tensor [B]``: the point prediction (the mean).
* ``head.distribution_from_params(params)``: the full Distribution when needed.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

HEADS: dict[str, type["Head"]] = {}

def register_head(name: str) -> Callable[[type["Head"]], type["Head"]]:
    """Class decorator: make a :class:`Head` subclass available under ``name``."""

    def deco(cls: type[Head]) -> type[Head]:
        if name in HEADS and HEADS[name] is not cls:
            raise ValueError(f"head {name!r} is already registered ({HEADS[name].__name__})")
        cls.name = name
        HEADS[name] = cls
        return cls

    return deco


def build_head(name: str, in_features: int, **kwargs) -> "Head":
    """Instantiate the head registered as ``name``; unknown keyword arguments are ignored
    by heads that do not use them (e.g. ``components`` for ``gaussian``)."""
    try:
        cls = HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; registered: {sorted(HEADS)}") from None
    return cls(in_features, **kwargs)


class Head(nn.Module):
    """Base class: a linear projection of the features followed by a distribution.

    Subclasses set ``n_outputs`` (or override :meth:`output_size`) and implement
    :meth:`params` and :meth:`distribution_from_params`. The defaults of the other methods
    go through the Distribution; override them where a faster or exact form exists.
    """

    name: str = "?"
    n_outputs: int = 1

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3, **_: object):
        super().__init__()
        self.in_features = int(in_features)
        self.components = int(components)
        self.min_scale = float(min_scale)
        self.proj = nn.Linear(self.in_features, self.output_size())

    def output_size(self) -> int:
        return self.n_outputs

    def project(self, features: Tensor) -> Tensor:
        """``proj(features)`` in float32, also under autocast: the distribution parameters
        need more precision than bfloat16 (a mean rounded to 8 bits is off by more than
        the scale floor)."""
        if torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self.proj(features.float())
        return self.proj(features).float()

    # -- the interface --------------------------------------------------------------
    def params(self, features: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        raise NotImplementedError

    def distribution(self, features: Tensor) -> Distribution:
        """Distribution over the normalised next sample, batch shape ``[B]``."""
        return self.distribution_from_params(self.params(features))

    def nll(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        """Per-example negative log-likelihood (nats), shape ``[B]``."""
        return -self.distribution_from_params(params).log_prob(target.float())

    def loss(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        """Per-example training loss, shape ``[B]`` (default: the NLL)."""
        return self.nll(params, target)

    def mean_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        return self.distribution_from_params(params).mean

    def sample_from_params(
        self, params: tuple[Tensor, ...], generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        if generator is not None or temperature != 1.0:
            raise NotImplementedError(f"{type(self).__name__} samples only through torch.distributions")
        return self.distribution_from_params(params).sample()

    # -- hooks used by the LightningModule (no-ops for heads that predict everything) --
    def observe_training_mse(self, mse: float) -> None:
        """Called before each validation with the training MSE of the epoch so far."""

    def observe_validation_mse(self, mse: float) -> None:
        """Called after each validation with its MSE."""

    def epoch_nll(self, mean_nll: Tensor, mse: Tensor) -> Tensor:
        """Epoch-level training NLL from the accumulated per-example mean NLL and MSE."""
        return mean_nll

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, components={self.components}, min_scale={self.min_scale}"


@register_head("gaussian")
class GaussianHead(Head):
    """The "MLP": predicts the mean; variance = maximum-likelihood estimate (training MSE)."""

    n_outputs = 1

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3, **kw: object):
        super().__init__(in_features, 1, min_scale, **kw)
        # variance of Normal(mean, sqrt(var)) on the normalised signal: 1 until measured
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("valid_mse", torch.full((), float("nan")))

    @property
    def scale(self) -> Tensor:
        return self.var.clamp(min=self.min_scale**2).sqrt()

    def params(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.project(features).squeeze(-1)
        return mean, self.scale.expand_as(mean)

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        mean, scale = params
        return Normal(mean, scale, validate_args=False)

    def loss(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        return (target.float() - params[0]).square()

    def mean_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        return params[0]

    def sample_from_params(self, params, generator=None, temperature: float = 1.0) -> Tensor:
        mean, scale = params
        if temperature == 0:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (temperature * scale) * noise

    def observe_training_mse(self, mse: float) -> None:
        if math.isfinite(mse) and mse > 0:
            self.var.fill_(mse)

    def observe_validation_mse(self, mse: float) -> None:
        self.valid_mse.fill_(mse)

    def epoch_nll(self, mean_nll: Tensor, mse: Tensor) -> Tensor:
        # NLL of Normal(mean, sqrt(v)) with v = the MSE itself: 0.5 log(2 pi v) + 1/2
        v = mse.clamp(min=self.min_scale**2)
        return 0.5 * torch.log(2 * math.pi * v) + 0.5

    def use_variance(self, which: str = "valid") -> float:
        """Set ``var`` from ``"valid"`` (last validation MSE) or keep ``"train"``; returns it."""
        if which == "valid":
            if not torch.isfinite(self.valid_mse):
                raise ValueError("no validation MSE recorded in this head")
            self.var.copy_(self.valid_mse)
        elif which != "train":
            raise ValueError(f"which must be 'train' or 'valid', not {which!r}")
        return float(self.var)


@register_head("mixture")
class MixtureHead(Head):
    """The "MDN": K Gaussian components; logits, means, softplus scales with a floor."""

    def __init__(self, in_features: int, components: int = 3, min_scale: float = 1e-3, **kw: object):
        if int(components) < 1:
            raise ValueError(f"components must be >= 1, not {components}")
        super().__init__(in_features, components, min_scale, **kw)

    def output_size(self) -> int:
        return 3 * self.components

    def params(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.project(features)
        logits, means, raw = out.split(self.components, dim=-1)
        scales = F.softplus(raw) + self.min_scale
        return logits, means, scales

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        logits, means, scales = params
        return MixtureSameFamily(
            Categorical(logits=logits, validate_args=False),
            Normal(means, scales, validate_args=False),
            validate_args=False,
        )

    def mean_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        logits, means, _ = params
        return (torch.softmax(logits, dim=-1) * means).sum(-1)

    def sample_from_params(self, params, generator=None, temperature: float = 1.0) -> Tensor:
        logits, means, scales = params
        if temperature == 0:
            k = logits.argmax(-1, keepdim=True)
            return means.gather(-1, k).squeeze(-1)
        # Gumbel-max: argmax(logits / T + Gumbel) draws a component with softmax(logits / T)
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_(min=1e-20, max=1.0 - 1e-7)))
        k = (logits / temperature + gumbel).argmax(-1, keepdim=True)
        noise = torch.randn(k.shape, generator=generator, device=means.device, dtype=means.dtype)
        return (means.gather(-1, k) + temperature * scales.gather(-1, k) * noise).squeeze(-1)
