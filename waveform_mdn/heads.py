"""Output heads: the distribution of the next (normalised) sample given trunk features.

A head turns the trunk's features ``[B, H]`` into the parameters of a distribution over
the normalised next sample; NLLs come from ``torch.distributions`` (``Normal``,
``MixtureSameFamily`` + ``Categorical`` with logits), never from hand-written densities.

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
    One output: the mean, trained with the squared error. Its variance is not predicted:
    it is the maximum-likelihood estimate, the training MSE, kept in the buffer ``var``
    (saved in checkpoints) and set by the LightningModule before each validation, so the
    validation NLL is that of ``Normal(mean, sqrt(training MSE))``. The buffer
    ``valid_mse`` holds the last validation's MSE (``use_variance("valid")`` copies it).
``mixture`` ("MDN")
    ``3 K`` outputs: mixing logits, means, and raw scales mapped through
    ``softplus(raw) + min_scale`` (a floor that keeps the density bounded; on the
    normalised signal, whose std is 1). The NLL is ``-MixtureSameFamily.log_prob``,
    which sums log-probabilities with log-sum-exp.

One sampler per head
--------------------
Training metrics and generation call the same plain-tensor functions (see each method):
``params`` (float32, also under autocast), ``draw_noise``, ``sample_from_noise`` (``T_w``
divides the mixture logits, 0: the most probable component; ``T_s`` multiplies the scales,
0: no noise), ``sample_from_params`` (both), ``mean_from_params`` (the tempered mean),
``mode_from_params``. ``row_sampler(mode, T_w, T_s)`` gives the same value for one draw in
Python floats, from one row of ``project(features)`` and the same noise: generation uses it
for a few streams on CPU, where a dozen tiny tensor operations per step cost twice the
Python (tested equal draw for draw; heads without one are sampled with the tensor functions).

A head that defines only ``params`` and ``distribution_from_params`` (like the Laplace
example above) samples by inverting its CDF (``Distribution.icdf``) at one uniform number
per draw, so it is reproducible from a generator and usable for generation unchanged.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

HEADS: dict[str, type["Head"]] = {}
RowSampler = Callable[[list, "list | None"], float]  #: (row of project(features), noise) -> value
_TINY = 1e-20  #: uniform numbers are kept in [_TINY, 1 - _EPS32]: finite logs and inverse CDFs
_EPS32 = 1e-7

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
    ``params`` reads the features only through :meth:`project` (a linear map): generation
    evaluates the trunk's tanh as ``2 sigmoid(2a) - 1`` and folds the affine part into a
    copy of ``proj``.
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

    def batch_shape(self, params: tuple[Tensor, ...]) -> torch.Size:
        """Shape of one draw from ``params`` (``[B]``)."""
        return self.distribution_from_params(params).batch_shape

    def mean_from_params(self, params: tuple[Tensor, ...], temperature_weights: float = 1.0) -> Tensor:
        """The point prediction (the mean); ``temperature_weights`` matters to mixtures only."""
        return self.distribution_from_params(params).mean

    def mode_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        """The most probable value (the Distribution's ``mode``, else its mean)."""
        d = self.distribution_from_params(params)
        try:
            return d.mode
        except NotImplementedError:
            return d.mean

    def noise_size(self) -> int:
        """Random numbers per draw (the last dimension of :meth:`draw_noise`)."""
        return 1

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> Tensor:
        """Noise of ``shape`` draws, ``[*shape, noise_size()]`` (default: one uniform
        number in (0, 1) per draw, for :meth:`sample_from_noise`'s inverse CDF)."""
        u = torch.rand(*shape, 1, generator=generator, device=device)
        return u.clamp_(min=_TINY, max=1.0 - _EPS32)

    def sample_from_noise(self, params: tuple[Tensor, ...], noise: Tensor, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        """The draw that ``noise`` (from :meth:`draw_noise`) gives. Default: the inverse
        CDF at the uniform number, moved away from the mean by ``temperature_scales``."""
        d = self.distribution_from_params(params)
        if temperature_scales == 0:
            return d.mean
        try:
            x = d.icdf(noise[..., 0])
        except NotImplementedError:
            raise NotImplementedError(f"{type(self).__name__} has no icdf: override draw_noise and "
                                      "sample_from_noise") from None
        return x if temperature_scales == 1 else d.mean + temperature_scales * (x - d.mean)

    def sample_from_params(
        self, params: tuple[Tensor, ...], generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """One draw per row, from ``generator`` if given (the global generator otherwise)."""
        device = params[0].device
        noise = self.draw_noise(self.batch_shape(params), generator, device)
        return self.sample_from_noise(params, noise, temperature, temperature)

    def row_sampler(self, mode: str = "sample", temperature_weights: float = 1.0,
                    temperature_scales: float = 1.0) -> RowSampler | None:
        """``f(row, noise) -> float``: what ``sample_from_noise`` (``mode="sample"``),
        ``mean_from_params`` (``"mean"``) or ``mode_from_params`` (``"mode"``) give for one
        draw, in Python floats: ``row`` is that draw's row of ``project(features)`` and
        ``noise`` its row of :meth:`draw_noise` (``None`` for "mean" and "mode"). ``None``:
        this head has no such sampler (the default; callers use the tensor functions)."""
        return None

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

    def batch_shape(self, params: tuple[Tensor, ...]) -> torch.Size:
        return params[0].shape

    def mean_from_params(self, params: tuple[Tensor, ...], temperature_weights: float = 1.0) -> Tensor:
        return params[0]

    def mode_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        return params[0]

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """One standard normal number per draw."""
        return torch.randn(*shape, 1, generator=generator, device=device)

    def sample_from_noise(self, params, noise, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        mean, scale = params
        if temperature_scales == 0:
            return mean
        return torch.addcmul(mean, scale, noise[..., 0], value=temperature_scales)

    def row_sampler(self, mode: str = "sample", temperature_weights: float = 1.0,
                    temperature_scales: float = 1.0) -> RowSampler:
        _check_mode(mode)
        if mode != "sample" or temperature_scales == 0:
            return lambda row, noise: row[0]
        spread = float(temperature_scales) * float(self.scale)
        return lambda row, noise: row[0] + spread * noise[0]

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
        logits, means, raw = self.project(features).tensor_split(3, dim=-1)
        return logits, means, F.softplus(raw).add_(self.min_scale)

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        logits, means, scales = params
        return MixtureSameFamily(
            Categorical(logits=logits, validate_args=False),
            Normal(means, scales, validate_args=False),
            validate_args=False,
        )

    def batch_shape(self, params: tuple[Tensor, ...]) -> torch.Size:
        return params[0].shape[:-1]

    def mean_from_params(self, params: tuple[Tensor, ...], temperature_weights: float = 1.0) -> Tensor:
        """Mean of the mixture with weights ``softmax(logits / T)``; ``T = 0``: the most
        probable component's mean."""
        logits, means, _ = params
        if temperature_weights == 0:
            return self.mode_from_params(params)
        if temperature_weights != 1:
            logits = logits / temperature_weights
        return torch.linalg.vecdot(torch.softmax(logits, dim=-1), means)

    def mode_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        """The most probable component's mean."""
        logits, means, _ = params
        return means.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)

    def noise_size(self) -> int:
        return self.components + 1

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """``K`` Gumbel(0, 1) numbers (the component, by Gumbel-max), then one standard
        normal (the offset within the component), per draw."""
        u = torch.rand(*shape, self.components, generator=generator, device=device)
        gumbel = u.clamp_(min=_TINY, max=1.0 - _EPS32).log_().neg_().log_().neg_()
        z = torch.randn(*shape, 1, generator=generator, device=device)
        return torch.cat([gumbel, z], dim=-1)

    def sample_from_noise(self, params, noise, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        """Component ``argmax(logits / T_w + gumbel)`` (drawn with ``softmax(logits / T_w)``),
        then its mean plus ``T_s`` times its scale times the normal number."""
        logits, means, scales = params
        if temperature_weights == 0:
            k = logits.argmax(-1, keepdim=True)
        else:
            gumbel = noise[..., : self.components]
            k = (logits.add(gumbel) if temperature_weights == 1 else
                 gumbel.add(logits, alpha=1.0 / temperature_weights)).argmax(-1, keepdim=True)
        mean = means.gather(-1, k)
        if temperature_scales == 0:
            return mean.squeeze(-1)
        return mean.addcmul_(scales.gather(-1, k), noise[..., self.components :],
                             value=temperature_scales).squeeze(-1)

    def row_sampler(self, mode: str = "sample", temperature_weights: float = 1.0,
                    temperature_scales: float = 1.0) -> RowSampler:
        _check_mode(mode)
        K, floor, ts = self.components, self.min_scale, float(temperature_scales)
        inv_tw = 1.0 / temperature_weights if temperature_weights > 0 else 0.0
        if mode == "mode" or (mode == "mean" and inv_tw == 0):
            return lambda row, noise: row[K + _argmax(row[:K])]
        if mode == "mean":
            def tempered_mean(row: list[float], noise: None) -> float:
                logits = [v * inv_tw for v in row[:K]]
                top = max(logits)
                w = [math.exp(v - top) for v in logits]
                return sum(wk * mk for wk, mk in zip(w, row[K : 2 * K])) / sum(w)
            return tempered_mean
        def sample(row: list[float], noise: list[float]) -> float:
            k = _argmax([v * inv_tw + g for v, g in zip(row[:K], noise)] if inv_tw else row[:K])
            if ts == 0:
                return row[K + k]
            return row[K + k] + ts * (_softplus(row[2 * K + k]) + floor) * noise[K]
        return sample


def _check_mode(mode: str) -> None:
    if mode not in ("sample", "mean", "mode"):
        raise ValueError(f"mode must be 'sample', 'mean' or 'mode', not {mode!r}")


def _argmax(values: list[float]) -> int:
    """``torch.argmax`` of a list: the first maximum, or the first NaN if there is one."""
    k, best = 0, values[0]
    for c in range(1, len(values)):
        v = values[c]
        if v > best or (v != v and best == best):
            k, best = c, v
    return k


def _softplus(v: float) -> float:
    """``F.softplus`` of a float (linear above 20, as torch's default threshold)."""
    return v if v > 20.0 else math.log1p(math.exp(v))
