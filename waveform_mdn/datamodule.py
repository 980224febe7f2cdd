"""LightningDataModule over a prepared dataset, with an exactly resumable training loader.

Batches are gathered whole by :meth:`waveform_mdn.data.NextSampleDataset.get_batch`
(vectorised indexing into the flat waveform): :class:`IndexBatchSampler` yields one
``LongTensor`` of example indices per batch (no per-example Python call, no collation) and
:class:`BatchLoader` gathers them in the training thread, in one background thread, or in
DataLoader worker processes.

Training: each epoch draws a permutation from ``seed + epoch`` (the same on every rank,
whatever the global RNG); under DDP every rank takes a strided share of it, cut to the same
length on all ranks (at most ``world_size - 1`` examples per epoch are left out); the global
batch is ``batch_size x world_size``.

Exact resume, mid-epoch too: the training loader is *stateful*. ``state_dict()`` is the
epoch and the number of batches handed out in it; Lightning saves it in every checkpoint
and calls ``load_state_dict()`` on resume, and the interrupted epoch then continues at the
next batch: a resumed run sees exactly the batches of the uninterrupted one.

Validation: storage order; under DDP each rank gets a contiguous share **without padding**,
in the same number of batches on every rank, so the metrics equal a single process's.
``val_stride=n`` validates on every n-th example only.

Lightning never sees a ``torch.utils.data.DataLoader`` here, so it neither swaps the sampler
for a ``DistributedSampler`` (which pads with duplicates) nor wraps the loader.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator
from torch.utils.data import DataLoader

from .data import NextSampleDataset, PreparedDataset

Batch = dict[str, torch.Tensor]
GATHER_EXAMPLES = 1024  # the datamodule's loaders gather at least this many examples per get_batch call


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
    def _train_indices(self) -> torch.Tensor:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        per_rank = self.n // self.num_replicas
        return perm[self.rank : per_rank * self.num_replicas : self.num_replicas]

    # -- validation: contiguous shares, same number of batches on every rank --------
    def _eval_bounds(self, rank: int) -> tuple[int, int]:
        return rank * self.n_eval // self.num_replicas, (rank + 1) * self.n_eval // self.num_replicas

    def _eval_n_batches(self) -> int:
        largest = max(b - a for a, b in (self._eval_bounds(r) for r in range(self.num_replicas)))
        return max(math.ceil(largest / self.batch_size), 1)

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """The batches of the current epoch from batch number ``start`` on (the epoch's order
        is drawn by this call, not later)."""
        bs = self.batch_size
        if self.shuffle:
            idx = self._train_indices()
            stop = len(idx) - len(idx) % bs if self.drop_last else len(idx)
            return (idx[i : min(i + bs, stop)] for i in range(start * bs, stop, bs))
        a, b = self._eval_bounds(self.rank)
        positions = torch.arange(a, b, dtype=torch.int64) * self.stride
        return iter(positions.tensor_split(self._eval_n_batches())[start:])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches(0)

    def __len__(self) -> int:
        if self.shuffle:
            per_rank = self.n // self.num_replicas
            return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)
        return self._eval_n_batches()

    def layout(self) -> dict[str, int]:
        """What must be equal for a saved position to mean the same batches."""
        return {"n": self.n, "batch_size": self.batch_size, "seed": self.seed, "world_size": self.num_replicas,
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


class WaveformDataModule(pl.LightningDataModule):
    """Train/valid next-sample examples of a prepared dataset (``waveform-mdn prepare``)."""

    def __init__(
        self,
        path: str,
        window: int | None = None,
        pad: Literal["skip", "zero"] | None = None,
        context: Literal["target", "window_start"] = "target",
        batch_size: int = 128,
        val_batch_size: int = 4096,
        val_stride: int = 1,
        num_workers: int = 0,
        prefetch: int | None = None,
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
            val_batch_size: validation examples per step (does not change the metrics).
            val_stride: validate on every n-th example only (an even spread, the same under
                DDP; trainer.limit_val_batches instead keeps the first batches in storage order).
            num_workers: DataLoader worker processes (they pay an inter-process copy per
                batch); 0 (default): gather in the training process (see prefetch).
            prefetch: with num_workers 0: batches gathered ahead by a background thread; 0:
                on demand, in the training thread; null (default): 2 on a GPU, 0 on a CPU (there
                the GIL hand-off per batch costs more than the gather, about 50 us per 128
                examples, and a second busy thread competes for the cores).
            pin_memory: pin host memory (null: when training on a CUDA GPU).
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
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)

    def _loader(self, dataset: NextSampleDataset, sampler: IndexBatchSampler) -> BatchLoader:
        trainer = getattr(self, "trainer", None)
        on_cpu = trainer is None or isinstance(trainer.accelerator, CPUAccelerator)
        on_cuda = trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
        pin = self.pin_memory if self.pin_memory is not None else on_cuda
        prefetch = self.prefetch if self.prefetch is not None else (0 if on_cpu else 2)
        worker_kwargs: dict[str, Any] = {"persistent_workers": self.persistent_workers}
        if self.prefetch_factor is not None:
            worker_kwargs["prefetch_factor"] = self.prefetch_factor
        return BatchLoader(dataset, sampler, prefetch=prefetch, pin_memory=pin, workers=self.num_workers,
                           worker_kwargs=worker_kwargs, batches_per_gather=GATHER_EXAMPLES // sampler.batch_size)

    def train_sampler(self) -> IndexBatchSampler:
        rank, world = self._rank_world()
        return IndexBatchSampler(len(self.train_dataset), self.batch_size, shuffle=True, seed=self.seed,
                                 drop_last=self.drop_last, rank=rank, world_size=world)

    def val_sampler(self) -> IndexBatchSampler:
        rank, world = self._rank_world()
        return IndexBatchSampler(len(self.valid_dataset), self.val_batch_size, shuffle=False, rank=rank,
                                 world_size=world, stride=self.val_stride)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # a batch is a dict of tensors: skip Lightning's generic traversal
        if not (isinstance(batch, dict) and all(isinstance(v, torch.Tensor) for v in batch.values())):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if all(v.device == device for v in batch.values()):
            return batch
        return {k: v.to(device, non_blocking=device.type == "cuda") for k, v in batch.items()}

    def train_dataloader(self) -> BatchLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, self.train_sampler())

    def val_dataloader(self) -> BatchLoader:
        if self.valid_dataset is None:
            self.setup("validate")
        return self._loader(self.valid_dataset, self.val_sampler())
