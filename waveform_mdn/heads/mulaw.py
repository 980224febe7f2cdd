"""The 8-bit mu-law softmax (WaveNet): 256 classes of the mu-law-companded int16 signal,
trained by cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Uniform

from data_prep.audio_io import CODE_MAX, CODE_MIN, FULL_SCALE

from .base import Head, Params, gumbel_, gumbel_max, register_head, tempered_softmax, uniform
from .discretise import LN2

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


@register_head("mulaw_softmax")
class MulawSoftmaxHead(Head):
    """256 logits over the mu-law classes; the loss is the cross-entropy. Each class's
    probability is spread uniformly over its int16 codes (the bits) and over its interval
    (the density). A draw is a class by Gumbel-max, decoded to its centre (no scale: ``T_s``
    has no effect)."""

    label = "mu-law softmax"
    n_outputs = N_CLASSES

    def __init__(self, in_features: int, components: int = 1, min_scale: float = 1e-3, **kw: object):
        super().__init__(in_features, 1, min_scale, **kw)
        codes = torch.arange(CODE_MIN, CODE_MAX + 1)
        class_of_code = torch.from_numpy(mulaw_class(codes.numpy()))
        count = torch.bincount(class_of_code, minlength=N_CLASSES)  # each class holds a code (tested)
        first = torch.searchsorted(class_of_code, torch.arange(N_CLASSES))  # classes rise with the code
        centres = torch.from_numpy(mulaw_decode(np.arange(N_CLASSES)) - self.norm.mean) / self.norm.std
        tables = {"class_of_code": class_of_code, "log_count": count.double().log().float(), "centres": centres.float(),
                  "low": (self.norm.value(codes[first]) - self.norm.half_width).float(),
                  "high": (self.norm.value(codes[first + count - 1]) + self.norm.half_width).float()}
        for name, table in tables.items():
            self.register_buffer(name, table, persistent=False)
        self.log_bin_width = math.log(2 * self.norm.half_width)

    def params(self, features: Tensor) -> tuple[Tensor]:
        return (self.project(features),)

    def classes(self, target: Tensor) -> Tensor:
        """The mu-law class of each normalised target (through its int16 code)."""
        return self.class_of_code[self.norm.codes(target) - CODE_MIN]

    def distribution_from_params(self, params: Params) -> Distribution:
        """The piecewise-uniform density (the NLL's); its ``mean`` uses the intervals'
        midpoints, :meth:`mean_from_params` the decoded centres that sampling returns."""
        (logits,) = params
        shape = logits.shape
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False),
                                 Uniform(self.low.expand(shape), self.high.expand(shape), validate_args=False),
                                 validate_args=False)

    def _cross_entropy(self, logits: Tensor, c: Tensor) -> Tensor:
        return -torch.log_softmax(logits, -1).gather(-1, c.unsqueeze(-1)).squeeze(-1)

    def loss(self, params: Params, target: Tensor) -> Tensor:
        return self._cross_entropy(params[0], self.classes(target))

    def nll(self, params: Params, target: Tensor) -> Tensor:
        c = self.classes(target)
        return self._cross_entropy(params[0], c) + self.log_count[c] + self.log_bin_width

    def log_bin_mass(self, params: Params, target: Tensor) -> Tensor:
        c = self.classes(target)
        return -self._cross_entropy(params[0], c) - self.log_count[c]

    def training_sums(self, params, target, loss) -> tuple[Tensor, Tensor]:
        """From the cross-entropy and the class's code count: no second softmax."""
        log_count = self.log_count[self.classes(target)]
        n = loss.numel()
        return (loss + log_count).sum() + n * self.log_bin_width, (loss + log_count).sum() / LN2

    def mean_from_params(self, params: Params, temperature_weights: float = 1.0) -> Tensor:
        """``sum_c softmax(logits / T_w)_c centre_c``; ``T_w = 0``: the mode."""
        if temperature_weights == 0:
            return self.mode_from_params(params)
        return tempered_softmax(params[0], temperature_weights) @ self.centres

    def mode_from_params(self, params: Params) -> Tensor:
        return self.centres[params[0].argmax(-1)]

    def draw_noise(self, shape, generator=None, device=None) -> Tensor:
        """256 Gumbel numbers per draw (the class)."""
        return gumbel_(uniform(shape, N_CLASSES, generator, device))

    def sample_from_noise(self, params, noise, temperature_weights=1.0, temperature_scales=1.0) -> Tensor:
        return self.centres[gumbel_max(params[0], noise, temperature_weights).squeeze(-1)]
