"""The log-mass of a target's 16-bit bin, stable for tiny bins and far tails: the bits per
sample of every head (the numerics are explained in docs/heads.md)."""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from data_prep.audio_io import CODE_MAX, CODE_MIN, Normalisation

LN2 = math.log(2.0)
MIDPOINT_BELOW = 1e-2  #: log F(b) - log F(a) under this: the midpoint rule
#: standardised bin ends are clamped to +-_OPEN: the open ends of the edge bins, and finite
#: gradients (torch's ``log_ndtr`` backward overflows in float32 beyond a few thousand)
_OPEN = 1e3
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

LogFn = Callable[[Tensor], Tensor]


def log_bin_mass(log_cdf: LogFn, log_pdf: LogFn, norm: Normalisation, target: Tensor, loc: Tensor,
                 scale: Tensor) -> Tensor:
    """``log P(bin of each target)`` under each component of a symmetric location-scale family
    (its standardised ``log_cdf``, ``log_pdf``); ``loc``, ``scale``: ``[B]`` or ``[B, K]``."""
    h = norm.half_width
    at_lowest, at_highest = target < norm.lowest + h, target > norm.highest - h
    if loc.dim() > target.dim():
        target, at_lowest, at_highest = target.unsqueeze(-1), at_lowest.unsqueeze(-1), at_highest.unsqueeze(-1)
    inv = scale.reciprocal()
    z, dz = (target - loc) * inv, h * inv
    a = (z - dz).masked_fill(at_lowest, -_OPEN).clamp(-_OPEN, _OPEN)
    b = (z + dz).masked_fill(at_highest, _OPEN).clamp(-_OPEN, _OPEN)
    upper = (a + b) > 0  # mirrored: both log-CDFs in the lower tail
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    la, lb = log_cdf(a), log_cdf(b)
    d = lb - la
    exact = lb + torch.log(-torch.expm1(-d.clamp(min=MIDPOINT_BELOW)))
    return torch.where(d >= MIDPOINT_BELOW, exact, log_pdf(z) + torch.log(2 * dz))


def normal_log_pdf(z: Tensor) -> Tensor:
    return -0.5 * z.square() - _HALF_LOG_2PI


def logistic_log_cdf(z: Tensor) -> Tensor:
    return -F.softplus(-z)


def logistic_log_pdf(z: Tensor) -> Tensor:
    """Written out: torch has no logistic Distribution, and ``TransformedDistribution(Uniform)``
    gives ``-inf`` once ``sigmoid(z)`` rounds to 1."""
    return -z - 2.0 * F.softplus(-z)


normal_log_mass = partial(log_bin_mass, torch.special.log_ndtr, normal_log_pdf)
logistic_log_mass = partial(log_bin_mass, logistic_log_cdf, logistic_log_pdf)


def mixture_log_mass(logits: Tensor, component_log_mass: Tensor) -> Tensor:
    """``log sum_k softmax(logits)_k P_k``, ``[B, K] -> [B]``."""
    return torch.logsumexp(torch.log_softmax(logits, dim=-1) + component_log_mass, dim=-1)


def generic_log_mass(norm: Normalisation, cdf: LogFn, target: Tensor) -> Tensor:
    """From any Distribution's ``cdf``: the plain difference, floored at ``1e-30``."""
    codes = norm.codes(target)
    centre = norm.value(codes).to(target.dtype)
    upper = torch.where(codes == CODE_MAX, torch.ones_like(centre), cdf(centre + norm.half_width))
    lower = torch.where(codes == CODE_MIN, torch.zeros_like(centre), cdf(centre - norm.half_width))
    return torch.log((upper - lower).clamp(min=1e-30))
