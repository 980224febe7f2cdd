"""The 8-bit mu-law softmax (WaveNet): 256 classes of the mu-law-companded int16 signal,
trained by cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Uniform

from .base import _EPS32, _TINY, Head, register_head
from .discretise import CODE_MAX, CODE_MIN, FULL_SCALE, LN2, Quantisation

MU = 255
N_CLASSES = MU + 1


def mulaw_class(codes: np.ndarray) -> np.ndarray:
    """Class (0..255) of int16 codes: ``y = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` of
    ``x = code / 32768``, then ``floor((y + 1) / 2 * 255 + 0.5)``."""
    x = np.asarray(codes, dtype=np.float64) / FULL_SCALE
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.floor((y + 1) / 2 * MU + 0.5).astype(np.int64)


def mulaw_decode(classes: np.ndarray) -> np.ndarray:
    """Float value (full scale 1) of each class's centre: the inverse of both steps."""
    y = 2.0 * np.asarray(classes, dtype=np.float64) / MU - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU


class MulawTables:
    """The int16 codes of each class, tabulated once from :func:`mulaw_class`."""

    def __init__(self, quant: Quantisation):
        codes = np.arange(CODE_MIN, CODE_MAX + 1)
        self.class_of_code = mulaw_class(codes)
        self.count = np.bincount(self.class_of_code, minlength=N_CLASSES)
        if self.count.min() < 1 or len(self.count) != N_CLASSES:
            raise AssertionError("every mu-law class must hold at least one int16 code")
        first = np.searchsorted(self.class_of_code, np.arange(N_CLASSES))  # classes rise with the code
        self.lowest_code, self.highest_code = codes[first], codes[first + self.count - 1]
        self.centre = (mulaw_decode(np.arange(N_CLASSES)) - quant.mean) / quant.std  # normalised
        h = quant.half_width
        self.low = (self.lowest_code / FULL_SCALE - quant.mean) / quant.std - h  # each class's interval
        self.high = (self.highest_code / FULL_SCALE - quant.mean) / quant.std + h


@register_head("mulaw_softmax")
class MulawSoftmaxHead(Head):
    """256 logits over the mu-law classes; the loss is the cross-entropy.

    On the 16-bit scale each class's probability is spread uniformly over its int16 codes:
    ``bits = (CE + ln(codes in the class)) / ln 2``. Its density over the normalised signal
    is that piecewise-uniform distribution (probability / width of the class's interval):
    ``nll = CE + ln(codes * 2h)``, i.e. ``bits ln 2 + ln(2h)`` exactly. Point prediction:
    the mean of the decoded class centres; a draw: a class by Gumbel-max over
    ``logits / T_w``, decoded to its centre (``T_s`` has no effect: no scale).
    """

    n_outputs = N_CLASSES

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3, **kw: object):
        super().__init__(in_features, 1, min_scale, **kw)
        t = MulawTables(self.quant)
        self.register_buffer("class_of_code", torch.from_numpy(t.class_of_code), persistent=False)
        self.register_buffer("log_count", torch.from_numpy(np.log(t.count)).float(), persistent=False)
        self.register_buffer("centres", torch.from_numpy(t.centre).float(), persistent=False)
        self.register_buffer("low", torch.from_numpy(t.low).float(), persistent=False)
        self.register_buffer("high", torch.from_numpy(t.high).float(), persistent=False)
        self.log_bin_width = math.log(2 * self.quant.half_width)

    def params(self, features: Tensor) -> tuple[Tensor]:
        return (self.project(features),)

    def classes(self, target: Tensor) -> Tensor:
        """The mu-law class of each normalised target (through its int16 code)."""
        return self.class_of_code[self.quant.codes(target) - CODE_MIN]

    def distribution_from_params(self, params: tuple[Tensor, ...]) -> Distribution:
        """The piecewise-uniform density (the NLL's); its ``mean`` uses the intervals'
        midpoints, :meth:`mean_from_params` the decoded centres that sampling returns."""
        (logits,) = params
        shape = logits.shape
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False),
                                 Uniform(self.low.expand(shape), self.high.expand(shape), validate_args=False),
                                 validate_args=False)

    def _cross_entropy(self, logits: Tensor, c: Tensor) -> Tensor:
        return -torch.log_softmax(logits, -1).gather(-1, c.unsqueeze(-1)).squeeze(-1)

    def loss(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        return self._cross_entropy(params[0], self.classes(target))

    def nll(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        c = self.classes(target)
        return self._cross_entropy(params[0], c) + self.log_count[c] + self.log_bin_width

    def log_bin_mass(self, params: tuple[Tensor, ...], target: Tensor) -> Tensor:
        c = self.classes(target)
        return -self._cross_entropy(params[0], c) - self.log_count[c]

    def training_sums(self, params, target, loss) -> tuple[Tensor, Tensor]:
        """From the cross-entropy and the class's code count: no second softmax."""
        log_count = self.log_count[self.classes(target)]
        n = loss.numel()
        return (loss + log_count).sum() + n * self.log_bin_width, (loss + log_count).sum() / LN2

    def batch_shape(self, params: tuple[Tensor, ...]) -> torch.Size:
        return params[0].shape[:-1]

    def mean_from_params(self, params: tuple[Tensor, ...], temperature_weights: float = 1.0) -> Tensor:
        """``sum_c softmax(logits / T_w)_c centre_c``; ``T_w = 0``: the most probable class's centre."""
        (logits,) = params
        if temperature_weights == 0:
            return self.mode_from_params(params)
        if temperature_weights != 1:
            logits = logits / temperature_weights
        return torch.softmax(logits, -1) @ self.centres

    def mode_from_params(self, params: tuple[Tensor, ...]) -> Tensor:
        return self.centres[params[0].argmax(-1)]

    def noise_size(self) -> int:
        return N_CLASSES

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """256 Gumbel(0, 1) numbers per draw (the class, by Gumbel-max)."""
        u = torch.rand(*shape, N_CLASSES, generator=generator, device=device, dtype=torch.float32)
        return u.clamp_(min=_TINY, max=1.0 - _EPS32).log_().neg_().log_().neg_()

    def sample_from_noise(self, params, noise, temperature_weights: float = 1.0,
                          temperature_scales: float = 1.0) -> Tensor:
        (logits,) = params
        if temperature_weights == 0:
            return self.mode_from_params(params)
        scores = logits.add(noise) if temperature_weights == 1 else noise.add(logits, alpha=1.0 / temperature_weights)
        return self.centres[scores.argmax(-1)]
