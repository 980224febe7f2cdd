"""The 16-bit grid on the normalised scale and the log-mass of a target's bin.

Audio is stored as int16 codes ``v`` in ``[-32768, 32767]``; the model sees the normalised
value ``x(v) = (v / 32768 - mean) / std`` (``mean``, ``std``: float units, the training
split's). Code ``v``'s bin is ``[x(v) - h, x(v) + h]`` with ``h = 0.5 / (32768 std)``; the
two edge codes are open-ended (``(-inf, x + h]`` and ``[x - h, +inf)``), so the masses of
all 65,536 bins of any distribution sum to 1. Bits per sample are ``-log2`` of the mass of
the target's bin: 16 for the uniform distribution over the codes, 0 for a certain one.

:func:`log_bin_mass` computes ``log(F(b) - F(a))`` for a location-scale family given its
log-CDF and log-density on the standardised scale, in log space and stable for tiny bins
and far tails:

* the upper half is mirrored (``F(b) - F(a) = F(-a) - F(-b)`` for a symmetric family), so
  both log-CDFs are taken where they are accurate (the lower tail, ``log_ndtr`` or
  ``-softplus(-z)``);
* ``log(F(b) - F(a)) = log F(b) + log(1 - exp(-d))``, ``d = log F(b) - log F(a)``;
* where that difference ``d`` is below ``MIDPOINT_BELOW`` (a bin much narrower than the
  distribution, where subtracting two rounded log-CDFs would lose digits), the midpoint
  rule ``log f(z) + log(2 dz)`` is used instead (relative error about ``d^2 / 24``); so
  it is for bins more than 1000 scales from a component's centre (log-mass below -500000
  for the Gaussian), where both ends are clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

FULL_SCALE = 32768.0
CODE_MIN, CODE_MAX = -32768, 32767
N_CODES = CODE_MAX - CODE_MIN + 1
LN2 = math.log(2.0)
MIDPOINT_BELOW = 1e-2  #: log F(b) - log F(a) under this: the midpoint rule (see the module text)
#: standardised bin ends are clamped to +-_OPEN (F(-1000) = exp(-500000) for the Gaussian, 0
#: in float64): the open ends of the edge bins, and finite gradients (torch's ``log_ndtr``
#: backward overflows in float32 beyond a few thousand)
_OPEN = 1e3
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

LogFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Quantisation:
    """The int16 grid in normalised units: ``x(v) = (v / 32768 - mean) / std``."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"normalisation must have a finite mean and a positive std, not {self}")

    @classmethod
    def of(cls, norm_mean: float | None, norm_std: float | None) -> "Quantisation":
        """From a model's ``norm_mean``/``norm_std`` (``None``: the float signal itself)."""
        return cls(0.0 if norm_mean is None else float(norm_mean), 1.0 if norm_std is None else float(norm_std))

    @property
    def half_width(self) -> float:
        """``h``: half a bin, in normalised units."""
        return 0.5 / (FULL_SCALE * self.std)

    def value(self, codes: Tensor) -> Tensor:
        """Normalised value of int16 ``codes`` (in the codes' float dtype, float64 for ints)."""
        c = codes.double() if not codes.is_floating_point() else codes
        return (c / FULL_SCALE - self.mean) / self.std

    @property
    def lowest(self) -> float:
        return (CODE_MIN / FULL_SCALE - self.mean) / self.std

    @property
    def highest(self) -> float:
        return (CODE_MAX / FULL_SCALE - self.mean) / self.std

    def codes(self, x: Tensor) -> Tensor:
        """The int16 code (int64) nearest to each normalised value, clamped to the range."""
        return torch.round((x * self.std + self.mean) * FULL_SCALE).clamp_(CODE_MIN, CODE_MAX).long()

    def all_codes(self, device: torch.device | str | None = None) -> Tensor:
        """Every code's normalised value, ``[65536]`` float64: for checks."""
        return self.value(torch.arange(CODE_MIN, CODE_MAX + 1, device=device))

    def bins(self, target: Tensor, loc: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Standardised bin of each target under each component: ``(a, b, z, dz)``, the ends
        ``z -+ dz`` (the outer end of an edge code's bin at ``-+_OPEN``; all clamped to
        ``+-_OPEN``), the centre ``z = (x - loc) / scale`` and ``dz = h / scale``. A target is
        the normalised value of its code (float32 rounding moves a bin by far less than its
        width); ``loc``, ``scale`` are ``[B]`` or ``[B, K]`` (the target is broadcast)."""
        at_lowest = target < self.lowest + self.half_width
        at_highest = target > self.highest - self.half_width
        if loc.dim() > target.dim():
            target, at_lowest, at_highest = target.unsqueeze(-1), at_lowest.unsqueeze(-1), at_highest.unsqueeze(-1)
        inv = scale.reciprocal()
        z, dz = (target - loc) * inv, self.half_width * inv
        a = (z - dz).masked_fill(at_lowest, -_OPEN).clamp(-_OPEN, _OPEN)
        b = (z + dz).masked_fill(at_highest, _OPEN).clamp(-_OPEN, _OPEN)
        return a, b, z, dz


def log_bin_mass(log_cdf: LogFn, log_pdf: LogFn, a: Tensor, b: Tensor, z: Tensor, dz: Tensor) -> Tensor:
    """``log(F(b) - F(a))`` of a symmetric standardised family, ``(a, b, z, dz)`` from
    :meth:`Quantisation.bins`: see the module text. ``log_cdf``/``log_pdf`` act on the
    standardised scale; ``log(dz)`` is included, so this is the log-mass in any units."""
    upper = (a + b) > 0  # the bin's middle is in the upper half: mirror it
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    la, lb = log_cdf(a), log_cdf(b)
    d = lb - la
    exact = lb + torch.log(-torch.expm1(-d.clamp(min=MIDPOINT_BELOW)))  # log(1 - exp(-d)), d >= 0.01
    midpoint = log_pdf(z) + torch.log(2 * dz)
    return torch.where(d >= MIDPOINT_BELOW, exact, midpoint)


def normal_log_pdf(z: Tensor) -> Tensor:
    return -0.5 * z.square() - _HALF_LOG_2PI


def logistic_log_cdf(z: Tensor) -> Tensor:
    """``log sigmoid(z) = -softplus(-z)``."""
    return -F.softplus(-z)


def logistic_log_pdf(z: Tensor) -> Tensor:
    """Log-density of the standard logistic, ``-z - 2 softplus(-z)`` (written out: torch has
    no logistic Distribution, and ``TransformedDistribution(Uniform)`` gives ``-inf`` once
    ``sigmoid(z)`` rounds to 1)."""
    return -z - 2.0 * F.softplus(-z)


def normal_log_mass(quant: Quantisation, target: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log-mass of each target's bin under ``Normal(loc, scale)`` (``[B]`` or ``[B, K]``)."""
    return log_bin_mass(torch.special.log_ndtr, normal_log_pdf, *quant.bins(target, loc, scale))


def logistic_log_mass(quant: Quantisation, target: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log-mass of each target's bin under ``Logistic(loc, scale)`` (``[B]`` or ``[B, K]``)."""
    return log_bin_mass(logistic_log_cdf, logistic_log_pdf, *quant.bins(target, loc, scale))


def mixture_log_mass(logits: Tensor, component_log_mass: Tensor) -> Tensor:
    """``log sum_k softmax(logits)_k P_k`` by log-sum-exp, ``[B, K] -> [B]``."""
    return torch.logsumexp(torch.log_softmax(logits, dim=-1) + component_log_mass, dim=-1)


def generic_log_mass(quant: Quantisation, cdf: Callable[[Tensor], Tensor], target: Tensor) -> Tensor:
    """Log-mass from a Distribution's ``cdf`` (any head without its own stable form): the
    plain difference, floored at ``1e-30`` where it rounds to 0 or below."""
    codes = quant.codes(target)
    centre = quant.value(codes).to(target.dtype)
    h = quant.half_width
    upper = torch.where(codes == CODE_MAX, torch.ones_like(centre), cdf(centre + h))
    lower = torch.where(codes == CODE_MIN, torch.zeros_like(centre), cdf(centre - h))
    return torch.log((upper - lower).clamp(min=1e-30))


def bits(log_mass: Tensor) -> Tensor:
    """``-log2`` of a mass given as its natural log."""
    return log_mass * (-1.0 / LN2)
