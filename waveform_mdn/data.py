"""Examples for next-sample prediction, gathered a batch at a time from a prepared dataset
(docs/prepared-format.md): the window, the normalised target and the phone context. Nothing
of size ``samples x window`` is ever made."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from data_prep import FORMAT_VERSION, PAD_MODES
from data_prep.audio_io import Normalisation
from data_prep.errors import InputError

CONTEXT_MODES = ("target", "window_start")  #: the reference point of the phone context
CONTEXT_FIELDS = ("phone", "next_phone", "prev_phone", "position")  #: what :func:`phone_context` gives


class NotPreparedError(InputError, FileNotFoundError):
    """No prepared dataset this version can read (no ``meta.json``, or another format version)."""


class PreparedDataset:
    """A prepared dataset directory, opened read-only: ``wave`` memory-mapped int16,
    ``segments`` int64 ``[S, 5]`` (global offsets), ``sequences``, ``meta``, and the training
    split's ``normalisation``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise NotPreparedError(f"{self.path}: not a prepared dataset (no meta.json); "
                                   "create one with `waveform-mdn prepare CORPUS_DIR OUT_DIR`")
        self.meta = json.loads(meta_path.read_text())
        if (version := self.meta.get("format_version")) != FORMAT_VERSION:
            raise NotPreparedError(f"{meta_path}: format_version {version!r} is not supported "
                                   f"(this waveform-mdn reads version {FORMAT_VERSION}); prepare the data again")
        self.wave = np.load(self.path / "wave.npy", mmap_mode="r")
        self.segments = np.load(self.path / "segments.npy")
        self.sequences: list[dict] = json.loads((self.path / "sequences.json").read_text())
        self.phones: list[str] = list(self.meta["phones"])
        self.no_phone = len(self.phones)
        self.n_phone_ids = self.no_phone + 1
        self.sample_rate = int(self.meta["sample_rate"])
        self.window = int(self.meta.get("window", 240))
        #: mean seconds of each phone in the training split (empty for data prepared before it was recorded)
        self.phone_durations = {str(k): float(v) for k, v in self.meta.get("phone_durations", {}).items()}
        norm = self.meta["normalisation"]
        self.normalisation = Normalisation(float(norm["mean"]), float(norm["std"]))
        self._wave_tensors: dict[bool, torch.Tensor] = {}

    def wave_tensor(self, in_memory: bool = False) -> torch.Tensor:
        """The whole int16 waveform as a tensor, made once: a view of the read-only memory map
        (never written; the OS shares its pages between processes), or with ``in_memory`` a
        private copy in RAM."""
        if in_memory not in self._wave_tensors:
            if in_memory:
                tensor = torch.from_numpy(np.array(self.wave, dtype=np.int16, copy=True))
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                    tensor = torch.from_numpy(self.wave)
            self._wave_tensors[in_memory] = tensor
        return self._wave_tensors[in_memory]

    @property
    def fingerprint(self) -> str:
        """A short hash, equal only for the same data, split and normalisation."""
        key = {"sample_rate": self.sample_rate, "phones": self.phones, "normalisation": self.meta["normalisation"],
               "sequences": [(s["id"], s["split"], s["length"]) for s in self.sequences]}
        return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def sequence_indices(self, split: str | None = None) -> list[int]:
        if split not in ("train", "valid", None):
            raise InputError(f"split must be one of ('train', 'valid') or None, not {split!r}")
        return [i for i, s in enumerate(self.sequences) if split is None or s["split"] == split]

    def sequence_wave(self, i: int) -> np.ndarray:
        """Raw int16 samples of sequence ``i``."""
        s = self.sequences[i]
        return np.asarray(self.wave[s["start"]: s["start"] + s["length"]])

    def sequence_segments(self, i: int) -> np.ndarray:
        """Segment table of sequence ``i`` with offsets local to the sequence."""
        s = self.sequences[i]
        seg = self.segments[s["seg_start"]: s["seg_start"] + s["seg_count"]].copy()
        seg[:, :2] -= s["start"]
        return seg

    def find(self, key: str) -> int:
        """Index of the sequence whose ``id`` (else whose ``utterance``) equals ``key``."""
        for field in ("id", "utterance"):
            if (i := next((i for i, s in enumerate(self.sequences) if s[field] == key), None)) is not None:
                return i
        raise KeyError(f"{self.path}: no sequence or utterance with id {key!r}")


def phone_context(segments: torch.Tensor, targets: torch.Tensor, seq_starts: torch.Tensor,
                  context: str = "target", window: int = 240, segment_starts: torch.Tensor | None = None,
                  ) -> dict[str, torch.Tensor]:
    """The phone context (:data:`CONTEXT_FIELDS`) of target offsets ``targets`` ``[B]``: the one
    definition. ``segments``: int64 ``[S, 5]`` sorted by start; ``seq_starts``: each target's
    sequence start; ``segment_starts``: ``segments[:, 0]`` made contiguous once by a caller
    that calls this per batch."""
    if context not in CONTEXT_MODES:
        raise InputError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
    ref = targets if context == "target" else torch.maximum(targets - window, seq_starts)
    starts = segment_starts if segment_starts is not None else segments[:, 0].contiguous()
    seg = segments[(torch.searchsorted(starts, ref, right=True) - 1).clamp_(min=0)]  # before the first: the first
    length = (seg[:, 1] - seg[:, 0]).clamp_(min=1)
    position = ((ref - seg[:, 0]).float() / length.float()).clamp_(0.0, 1.0 - 1e-6)
    return {"phone": seg[:, 2], "prev_phone": seg[:, 3], "next_phone": seg[:, 4], "position": position}


class NextSampleDataset(torch.utils.data.Dataset):
    """Examples (window, phone context) -> next sample over the sequences of one split.
    ``get_batch(idx)`` gathers a whole batch by vectorised indexing; an index is mapped to its
    sequence by a binary search in the cumulative per-sequence counts."""

    def __init__(self, prepared: PreparedDataset | str | Path, split: str | None = "train",
                 window: int | None = None, pad: str = "skip", context: str = "target",
                 sequences: list[int] | None = None, in_memory: bool = False):
        prepared = prepared if isinstance(prepared, PreparedDataset) else PreparedDataset(prepared)
        if pad not in PAD_MODES:
            raise InputError(f"pad must be one of {PAD_MODES}, not {pad!r}")
        if context not in CONTEXT_MODES:
            raise InputError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
        self.prepared, self.pad, self.context, self.split = prepared, pad, context, split
        self.window = int(window if window is not None else prepared.window)
        if self.window < 1:
            raise InputError(f"window must be positive, not {self.window}")
        self.seq_indices = list(sequences) if sequences is not None else prepared.sequence_indices(split)
        if not self.seq_indices:
            raise InputError(f"{prepared.path}: no sequences in split {split!r}")
        starts = np.array([prepared.sequences[i]["start"] for i in self.seq_indices], dtype=np.int64)
        lengths = np.array([prepared.sequences[i]["length"] for i in self.seq_indices], dtype=np.int64)
        offset = self.window if pad == "skip" else 0
        counts = np.maximum(lengths - offset, 0)
        self.seq_starts, self.first_target = torch.from_numpy(starts), torch.from_numpy(starts + offset)
        self.counts, self.cum = torch.from_numpy(counts), torch.from_numpy(np.cumsum(counts))
        self._len = int(counts.sum())
        if self._len == 0:
            raise InputError(f"{prepared.path}: every sequence of split {split!r} is shorter than "
                             f"window+1 = {self.window + 1} samples (pad='skip' leaves no examples)")
        self._wave = prepared.wave_tensor(in_memory)
        self.segments = torch.from_numpy(np.ascontiguousarray(prepared.segments, dtype=np.int64))
        self._segment_starts = self.segments[:, 0].contiguous()
        self._offsets = torch.arange(-self.window, 0, dtype=torch.int64)
        self._scale, self._offset = prepared.normalisation.int16_scale_offset

    def __len__(self) -> int:
        return self._len

    def locate(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Example indices -> (global target offsets, index into ``seq_indices``)."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self._len):
            raise IndexError(f"example index out of range [0, {self._len})")
        k = torch.searchsorted(self.cum, idx, right=True)
        return self.first_target[k] + (idx - (self.cum[k] - self.counts[k])), k

    def get_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        t, k = self.locate(torch.as_tensor(idx, dtype=torch.int64).reshape(-1))
        seq_start = self.seq_starts[k]
        raw = self._windows(t - self.window)
        if self.pad == "zero":
            short = torch.nonzero(t - self.window < seq_start).flatten()
            if len(short):  # windows reaching before the sequence start: silence there
                pos = t[short, None] + self._offsets
                outside = pos < seq_start[short, None]
                raw[short] = self._wave[torch.where(outside, t[short, None], pos)].masked_fill(outside, 0)
        batch = {  # the normalisation as one multiply-add on a fresh float copy
            "window": raw.float().mul_(self._scale).add_(self._offset),
            "target": self._wave[t].float().mul_(self._scale).add_(self._offset),
        }
        return batch | phone_context(self.segments, t, seq_start, self.context, self.window, self._segment_starts)

    def _windows(self, first: torch.Tensor) -> torch.Tensor:
        """int16 ``[B, W]`` windows starting at ``first`` (a negative start read from 0; callers mask)."""
        n = len(self._wave)
        if n < self.window:  # every window reaches before its sequence (pad="zero")
            return torch.zeros((len(first), self.window), dtype=torch.int16)
        return self._wave.unfold(0, self.window, 1).index_select(0, first.clamp(min=0))

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return {key: v[0] for key, v in self.get_batch(torch.tensor([int(idx)])).items()}
        return self.get_batch(torch.as_tensor(idx))
