"""Batches of example indices and the exactly resumable loader that gathers them.

:class:`IndexBatchSampler` yields one ``LongTensor`` of example indices per batch (no
per-example Python call, no collation): shuffled per epoch from ``seed + epoch`` and shared
out by rank for training, in storage order without padding for validation (see
:mod:`waveform_mdn.datamodule`). Neither keeps an array of the epoch's examples: the
training order is a :class:`~waveform_mdn.shuffle.FeistelPermutation` evaluated 64 K
positions at a time, so memory and the time to the first batch do not grow with the data. :class:`BatchLoader` gathers them with
``dataset.get_batch`` in the training thread, in one background thread, or in DataLoader
worker processes, and is *stateful*: ``state_dict()`` is the epoch and the number of
batches handed out in it, so a resumed run continues at the next batch.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import warnings
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from .shuffle import FeistelPermutation

Batch = dict[str, torch.Tensor]
GATHER_EXAMPLES = 1024  # the datamodule's loaders gather at least this many examples per get_batch call
SHUFFLE_CHUNK = 1 << 16  # training positions permuted per call (512 KB of int64)


class IndexBatchSampler:
    """Yields ``LongTensor`` batches of example indices (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, stride: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        joined = dist.is_available() and dist.is_initialized()
        r, w = (dist.get_rank(), dist.get_world_size()) if joined else (0, 1)
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.stride = int(stride)  # evaluation only: every stride-th example
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, not {stride}")
        self.n_eval = math.ceil(self.n / self.stride)
        self.rank = r if rank is None else int(rank)
        self.num_replicas = w if world_size is None else int(world_size)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} out of range for world size {self.num_replicas}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every training epoch."""
        self.epoch = int(epoch)

    # -- training: shuffled, strided shares of equal length -------------------------
    def _train_stop(self) -> int:
        per_rank = self.n // self.num_replicas
        return per_rank - per_rank % self.batch_size if self.drop_last else per_rank

    def _train_batches(self, permutation: FeistelPermutation, start: int) -> Iterator[torch.Tensor]:
        # this rank's i-th example is the permutation's value at position rank + i * world_size
        bs, stop = self.batch_size, self._train_stop()
        chunk = bs * max(SHUFFLE_CHUNK // bs, 1)
        for lo in range(start * bs, stop, chunk):
            i = torch.arange(lo, min(lo + chunk, stop), dtype=torch.int64)
            yield from permutation(i.mul_(self.num_replicas).add_(self.rank)).split(bs)

    # -- validation: contiguous shares, same number of batches on every rank --------
    def _eval_bounds(self, rank: int) -> tuple[int, int]:
        return rank * self.n_eval // self.num_replicas, (rank + 1) * self.n_eval // self.num_replicas

    def _eval_n_batches(self) -> int:
        largest = max(b - a for a, b in (self._eval_bounds(r) for r in range(self.num_replicas)))
        return max(math.ceil(largest / self.batch_size), 1)

    def _eval_batches(self, start: int) -> Iterator[torch.Tensor]:
        # this rank's share cut into _eval_n_batches() nearly equal parts, the longer ones first
        a, b = self._eval_bounds(self.rank)
        parts = self._eval_n_batches()
        size, longer = divmod(b - a, parts)
        for j in range(start, parts):
            lo = a + j * size + min(j, longer)
            hi = lo + size + (j < longer)
            yield torch.arange(lo, hi, dtype=torch.int64).mul_(self.stride)

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """The batches of the current epoch from batch number ``start`` on (the epoch's order
        is chosen by this call, not later)."""
        if self.shuffle:
            permutation = FeistelPermutation(max(self.n, 1), self.seed + self.epoch)  # n = 0: no batches
            return self._train_batches(permutation, start)
        return self._eval_batches(start)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches(0)

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self._train_stop() / self.batch_size)
        return self._eval_n_batches()

    def layout(self) -> dict[str, int | str]:
        """What must be equal for a saved position to mean the same batches."""
        return {"order": "feistel", "n": self.n, "batch_size": self.batch_size, "seed": self.seed, "world_size": self.num_replicas,
                "shuffle": int(self.shuffle), "drop_last": int(self.drop_last), "stride": self.stride}


class _FromBatch:
    """The sampler's batches from ``start`` on: what a DataLoader with workers iterates."""

    def __init__(self, sampler: IndexBatchSampler):
        self.sampler = sampler
        self.start = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.sampler.batches(self.start)


_END = object()


def _in_thread(make_batches: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """``make_batches`` run in a background thread, ``depth`` batches ahead.

    torch's indexing kernels release the GIL, so the gathering overlaps the training step.
    Closing the generator early (``limit_train_batches``) stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in make_batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer
            put(e)

    thread = threading.Thread(target=work, name="waveform-mdn-batches", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


class BatchLoader:
    """Iterable of ``dataset.get_batch(idx)`` for each ``idx`` of ``sampler``; resumable.

    ``prefetch``: batches gathered ahead by a background thread (0: on demand, in the
    training thread). ``workers`` > 0: DataLoader worker processes instead. Without workers,
    ``batches_per_gather`` consecutive batches are gathered by one ``get_batch`` call.
    ``state_dict()`` / ``load_state_dict()`` save and restore the position (epoch, batches
    handed out); Lightning calls them for the training loader.
    Exposes ``sampler`` (Lightning calls its ``set_epoch``) and ``len()`` (a whole epoch,
    also after a restore: Lightning counts the batches done before the checkpoint).
    """

    def __init__(
        self, dataset, sampler: IndexBatchSampler, prefetch: int = 0, pin_memory: bool = False,
        workers: int = 0, worker_kwargs: dict[str, Any] | None = None, batches_per_gather: int = 1,
    ):
        self.dataset = dataset
        self.sampler = sampler
        self.prefetch = prefetch
        self.pin_memory = bool(pin_memory)
        self.batches_per_gather = max(int(batches_per_gather), 1)
        self.batch_sampler = None  # read by Lightning's DataLoader checks
        self._from = _FromBatch(sampler)
        self._workers = None
        if workers > 0:
            self._workers = DataLoader(dataset, batch_size=None, sampler=self._from, num_workers=workers,
                                       pin_memory=self.pin_memory, **(worker_kwargs or {}))
        self._position = (sampler.epoch, 0)  # (epoch, batches handed out in it)
        self._resume_at: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def state_dict(self) -> dict[str, Any]:
        epoch, done = self._position
        return {"epoch": epoch, "batches": done, "layout": self.sampler.layout()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("layout") != self.sampler.layout():
            warnings.warn(
                f"the checkpoint's batch order {state.get('layout')} differs from this run's "
                f"{self.sampler.layout()}: the interrupted epoch restarts from its first batch"
            )
            return
        self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def _start(self) -> int:
        """The batch to start this epoch at (0, or the restored position once)."""
        resume, self._resume_at = self._resume_at, None
        if resume is not None and resume[0] == self.sampler.epoch:
            return resume[1]
        return 0

    def _gather(self, indices: Iterator[torch.Tensor]) -> Iterator[Batch]:
        # several small batches per get_batch call, handed out as views: the same batches,
        # a fraction of the per-call cost
        while group := list(itertools.islice(indices, self.batches_per_gather)):
            whole = self.dataset.get_batch(torch.cat(group) if len(group) > 1 else group[0])
            if self.pin_memory:
                whole = {k: v.pin_memory() for k, v in whole.items()}
            parts = {k: v.split([len(i) for i in group]) for k, v in whole.items()}
            for j in range(len(group)):
                yield {k: parts[k][j] for k in whole}

    def _source(self, start: int) -> Iterator[Batch]:
        if self._workers is not None:
            self._from.start = start
            return iter(self._workers)
        indices = self.sampler.batches(start)  # drawn now: the epoch's order is fixed here
        gathered = self._gather(indices)
        return _in_thread(gathered, self.prefetch) if self.prefetch > 0 else gathered

    def __iter__(self) -> Iterator[Batch]:
        # a generator: nothing runs before the first next(), i.e. after Lightning's
        # set_epoch() and load_state_dict()
        start = self._start()
        epoch = self.sampler.epoch
        self._position = (epoch, start)
        source = self._source(start)
        try:
            for done, batch in enumerate(source, start + 1):
                self._position = (epoch, done)  # counted before the step: a checkpoint after it resumes past it
                yield batch
        finally:
            if hasattr(source, "close"):  # stops the gathering thread of an abandoned epoch
                source.close()
