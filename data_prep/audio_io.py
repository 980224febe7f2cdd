"""The one implementation of int16 <-> float audio (full scale 1.0), the normalisation of the
training signal, and atomic writes (a reader never sees a half-written file or directory)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InputError

FULL_SCALE = 32768.0  #: int16 value of float 1.0
CODE_MIN, CODE_MAX = -32768, 32767  #: the int16 range


def int16_to_float(x):
    """int16 PCM (numpy or torch) -> float32 audio in [-1, 1); float input is passed through as float32."""
    torch = sys.modules.get("torch")  # a tensor means torch is loaded: ``prepare`` never imports it
    if torch is not None and isinstance(x, torch.Tensor):
        return x.float() / FULL_SCALE if x.dtype == torch.int16 else x.float()
    x = np.asarray(x)
    return x.astype(np.float32) / np.float32(FULL_SCALE) if x.dtype == np.int16 else x.astype(np.float32)


def float_to_int16(x) -> tuple[np.ndarray, int]:
    """float audio -> (int16 PCM, count of samples outside [-1, 1], clipped); NaN becomes 0."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
    clipped = int(np.count_nonzero(np.abs(x) > 1.0))
    pcm = np.clip(np.round(np.clip(x, -2.0, 2.0) * FULL_SCALE), CODE_MIN, CODE_MAX).astype(np.int16)
    return pcm, clipped


@dataclass(frozen=True)
class Normalisation:
    """``normalised = (audio - mean) / std``, audio in float units (full scale 1.0); also the
    16-bit grid on that scale, which the heads' bits per sample are measured on."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise InputError(f"normalisation must have a finite mean and a positive std, not {self}")

    @classmethod
    def of(cls, mean: float | None, std: float | None) -> "Normalisation":
        """From a model's ``norm_mean``/``norm_std`` (``None``: the float signal itself)."""
        return cls(0.0 if mean is None else float(mean), 1.0 if std is None else float(std))

    def normalise(self, raw):
        """int16 PCM or float audio (numpy or torch) -> the normalised training signal (float32)."""
        return (int16_to_float(raw) - self.mean) / self.std

    def denormalise(self, x):
        """Normalised signal -> float audio (not clipped)."""
        return x * self.std + self.mean

    @property
    def silence(self) -> float:
        """The normalised value of digital silence (raw 0)."""
        return (0.0 - self.mean) / self.std

    @property
    def full_scale(self) -> tuple[float, float]:
        """The normalised values of float audio -1.0 and 1.0 (in float64: the bounds of
        what generation feeds back)."""
        return (-1.0 - self.mean) / self.std, (1.0 - self.mean) / self.std

    @property
    def int16_scale_offset(self) -> tuple[float, float]:
        """``(scale, offset)`` with ``normalise(pcm) == pcm * scale + offset`` for int16 ``pcm``
        (up to float rounding): one multiply-add for hot loops such as the training batch."""
        return 1.0 / (FULL_SCALE * self.std), -self.mean / self.std

    @property
    def half_width(self) -> float:
        """Half a 16-bit bin on the normalised scale."""
        return 0.5 / (FULL_SCALE * self.std)

    @property
    def lowest(self) -> float:
        return (CODE_MIN / FULL_SCALE - self.mean) / self.std

    @property
    def highest(self) -> float:
        return (CODE_MAX / FULL_SCALE - self.mean) / self.std

    def value(self, codes):
        """Normalised value of an integer tensor of int16 codes, in float64 (exact)."""
        c = codes if codes.is_floating_point() else codes.double()
        return (c / FULL_SCALE - self.mean) / self.std

    def codes(self, x):
        """The int16 code (int64 tensor) nearest to each normalised value, clamped to the range."""
        return ((x * self.std + self.mean) * FULL_SCALE).round().clamp(CODE_MIN, CODE_MAX).long()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to it on success, removed on an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """An empty hidden directory ``.NAME.tmp-<pid>`` beside ``path`` that takes its place on
    success (an existing ``path`` is put back if the swap fails), removed on an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:
                old.rename(path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> int:
    """16-bit PCM WAV of float ``audio``, written atomically; returns how many samples were clipped."""
    import soundfile as sf

    pcm, clipped = float_to_int16(audio)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, int(sample_rate), subtype="PCM_16", format="WAV")
    return clipped


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """Indented JSON (no NaN allowed), written atomically."""
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
