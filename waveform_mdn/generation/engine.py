"""The generation loop: one step per sample for many streams at once, through the
Predictor's own layers and the head's own sampler (``docs/generation.md``)."""

from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..predictor import Predictor
from .inputs import Streams
from .settings import GenerationSettings

BLOCK = 256  #: each stream's generator draws the noise of this many steps at a time
BIAS_BYTES = 1 << 18  #: context rows prepared per chunk: about this much


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


def _buffer(net: Predictor, streams: Streams) -> tuple[dict, Tensor, int]:
    """(the context fields, ``[n, N]``, of which ``context_bias`` takes those the model uses;
    the buffer ``[N, W + n]`` holding the prime and the given samples; the first position to
    generate)."""
    c, n, W = streams.contexts, streams.n, net.window
    N = next((int(v.shape[0]) for v in (*c.values(), streams.prime, streams.given) if v is not None), 1)
    buf = torch.zeros(N, W + n, device=net.window_proj.weight.device, dtype=net.window_proj.weight.dtype)
    if streams.prime is not None:
        buf[:, :W] = streams.prime
    start = 0 if streams.given is None else min(int(streams.given.shape[1]), n)
    if streams.given is not None:
        buf[:, W : W + start] = streams.given[:, :start]
    return {f: torch.as_tensor(v)[:, :n].t().to(buf.device) for f, v in c.items()}, buf, start


def generate(model: nn.Module, streams: Streams, settings: GenerationSettings = GenerationSettings(), *,
             stats: GenerationStats | None = None, progress: Callable[[int], None] | None = None) -> Tensor:
    """``[N, n]`` normalised samples of the :class:`~.inputs.Streams`, free-running. A
    non-finite value is replaced (0, or the clip bound) and counted in ``stats``;
    ``progress(steps)`` after each chunk. Changes no process-wide setting."""
    net = model if isinstance(model, Predictor) else model.net
    W, n, t0 = net.window, int(streams.n), time.perf_counter()
    with noise_variance(net.head, settings.gaussian_variance), torch.inference_mode():
        ctx, buf, start = _buffer(net, streams)
        N = buf.shape[0]
        seeds = [settings.seed + k for k in range(N)] if streams.seeds is None else [int(x) for x in streams.seeds]
        lo, hi = map(float, streams.clip or (-3.0e38, 3.0e38))
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
    torch.clamp(torch.nan_to_num(x, 0.0), lo, hi, out=slot)  # +-inf: the largest floats, then the bounds
    return x
