"""The generation loop: one step per sample for many streams at once, through the
Predictor's own layers and the head's own sampler (``docs/generation.md``)."""

from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..predictor import CONTEXT_FIELDS, Predictor
from .settings import GenerationError, GenerationSettings

BLOCK = 256  #: each stream's generator draws the noise of this many steps at a time
BIAS_BYTES = 1 << 18  #: context rows prepared per chunk: about this much
FAR = 3.0e38  #: the clip bounds when there are none


@dataclass
class GenerationStats:
    """What happened in one :func:`generate` call."""

    clipped: list[int] = field(default_factory=list)
    nonfinite_replaced: list[int] = field(default_factory=list)
    steps: int = 0
    streams: int = 0
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.steps * self.streams / self.seconds if self.seconds > 0 else float("nan")


class StreamNoise:
    """``head.draw_noise`` for ``N`` streams: stream ``k`` draws blocks of ``BLOCK`` steps from
    its own generator, so its noise depends only on its seed and the step index."""

    def __init__(self, head: nn.Module, seeds: Sequence[int], device: torch.device):
        self.head, self.device = head, device
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.pending = torch.empty(0, len(self.generators), head.noise_size())

    def take(self, m: int) -> Tensor:
        """Noise of the next ``m`` steps, ``[m, N, noise_size]``, on the device."""
        parts = [self.pending]
        while sum(len(p) for p in parts) < m:
            parts.append(torch.stack([self.head.draw_noise((BLOCK,), g) for g in self.generators], dim=1))
        pool = torch.cat(parts)
        out, self.pending = pool[:m], pool[m:]
        return out.to(self.device)


def stream_seeds(seed: int | Sequence[int], n_streams: int) -> list[int]:
    """One int: stream ``k`` gets ``seed + k``; or one seed per stream."""
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + k for k in range(n_streams)]
    if len(seed) != n_streams:
        raise GenerationError(f"{len(seed)} seeds for {n_streams} streams")
    return [int(s) for s in seed]


def predictor_of(model: nn.Module) -> Predictor:
    """The ``Predictor`` of a ``WaveformPredictor`` (its ``.net``), or the Predictor itself."""
    return model if isinstance(model, Predictor) else model.net


def value_function(head: nn.Module, s: GenerationSettings) -> Callable[[tuple, Tensor | None], Tensor]:
    """``(params, noise) -> value``: the head's sampler, tempered mean or mode."""
    tw, ts = float(s.temperature_weights), float(s.temperature_scales)
    if s.mode == "sample":
        return lambda p, z: head.sample_from_noise(p, z, tw, ts)
    if s.mode == "mean":
        return lambda p, z: head.mean_from_params(p, tw)
    return lambda p, z: head.mode_from_params(p)


@contextmanager
def noise_variance(head: nn.Module, which: str):
    """The Gaussian head's noise set by ``use_variance`` for the loop, then put back
    (the training MSE when no validation ran)."""
    if not hasattr(head, "use_variance"):
        yield
        return
    saved = head.var.clone()
    with torch.no_grad():
        head.use_variance("valid" if which == "valid" and bool(torch.isfinite(head.valid_mse)) else "train")
    try:
        yield
    finally:
        with torch.no_grad():
            head.var.copy_(saved)


def _inputs(net: Predictor, contexts: dict, n: int, prime, given) -> tuple[dict, Tensor, int]:
    """(needed context fields ``[n, N]``, the buffer ``[N, W + n]`` with prime and given, start)."""
    N = next((int(v.shape[0]) for v in (*contexts.values(), prime, given) if v is not None), 1)
    needed = list(net.phone_fields) + (["position"] if net.use_position else [])
    missing = [f for f in needed if contexts.get(f) is None]
    if missing:
        raise GenerationError(f"contexts lack the fields {missing} this model uses")
    ctx = {f: torch.as_tensor(contexts[f]) for f in needed}
    for f, v in ctx.items():
        if v.dim() != 2 or v.shape[0] != N or v.shape[1] < n:
            raise GenerationError(f"contexts[{f!r}] must be [N, n_samples] = [{N}, {n}], not {list(v.shape)}")
    dev, W = net.window_proj.weight.device, net.window
    buf = torch.zeros(N, W + n, device=dev, dtype=net.window_proj.weight.dtype)
    if prime is not None:
        if tuple(prime.shape) != (N, W):
            raise GenerationError(f"prime must be [N, W] = [{N}, {W}], not {list(prime.shape)}")
        buf[:, :W] = prime
    start = 0 if given is None else min(int(given.shape[1]), n)
    if given is not None:
        if given.dim() != 2 or given.shape[0] != N:
            raise GenerationError(f"given must be [N, P] with N = {N}")
        buf[:, W : W + start] = given[:, :start]
    return {f: v[:, :n].t().to(dev) for f, v in ctx.items()}, buf, start


def generate(model: nn.Module, contexts: dict[str, Tensor], n_samples: int,
             settings: GenerationSettings = GenerationSettings(), *, prime: Tensor | None = None,
             given: Tensor | None = None, seeds: int | Sequence[int] | None = None,
             clip: tuple[float, float] | None = None, stats: GenerationStats | None = None,
             progress: Callable[[int], None] | None = None) -> Tensor:
    """``[N, n_samples]`` normalised samples, free-running: ``contexts`` ``[N, n]`` per field,
    ``prime`` ``[N, W]`` before position 0 (default zeros), ``given`` ``[N, P]`` copied to
    positions ``0 .. P-1``, ``seeds`` (default ``settings.seed``; :func:`stream_seeds`),
    ``clip`` the bounds of what is fed back. Non-finite values are replaced (0, or the
    bound), counted in ``stats``; ``progress(steps)`` after each chunk. Changes no
    process-wide setting."""
    net = predictor_of(model)
    W, n = net.window, int(n_samples)
    t0 = time.perf_counter()
    with noise_variance(net.head, settings.gaussian_variance), torch.inference_mode():
        ctx, buf, start = _inputs(net, contexts, n, prime, given)
        N = buf.shape[0]
        seeds = stream_seeds(settings.seed if seeds is None else seeds, N)
        lo, hi = (float(clip[0]), float(clip[1])) if clip is not None else (-FAR, FAR)
        noise = StreamNoise(net.head, seeds, buf.device) if settings.mode == "sample" else None
        if noise is not None:
            noise.take(start)  # the noise of position t is the stream's t-th draw
        value, counts = value_function(net.head, settings), torch.zeros(2, N, dtype=torch.int64)
        size = settings.chunk or min(4096, max(16, BIAS_BYTES // (4 * N * net.window_proj.out_features)))
        for c0 in range(start, n, size):
            c1 = min(c0 + size, n)
            bias = net.context_bias(**{f: v[c0:c1] for f, v in ctx.items()})
            raw = torch.stack([
                _step(net, value, window, b, z, slot, lo, hi) for window, b, z, slot in zip(
                    buf[:, c0 : c1 + W - 1].unfold(1, W, 1).unbind(1),
                    bias.expand(c1 - c0, N, bias.shape[-1]).unbind(0),
                    noise.take(c1 - c0).unbind(0) if noise is not None else itertools.repeat(None),
                    buf[:, W + c0 : W + c1].unbind(1))])
            finite = torch.isfinite(raw)
            counts += torch.stack([(~finite).sum(0), (finite & ((raw < lo) | (raw > hi))).sum(0)]).cpu()
            if progress is not None:
                progress(c1 - c0)
        out = buf[:, W:].clone()
    if stats is not None:
        stats.nonfinite_replaced, stats.clipped = counts.tolist()
        stats.steps, stats.streams, stats.seeds = max(n - start, 0), N, seeds
        stats.seconds = time.perf_counter() - t0
    return out


def _step(net: Predictor, value, window: Tensor, bias: Tensor, noise: Tensor | None, slot: Tensor,
          lo: float, hi: float) -> Tensor:
    """One step of every stream: the value, and what is fed back (finite, clipped) into ``slot``."""
    x = value(net.head.params(net.features_from_bias(window, bias)), noise)
    torch.clamp(torch.nan_to_num(x, 0.0, hi, lo), lo, hi, out=slot)
    return x
