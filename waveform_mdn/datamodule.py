"""LightningDataModule over a prepared dataset, with an exactly resumable training loader.

Batches are gathered whole by :meth:`waveform_mdn.data.NextSampleDataset.get_batch`
(vectorised indexing into the flat waveform): :class:`IndexBatchSampler` yields one
``LongTensor`` of example indices per batch (no per-example Python call, no collation) and
:class:`BatchLoader` gathers them in the training thread, in one background thread, or in
DataLoader worker processes.

Training: each epoch's order is a permutation chosen by ``seed + epoch`` (the same on every
rank, whatever the global RNG), a :class:`~waveform_mdn.shuffle.FeistelPermutation` computed
a chunk of positions at a time, never held whole; under DDP every rank takes a strided share
of it, cut to the same length on all ranks (at most ``world_size - 1`` examples per epoch
are left out); the global batch is ``batch_size x world_size``.

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

from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

from .batches import GATHER_EXAMPLES, BatchLoader, IndexBatchSampler
from .data import NextSampleDataset, PreparedDataset


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
        in_memory: bool = False,
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
            in_memory: copy the int16 waveform into this process's RAM (2 bytes per sample,
                per process); false (default): gather from the memory map, whose pages the OS
                keeps once in its page cache for every process and DDP rank on the machine.
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
            "phone_durations": dict(p.phone_durations) or None,
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
