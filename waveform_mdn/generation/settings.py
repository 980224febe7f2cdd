"""What to generate with: one typed object, defaulted here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from data_prep.audio_io import Normalisation
from data_prep.errors import InputError

MODES = ("sample", "mean", "mode")
PRIMES = ("real", "silence", "noise")
VARIANCES = ("valid", "train")


class GenerationError(InputError):
    """Bad input for generation (the message says what to change)."""


@dataclass(frozen=True)
class GenerationSettings:
    """The fields are ``generate``'s options (``docs/generation.md``); ``prime``, ``context``,
    ``norm`` and ``sample_rate`` are ``None`` until :meth:`resolved` fills them from the model;
    ``chunk``: steps per chunk (the result does not depend on it)."""

    mode: str = "sample"
    temperature_weights: float = 1.0
    temperature_scales: float = 1.0
    gaussian_variance: str = "valid"
    prime: str | None = None
    context: str | None = None
    norm: Normalisation | None = None
    sample_rate: int | None = None
    seed: int = 0
    streams: int = 1
    batch_size: int = 64
    seconds: float | None = None
    device: str = "cpu"
    progress: bool = False
    chunk: int | None = None
    measure: bool = True
    judges: bool = True

    def __post_init__(self):
        for name, value, allowed in (("mode", self.mode, MODES), ("prime", self.prime, PRIMES + (None,)),
                                     ("gaussian variance", self.gaussian_variance, VARIANCES)):
            if value not in allowed:
                raise GenerationError(f"{name} must be one of {[a for a in allowed if a]}, not {value!r}")
        if not (self.temperature_weights >= 0 and self.temperature_scales >= 0):
            raise GenerationError("--temperature-weights and --temperature-scales must be >= 0")
        if self.streams < 1 or self.batch_size < 1:
            raise GenerationError("--streams and --batch-size must be at least 1")

    def resolved(self, hparams: dict, references: Sequence[object | None] = (), data=None) -> "GenerationSettings":
        """Prime (real when every sequence has a reference), context, normalisation and sample
        rate filled in from the model's hyperparameters, else from ``data`` (a PreparedDataset)."""
        norm = self.norm
        if norm is None and hparams.get("norm_mean") is not None and hparams.get("norm_std") is not None:
            norm = Normalisation.of(hparams["norm_mean"], hparams["norm_std"])
        norm = norm or (None if data is None else data.normalisation)
        if norm is None:
            raise GenerationError("the model has no norm_mean/norm_std hyperparameters: pass a Normalisation")
        rate = self.sample_rate or hparams.get("sample_rate") or (16000 if data is None else data.sample_rate)
        real = bool(references) and all(r is not None for r in references)
        return replace(self, prime=self.prime or ("real" if real else "silence"), norm=norm, sample_rate=int(rate),
                       context=self.context or hparams.get("phone_context") or "target")
