"""Batches of example indices, and the DataLoader that resumes inside an epoch (docs/training.md)."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from .shuffle import FeistelPermutation

SHUFFLE_CHUNK = 1 << 16  # training positions permuted per call (512 KB of int64)


class IndexBatchSampler:
    """Yields one ``LongTensor`` of example indices per batch: training shuffled per epoch
    (``seed + epoch``) and strided by rank, validation in storage order without padding.
    Iteration starts at batch ``start`` (set by :class:`ResumableLoader`); with ``group > 1``
    it yields ``(indices, sizes)`` of ``group`` consecutive batches (one gather for several)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, stride: int = 1, group: int = 1):
        if batch_size < 1 or stride < 1:
            raise ValueError(f"batch_size and stride must be positive, not {batch_size} and {stride}")
        joined = dist.is_available() and dist.is_initialized()
        self.rank = int(rank if rank is not None else dist.get_rank() if joined else 0)
        self.num_replicas = int(world_size if world_size is not None else dist.get_world_size() if joined else 1)
        self.n, self.batch_size, self.shuffle, self.seed = int(n), int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.stride, self.group = bool(drop_last), int(stride), max(int(group), 1)
        self.n_eval = math.ceil(self.n / self.stride)
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _train_stop(self) -> int:
        per_rank = self.n // self.num_replicas
        return per_rank - per_rank % self.batch_size if self.drop_last else per_rank

    def _train_batches(self, start: int) -> Iterator[torch.Tensor]:
        # this rank's i-th example is the permutation's value at position rank + i * world_size
        permutation = FeistelPermutation(max(self.n, 1), self.seed + self.epoch)  # n = 0: no batches
        bs, stop = self.batch_size, self._train_stop()
        chunk = bs * max(SHUFFLE_CHUNK // bs, 1)
        for lo in range(start * bs, stop, chunk):
            i = torch.arange(lo, min(lo + chunk, stop), dtype=torch.int64)
            yield from permutation(i.mul_(self.num_replicas).add_(self.rank)).split(bs)

    def _eval_bounds(self, rank: int) -> tuple[int, int]:
        return rank * self.n_eval // self.num_replicas, (rank + 1) * self.n_eval // self.num_replicas

    def _eval_n_batches(self) -> int:
        largest = max(b - a for a, b in map(self._eval_bounds, range(self.num_replicas)))
        return max(math.ceil(largest / self.batch_size), 1)

    def _eval_batches(self, start: int) -> Iterator[torch.Tensor]:
        # this rank's contiguous share in _eval_n_batches() nearly equal parts (the same count on every rank)
        a, b = self._eval_bounds(self.rank)
        parts = self._eval_n_batches()
        size, longer = divmod(b - a, parts)
        for j in range(start, parts):
            lo = a + j * size + min(j, longer)
            yield torch.arange(lo, lo + size + (j < longer), dtype=torch.int64).mul_(self.stride)

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """This epoch's batches from batch number ``start`` on."""
        return self._train_batches(start) if self.shuffle else self._eval_batches(start)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, list[int]]]:
        batches = self.batches(self.start)
        if self.group == 1:
            return batches
        groups = iter(lambda: list(itertools.islice(batches, self.group)), [])
        return ((torch.cat(g), [len(b) for b in g]) for g in groups)

    def __len__(self) -> int:
        return math.ceil(self._train_stop() / self.batch_size) if self.shuffle else self._eval_n_batches()

    def layout(self) -> dict[str, int | str]:
        """What must be equal for a saved position to mean the same batches."""
        return {"order": "feistel", "n": self.n, "batch_size": self.batch_size, "seed": self.seed,
                "world_size": self.num_replicas, "shuffle": int(self.shuffle), "drop_last": int(self.drop_last),
                "stride": self.stride}


class _Gather:
    """``dataset[indices]``, or for a group ``(indices, sizes)`` its batches, cut apart (views)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return [self.dataset[item]]
        whole = self.dataset[item[0]]
        return [dict(zip(whole, parts)) for parts in zip(*(v.split(item[1]) for v in whole.values()))]


class ResumableLoader(DataLoader):
    """``DataLoader(dataset, sampler=IndexBatchSampler, batch_size=None)`` whose ``state_dict()``
    is (epoch, batches handed out): Lightning saves it in checkpoints and restores it, and
    the interrupted epoch continues at the next batch. ``len()`` is a whole epoch."""

    def __init__(self, dataset, sampler: IndexBatchSampler, **kwargs: Any):
        super().__init__(_Gather(dataset), batch_size=None, sampler=sampler, **kwargs)
        self._position = (sampler.epoch, 0)
        self._resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._position[0], "batches": self._position[1], "layout": self.sampler.layout()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("layout") != self.sampler.layout():
            warnings.warn(f"the checkpoint's batch order {state.get('layout')} differs from this run's "
                          f"{self.sampler.layout()}: the interrupted epoch restarts from its first batch")
            return
        self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # a generator: runs from the first next(), after Lightning's set_epoch and load_state_dict
        resume, self._resume_at = self._resume_at, None
        epoch = self.sampler.epoch
        self.sampler.start = resume[1] if resume is not None and resume[0] == epoch else 0
        self._position = (epoch, self.sampler.start)
        for done, batch in enumerate(itertools.chain.from_iterable(super().__iter__()), self.sampler.start + 1):
            self._position = (epoch, done)  # counted when handed out: a checkpoint after its step resumes past it
            yield batch
