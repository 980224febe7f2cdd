"""The head interface and the registry: what every output distribution provides.

See :mod:`waveform_mdn.heads` for the registered heads and how to add one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .discretise import Quantisation, bits, generic_log_mass

HEADS: dict[str, type["Head"]] = {}
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
    by heads that do not use them (e.g. ``components`` for ``gaussian``). ``norm_mean`` and
    ``norm_std`` (the model's normalisation) place the 16-bit bins of the discretised
    likelihood; without them the normalised signal is taken as the float signal."""
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
    #: values of ``model.likelihood`` this head reads (empty: it has one training loss of its own)
    likelihood_options: tuple[str, ...] = ()

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3,
                 norm_mean: float | None = None, norm_std: float | None = None, **_: object):
        super().__init__()
        self.in_features = int(in_features)
        self.components = int(components)
        self.min_scale = float(min_scale)
        self.quant = Quantisation.of(norm_mean, norm_std)
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

    def log_bin_mass(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        """Per-example log-probability (nats) of the target's 16-bit bin, ``[B]`` (see
        :mod:`.discretise`). Default: from the Distribution's ``cdf``, a plain difference;
        heads override it with a form that is stable in the tails and for tiny bins."""
        return generic_log_mass(self.quant, self.distribution_from_params(params).cdf, target.float())

    def bits(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        """Per-example bits of the target's 16-bit code, ``-log2 P(bin)``, ``[B]``."""
        return bits(self.log_bin_mass(params, target))

    def training_sums(self, params: tuple[Tensor, ...], target: Tensor,
                      loss: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(NLL sum, bits sum) of a training batch, given its per-example (detached) ``loss``;
        ``None`` where the head derives the epoch value (:meth:`epoch_nll`, :meth:`epoch_bits`).
        Default: the loss is the NLL; the bits are computed."""
        return loss.sum(), self.bits(params, target).sum()

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
        u = torch.rand(*shape, 1, generator=generator, device=device, dtype=torch.float32)
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

    # -- hooks used by the LightningModule (no-ops for heads that predict everything) --
    def observe_training_mse(self, mse: float) -> None:
        """Called before each validation with the training MSE of the epoch so far."""

    def observe_validation_mse(self, mse: float) -> None:
        """Called after each validation with its MSE."""

    def epoch_nll(self, mean_nll: Tensor, mse: Tensor) -> Tensor:
        """Epoch-level training NLL from the accumulated per-example mean NLL and MSE."""
        return mean_nll

    def epoch_bits(self, mean_bits: Tensor, epoch_nll: Tensor) -> Tensor:
        """Epoch-level training bits per sample from the accumulated mean bits (the default)
        or from the epoch NLL (a head whose :meth:`training_sums` gives no bits)."""
        return mean_bits

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, components={self.components}, min_scale={self.min_scale}"

