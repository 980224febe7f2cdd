"""LightningDataModule over a prepared dataset, with an exactly resumable training loader
(the order, the DDP shares, the resume: docs/training.md). The trainer must run with
``use_distributed_sampler=False`` (``waveform-mdn fit`` sets it): the sampler shares the data out by rank."""

from __future__ import annotations

import functools
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CUDAAccelerator

from .batches import IndexBatchSampler, ResumableLoader
from .data import NextSampleDataset, PreparedDataset

GATHER_EXAMPLES = 1024  # examples per get_batch call: several batches, cut apart


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
            window: samples before the target (null: the dataset's).
            pad: "skip" or "zero" for the first window of each sequence (null: as prepared).
            context: phone context at the "target" sample, or at the "window_start" (2014).
            batch_size: training examples per step and per device.
            val_batch_size: validation examples per step (does not change the metrics).
            val_stride: validate on every n-th example only.
            num_workers: DataLoader worker processes (0: gather in the training process).
            pin_memory: pin host memory (null: when training on a CUDA GPU).
            persistent_workers, prefetch_factor: DataLoader's, with num_workers > 0.
            drop_last: drop the last incomplete training batch of each epoch.
            seed: seed of the shuffling (epoch e uses seed + e).
            in_memory: copy the int16 waveform into RAM (default: gather from the memory map).
        """
        super().__init__()
        # window and pad are logged (resolved) among the model's hparams; Lightning refuses two values of a key
        self.save_hyperparameters(ignore=["window", "pad"])
        self.window, self.pad = window, pad
        self.train_dataset: NextSampleDataset | None = None
        self.valid_dataset: NextSampleDataset | None = None

    @functools.cached_property
    def prepared(self) -> PreparedDataset:
        return PreparedDataset(self.hparams.path)

    def data_hparams(self) -> dict[str, Any]:
        """Data-derived hyperparameters copied into the model (self-contained checkpoints)."""
        p, norm = self.prepared, self.prepared.normalisation
        return {
            "data_fingerprint": p.fingerprint, "norm_mean": norm.mean, "norm_std": norm.std, "sample_rate": p.sample_rate,
            "window": int(self.window if self.window is not None else p.window), "n_phone_ids": p.n_phone_ids,
            "phones": list(p.phones), "phone_context": self.hparams.context,
            "pad": self.pad if self.pad is not None else p.meta.get("pad", "skip"),
            "phone_durations": dict(p.phone_durations) or None,
        }

    def _dataset(self, split: str) -> NextSampleDataset:
        hp = self.data_hparams()
        return NextSampleDataset(self.prepared, split=split, window=hp["window"], pad=hp["pad"],
                                 context=self.hparams.context, in_memory=self.hparams.in_memory)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate") and self.valid_dataset is None:
            self.valid_dataset = self._dataset("valid")

    def _loader(self, dataset: NextSampleDataset, train: bool) -> ResumableLoader:
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)
        hp = self.hparams
        bs = hp.batch_size if train else hp.val_batch_size
        sampler = IndexBatchSampler(len(dataset), bs, shuffle=train, seed=hp.seed if train else 0,
                                    drop_last=train and hp.drop_last, rank=rank, world_size=world,
                                    stride=1 if train else hp.val_stride, group=GATHER_EXAMPLES // bs)
        on_cuda = trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
        workers: dict[str, Any] = {}
        if hp.num_workers > 0:
            workers = {"num_workers": hp.num_workers, "persistent_workers": hp.persistent_workers,
                       "prefetch_factor": hp.prefetch_factor}
        return ResumableLoader(dataset, sampler, pin_memory=on_cuda if hp.pin_memory is None else hp.pin_memory,
                               **workers)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # a batch is a dict of tensors: skip Lightning's generic traversal
        if not (isinstance(batch, dict) and all(isinstance(v, torch.Tensor) for v in batch.values())):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if all(v.device == device for v in batch.values()):
            return batch
        return {k: v.to(device, non_blocking=device.type == "cuda") for k, v in batch.items()}

    def train_dataloader(self) -> ResumableLoader:
        self.setup("fit")
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> ResumableLoader:
        self.setup("validate")
        return self._loader(self.valid_dataset, train=False)
