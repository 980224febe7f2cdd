"""The generation engine: one loop, one step per sample, for many streams at once.

Step ``t`` of every stream: the window (the ``W`` samples before ``t``, a view of one
preallocated buffer) and the context part of the first layer give the head's parameters
(:class:`~.network.StepNetwork`); the head's own function turns them into the value
(``sample_from_noise`` with the stream's noise, ``mean_from_params``, ``mode_from_params``:
the functions training metrics use too); the value, made finite and clipped, is written
into the buffer, where the next windows read it. The random numbers come from
:class:`~.noise.StreamNoise`: per stream, by seed and step index only.

For a few streams on CPU the same loop takes the head's ``row_sampler`` instead: the
head's projection is read as Python floats (one ``tolist``) and the head's own function of
that row and the same noise gives each value, written into the buffer through a numpy view
(about 20 us per step instead of 30 for the dozen tiny tensor operations; see
``bench/bench_generate.py --sampler``). Both give the same draws (tested).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .inputs import CONTEXT_KEYS, GenerationError
from .network import ContextBias, StepNetwork, predictor_of
from .noise import StreamNoise

MODES = ("sample", "mean", "mode")
ROW_STREAMS = 4  #: up to this many streams on CPU a head's row sampler (Python floats) is used
BIAS_BYTES = 1 << 18  #: context-bias rows prepared per chunk: about this much (with 1 MB, one
#: stream's steps were often 20% slower: 873 steps per chunk, against 218 now; 64 streams: 16 steps)
FAR = 3.0e38  #: the clip bounds when there are none


@dataclass(frozen=True)
class Sampling:
    """What one step makes of the head's parameters.

    ``mode``: ``"sample"`` (a draw from the tempered predictive distribution), ``"mean"``
    (its mean) or ``"mode"`` (the most probable component's mean). ``temperature_weights``
    divides the mixture logits (0: the most probable component, in "sample" and "mean");
    ``temperature_scales`` multiplies the scales (0: no Gaussian noise).
    """

    mode: str = "sample"
    temperature_weights: float = 1.0
    temperature_scales: float = 1.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise GenerationError(f"mode must be one of {MODES}, not {self.mode!r}")
        if not (self.temperature_weights >= 0 and self.temperature_scales >= 0):
            raise GenerationError("temperatures must be >= 0")

    def step_function(self, head: nn.Module) -> Callable[[Tensor, Tensor | None], Tensor]:
        """``(features, noise) -> value [N]``: the head's ``params``, then its own sampler,
        mean or mode (the functions training metrics use)."""
        tw, ts = float(self.temperature_weights), float(self.temperature_scales)
        params = head.params
        if self.mode == "sample":
            return lambda features, noise: head.sample_from_noise(params(features), noise, tw, ts)
        if self.mode == "mean":
            return lambda features, noise: head.mean_from_params(params(features), tw)
        return lambda features, noise: head.mode_from_params(params(features))

    def row_function(self, head: nn.Module):
        """The head's ``row_sampler`` for these settings (``None`` if it has none)."""
        rows = getattr(head, "row_sampler", None)
        return rows(self.mode, float(self.temperature_weights), float(self.temperature_scales)) if rows else None


@dataclass
class GenerationStats:
    """What happened during :func:`generate` (filled in when passed as ``stats=``)."""

    clipped: list[int] = field(default_factory=list)
    nonfinite_replaced: list[int] = field(default_factory=list)
    steps: int = 0
    streams: int = 0
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    sampler: str = ""  #: "rows" (the head's row sampler) or "tensor" (its tensor functions)

    @property
    def samples_per_second(self) -> float:
        return self.steps * self.streams / self.seconds if self.seconds > 0 else float("nan")


def guarded(x: Tensor, lo: float, hi: float, out: Tensor | None = None) -> Tensor:
    """``x`` made finite (NaN -> 0, +-inf -> the bounds) and clamped to ``[lo, hi]``."""
    return torch.clamp(torch.nan_to_num(x, 0.0, hi, lo, out=out), lo, hi, out=out)


@dataclass
class _Streams:
    """The sample buffer of ``N`` streams: column ``W + t`` holds sample ``t``, columns
    ``0 .. W-1`` the prime; positions ``0 .. start-1`` are given, not generated. With
    teacher forcing the buffer holds the teacher and ``predictions`` what the model made."""

    samples: Tensor
    window: int
    start: int
    clip: tuple[float, float]
    predictions: Tensor | None = None
    clipped: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    nonfinite: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def n(self) -> int:
        return self.samples.shape[1] - self.window

    def result(self) -> Tensor:
        return self.predictions if self.predictions is not None else self.samples[:, self.window :].clone()

    def account(self, c0: int, raw: Tensor) -> None:
        """Count the non-finite and out-of-range values of steps ``c0 ..`` (``raw [m, N]``)."""
        lo, hi = self.clip
        finite = torch.isfinite(raw)
        self.nonfinite += (~finite).sum(0).cpu()
        self.clipped += (finite & ((raw < lo) | (raw > hi))).sum(0).cpu()
        if self.predictions is not None:
            self.predictions[:, c0 : c0 + len(raw)] = guarded(raw, lo, hi).t()


def _streams(N: int, W: int, n: int, device, prime, given, teacher, clip) -> _Streams:
    f32 = dict(device=device, dtype=torch.float32)
    buf = torch.zeros(N, W + n, **f32)
    if prime is not None:
        if tuple(prime.shape) != (N, W):
            raise GenerationError(f"prime must be [N, W] = [{N}, {W}], not {list(prime.shape)}")
        buf[:, :W] = prime.to(**f32)
    if teacher is not None:
        if teacher.dim() != 2 or teacher.shape[0] != N or teacher.shape[1] < n:
            raise GenerationError(f"teacher must be [N, n_samples] = [{N}, {n}]")
        buf[:, W:] = teacher[:, :n].to(**f32)
    P = 0 if given is None else min(int(given.shape[1]), n)
    if given is not None:
        if given.dim() != 2 or given.shape[0] != N:
            raise GenerationError(f"given must be [N, P] with N = {N}")
        buf[:, W : W + P] = given[:, :P].to(**f32)
    preds = None
    if teacher is not None:
        preds = torch.empty(N, n, **f32)
        preds[:, :P] = buf[:, W : W + P]
    lo_hi = (float(clip[0]), float(clip[1])) if clip is not None else (-FAR, FAR)
    zeros = torch.zeros(N, dtype=torch.int64)
    return _Streams(buf, W, P, lo_hi, preds, zeros, zeros.clone())


def _check_contexts(net: nn.Module, contexts: dict[str, Tensor], n: int, n_streams: int) -> dict[str, Tensor]:
    ctx = {k: torch.as_tensor(v) for k, v in contexts.items() if v is not None and k in CONTEXT_KEYS}
    needed = list(net.phone_fields) + (["position"] if net.use_position else [])
    missing = [k for k in needed if k not in ctx]
    if missing:
        raise GenerationError(f"contexts lack the fields {missing} this model uses")
    for k, v in ctx.items():
        if v.dim() != 2 or v.shape[0] != n_streams or v.shape[1] < n:
            raise GenerationError(f"contexts[{k!r}] must be [N, n_samples] = [{n_streams}, {n}], not {list(v.shape)}")
    return {k: ctx[k][:, :n].t() for k in needed}


def stream_seeds(seed: int | Sequence[int], n_streams: int) -> list[int]:
    """One int: stream ``k`` gets ``seed + k``; or one seed per stream."""
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + k for k in range(n_streams)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n_streams:
        raise GenerationError(f"{len(seeds)} seeds for {n_streams} streams")
    return seeds


def generate(
    model: nn.Module,
    contexts: dict[str, Tensor],
    n_samples: int,
    *,
    prime: Tensor | None = None,
    given: Tensor | None = None,
    teacher: Tensor | None = None,
    mode: str = "sample",
    temperature_weights: float = 1.0,
    temperature_scales: float = 1.0,
    seed: int | Sequence[int] = 0,
    clip: tuple[float, float] | None = None,
    gaussian_variance: str = "valid",
    device: str | torch.device | None = None,
    chunk: int | None = None,
    fold_tanh: bool = True,
    row_sampler: bool | None = None,
    stats: GenerationStats | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Generate ``N`` streams of ``n_samples`` normalised samples, one step at a time.

    ``contexts``: phone context per position, ``[N, n_samples]`` tensors (only the fields
    the model uses; see :func:`~.inputs.sequence_contexts`). ``prime``: ``[N, W]`` samples
    before position 0 (default zeros; :func:`~.inputs.make_prime`). ``given``: ``[N, P]``
    samples at positions ``0 .. P-1``, copied, not generated. ``teacher``: ``[N, n]``
    teacher forcing: the windows hold these and the result is the model's value at every
    position. ``mode`` and the temperatures: see :class:`Sampling`. ``seed``: see
    :func:`stream_seeds`. ``clip``: ``(lo, hi)`` bounds of what is fed back and returned
    (counted in ``stats.clipped``). ``gaussian_variance``: noise of the Gaussian head
    (:func:`~.network.gaussian_scale`). ``device``: default the model's. ``chunk``: steps
    per chunk (any value gives the same result). ``fold_tanh``: see
    :class:`~.network.StepNetwork`. ``row_sampler``: ``None``: the head's row sampler for
    up to ``ROW_STREAMS`` streams on CPU; ``True``: for any number on CPU; ``False``: the
    tensor functions (same values). ``progress(steps)`` is called after each chunk of steps
    with their number (a progress bar; once per chunk, not per step). Uses the calling
    thread's torch settings; changes none.

    Returns ``[N, n_samples]`` float32 on ``device``. Never NaN or inf: a non-finite value is
    replaced (0, or the clip bound for +-inf) and counted in ``stats.nonfinite_replaced``.
    """
    sampling = Sampling(mode, temperature_weights, temperature_scales)
    net = predictor_of(model)
    dev = torch.device(device) if device is not None else net.window_proj.weight.device
    W, n = int(net.window), int(n_samples)
    some = next(iter(contexts.values()), None) if contexts else None
    N = int(some.shape[0]) if some is not None else (int(prime.shape[0]) if prime is not None else 1)
    ctx = _check_contexts(net, contexts, n, N)
    seeds = stream_seeds(seed, N)
    t_start = time.perf_counter()
    with torch.inference_mode():
        streams = _streams(N, W, n, dev, prime, given, teacher, clip)
        step = StepNetwork(net, N, dev, fold_tanh, gaussian_variance)
        bias = ContextBias(net, ctx, n, N, step.input_scale, dev)
        steps = _step_kind(step, sampling, streams, dev, row_sampler)
        _run(steps, bias, _stream_noise(step.head, sampling, seeds, dev, streams.start), streams, chunk, progress)
    if stats is not None:
        stats.clipped, stats.nonfinite_replaced = streams.clipped.tolist(), streams.nonfinite.tolist()
        stats.steps, stats.streams, stats.seeds = max(n - streams.start, 0), N, seeds
        stats.seconds, stats.sampler = time.perf_counter() - t_start, steps.name
    return streams.result()


def _stream_noise(head: nn.Module, sampling: Sampling, seeds: list[int], device: torch.device,
                  start: int) -> StreamNoise | None:
    if sampling.mode != "sample":
        return None
    noise = StreamNoise(head, seeds, device)
    noise.take(start)  # the noise of position t is the stream's t-th draw
    return noise


class _TensorSteps:
    """Steps through the head's tensor functions: a value tensor ``[N]`` per step, made
    finite and clipped into the buffer's column."""

    name = "tensor"

    def __init__(self, step: StepNetwork, value, streams: _Streams):
        self.features, self.value = step.features, value
        self.streams, self.feed = streams, streams.predictions is None

    def chunk(self, c0: int, c1: int, noise: Tensor | None):
        """(each step's noise, where each step's value goes)"""
        s = self.streams
        slots = s.samples[:, s.window + c0 : s.window + c1].unbind(1)
        return (noise.unbind(0) if noise is not None else itertools.repeat(None)), slots

    def __call__(self, window: Tensor, context_row: Tensor, noise: Tensor | None, slot: Tensor) -> Tensor:
        x = self.value(self.features(window, context_row), noise)
        if self.feed:  # what is fed back (and kept) is finite and inside the clip range
            guarded(x, *self.streams.clip, out=slot)
        return x

    @staticmethod
    def stacked(values: list) -> Tensor:
        return torch.stack(values)


class _RowSteps(_TensorSteps):
    """Steps through the head's row sampler: the head's projection as Python floats, each
    stream's value from its row and noise, made finite and clipped into the buffer through
    a numpy view of it (CPU only)."""

    name = "rows"

    def __init__(self, step: StepNetwork, sampler, streams: _Streams):
        super().__init__(step, sampler, streams)
        proj = step.head.proj  # what the head's project() applies (the generation copy)
        self.weight_t, self.bias = proj.weight.t().contiguous(), proj.bias
        self.out = torch.empty(streams.samples.shape[0], self.weight_t.shape[1], dtype=torch.float32)
        self.buf = streams.samples.numpy()

    def chunk(self, c0: int, c1: int, noise: Tensor | None):
        W = self.streams.window
        noises = noise.tolist() if noise is not None else itertools.repeat(itertools.repeat(None))
        return noises, range(W + c0, W + c1)

    def __call__(self, window: Tensor, context_row: Tensor, noise, column: int) -> list[float]:
        rows = torch.addmm(self.bias, self.features(window, context_row), self.weight_t, out=self.out).tolist()
        xs = [self.value(r, z) for r, z in zip(rows, noise)]
        if self.feed:
            lo, hi = self.streams.clip
            for i, x in enumerate(xs):  # NaN -> 0, then clipped (+-inf -> the bounds)
                self.buf[i, column] = 0.0 if x != x else (hi if x > hi else (lo if x < lo else x))
        return xs

    @staticmethod
    def stacked(values: list) -> Tensor:
        return torch.tensor(values, dtype=torch.float32)


def _step_kind(step: StepNetwork, sampling: Sampling, streams: _Streams, device: torch.device,
               row_sampler: bool | None) -> _TensorSteps:
    """The head's row sampler for few streams on CPU (or as asked), else its tensor functions."""
    few = row_sampler or (row_sampler is None and streams.samples.shape[0] <= ROW_STREAMS)
    rows = sampling.row_function(step.head) if few and device.type == "cpu" else None
    if rows is not None:
        return _RowSteps(step, rows, streams)
    return _TensorSteps(step, sampling.step_function(step.head), streams)


def _chunk_size(n_streams: int, hidden: int, requested: int | None) -> int:
    if requested is not None:
        return max(1, int(requested))
    return int(min(4096, max(16, BIAS_BYTES // (4 * n_streams * hidden))))


def _run(steps: _TensorSteps, bias: ContextBias, noise: StreamNoise | None, streams: _Streams,
         chunk: int | None, progress: Callable[[int], None] | None = None) -> None:
    """The loop: every step of every stream, in chunks of steps (noise, context rows,
    accounting and progress per chunk)."""
    buf, W, n = streams.samples, streams.window, streams.n
    C = _chunk_size(buf.shape[0], bias.hidden, chunk)
    for c0 in range(streams.start, n, C):
        c1 = min(c0 + C, n)
        windows = buf[:, c0 : c1 + W - 1].unfold(1, W, 1).unbind(1)  # window of step t: a view
        rows = bias.rows(c0, c1).unbind(0)
        noises, slots = steps.chunk(c0, c1, noise.take(c1 - c0) if noise is not None else None)
        values = [steps(window, row, z, slot) for window, row, z, slot in zip(windows, rows, noises, slots)]
        streams.account(c0, steps.stacked(values))
        if progress is not None:
            progress(c1 - c0)
