"""Phone sequences to audio: sequences x streams in batches through the engine, primes per
stream, de-normalised audio out."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch import nn

from ..data import PreparedDataset
from .engine import GenerationStats, generate
from .inputs import PhoneSequence, batch_streams, sequence_from_prepared
from .settings import GenerationSettings


@dataclass
class GeneratedAudio:
    """One generated stream: float audio in [-1, 1] (de-normalised, clipped)."""

    name: str
    sequence: PhoneSequence
    stream: int
    seed: int
    audio: np.ndarray
    clipped: int
    nonfinite_replaced: int
    start: int  #: first generated position (W with the real prime, else 0)


class StepBar:
    """A tqdm bar (stderr) of one batch: samples done, steps, times real time; redrawn every
    0.5 s on a terminal, every 30 s in a log file."""

    def __init__(self, desc: str, streams: int, steps: int, sample_rate: int):
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self.streams, self.steps, self.total, self.sample_rate = streams, 0, steps, sample_rate
        self.bar = tqdm(total=steps * streams, desc=desc, unit="sample", unit_scale=True, file=sys.stderr,
                        mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)
        self.t0 = time.perf_counter()

    def __call__(self, steps: int) -> None:
        self.steps += steps
        rate = self.steps * self.streams / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"step {self.steps:,}/{self.total:,}, {rate / self.sample_rate:.1f}x real time",
                                 refresh=False)
        self.bar.update(steps * self.streams)


def generate_sequences(model: nn.Module, sequences: Sequence[PhoneSequence], settings: GenerationSettings,
                       log: Callable[[str], None] | None = None) -> list[GeneratedAudio]:
    """``settings.streams`` streams per sequence, ``settings.batch_size`` at a time, each at
    most ``settings.seconds``; ``settings`` must be :meth:`~.settings.GenerationSettings.resolved`."""
    s = settings
    items = [(q, k) for q in [q.truncated(s.seconds, s.sample_rate) for q in sequences] for k in range(s.streams)]
    n_batches = -(-len(items) // s.batch_size)
    results: list[GeneratedAudio] = []
    for b, b0 in enumerate(range(0, len(items), s.batch_size)):
        batch = items[b0 : b0 + s.batch_size]
        desc = f"batch {b + 1}/{n_batches} ({len(batch)} stream{'s' if len(batch) > 1 else ''})"
        results += _batch(model, batch, s, desc, log)
    return results


def _batch(model: nn.Module, batch: list[tuple[PhoneSequence, int]], s: GenerationSettings, desc: str,
           log) -> list[GeneratedAudio]:
    """One batch of streams through the engine."""
    W, n = getattr(model, "net", model).window, max(q.length for q, _ in batch)
    seeds = [s.seed + k for _, k in batch]
    streams, st = batch_streams([q for q, _ in batch], seeds, n, s, W), GenerationStats()
    start = W if streams.given is not None else 0
    bar = StepBar(desc, len(batch), n - start, s.sample_rate) if s.progress else None
    try:
        y = generate(model, streams, s, stats=st, progress=bar)
    finally:
        if bar is not None:
            bar.bar.close()
    if log is not None:
        log(f"generated {len(batch)} stream(s) x {st.steps} steps in {st.seconds:.2f} s "
            f"({st.samples_per_second:,.0f} samples/s)")
    audio = np.clip(s.norm.denormalise(y.cpu().numpy().astype(np.float64)), -1.0, 1.0).astype(np.float32)
    return [GeneratedAudio(f"{q.name}_{k}" if s.streams > 1 else q.name, q, k, seeds[i], audio[i, : q.length],
                           int(st.clipped[i]), int(st.nonfinite_replaced[i]), start)
            for i, (q, k) in enumerate(batch)]


def generate_for_sequence(model: nn.Module, prepared: PreparedDataset, seq_index: int | str,
                          settings: GenerationSettings = GenerationSettings(prime="real", seconds=1.0)) -> GeneratedAudio:
    """One free-running stream of one sequence of a prepared dataset, e.g. for the training
    callback; the model's hyperparameters, else the dataset's."""
    seq = sequence_from_prepared(prepared, seq_index)
    s = settings.resolved(dict(model.hparams), [seq.reference], prepared)
    return generate_sequences(model, [seq], s)[0]
