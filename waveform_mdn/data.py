"""Examples for next-sample prediction, cut on the fly from a prepared dataset.

A prepared dataset (see ``docs/prepared-format.md``) stores every sequence in one flat
int16 array plus a table of phone segments. :class:`NextSampleDataset` maps an example
index to a target sample ``t`` and gathers, for a whole batch at once, the ``window``
previous samples and the phone context at ``t``. Nothing of size ``samples x window`` is
ever materialised: memory stays proportional to the number of samples.

The phone context is defined once, in :func:`phone_context`:

* ``phone``: the segment containing the reference point, ``next_phone`` / ``prev_phone``:
  the labels of the segments after / before it in the source utterance (``no_phone`` at
  the utterance edges), ``position``: relative position of the reference point inside its
  segment, in [0, 1).
* The reference point is the target ``t`` (``context="target"``, default) or the first
  sample of the window ``t - window`` (``context="window_start"``, what the 2014 code did),
  clamped to the sequence start.

The first ``window`` samples of a sequence: ``pad="skip"`` (default) only uses targets
with a full window of real samples; ``pad="zero"`` uses every sample of the sequence as a
target and fills window positions before the sequence start with silence (raw 0.0).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from data_prep import FORMAT_VERSION

from data_prep.audio_io import Normalisation
from data_prep.errors import InputError

PAD_MODES = ("skip", "zero")
CONTEXT_MODES = ("target", "window_start")
SPLITS = ("train", "valid")


class NotPreparedError(InputError, FileNotFoundError):
    """No prepared dataset that this version can read (no ``meta.json``, or another format
    version); the message names the path and how to make one. A FileNotFoundError, so that
    ``fit`` and ``generate`` report it in one line."""


class PreparedDataset:
    """A prepared dataset directory, opened read-only.

    ``wave`` is a memory-mapped int16 array; ``segments`` (int64 ``[S, 5]``: start, end,
    phone, prev_phone, next_phone, global offsets) is loaded; ``normalisation`` (a
    :class:`~data_prep.audio_io.Normalisation`) holds the training split's mean and std.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise NotPreparedError(
                f"{self.path}: not a prepared dataset (no meta.json); "
                "create one with `waveform-mdn prepare CORPUS_DIR OUT_DIR`"
            )
        with open(meta_path) as f:
            self.meta = json.load(f)
        version = self.meta.get("format_version")
        if version != FORMAT_VERSION:
            raise NotPreparedError(
                f"{meta_path}: format_version {version!r} is not supported "
                f"(this waveform-mdn reads version {FORMAT_VERSION}); prepare the data again"
            )
        self.wave = np.load(self.path / "wave.npy", mmap_mode="r")
        self.segments = np.load(self.path / "segments.npy")
        with open(self.path / "sequences.json") as f:
            self.sequences: list[dict] = json.load(f)
        self.phones: list[str] = list(self.meta["phones"])
        self.no_phone = len(self.phones)
        self.n_phone_ids = self.no_phone + 1
        self.sample_rate = int(self.meta["sample_rate"])
        self.window = int(self.meta.get("window", 240))
        #: mean duration in seconds of each phone in the training split (the duration model of
        #: ``generate --text``); empty for data prepared before it was recorded
        self.phone_durations: dict[str, float] = {str(k): float(v) for k, v in self.meta.get("phone_durations", {}).items()}
        self._wave_tensors: dict[bool, torch.Tensor] = {}  # by in_memory
        norm = self.meta["normalisation"]
        self.normalisation = Normalisation(float(norm["mean"]), float(norm["std"]))

    @property
    def mean(self) -> float:
        return self.normalisation.mean

    @property
    def std(self) -> float:
        return self.normalisation.std

    def normalise(self, raw: np.ndarray | torch.Tensor):
        """int16 samples (or float in [-1, 1]) to the normalised training signal."""
        return self.normalisation.normalise(raw)

    def denormalise(self, x):
        """Normalised signal back to float audio in [-1, 1] (not clipped)."""
        return self.normalisation.denormalise(x)

    def wave_tensor(self, in_memory: bool = False) -> torch.Tensor:
        """The whole int16 waveform as a tensor, made once and shared by every dataset made
        from this object. By default a view of the read-only memory map, never to be written:
        no copy, and the OS shares its pages between processes (DDP ranks, workers) through
        the page cache. ``in_memory=True``: a private copy in this process's RAM (2 bytes per
        sample), read once from the file."""
        if in_memory not in self._wave_tensors:
            if in_memory:
                tensor = torch.from_numpy(np.array(self.wave, dtype=np.int16, copy=True))
            else:
                with warnings.catch_warnings():  # torch warns that the map is read-only: it is never written
                    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                    tensor = torch.from_numpy(self.wave)
            self._wave_tensors[in_memory] = tensor
        return self._wave_tensors[in_memory]

    @property
    def fingerprint(self) -> str:
        """A short hash that is equal only for the same data, split and normalisation."""
        key = {
            "sample_rate": self.sample_rate,
            "phones": self.phones,
            "normalisation": self.meta["normalisation"],
            "sequences": [(s["id"], s["split"], s["length"]) for s in self.sequences],
        }
        return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def sequence_indices(self, split: str | None = None) -> list[int]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
        return [i for i, s in enumerate(self.sequences) if split is None or s["split"] == split]

    def sequence_wave(self, i: int) -> np.ndarray:
        """Raw int16 samples of sequence ``i``."""
        s = self.sequences[i]
        return np.asarray(self.wave[s["start"] : s["start"] + s["length"]])

    def sequence_segments(self, i: int) -> np.ndarray:
        """Segment table of sequence ``i`` with offsets local to the sequence."""
        s = self.sequences[i]
        seg = self.segments[s["seg_start"] : s["seg_start"] + s["seg_count"]].copy()
        seg[:, :2] -= s["start"]
        return seg

    def find(self, key: str) -> int:
        """Index of the sequence whose ``id`` or ``utterance`` equals ``key``."""
        for i, s in enumerate(self.sequences):
            if s["id"] == key:
                return i
        for i, s in enumerate(self.sequences):
            if s["utterance"] == key:
                return i
        raise KeyError(f"{self.path}: no sequence or utterance with id {key!r}")


def phone_context(
    segments: torch.Tensor,
    targets: torch.Tensor,
    seq_starts: torch.Tensor,
    context: str = "target",
    window: int = 240,
    segment_starts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Phone context of target samples: the one definition used everywhere.

    ``segments``: int64 ``[S, 5]`` (start, end, phone, prev_phone, next_phone), sorted by
    start, non-overlapping; ``targets``: int64 ``[B]`` sample offsets in the same frame of
    reference; ``seq_starts``: int64 ``[B]`` (or scalar) start of each target's sequence.
    ``segment_starts``: ``segments[:, 0]`` made contiguous once by a caller that calls this
    per batch (else a copy per call). Returns ``phone``, ``prev_phone``, ``next_phone``
    (int64) and ``position`` (float32).
    """
    if context not in CONTEXT_MODES:
        raise ValueError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
    ref = targets if context == "target" else torch.maximum(targets - window, seq_starts)
    starts = segment_starts if segment_starts is not None else segments[:, 0].contiguous()
    j = torch.searchsorted(starts, ref, right=True) - 1
    j = j.clamp_(0, len(segments) - 1)
    seg = segments[j]
    length = (seg[:, 1] - seg[:, 0]).clamp_(min=1)
    position = ((ref - seg[:, 0]).float() / length.float()).clamp_(0.0, 1.0 - 1e-6)
    return {"phone": seg[:, 2], "prev_phone": seg[:, 3], "next_phone": seg[:, 4], "position": position}


class NextSampleDataset(torch.utils.data.Dataset):
    """Examples (window, phone context) -> next sample over the sequences of one split.

    ``get_batch(idx)`` gathers a whole batch by vectorised indexing from the int16 waveform:
    by default a tensor view of the memory map (shared with other processes through the page
    cache); ``in_memory=True``: a copy in this process's RAM (see
    :meth:`PreparedDataset.wave_tensor`). Per example nothing is stored: an index is mapped
    to its sequence by a binary search in the per-sequence cumulative counts.
    """

    def __init__(
        self,
        prepared: PreparedDataset | str | Path,
        split: str | None = "train",
        window: int | None = None,
        pad: str = "skip",
        context: str = "target",
        sequences: list[int] | None = None,
        in_memory: bool = False,
    ):
        if not isinstance(prepared, PreparedDataset):
            prepared = PreparedDataset(prepared)
        if pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, not {pad!r}")
        if context not in CONTEXT_MODES:
            raise ValueError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
        self.prepared = prepared
        self.window = int(window if window is not None else prepared.window)
        if self.window < 1:
            raise ValueError(f"window must be positive, not {self.window}")
        self.pad = pad
        self.context = context
        self.split = split
        self.seq_indices = list(sequences) if sequences is not None else prepared.sequence_indices(split)
        if not self.seq_indices:
            raise ValueError(f"{prepared.path}: no sequences in split {split!r}")

        starts = np.array([prepared.sequences[i]["start"] for i in self.seq_indices], dtype=np.int64)
        lengths = np.array([prepared.sequences[i]["length"] for i in self.seq_indices], dtype=np.int64)
        offset = self.window if pad == "skip" else 0
        counts = np.maximum(lengths - offset, 0)
        self.seq_starts = torch.from_numpy(starts)
        self.first_target = torch.from_numpy(starts + offset)
        self.counts = torch.from_numpy(counts)
        self.cum = torch.from_numpy(np.cumsum(counts))
        self._len = int(counts.sum())
        if self._len == 0:
            raise ValueError(
                f"{prepared.path}: every sequence of split {split!r} is shorter than "
                f"window+1 = {self.window + 1} samples (pad='skip' leaves no examples)"
            )
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
        before = self.cum[k] - self.counts[k]
        return self.first_target[k] + (idx - before), k

    def target_positions(self, idx: torch.Tensor) -> torch.Tensor:
        return self.locate(idx)[0]

    def get_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        t, k = self.locate(idx)
        seq_start = self.seq_starts[k]
        raw = self._windows(t - self.window)
        if self.pad == "zero":
            short = torch.nonzero(t - self.window < seq_start).flatten()
            if len(short):  # windows reaching before the sequence start: silence there
                pos = t[short, None] + self._offsets
                outside = pos < seq_start[short, None]
                part = self._gather(torch.where(outside, t[short, None], pos))
                raw[short] = part.masked_fill(outside, 0)
        batch = {  # the dataset's normalisation as one multiply-add on a fresh float copy
            "window": raw.float().mul_(self._scale).add_(self._offset),
            "target": self._gather(t).float().mul_(self._scale).add_(self._offset),
        }
        batch.update(phone_context(self.segments, t, seq_start, self.context, self.window, self._segment_starts))
        return batch

    def _gather(self, pos: torch.Tensor) -> torch.Tensor:
        return self._wave[pos]

    def _windows(self, first: torch.Tensor) -> torch.Tensor:
        """int16 ``[B, W]`` windows starting at ``first`` (clamped into the array; callers mask)."""
        n = len(self._wave)
        if n < self.window:  # every window reaches before its sequence (pad="zero"): callers fill all
            return torch.zeros((len(first), self.window), dtype=torch.int16)
        first = first.clamp(0, n - self.window)
        return self._wave.unfold(0, self.window, 1).index_select(0, first)  # a strided view: no [B, W] index

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            b = self.get_batch(torch.tensor([int(idx)]))
            return {key: v[0] for key, v in b.items()}
        return self.get_batch(torch.as_tensor(idx))
