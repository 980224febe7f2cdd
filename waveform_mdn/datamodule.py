"""LightningDataModule over a prepared dataset.

Batches are gathered whole by :meth:`waveform_mdn.data.NextSampleDataset.get_batch`
(vectorised indexing into the flat waveform): the samplers below yield one ``LongTensor``
of example indices per batch, so there is no per-example Python call and no collation.
By default (``num_workers=0``) a :class:`BatchLoader` gathers them in a background thread
of the training process, ``prefetch`` batches ahead, which hides the gather behind the
training step without the per-batch inter-process copy of worker processes; with
``num_workers > 0`` a ``DataLoader(batch_size=None)`` with worker processes is used.

Training (:class:`IndexBatchSampler` with ``shuffle=True``)
    Each epoch draws a permutation from ``seed + epoch`` (the same on every rank, whatever
    the global RNG), so a resumed run sees exactly the batches it would have seen. Under
    DDP every rank takes a strided share of the permutation, cut to the same length on all
    ranks (at most ``world_size - 1`` examples per epoch are left out); the global batch
    is ``batch_size x world_size``.
Validation (``shuffle=False``)
    Examples in storage order; under DDP each rank gets a contiguous share **without
    padding**, split into the same number of batches on every rank (batch sizes may
    differ by one example). The model sums NLL and squared errors and counts examples,
    and reduces sums and counts across ranks, so validation metrics equal a
    single-process run exactly (no duplicated samples). ``val_stride=n`` validates on
    every n-th example only (an even spread, the same subset under DDP).
Grouping (``group_batches=k``)
    The training loader hands the model ``k`` consecutive mini-batches at once (a list of
    batch dicts cut from one gather); the model takes one optimizer step per mini-batch,
    so the batches and updates are those of ``k=1`` while Lightning's per-batch cost is
    paid once per group. Single process only.

The samplers subclass ``DistributedSampler`` only so that Lightning does not replace them
with its own (which would pad with duplicates); they shard by themselves.
"""

from __future__ import annotations

import math
import queue
import threading
from pathlib import Path
from typing import Any, Iterator, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from .data import NextSampleDataset, PreparedDataset


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class IndexBatchSampler(DistributedSampler):
    """Yields ``LongTensor`` batches of example indices (see the module docstring)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        group: int = 1,
        stride: int = 1,
    ):
        # no super().__init__(): it needs a dataset and an initialised process group
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        r, w = _dist_info()
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.group = int(group)
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
        self.epoch = int(epoch)

    # -- training: shuffled, strided shares of equal length -------------------------
    def _train_indices(self) -> torch.Tensor:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        per_rank = self.n // self.num_replicas
        return perm[self.rank : per_rank * self.num_replicas : self.num_replicas].contiguous()

    # -- validation: contiguous shares, same number of batches on every rank --------
    def _eval_bounds(self, rank: int) -> tuple[int, int]:
        return rank * self.n_eval // self.num_replicas, (rank + 1) * self.n_eval // self.num_replicas

    def _eval_n_batches(self) -> int:
        largest = max(b - a for a, b in (self._eval_bounds(r) for r in range(self.num_replicas)))
        return max(math.ceil(largest / self.batch_size), 1)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            idx = self._train_indices()
            stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
            step = self.batch_size * self.group  # `group` consecutive mini-batches at once
            for i in range(0, stop, step):
                yield idx[i : min(i + step, stop)]
        else:
            a, b = self._eval_bounds(self.rank)
            positions = torch.arange(a, b, dtype=torch.int64) * self.stride
            yield from positions.tensor_split(self._eval_n_batches())

    def __len__(self) -> int:
        if self.shuffle:
            per_rank = self.n // self.num_replicas
            n_batches = per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)
            return math.ceil(n_batches / self.group)
        return self._eval_n_batches()


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class BatchLoader:
    """Iterable of ``dataset.get_batch(idx)`` for each ``idx`` of ``sampler``.

    With ``split`` set, each item is a list of mini-batches of ``split`` examples cut from
    one gather (``group_batches``). With ``prefetch > 0`` a background thread gathers up to ``prefetch`` batches ahead
    (torch's indexing kernels release the GIL, so gathering overlaps the training step);
    with ``prefetch == 0`` batches are gathered on demand. Exposes ``sampler`` (Lightning
    calls its ``set_epoch``) and ``len()``. Abandoning an iteration (``limit_*_batches``)
    stops the thread.
    """

    def __init__(
        self, dataset, sampler: IndexBatchSampler, prefetch: int = 2, pin_memory: bool = False,
        split: int | None = None,
    ):
        self.dataset = dataset
        self.sampler = sampler
        self.prefetch = int(prefetch)
        self.pin_memory = bool(pin_memory)
        self.split = split
        self.batch_sampler = None  # DataLoader-like attributes read by Lightning

    def __len__(self) -> int:
        return len(self.sampler)

    def _get(self, idx: torch.Tensor) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        batch = self.dataset.get_batch(idx)
        if self.pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        if self.split is None:
            return batch
        parts = {k: v.split(self.split) for k, v in batch.items()}
        return [{k: parts[k][i] for k in batch} for i in range(len(parts["target"]))]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]]:
        if self.prefetch <= 0:
            for idx in self.sampler:
                yield self._get(idx)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        indices = iter(self.sampler)  # drawn here: the epoch's order is fixed before the thread starts

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
                for idx in indices:
                    if not put(self._get(idx)):
                        return
                put(_End())
            except BaseException as e:  # handed to the consumer
                put(_Failed(e))

        thread = threading.Thread(target=work, name="waveform-mdn-batches", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join(timeout=5.0)


class WaveformDataModule(pl.LightningDataModule):
    """Train/valid next-sample examples of a prepared dataset (``waveform-mdn prepare``)."""

    def __init__(
        self,
        path: str,
        window: int | None = None,
        pad: Literal["skip", "zero"] | None = None,
        context: Literal["target", "window_start"] = "target",
        batch_size: int = 128,
        group_batches: int = 1,
        val_batch_size: int = 4096,
        val_stride: int = 1,
        num_workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
        in_memory: bool = True,
    ):
        """
        Args:
            path: prepared dataset directory (written by ``waveform-mdn prepare``).
            window: samples before the target (null: the dataset's, 240 by default).
            pad: "skip" or "zero" for the first window of each sequence (null: as prepared).
            context: phone context at the "target" sample, or at the "window_start" (2014).
            batch_size: training examples per step and per device.
            group_batches: training mini-batches handed to the model together; it still takes
                one optimizer step per mini-batch of batch_size (same batches, same updates),
                but Lightning's fixed per-batch cost is paid once per group. Worth 4 on a
                CPU at batch 128; single process only (not with DDP). trainer settings
                counted in batches (limit_train_batches, val_check_interval) then count
                groups.
            val_batch_size: validation examples per step (does not change the metrics).
            val_stride: validate on every n-th example only (1: all of them); a fixed,
                evenly spread subset, the same under DDP. Unlike trainer.limit_val_batches,
                which keeps the first batches in storage order (the start of the first
                sequences).
            num_workers: DataLoader worker processes; 0 (default): gather in the training
                process, in a background thread (see prefetch). Worker processes pay an
                inter-process copy per batch, which costs more than the gather at small batches.
            prefetch: with num_workers 0: batches gathered ahead by a background thread
                (0: gather on demand, in the training loop's thread).
            pin_memory: pin host memory (null: when training on a GPU).
            persistent_workers: keep workers alive between epochs (with num_workers > 0).
            prefetch_factor: batches prefetched per worker (null: PyTorch's default).
            drop_last: drop the last incomplete training batch of each epoch.
            seed: seed of the shuffling (epoch e uses seed + e).
            in_memory: copy the int16 waveform into RAM instead of reading the memory map.
        """
        super().__init__()
        # window and pad also appear (resolved) among the model's hparams; Lightning refuses
        # to log two different values of one key, so the datamodule does not log its own
        self.save_hyperparameters(ignore=["window", "pad"])
        self.path = Path(path)
        self.window = window
        self.pad = pad
        self.context = context
        self.batch_size = batch_size
        if group_batches < 1:
            raise ValueError(f"group_batches must be >= 1, not {group_batches}")
        self.group_batches = group_batches
        self.val_batch_size = val_batch_size
        self.val_stride = val_stride
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.drop_last = drop_last
        self.seed = seed
        self.in_memory = in_memory
        self._prepared: PreparedDataset | None = None
        self.train_dataset: NextSampleDataset | None = None
        self.valid_dataset: NextSampleDataset | None = None

    @property
    def prepared(self) -> PreparedDataset:
        if self._prepared is None:
            self._prepared = PreparedDataset(self.path)
        return self._prepared

    @property
    def effective_window(self) -> int:
        return int(self.window if self.window is not None else self.prepared.window)

    @property
    def effective_pad(self) -> str:
        return self.pad if self.pad is not None else self.prepared.meta.get("pad", "skip")

    def data_hparams(self) -> dict[str, Any]:
        """Data-derived hyperparameters copied into the model (self-contained checkpoints)."""
        p = self.prepared
        return {
            "data_fingerprint": p.fingerprint,
            "norm_mean": p.mean,
            "norm_std": p.std,
            "sample_rate": p.sample_rate,
            "window": self.effective_window,
            "n_phone_ids": p.n_phone_ids,
            "phones": list(p.phones),
            "phone_context": self.context,
            "pad": self.effective_pad,
        }

    def _dataset(self, split: str) -> NextSampleDataset:
        return NextSampleDataset(
            self.prepared, split=split, window=self.effective_window, pad=self.effective_pad,
            context=self.context, in_memory=self.in_memory,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate") and self.valid_dataset is None:
            self.valid_dataset = self._dataset("valid")

    def _rank_world(self) -> tuple[int | None, int | None]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return None, None

    def _loader(
        self, dataset: NextSampleDataset, sampler: IndexBatchSampler, split: int | None = None
    ) -> DataLoader | BatchLoader:
        pin = self.pin_memory
        if pin is None:
            trainer = getattr(self, "trainer", None)
            pin = bool(trainer is not None and trainer.accelerator is not None
                       and type(trainer.accelerator).__name__ == "CUDAAccelerator")
        if self.num_workers == 0 or split is not None:
            if self.num_workers > 0:
                raise ValueError("group_batches > 1 needs num_workers 0 (batches are gathered in a thread)")
            return BatchLoader(dataset, sampler, prefetch=self.prefetch, pin_memory=pin, split=split)
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
            if self.prefetch_factor is not None:
                kwargs["prefetch_factor"] = self.prefetch_factor
        return DataLoader(
            dataset, batch_size=None, sampler=sampler, num_workers=self.num_workers, pin_memory=pin, **kwargs
        )

    def train_sampler(self) -> IndexBatchSampler:
        rank, world = self._rank_world()
        return IndexBatchSampler(
            len(self.train_dataset), self.batch_size, shuffle=True, seed=self.seed,
            drop_last=self.drop_last, rank=rank, world_size=world, group=self.group_batches,
        )

    def val_sampler(self) -> IndexBatchSampler:
        rank, world = self._rank_world()
        return IndexBatchSampler(len(self.valid_dataset), self.val_batch_size, shuffle=False, rank=rank,
                                 world_size=world, stride=self.val_stride)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # a batch is a dict of tensors (or a list of them): skip Lightning's generic traversal
        parts = batch if isinstance(batch, list) else [batch]
        if not all(isinstance(p, dict) and all(isinstance(v, torch.Tensor) for v in p.values()) for p in parts):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if all(v.device == device for p in parts for v in p.values()):
            return batch
        non_blocking = device.type == "cuda"
        moved = [{k: v.to(device, non_blocking=non_blocking) for k, v in p.items()} for p in parts]
        return moved if isinstance(batch, list) else moved[0]

    def train_dataloader(self) -> DataLoader | BatchLoader:
        if self.train_dataset is None:
            self.setup("fit")
        split = self.batch_size if self.group_batches > 1 else None
        return self._loader(self.train_dataset, self.train_sampler(), split=split)

    def val_dataloader(self) -> DataLoader | BatchLoader:
        if self.valid_dataset is None:
            self.setup("validate")
        return self._loader(self.valid_dataset, self.val_sampler())
