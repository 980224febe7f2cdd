"""Free-running generation: a checkpoint and a phone sequence in, audio out.

``waveform-mdn generate`` (see ``docs/generation.md``) draws one sample at a time from the
model's predictive distribution given the last ``W`` generated samples and the phone
context at that position, for many streams at once, and writes 16-bit WAV files, optional
PNG plots and ``measurements.json``. ``waveform-mdn evaluate`` re-measures WAV files.

Python API (all tensors are on the *normalised* scale the model was trained on)::

    seq = sequence_from_prepared(prepared, "MKAL0_SA1")          # or sequence_from_phn / _inline
    ctx = sequence_contexts([seq], n, context="target", window=240)  # dict of [N, n] tensors
    x = generate(model, ctx, n, prime=prime, given=given, mode="sample", seed=0)  # [N, n]
    audio = generate_for_sequence(lightning_module, prepared, seq_index, seconds=1.0)  # float32 audio

Time axis of one stream: position ``t`` in ``0 .. n-1`` is sample ``t`` of the phone
sequence (so generated audio lines up with its reference). The window of ``t`` is the
samples ``t-W .. t-1``; positions before 0 are the *prime* (silence or low noise). With
the real prime, positions ``0 .. W-1`` are *given* (copied from the reference utterance)
and generation starts at ``t = W``.

Speed (one step of every stream): the phone-context part of the first layer is computed
with ``Predictor.context_bias`` once per distinct phone combination and gathered per block
of positions (the linear ``position`` term added per block); the random
numbers are drawn per stream in fixed blocks up front; the samples live in one
preallocated ``[N, W + n]`` buffer, so the window of step ``t`` is the view
``buf[:, t:t+W]`` (no roll, no copy) and each step writes one column. All step tensors are
preallocated and written with ``out=``; ``tanh`` layers are evaluated as
``2 * sigmoid(2 a) - 1`` with the factors folded into the weights (``torch.tanh`` is about
6x slower than ``torch.sigmoid`` on CPU). No ``torch.distributions`` object is built in
the loop: the mixture is sampled with the Gumbel-max trick from the head's raw outputs
(with up to ``SCALAR_TAIL_MAX_STREAMS`` streams on CPU, with Python floats). The garbage
collector is paused during the loop. Figures: ``bench/bench_generate.py``,
``docs/generation.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import CONTEXT_MODES, PreparedDataset, phone_context

MODES = ("sample", "mean", "mode")
PRIMES = ("real", "silence", "noise")
NOISE_RMS = 1e-3  #: raw RMS (full scale 1.0) of the "noise" prime: -60 dBFS
BLOCK = 256  #: random numbers are drawn per stream in blocks of this many steps
MEASUREMENTS_NAME = "measurements.json"
#: on CPU, up to this many streams sample the head's output with Python floats (cheaper
#: than ~7 tiny tensor ops per step); more streams use batched tensor ops
SCALAR_TAIL_MAX_STREAMS = 4
_CONTEXT_KEYS = ("phone", "next_phone", "prev_phone", "position")


class GenerationError(ValueError):
    """Bad input for generation (the message says what to change)."""


# =============================================================================== inputs
@dataclass
class PhoneSequence:
    """What to generate: a phone segment table and, when known, the real audio.

    ``segments``: int64 ``[S, 5]`` (start, end, phone, prev_phone, next_phone) with offsets
    local to the sequence (the first segment starts at 0); ``length`` samples;
    ``reference``: int16 ``[length]`` or None.
    """

    name: str
    segments: np.ndarray
    length: int
    reference: np.ndarray | None = None
    source: str = ""

    def truncated(self, seconds: float | None, sample_rate: int) -> "PhoneSequence":
        if seconds is None:
            return self
        n = max(1, min(self.length, int(round(float(seconds) * sample_rate))))
        if n == self.length:
            return self
        ref = None if self.reference is None else self.reference[:n]
        return PhoneSequence(self.name, self.segments, n, ref, self.source)


def sequence_from_prepared(prepared: PreparedDataset, key: str | int) -> PhoneSequence:
    """Sequence ``key`` (index, ``id`` or utterance id) of a prepared dataset, with its audio."""
    i = int(key) if isinstance(key, (int, np.integer)) else prepared.find(str(key))
    s = prepared.sequences[i]
    return PhoneSequence(
        name=str(s["id"]), segments=prepared.sequence_segments(i), length=int(s["length"]),
        reference=prepared.sequence_wave(i), source=f"{prepared.path}#{s['id']}",
    )


def _phone_mapper(prepared: PreparedDataset):
    """label -> phone id of the prepared dataset, folding like ``waveform-mdn prepare`` did.

    Returns ``None`` for a label that is to be merged into its neighbour (TIMIT ``q`` in
    the 39-phone set).
    """
    from data_prep.phones import MERGE, PhoneSet, UnknownPhoneError

    index = {p: i for i, p in enumerate(prepared.phones)}
    pset = None
    name = prepared.meta.get("phone_set")
    try:
        if name:
            pset = PhoneSet(name, prepared.meta.get("phone_map") or {})
    except ValueError:
        pset = None

    def mapper(label: str) -> int | None:
        if pset is not None:
            try:
                sym = pset.map_label(label)
            except UnknownPhoneError:
                sym = label
            if sym == MERGE:
                return None
        else:
            sym = label
        if sym not in index:
            raise GenerationError(
                f"phone {label!r} is not in the prepared dataset's phone set "
                f"({name or 'custom'}: {' '.join(prepared.phones)})"
            )
        return index[sym]

    return mapper


def segments_from_labels(labels: Sequence[tuple[int, int, str]], prepared: PreparedDataset) -> tuple[np.ndarray, int]:
    """``[(start, end, label), ...]`` (samples) -> (local segment table ``[S, 5]``, offset).

    Labels are mapped exactly as ``waveform-mdn prepare`` maps them (it is the same
    function, :func:`data_prep.prepare.segment_table`: phone set fold, extra map, merged
    ``q``, equal neighbours joined, gaps absorbed by the segment before); offsets are made
    relative to the first segment, whose start is returned as ``offset``.
    """
    from data_prep.corpus import CorpusError
    from data_prep.prepare import segment_table

    try:
        return segment_table(((a, b, label, f"phone {label!r}") for a, b, label in labels),
                             _phone_mapper(prepared), prepared.no_phone)
    except CorpusError as e:
        raise GenerationError(str(e)) from None


def sequence_from_inline(text: str, prepared: PreparedDataset, name: str = "phones") -> PhoneSequence:
    """``"h#:0.1 aa:0.3 h#:0.1"``: phones with durations in seconds (``120ms`` also works)."""
    sr = prepared.sample_rate
    labels, pos = [], 0
    for item in text.replace(",", " ").split():
        if ":" not in item:
            raise GenerationError(f"inline phones: {item!r} is not PHONE:SECONDS (e.g. aa:0.3)")
        label, dur = item.rsplit(":", 1)
        try:
            seconds = float(dur[:-2]) / 1000.0 if dur.endswith("ms") else float(dur.rstrip("s"))
        except ValueError:
            raise GenerationError(f"inline phones: duration {dur!r} of {label!r} is not a number") from None
        n = int(round(seconds * sr))
        if n <= 0:
            raise GenerationError(f"inline phones: {item!r} lasts less than one sample")
        labels.append((pos, pos + n, label))
        pos += n
    if not labels:
        raise GenerationError("inline phones: empty phone sequence")
    table, _ = segments_from_labels(labels, prepared)
    return PhoneSequence(name, table, pos, None, f"inline: {text}")


def _audio_beside(phn: Path) -> Path | None:
    for p in sorted(phn.parent.iterdir()):
        if p.stem == phn.stem and p.suffix.lower() in (".wav", ".sph", ".flac", ".nist") and p.is_file():
            return p
    return None


def sequence_from_phn(path: str | Path, prepared: PreparedDataset, audio: str | Path | None = None) -> PhoneSequence:
    """A TIMIT ``.PHN`` file (samples at the audio's rate). The audio file beside it (same
    stem), if any, becomes the reference and the source of the real prime."""
    from data_prep.audio import read_audio
    from data_prep.corpus import read_labels

    path = Path(path)
    sr = prepared.sample_rate
    audio = Path(audio) if audio is not None else _audio_beside(path)
    wave, file_rate = (None, sr)
    if audio is not None:
        wave, file_rate = read_audio(audio, sr, resample=True)
    raw = read_labels(path, "phn", file_rate, sr)
    table, first = segments_from_labels([(a, b, lab) for a, b, lab, _ in raw], prepared)
    length = int(table[-1, 1])
    ref = None
    if wave is not None:
        if first + length > len(wave):
            raise GenerationError(f"{path}: the labels end after the audio ({len(wave)} samples in {audio})")
        ref = np.ascontiguousarray(wave[first : first + length])
    return PhoneSequence(path.stem, table, length, ref, str(path))


def sequence_contexts(
    sequences: Sequence[PhoneSequence], n: int, context: str = "target", window: int = 240
) -> dict[str, Tensor]:
    """Phone context of positions ``0 .. n-1`` of each sequence, ``[N, n]`` per field.

    Uses :func:`waveform_mdn.data.phone_context`, the one definition; positions past a
    sequence's end get its last segment (they are generated only to be cut off).
    """
    if context not in CONTEXT_MODES:
        raise GenerationError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
    t = torch.arange(n, dtype=torch.int64)
    out: dict[str, list[Tensor]] = {k: [] for k in _CONTEXT_KEYS}
    for seq in sequences:
        seg = torch.from_numpy(np.ascontiguousarray(seq.segments, dtype=np.int64))
        ctx = phone_context(seg, t, torch.zeros_like(t), context, window)
        for k in _CONTEXT_KEYS:
            out[k].append(ctx[k])
    return {k: torch.stack(v) for k, v in out.items()}


# =============================================================================== the engine
def _predictor(model: nn.Module) -> nn.Module:
    net = getattr(model, "net", None)
    if net is not None and hasattr(net, "context_bias"):
        return net
    if hasattr(model, "context_bias") and hasattr(model, "window_proj"):
        return model
    raise TypeError(f"expected a WaveformPredictor or a Predictor, not {type(model).__name__}")


def _activation_name(module: nn.Module) -> str:
    for name, cls in (("tanh", nn.Tanh), ("relu", nn.ReLU), ("gelu", nn.GELU), ("sigmoid", nn.Sigmoid)):
        if isinstance(module, cls):
            return name
    return "other"


def gaussian_scale(head: nn.Module, variance: str = "valid") -> float:
    """Noise scale of the Gaussian ("MLP") head: ``sqrt`` of the validation MSE (``"valid"``,
    falling back to the stored variance when no validation ran) or of the stored training
    MSE (``"train"``)."""
    floor = float(getattr(head, "min_scale", 0.0)) ** 2
    var = float(head.var)
    if variance == "valid":
        v = float(getattr(head, "valid_mse", torch.tensor(float("nan"))))
        if math.isfinite(v) and v > 0:
            var = v
    elif variance != "train":
        raise GenerationError(f"variance must be 'valid' or 'train', not {variance!r}")
    return math.sqrt(max(var, floor))


class _Fast:
    """Plain weight tensors for one step, with the tanh -> sigmoid fold applied."""

    def __init__(self, net: nn.Module, device: torch.device, fold_tanh: bool = True):
        self.net = net
        self.window = int(net.window)
        act = _activation_name(net.act0)
        self.act = act
        self.fold = fold_tanh and act == "tanh"
        f32 = dict(device=device, dtype=torch.float32)
        scale = 2.0 if self.fold else 1.0
        w1 = net.window_proj.weight.detach().to(**f32)
        self.w1t = (scale * w1).t().contiguous()  # [W, H0]
        self.bias_scale = scale
        self.layers: list[tuple[Tensor, Tensor]] = []
        mods = list(net.trunk)
        linears = [m for m in mods if isinstance(m, nn.Linear)]
        acts = [m for m in mods if not isinstance(m, nn.Linear)]
        if any(_activation_name(a) != act for a in acts) or len(acts) != len(linears):
            raise GenerationError("the fast path needs Linear/activation pairs with one activation")
        for lin in linears:
            w, b = lin.weight.detach().to(**f32), lin.bias.detach().to(**f32)
            w, b = self._consume(w, b)
            if self.fold:  # this layer's tanh is also evaluated through sigmoid(2a)
                w, b = 2.0 * w, 2.0 * b
            self.layers.append((w.t().contiguous(), b.contiguous()))
        proj = net.head.proj
        w, b = proj.weight.detach().to(**f32), proj.bias.detach().to(**f32)
        self.head_w, self.head_b = self._consume(w, b)  # [O, H], [O]

    def _consume(self, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Weights of a layer that reads s = sigmoid(2a) instead of h = tanh(a) = 2s - 1."""
        if not self.fold:
            return w, b
        return 2.0 * w, b - w.sum(1)

    def activate(self, h: Tensor) -> Tensor:
        if self.fold or self.act == "sigmoid":
            return torch.sigmoid(h, out=h)
        if self.act == "tanh":
            return torch.tanh(h, out=h)
        if self.act == "relu":
            return h.relu_()
        if self.act == "gelu":
            return F.gelu(h)
        return self.net.act0(h)

    def features(self, s: Tensor) -> Tensor:
        """Trunk output h = tanh(...) from the stored activations (fold undone)."""
        return 2.0 * s - 1.0 if self.fold else s


class _Noise:
    """Per-stream random numbers, drawn in fixed blocks of ``BLOCK`` steps.

    Stream ``k`` has its own ``torch.Generator`` seeded with ``seeds[k]``; each block draws
    ``rand(BLOCK, K)`` (Gumbel, for the component) then ``randn(BLOCK)`` (the Gaussian), so
    a stream's draws depend neither on the chunk size nor on the other streams.
    """

    def __init__(self, seeds: Sequence[int], n_uniform: int, normal: bool, device: torch.device):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.k = int(n_uniform)
        self.normal = bool(normal)
        self.device = device

    def take(self, m: int) -> tuple[Tensor | None, Tensor | None]:
        """Gumbel ``[m, N, K]`` and standard normal ``[m, N]`` noise for the next ``m`` steps."""
        blocks = -(-m // BLOCK)
        gum, nor = [], []
        for g in self.gens:
            us, zs = [], []
            for _ in range(blocks):
                if self.k:
                    us.append(torch.rand(BLOCK, self.k, generator=g))
                if self.normal:
                    zs.append(torch.randn(BLOCK, generator=g))
            if self.k:
                gum.append(torch.cat(us)[:m])
            if self.normal:
                nor.append(torch.cat(zs)[:m])
        u = None
        if self.k:
            u = torch.stack(gum, 1).clamp_(min=1e-20, max=1.0 - 1e-7)
            u = u.log_().neg_().log_().neg_().to(self.device)  # Gumbel(0, 1)
        z = torch.stack(nor, 1).to(self.device) if self.normal else None
        return u, z


class _ContextBias:
    """Context part of the first layer (plus its bias) for every position and stream.

    ``Predictor.context_bias`` is evaluated once per distinct combination of the phone
    fields (a handful per utterance); a step range then costs one ``index_select`` (and
    one ``addcmul`` for the ``position`` field, which is linear in the model).
    """

    def __init__(self, net: nn.Module, fields: dict[str, Tensor], scale: float, n_streams: int, hidden: int):
        self.N, self.H = n_streams, hidden
        pf = list(net.phone_fields)
        some = next(iter(fields.values()), None)
        n = some.shape[0] if some is not None else 0
        dev = net.window_proj.weight.device
        if pf:
            V = int(net.n_phone_ids)
            key = torch.zeros(fields[pf[0]].shape, dtype=torch.int64, device=dev)
            for f in pf:
                key = key * V + fields[f].long()
            uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
            ids = {}
            for f in reversed(pf):
                ids[f] = uniq % V
                uniq = uniq // V
            self.inv = inv.view(n, n_streams)
        else:
            ids = {}
            self.inv = torch.zeros(max(n, 1), n_streams, dtype=torch.int64, device=dev)
        rows = int(self.inv.max()) + 1 if self.inv.numel() else 1
        zeros = torch.zeros(rows, device=dev)
        table = net.context_bias(ids.get("phone"), ids.get("next_phone"), ids.get("prev_phone"),
                                 zeros if net.use_position else None)
        self.table = (table.float().expand(rows, hidden) * scale).contiguous()
        self.pos = fields["position"].float() if net.use_position else None
        self.pos_w = (net.position_weight.detach().float() * scale) if net.use_position else None

    def rows(self, t0: int, t1: int) -> Tensor:
        """``[t1 - t0, N, H]``."""
        m = t1 - t0
        out = self.table.index_select(0, self.inv[t0:t1].reshape(-1)).view(m, self.N, self.H)
        if self.pos is not None:
            out.addcmul_(self.pos[t0:t1, :, None], self.pos_w)
        return out


@dataclass
class GenerationStats:
    """What happened during :func:`generate` (filled in when passed as ``stats=``)."""

    clipped: list[int] = field(default_factory=list)
    nonfinite_replaced: list[int] = field(default_factory=list)
    steps: int = 0
    streams: int = 0
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.steps * self.streams / self.seconds if self.seconds > 0 else float("nan")


def _chunk_size(n_streams: int, requested: int | None) -> int:
    """Steps per chunk (random numbers, views, accounting): a multiple of ``BLOCK``, at
    most 4096, with about a million random numbers per chunk."""
    if requested is not None:
        return max(1, int(requested))
    c = (1 << 20) // max(1, 4 * n_streams)
    return int(min(4096, max(BLOCK, (c // BLOCK) * BLOCK)))


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
    threads: int | None = None,
    chunk: int | None = None,
    fold_tanh: bool = True,
    stats: GenerationStats | None = None,
) -> Tensor:
    """Generate ``N`` streams of ``n_samples`` normalised samples, one step at a time.

    Args:
        model: a ``WaveformPredictor`` (or its ``Predictor``, ``.net``).
        contexts: phone context per position, ``[N, n_samples]`` tensors ``phone``,
            ``next_phone``, ``prev_phone`` (int) and ``position`` (float); only the fields
            the model uses are needed (see :func:`sequence_contexts`).
        prime: ``[N, W]`` normalised samples *before* position 0 (default: zeros, i.e.
            the training mean; :func:`make_prime` makes silence or low noise).
        given: ``[N, P]`` normalised samples at positions ``0 .. P-1``, copied, not
            generated (the real prime: ``P = W`` samples of the reference).
        teacher: ``[N, n_samples]`` teacher forcing: the window always holds these samples
            and the result is the model's prediction at every position (with ``mode``).
        mode: ``"sample"`` (draw from the predictive distribution), ``"mean"`` (mixture
            mean; the Gaussian's mean) or ``"mode"`` (mean of the most probable component).
        temperature_weights: divides the mixture logits (0: always the most probable
            component); temperature_scales multiplies the scales (0: no Gaussian noise).
        seed: one int (stream ``k`` gets ``seed + k``) or one seed per stream.
        clip: ``(lo, hi)`` normalised bounds: what is fed back (and returned) is clamped to
            them (the WAV range [-1, 1]); values outside are counted in ``stats.clipped``.
        gaussian_variance: noise of the Gaussian head, ``"valid"`` (validation MSE) or
            ``"train"`` (see :func:`gaussian_scale`).
        device: where to run (default: the model's device). threads: CPU threads during
            the call (default 1; restored afterwards). More threads help only for many
            streams on otherwise idle cores (64 streams: about +35% with 2 threads).
        fold_tanh: evaluate tanh as 2 sigmoid(2a) - 1 (faster on CPU; same values up to
            float rounding).

    Returns ``[N, n_samples]`` float32 on ``device``. Never NaN or inf: a non-finite draw is
    replaced (0, or the clip bound for +-inf) and counted in ``stats.nonfinite_replaced``.
    """
    if mode not in MODES:
        raise GenerationError(f"mode must be one of {MODES}, not {mode!r}")
    if temperature_weights < 0 or temperature_scales < 0:
        raise GenerationError("temperatures must be >= 0")
    net = _predictor(model)
    params = list(net.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    if dev != (params[0].device if params else dev):
        import copy

        net = copy.deepcopy(net).to(dev)
    W = int(net.window)
    n = int(n_samples)
    ctx = {k: torch.as_tensor(v) for k, v in contexts.items() if v is not None}
    needed = list(net.phone_fields) + (["position"] if net.use_position else [])
    missing = [k for k in needed if k not in ctx]
    if missing:
        raise GenerationError(f"contexts lack the fields {missing} this model uses")
    N = int(next(iter(ctx.values())).shape[0]) if ctx else (int(prime.shape[0]) if prime is not None else 1)
    for k, v in ctx.items():
        if v.dim() != 2 or v.shape[0] != N or v.shape[1] < n:
            raise GenerationError(f"contexts[{k!r}] must be [N, n_samples] = [{N}, {n}], not {list(v.shape)}")
    seeds = [int(seed) + k for k in range(N)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != N:
        raise GenerationError(f"{len(seeds)} seeds for {N} streams")
    P = 0 if given is None else int(given.shape[1])
    if given is not None and tuple(given.shape[:1]) != (N,):
        raise GenerationError(f"given must be [N, P] with N = {N}")
    if teacher is not None and (teacher.dim() != 2 or teacher.shape[0] != N or teacher.shape[1] < n):
        raise GenerationError(f"teacher must be [N, n_samples] = [{N}, {n}]")

    old_threads = torch.get_num_threads()
    if threads is None and dev.type == "cpu":
        threads = 1  # predictable: 2+ OpenMP threads win only on idle cores, and lose badly otherwise
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    t_start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the loop creates no cycles; collections triggered by its many small objects cost ~30%
    try:
        with torch.inference_mode():
            out, clipped, bad = _run(
                net, ctx, n, N, W, P, dev, prime, given, teacher, mode, float(temperature_weights),
                float(temperature_scales), seeds, clip, gaussian_variance, chunk, fold_tanh,
            )
    finally:
        if gc_was_enabled:
            gc.enable()
        if threads is not None and dev.type == "cpu":
            torch.set_num_threads(old_threads)
    if stats is not None:
        stats.clipped = clipped
        stats.nonfinite_replaced = bad
        stats.steps = max(n - P, 0)
        stats.streams = N
        stats.seconds = time.perf_counter() - t_start
        stats.seeds = seeds
    return out


def _run(net, ctx, n, N, W, P, dev, prime, given, teacher, mode, tw, ts, seeds, clip, gvar, chunk, fold_tanh):
    fast = _Fast(net, dev, fold_tanh=fold_tanh)
    head = net.head
    kind = getattr(head, "name", "?")
    if kind not in ("mixture", "gaussian"):
        kind = "other"
    H0 = fast.w1t.shape[1]
    f32 = dict(device=dev, dtype=torch.float32)

    # ---- the sample buffer: column W + t holds sample t, columns 0 .. W-1 the prime
    buf = torch.zeros(N, W + n, **f32)
    if prime is not None:
        if tuple(prime.shape) != (N, W):
            raise GenerationError(f"prime must be [N, W] = [{N}, {W}], not {list(prime.shape)}")
        buf[:, :W] = prime.to(**f32)
    if teacher is not None:
        buf[:, W:] = teacher[:, :n].to(**f32)
    if P:
        buf[:, W : W + min(P, n)] = given[:, :n].to(**f32)
    preds = torch.empty(N, n, **f32) if teacher is not None else None
    if preds is not None and P:
        preds[:, :P] = buf[:, W : W + P]
    lo, hi = (float(clip[0]), float(clip[1])) if clip is not None else (-3.0e38, 3.0e38)
    clipped = torch.zeros(N, dtype=torch.int64)
    bad = torch.zeros(N, dtype=torch.int64)
    if P >= n:
        return (preds if preds is not None else buf[:, W:]).clone(), clipped.tolist(), bad.tolist()

    # ---- head constants: temperature of the weights and the scale floor folded into the
    # head's weights (logits / T; raw scales + floor, so that softplus(r) + floor =
    # logaddexp(r + floor, floor), one op)
    K = int(getattr(head, "components", 1)) if kind == "mixture" else 1
    hw, hb = fast.head_w.clone(), fast.head_b.clone()
    sigma = 1.0
    if kind == "mixture":
        if tw > 0 and mode != "mode":
            hw[:K] /= tw
            hb[:K] /= tw
        floor = float(head.min_scale)
        hb[2 * K :] += floor
        use_gumbel = mode == "sample" and tw > 0
        use_normal = mode == "sample" and ts > 0
    elif kind == "gaussian":
        sigma = gaussian_scale(head, gvar)
        use_gumbel = False
        use_normal = mode == "sample" and ts > 0 and sigma > 0
    else:  # an unknown head: its own sampler, one generator for the batch
        use_gumbel = use_normal = False
        gen = torch.Generator(device=dev).manual_seed(seeds[0])
    hwt = hw.t().contiguous()
    noise = _Noise(seeds, K if use_gumbel else 0, use_normal, dev)

    # ---- preallocated step tensors (written with out=, never reallocated)
    h_first = torch.empty(N, H0, **f32)
    h_bufs = [torch.empty(N, w.shape[1], **f32) for w, _ in fast.layers]
    o = torch.empty(N, hwt.shape[1], **f32)
    o_col = o[:, 0]
    if kind == "mixture":
        o3 = o.view(N, 3, K)
        o_logits, o_means = o3[:, 0], o3[:, 1]
        kidx = torch.empty(N, 1, dtype=torch.int64, device=dev)
        k3 = kidx.view(N, 1, 1).expand(N, 3, 1)
        sel = torch.empty(N, 3, 1, **f32)
        sel_mu, sel_raw = sel[:, 1, 0], sel[:, 2, 0]
        floor_t = torch.full((N,), floor, **f32)
        scale = torch.empty(N, **f32)
    guard = torch.empty(N, **f32)

    ctx_bias = _ContextBias(net, {k: ctx[k][:, :n].to(dev).t() for k in _CONTEXT_KEYS if k in ctx},
                            fast.bias_scale, N, H0)
    C = _chunk_size(N, chunk)
    CB = max(1, min(C, (256 * 1024) // (N * H0)))  # bias rows per refill: about 1 MB, stays in cache
    layers = list(zip(fast.layers, h_bufs))
    activate = fast.activate
    w1t = fast.w1t
    feed = teacher is None
    scalar = dev.type == "cpu" and N <= SCALAR_TAIL_MAX_STREAMS and kind != "other"
    buf_np = buf.numpy() if scalar else None
    addmm, argmax, gather, addcmul, add = torch.addmm, torch.argmax, torch.gather, torch.addcmul, torch.add
    logaddexp, nan_to_num, clamp = torch.logaddexp, torch.nan_to_num, torch.clamp

    for c0 in range(P, n, C):
        c1 = min(c0 + C, n)
        m = c1 - c0
        g, z = noise.take(m)
        if z is not None:
            z = z * (ts * sigma)
        raw = torch.empty(m, N, **f32)
        wins = buf[:, c0 : c1 + W - 1].unfold(1, W, 1).unbind(1)  # window of step j: a view
        if not scalar:
            z_rows = z.unbind(0) if z is not None else None
            raw_rows = raw.unbind(0)
            slots = buf[:, W + c0 : W + c1].unbind(1)
        if scalar:  # python floats for the few-stream tail (one .tolist() instead of ~7 ops)
            g_l = g.tolist() if g is not None else None
            z_l = z.tolist() if z is not None else None
            raw_np = raw.numpy()
        elif g is not None:  # Gumbel noise folded into a per-step head bias
            hb_steps = hb.expand(m, N, hb.shape[0]).clone()
            hb_steps[:, :, :K] += g
            hb_rows = hb_steps.unbind(0)
        jb = nb = 0
        for j in range(m):
            if j == nb:
                jb, nb = j, min(j + CB, m)
                bias_rows = ctx_bias.rows(c0 + jb, c0 + nb).unbind(0)
            h = activate(addmm(bias_rows[j - jb], wins[j], w1t, out=h_first))
            for (wt, b), hbuf in layers:
                h = activate(addmm(b, h, wt, out=hbuf))
            if scalar:
                addmm(hb, h, hwt, out=o)
                rows = o.tolist()
                t = W + c0 + j
                for i in range(N):
                    r = rows[i]
                    if kind == "mixture":
                        if mode == "mean":
                            top = max(r[:K])
                            e = [math.exp(v - top) for v in r[:K]]
                            x = sum(ek * mk for ek, mk in zip(e, r[K : 2 * K])) / sum(e)
                        else:
                            if use_gumbel:
                                gi = g_l[j][i]
                                k = max(range(K), key=lambda c: r[c] + gi[c])
                            else:
                                k = max(range(K), key=r.__getitem__)
                            x = r[K + k]
                            if use_normal:
                                v = r[2 * K + k]  # raw + floor: softplus(raw) + floor = logaddexp(v, floor)
                                top = v if v > floor else floor
                                x += (top + math.log1p(math.exp(-abs(v - floor)))) * z_l[j][i]
                    else:
                        x = r[0] + z_l[j][i] if use_normal else r[0]
                    raw_np[j, i] = x
                    if feed:
                        if x != x:
                            x = 0.0
                        buf_np[i, t] = hi if x > hi else (lo if x < lo else x)
                continue
            x = raw_rows[j]
            if kind == "mixture":
                if mode == "sample":
                    if use_gumbel:
                        addmm(hb_rows[j], h, hwt, out=o)
                    else:
                        addmm(hb, h, hwt, out=o)
                    argmax(o_logits, 1, keepdim=True, out=kidx)
                    gather(o3, 2, k3, out=sel)
                    if use_normal:
                        addcmul(sel_mu, logaddexp(sel_raw, floor_t, out=scale), z_rows[j], out=x)
                    else:
                        x.copy_(sel_mu)
                elif mode == "mean":
                    addmm(hb, h, hwt, out=o)
                    torch.linalg.vecdot(torch.softmax(o_logits, 1), o_means, dim=1, out=x)
                else:  # "mode": the most probable component's mean
                    addmm(hb, h, hwt, out=o)
                    argmax(o_logits, 1, keepdim=True, out=kidx)
                    gather(o3, 2, k3, out=sel)
                    x.copy_(sel_mu)
            elif kind == "gaussian":
                addmm(hb, h, hwt, out=o)
                if use_normal:
                    add(o_col, z_rows[j], out=x)
                else:
                    x.copy_(o_col)
            else:
                p = head.params(fast.features(h))
                if mode == "sample":
                    x.copy_(head.sample_from_params(p, generator=gen, temperature=ts))
                else:
                    x.copy_(head.mean_from_params(p))
            if feed:  # the guard: what is fed back (and kept) is finite and inside the clip range
                clamp(nan_to_num(x, 0.0, hi, lo, out=guard), lo, hi, out=slots[j])
        # ---- per-chunk accounting
        finite = torch.isfinite(raw)
        bad += (~finite).sum(0).cpu()
        if clip is not None:
            clipped += (finite & ((raw < lo) | (raw > hi))).sum(0).cpu()
        if not feed:
            preds[:, c0:c1] = torch.clamp(torch.nan_to_num(raw, 0.0, hi, lo), lo, hi).t()
    result = preds if preds is not None else buf[:, W:].clone()
    return result, clipped.tolist(), bad.tolist()


# =============================================================================== sequences -> audio
def _hparam(model: nn.Module, key: str, default=None):
    hp = getattr(model, "hparams", None)
    if hp is None:
        return default
    value = hp.get(key) if hasattr(hp, "get") else getattr(hp, key, None)
    return default if value is None else value


def make_prime(
    kind: str, n_streams: int, window: int, mean: float, std: float, seeds: Sequence[int],
    references: Sequence[np.ndarray | None] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(``prime [N, W]``, ``given [N, W]`` or None), normalised, for :func:`generate`.

    ``real``: the first ``W`` samples of each reference are given (copied to the output),
    generation starts at position ``W``; ``silence``: the window before position 0 is
    silence (raw 0.0); ``noise``: it is Gaussian noise of RMS ``NOISE_RMS`` (-60 dBFS),
    drawn from ``torch.Generator().manual_seed(seed + 2**32)`` of each stream.
    """
    silence = (0.0 - mean) / std
    prime = torch.full((n_streams, window), silence, dtype=torch.float32)
    if kind == "silence":
        return prime, None
    if kind == "noise":
        for k, s in enumerate(seeds):
            g = torch.Generator().manual_seed(int(s) + 2**32)
            prime[k] = (NOISE_RMS * torch.randn(window, generator=g) - mean) / std
        return prime, None
    if kind == "real":
        refs = list(references or [])
        if len(refs) != n_streams or any(r is None for r in refs):
            raise GenerationError("--prime real needs a reference utterance for every stream "
                                  "(use --prime silence or noise for phones without audio)")
        if any(len(r) < window for r in refs):
            raise GenerationError(f"--prime real needs references of at least the window ({window} samples)")
        given = np.stack([np.asarray(r[:window]) for r in refs])
        given = given.astype(np.float32) / 32768.0 if given.dtype == np.int16 else given.astype(np.float32)
        return prime, torch.from_numpy((given - mean) / std)
    raise GenerationError(f"prime must be one of {PRIMES}, not {kind!r}")


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


def _norm_of(model: nn.Module, norm: tuple[float, float] | None) -> tuple[float, float]:
    if norm is not None:
        return float(norm[0]), float(norm[1])
    mean, std = _hparam(model, "norm_mean"), _hparam(model, "norm_std")
    if mean is None or std is None:
        raise GenerationError("the model has no norm_mean/norm_std hyperparameters: pass norm=(mean, std)")
    return float(mean), float(std)


def generate_sequences(
    model: nn.Module,
    sequences: Sequence[PhoneSequence],
    *,
    streams: int = 1,
    prime: str | None = None,
    mode: str = "sample",
    temperature_weights: float = 1.0,
    temperature_scales: float = 1.0,
    seed: int = 0,
    seconds: float | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    norm: tuple[float, float] | None = None,
    context: str | None = None,
    gaussian_variance: str = "valid",
    log=None,
) -> list[GeneratedAudio]:
    """Generate ``streams`` streams per sequence (stream ``k`` seeded ``seed + k``), at most
    ``batch_size`` streams per batch. ``prime`` defaults to ``real`` when every sequence has
    a reference, else ``silence``. Normalisation, window, sample rate and context mode come
    from the model's hyperparameters unless given."""
    if not sequences:
        raise GenerationError("nothing to generate: no sequence given")
    net = _predictor(model)
    W = int(net.window)
    mean, std = _norm_of(model, norm)
    sr = int(_hparam(model, "sample_rate", 16000))
    context = context or _hparam(model, "phone_context", "target")
    if prime is None:
        prime = "real" if all(s.reference is not None for s in sequences) else "silence"
    if prime not in PRIMES:
        raise GenerationError(f"prime must be one of {PRIMES}, not {prime!r}")
    seqs = [s.truncated(seconds, sr) for s in sequences]
    items = [(s, k) for s in seqs for k in range(int(streams))]
    clip = ((-1.0 - mean) / std, (1.0 - mean) / std)
    results: list[GeneratedAudio] = []
    for b0 in range(0, len(items), max(1, int(batch_size))):
        batch = items[b0 : b0 + max(1, int(batch_size))]
        n = max(s.length for s, _ in batch)
        seeds = [int(seed) + k for _, k in batch]
        p, given = make_prime(prime, len(batch), W, mean, std, seeds, [s.reference for s, _ in batch])
        if given is not None and n <= W:
            raise GenerationError(f"sequences must be longer than the window ({W} samples) with --prime real")
        ctx = sequence_contexts([s for s, _ in batch], n, context, W)
        st = GenerationStats()
        y = generate(
            model, ctx, n, prime=p, given=given, mode=mode, temperature_weights=temperature_weights,
            temperature_scales=temperature_scales, seed=seeds, clip=clip, gaussian_variance=gaussian_variance,
            device=device, threads=threads, stats=st,
        )
        if log is not None:
            log(f"generated {len(batch)} stream(s) x {st.steps} steps in {st.seconds:.2f} s "
                f"({st.samples_per_second:,.0f} samples/s)")
        audio = np.clip(y.cpu().numpy().astype(np.float64) * std + mean, -1.0, 1.0).astype(np.float32)
        for i, (s, k) in enumerate(batch):
            name = s.name if streams == 1 else f"{s.name}_{k}"
            results.append(GeneratedAudio(
                name=name, sequence=s, stream=k, seed=seeds[i], audio=audio[i, : s.length],
                clipped=int(st.clipped[i]), nonfinite_replaced=int(st.nonfinite_replaced[i]),
                start=W if given is not None else 0,
            ))
    return results


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
    if norm is None and (_hparam(lightning_module, "norm_mean") is None or _hparam(lightning_module, "norm_std") is None):
        norm = (prepared.mean, prepared.std)
    kwargs.setdefault("context", _hparam(lightning_module, "phone_context", "target"))
    seq = sequence_from_prepared(prepared, seq_index).truncated(seconds, prepared.sample_rate)
    out = generate_sequences(lightning_module, [seq], prime=prime, mode=mode, seed=seed, norm=norm, **kwargs)
    return out[0].audio


# =============================================================================== files
def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> int:
    """16-bit PCM WAV, written to a temporary file and renamed. ``audio`` is float (full
    scale 1.0); values outside [-1, 1] are clipped; returns how many were."""
    import soundfile as sf

    path = Path(path)
    x = np.asarray(audio, dtype=np.float64)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    n_clipped = int(np.count_nonzero(np.abs(x) > 1.0))
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    tmp = _atomic_target(path)
    try:
        sf.write(str(tmp), pcm, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n_clipped


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: str | Path, audio: np.ndarray, sample_rate: int, reference: np.ndarray | None = None,
              title: str = "") -> None:
    """Waveform and spectrogram of ``audio``, above those of ``reference`` when given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [("generated", np.asarray(audio, dtype=np.float32))]
    if reference is not None:
        ref = np.asarray(reference)
        ref = ref.astype(np.float32) / 32768.0 if ref.dtype == np.int16 else ref.astype(np.float32)
        rows.append(("reference", ref))
    fig, axes = plt.subplots(2 * len(rows), 1, figsize=(10, 2.6 * 2 * len(rows)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    nfft = 512 if sample_rate <= 24000 else 1024
    for r, (label, x) in enumerate(rows):
        t = np.arange(len(x)) / sample_rate
        ax = axes[2 * r]
        ax.plot(t, x, lw=0.4, color="C0" if r == 0 else "C1")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("amplitude")
        ax.set_title(f"{label}" + (f": {title}" if title and r == 0 else ""), fontsize=9, loc="left")
        ax = axes[2 * r + 1]
        if len(x) > nfft:
            ax.specgram(x + 1e-9, NFFT=nfft, Fs=sample_rate, noverlap=nfft - sample_rate // 100, cmap="magma",
                        vmin=-140, vmax=-20)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    tmp = _atomic_target(Path(path))
    try:
        fig.savefig(tmp, dpi=90, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "gen"


def measure_entry(wav: Path, reference: Path | None, base: Path) -> dict[str, Any]:
    """``audio_metrics.measure_files`` of one file, paths made relative to ``base``."""
    from .audio_metrics import measure_files

    m = measure_files(wav, reference)
    m.pop("file", None)
    m["wav"] = os.path.relpath(wav, base)
    m["reference"] = None if reference is None else os.path.relpath(reference, base)
    return m


# =============================================================================== CLI
def _log(msg: str) -> None:
    print(f"[generate] {msg}", file=sys.stderr, flush=True)


def _parser_generate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn generate",
        description="Generate audio sample by sample from a checkpoint and a phone sequence.",
    )
    p.add_argument("--ckpt", required=True, help="Lightning checkpoint of a WaveformPredictor")
    p.add_argument("--data", required=True, help="prepared dataset (phone set, utterances, normalisation)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--utterance", nargs="+", metavar="ID", help="sequence or utterance id(s) of --data")
    src.add_argument("--split", choices=("train", "valid"), help="every sequence of this split of --data")
    src.add_argument("--phn", nargs="+", metavar="FILE", help="TIMIT .PHN file(s); audio beside = reference")
    src.add_argument("--phones", help='inline phones with durations in seconds: "h#:0.1 aa:0.3 h#:0.1"')
    p.add_argument("--limit", type=int, default=None, help="at most this many sequences (with --split)")
    p.add_argument("--prime", choices=PRIMES, default=None,
                   help="first window: real (default with a reference), silence (default otherwise), noise")
    p.add_argument("--mode", choices=MODES, default="sample",
                   help="sample (default), mean (predictive mean), mode (most probable component's mean)")
    p.add_argument("--temperature-weights", type=float, default=1.0, help="divides the mixture logits (0: argmax)")
    p.add_argument("--temperature-scales", type=float, default=1.0, help="multiplies the scales (0: no noise)")
    p.add_argument("--gaussian-variance", choices=("valid", "train"), default="valid",
                   help="noise of the MLP (gaussian head) in sample mode: validation MSE (default) or training MSE")
    p.add_argument("--streams", type=int, default=1, help="streams per sequence (seeds SEED .. SEED+N-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default 1; 2+ help only for many streams on idle cores)")
    p.add_argument("--batch-size", type=int, default=64, help="streams generated together (default 64)")
    p.add_argument("--seconds", type=float, default=None, help="generate at most this many seconds per sequence")
    p.add_argument("--png", action="store_true", help="also write OUT/<name>.png (waveform + spectrogram)")
    p.add_argument("--no-measure", action="store_true", help="skip the measurements (still writes the JSON)")
    p.add_argument("--allow-different-data", action="store_true",
                   help="generate even if --data is not the data the checkpoint was trained on")
    p.add_argument("--out", required=True, help="output directory")
    return p


def load_model(ckpt: str | Path, device: str = "cpu"):
    from .models import WaveformPredictor

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise GenerationError(f"{ckpt}: checkpoint not found")
    model = WaveformPredictor.load_from_checkpoint(str(ckpt), map_location=device)
    if model.net is None:
        raise GenerationError(f"{ckpt}: the checkpoint has no network (window / n_phone_ids unset)")
    return model.eval()


def _check_data(model, prepared: PreparedDataset, allow: bool) -> list[str]:
    notes = []
    phones = _hparam(model, "phones")
    if phones is not None and list(phones) != list(prepared.phones):
        raise GenerationError(f"{prepared.path}: its phone set differs from the checkpoint's "
                              "(phone ids would mean other phones)")
    n_ids = _hparam(model, "n_phone_ids")
    if n_ids is not None and int(n_ids) != prepared.n_phone_ids:
        raise GenerationError(f"{prepared.path}: {prepared.n_phone_ids} phone ids, the checkpoint has {n_ids}")
    fp = _hparam(model, "data_fingerprint")
    if fp is not None and fp != prepared.fingerprint:
        msg = (f"{prepared.path} (fingerprint {prepared.fingerprint}) is not the data the checkpoint was "
               f"trained on ({fp})")
        if not allow:
            raise GenerationError(msg + "; pass --allow-different-data to generate anyway")
        notes.append(msg)
    mean, std = _hparam(model, "norm_mean"), _hparam(model, "norm_std")
    if mean is not None and (abs(mean - prepared.mean) > 1e-9 or abs(std - prepared.std) > 1e-9):
        notes.append(f"normalisation of the checkpoint ({mean:.6g}, {std:.6g}) used, not that of --data "
                     f"({prepared.mean:.6g}, {prepared.std:.6g})")
    return notes


def run_generate(a: argparse.Namespace) -> int:
    if a.streams < 1 or a.batch_size < 1:
        raise GenerationError("--streams and --batch-size must be at least 1")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationError("--device cuda: no CUDA device is available here")
    prepared = PreparedDataset(a.data)
    model = load_model(a.ckpt, a.device)
    notes = _check_data(model, prepared, a.allow_different_data)
    for note in notes:
        _log(f"note: {note}")
    if a.utterance:
        seqs = [sequence_from_prepared(prepared, u) for u in a.utterance]
    elif a.split:
        idx = prepared.sequence_indices(a.split)
        seqs = [sequence_from_prepared(prepared, i) for i in idx[: a.limit]]
    elif a.phn:
        seqs = [sequence_from_phn(f, prepared) for f in a.phn]
    else:
        seqs = [sequence_from_inline(a.phones, prepared)]
    if not seqs:
        raise GenerationError("no sequence selected")
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        for i, s in enumerate(seqs):
            s.name = f"{s.name}_{i}"
    head = _hparam(model, "head", getattr(model.net.head, "name", "?"))
    mean, std = _norm_of(model, None) if _hparam(model, "norm_mean") is not None else (prepared.mean, prepared.std)
    sr = int(_hparam(model, "sample_rate", prepared.sample_rate))
    context = _hparam(model, "phone_context", "target")
    prime = a.prime or ("real" if all(s.reference is not None for s in seqs) else "silence")
    gscale = None
    if head == "gaussian":
        gscale = gaussian_scale(model.net.head, a.gaussian_variance)
        v = float(getattr(model.net.head, "valid_mse", float("nan")))
        if a.mode == "sample" and a.gaussian_variance == "valid" and not math.isfinite(v):
            notes.append("the checkpoint holds no validation MSE: the MLP's noise uses the training MSE")
            _log(f"note: {notes[-1]}")
    _log(f"{len(seqs)} sequence(s) x {a.streams} stream(s), head {head}, mode {a.mode}, prime {prime}, "
         f"device {a.device}")
    t0 = time.perf_counter()
    gens = generate_sequences(
        model, seqs, streams=a.streams, prime=prime, mode=a.mode, temperature_weights=a.temperature_weights,
        temperature_scales=a.temperature_scales, seed=a.seed, seconds=a.seconds, device=a.device,
        batch_size=a.batch_size, threads=a.threads, norm=(mean, std), context=context,
        gaussian_variance=a.gaussian_variance, log=_log,
    )
    t_gen = time.perf_counter() - t0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # The WAVs are replaced one by one (each atomically); measurements.json is written last.
    # A stale one must not describe new audio if this run stops half-way: remove it first.
    (out / MEASUREMENTS_NAME).unlink(missing_ok=True)
    refs: dict[int, Path] = {}
    files = []
    for g in gens:
        seq = g.sequence
        wav = out / f"{_safe_name(g.name)}.wav"
        write_wav(wav, g.audio, sr)
        ref_path = None
        if seq.reference is not None:
            if id(seq) not in refs:
                refs[id(seq)] = out / "reference" / f"{_safe_name(seq.name)}.wav"
                write_wav(refs[id(seq)], seq.reference.astype(np.float32) / 32768.0, sr)
            ref_path = refs[id(seq)]
        entry: dict[str, Any] = {"wav": os.path.relpath(wav, out),
                                 "reference": None if ref_path is None else os.path.relpath(ref_path, out)}
        if not a.no_measure:
            entry.update(measure_entry(wav, ref_path, out))
        entry["clipped"] = g.clipped
        entry["nonfinite_replaced"] = g.nonfinite_replaced
        if a.png:
            png = out / f"{_safe_name(g.name)}.png"
            write_png(png, g.audio, sr, seq.reference, title=f"{g.name} ({head}, {a.mode}, seed {g.seed})")
            entry["png"] = os.path.relpath(png, out)
        entry["info"] = {"sequence": seq.name, "source": seq.source, "stream": g.stream, "seed": g.seed,
                         "samples": int(len(g.audio)), "generated_from": g.start}
        files.append(entry)
        msg = f"wrote {wav} ({len(g.audio) / sr:.2f} s"
        if g.clipped:
            msg += f", {g.clipped} samples clipped to [-1, 1]"
        if g.nonfinite_replaced:
            msg += f", {g.nonfinite_replaced} NON-FINITE draws replaced"
        _log(msg + ")")
    settings = {
        "mode": a.mode, "prime": prime, "temperature_weights": a.temperature_weights,
        "temperature_scales": a.temperature_scales, "gaussian_variance": a.gaussian_variance,
        "streams": a.streams, "seed": a.seed, "seconds": a.seconds, "device": a.device,
        "sample_rate": sr, "window": int(model.net.window), "context": context,
        "norm_mean": mean, "norm_std": std, "gaussian_scale": gscale,
    }
    if a.utterance:
        settings["utterances"] = list(a.utterance)
    elif a.split:
        settings["split"], settings["limit"] = a.split, a.limit
    elif a.phn:
        settings["phn"] = [str(Path(f).resolve()) for f in a.phn]
    else:
        settings["phones"] = a.phones
    data = {
        "checkpoint": str(Path(a.ckpt).resolve()),
        "data_fingerprint": _hparam(model, "data_fingerprint", prepared.fingerprint),
        "data": str(Path(a.data).resolve()),
        "head": head,
        "components": int(getattr(model.net.head, "components", 1)),
        "settings": settings,
        "notes": notes,
        "generation_seconds": round(t_gen, 3),
        "files": files,
    }
    write_json(out / MEASUREMENTS_NAME, data)
    n_clip = sum(f["clipped"] for f in files)
    n_bad = sum(f["nonfinite_replaced"] for f in files)
    print(f"{len(files)} file(s) in {out}; measurements in {out / MEASUREMENTS_NAME}; "
          f"clipped samples: {n_clip}; non-finite draws replaced: {n_bad}")
    return 0


def _parser_evaluate() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waveform-mdn evaluate",
        description="Measure WAV files (optionally against references) with waveform_mdn.audio_metrics. "
                    "Given a generation directory (or its measurements.json), re-measure its files in place.",
    )
    p.add_argument("paths", nargs="+", help="a generation directory / measurements.json, or WAV files")
    p.add_argument("--reference", nargs="+", default=None,
                   help="reference WAV(s): one for all files, or one per file")
    p.add_argument("--out", default=None, help="JSON to write (default: the directory's measurements.json)")
    return p


def run_evaluate(a: argparse.Namespace) -> int:
    paths = [Path(x) for x in a.paths]
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix == ".json"):
        meas = paths[0] / MEASUREMENTS_NAME if paths[0].is_dir() else paths[0]
        if not meas.is_file():
            raise GenerationError(f"{meas}: not found")
        data = json.loads(meas.read_text())
        base = meas.parent
        new_files = []
        for entry in data.get("files", []):
            wav = base / entry["wav"]
            ref = base / entry["reference"] if entry.get("reference") else None
            keep = {k: entry[k] for k in ("clipped", "nonfinite_replaced", "png", "info") if k in entry}
            m = measure_entry(wav, ref, base)
            m.update(keep)
            new_files.append(m)
        data["files"] = new_files
        out = Path(a.out) if a.out else meas
        if out.resolve().parent != base.resolve():
            for m in new_files:  # keep the paths valid relative to the new file
                m["wav"] = os.path.relpath(base / m["wav"], out.parent)
                if m["reference"]:
                    m["reference"] = os.path.relpath(base / m["reference"], out.parent)
        write_json(out, data)
        print(f"re-measured {len(new_files)} file(s) -> {out}")
        return 0
    refs = [Path(r) for r in (a.reference or [])]
    if refs and len(refs) not in (1, len(paths)):
        raise GenerationError(f"{len(refs)} references for {len(paths)} files: give one, or one per file")
    out = Path(a.out) if a.out else Path(MEASUREMENTS_NAME)
    base = out.resolve().parent
    files = []
    for i, wav in enumerate(paths):
        ref = refs[0] if len(refs) == 1 else (refs[i] if refs else None)
        files.append(measure_entry(wav.resolve(), None if ref is None else ref.resolve(), base))
    write_json(out, {"checkpoint": None, "data_fingerprint": None, "head": None, "settings": {}, "files": files})
    print(f"measured {len(files)} file(s) -> {out}")
    return 0


def _data_errors() -> tuple[type[Exception], ...]:
    from data_prep.audio import AudioError
    from data_prep.corpus import CorpusError

    return (AudioError, CorpusError)


def main(argv: list[str]) -> int:
    """``argv[0]`` is the subcommand, ``generate`` or ``evaluate``."""
    argv = list(argv)
    cmd = argv[0] if argv else "generate"
    rest = argv[1:]
    try:
        if cmd == "generate":
            return run_generate(_parser_generate().parse_args(rest))
        if cmd == "evaluate":
            return run_evaluate(_parser_evaluate().parse_args(rest))
        print(f"waveform-mdn: {cmd!r} is not handled by waveform_mdn.generate", file=sys.stderr)
        return 2
    except (GenerationError, FileNotFoundError, KeyError, ValueError, *_data_errors()) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"waveform-mdn {cmd}: error: {msg}", file=sys.stderr)
        return 1
