"""Phone sequences to audio: streams of many sequences in batches through the engine,
primes per stream, de-normalised audio out. The model's hyperparameters give the
normalisation, the sample rate and the context mode unless passed."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from torch import nn

from data_prep.audio_io import Normalisation
from ..data import PreparedDataset
from .engine import GenerationStats, generate
from .inputs import PRIMES, GenerationError, PhoneSequence, make_prime, sequence_contexts, sequence_from_prepared
from .network import predictor_of


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


def hparam(model: nn.Module, key: str, default=None):
    """``model.hparams[key]``, or ``default`` when missing or None."""
    hp = getattr(model, "hparams", None)
    if hp is None:
        return default
    value = hp.get(key) if hasattr(hp, "get") else getattr(hp, key, None)
    return default if value is None else value


def normalisation_of(model: nn.Module, norm: tuple[float, float] | None = None) -> Normalisation:
    if norm is not None:
        return Normalisation(float(norm[0]), float(norm[1]))
    mean, std = hparam(model, "norm_mean"), hparam(model, "norm_std")
    if mean is None or std is None:
        raise GenerationError("the model has no norm_mean/norm_std hyperparameters: pass norm=(mean, std)")
    return Normalisation(float(mean), float(std))


class StepBar:
    """The progress bar of one batch of streams (tqdm, on stderr): samples done (steps x
    streams), samples per second, and in the postfix the steps done and times real time.
    Updated once per chunk of steps by the engine; redrawn at most every half second on a
    terminal, every 30 s otherwise (a log file gets a few lines, not one per chunk)."""

    def __init__(self, desc: str, streams: int, steps: int, sample_rate: int):
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self.streams, self.steps, self.total, self.sample_rate = streams, 0, steps, sample_rate
        self.bar = tqdm(total=steps * streams, desc=desc, unit="sample", unit_scale=True, file=sys.stderr,
                        mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)
        self.t0 = self.last = time.perf_counter()
        self._postfix()

    def _postfix(self) -> None:
        rate = self.steps * self.streams / max(self.last - self.t0, 1e-9)
        self.bar.set_postfix_str(f"step {self.steps:,}/{self.total:,}, {rate / self.sample_rate:.1f}x real time",
                                 refresh=False)

    def __call__(self, steps: int) -> None:
        """``steps`` more steps of every stream are done."""
        self.steps += steps
        self.bar.update(steps * self.streams)
        now = time.perf_counter()
        if now - self.last >= 0.5:
            self.last = now
            self._postfix()

    def close(self) -> None:
        self.last = time.perf_counter()
        self._postfix()
        self.bar.close()


def generate_sequences(
    model: nn.Module,
    sequences: Sequence[PhoneSequence],
    *,
    streams: int = 1,
    prime: str | None = None,
    seed: int = 0,
    seconds: float | None = None,
    batch_size: int = 64,
    norm: tuple[float, float] | None = None,
    context: str | None = None,
    log=None,
    progress: bool = False,
    **engine: Any,
) -> list[GeneratedAudio]:
    """Generate ``streams`` streams per sequence (stream ``k`` seeded ``seed + k``), at most
    ``batch_size`` streams per batch. ``prime`` defaults to ``real`` when every sequence has
    a reference, else ``silence``. ``progress``: a :class:`StepBar` per batch on stderr.
    ``engine``: keywords of :func:`~.engine.generate` (``mode``, temperatures,
    ``gaussian_variance``, ``device``)."""
    if not sequences:
        raise GenerationError("nothing to generate: no sequence given")
    W = int(predictor_of(model).window)
    normalisation = normalisation_of(model, norm)
    sr = int(hparam(model, "sample_rate", 16000))
    context = context or hparam(model, "phone_context", "target")
    if prime is None:
        prime = "real" if all(s.reference is not None for s in sequences) else "silence"
    if prime not in PRIMES:
        raise GenerationError(f"prime must be one of {PRIMES}, not {prime!r}")
    items = [(s.truncated(seconds, sr), k) for s in sequences for k in range(int(streams))]
    size = max(1, int(batch_size))
    results: list[GeneratedAudio] = []
    n_batches = -(-len(items) // size)
    for b0 in range(0, len(items), size):
        batch = items[b0 : b0 + size]
        desc = f"batch {b0 // size + 1}/{n_batches} ({len(batch)} stream{'s' if len(batch) > 1 else ''})"
        bar = (desc, sr) if progress else None
        results += _batch(model, batch, W, normalisation, prime, seed, context, streams > 1, log, engine, bar)
    return results


def _batch(model, batch, W, norm: Normalisation, prime, seed, context, numbered, log, engine,
           bar_of: tuple[str, int] | None = None) -> list[GeneratedAudio]:
    """One batch through the engine; ``bar_of``: (description, sample rate) of its StepBar."""
    n = max(s.length for s, _ in batch)
    seeds = [int(seed) + k for _, k in batch]
    p, given = make_prime(prime, len(batch), W, norm.mean, norm.std, seeds, [s.reference for s, _ in batch])
    if given is not None and n <= W:
        raise GenerationError(f"sequences must be longer than the window ({W} samples) with --prime real")
    ctx = sequence_contexts([s for s, _ in batch], n, context, W)
    clip = ((-1.0 - norm.mean) / norm.std, (1.0 - norm.mean) / norm.std)  # full scale, normalised
    st = GenerationStats()
    bar = StepBar(bar_of[0], len(batch), n - (min(W, n) if given is not None else 0), bar_of[1]) if bar_of else None
    try:
        y = generate(model, ctx, n, prime=p, given=given, seed=seeds, clip=clip, stats=st, progress=bar, **engine)
    finally:
        if bar is not None:
            bar.close()
    if log is not None:
        log(f"generated {len(batch)} stream(s) x {st.steps} steps in {st.seconds:.2f} s "
            f"({st.samples_per_second:,.0f} samples/s)")
    audio = np.clip(norm.denormalise(y.cpu().numpy().astype(np.float64)), -1.0, 1.0).astype(np.float32)
    return [
        GeneratedAudio(name=f"{s.name}_{k}" if numbered else s.name, sequence=s, stream=k, seed=seeds[i],
                       audio=audio[i, : s.length], clipped=int(st.clipped[i]),
                       nonfinite_replaced=int(st.nonfinite_replaced[i]), start=W if given is not None else 0)
        for i, (s, k) in enumerate(batch)
    ]


def generate_for_sequence(
    lightning_module: nn.Module,
    prepared: PreparedDataset,
    seq_index: int | str,
    seconds: float | None = 1.0,
    mode: str = "sample",
    seed: int = 0,
    prime: str = "real",
    **kwargs: Any,
) -> np.ndarray:
    """Free-running audio (float32 in [-1, 1], de-normalised) for one sequence of a prepared
    dataset, e.g. from a training callback. Runs on the module's device; normalisation
    from the module's hyperparameters, or the dataset's when they are not set yet."""
    norm = kwargs.pop("norm", None)
    if norm is None and (hparam(lightning_module, "norm_mean") is None or hparam(lightning_module, "norm_std") is None):
        norm = (prepared.mean, prepared.std)
    kwargs.setdefault("context", hparam(lightning_module, "phone_context", "target"))
    seq = sequence_from_prepared(prepared, seq_index).truncated(seconds, prepared.sample_rate)
    out = generate_sequences(lightning_module, [seq], prime=prime, mode=mode, seed=seed, norm=norm, **kwargs)
    return out[0].audio
