"""The LightningModule: a :class:`~waveform_mdn.predictor.Predictor` on Lightning's own loop,
its epoch metrics (torchmetrics) and its NaN policy (docs/training.md)."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from .contract import METRICS
from .heads import HEADS, GaussianHead
from .heads.discretise import LN2
from .predictor import ConfigError, Predictor

DATA_HPARAMS = ("data_fingerprint", "norm_mean", "norm_std", "sample_rate", "window", "n_phone_ids",
                "phones", "phone_context", "pad", "phone_durations")
#: hyperparameters that change the architecture: a checkpoint must match the data in these
ARCH_HPARAMS = ("window", "n_phone_ids")


class NonFiniteLossError(RuntimeError):
    """The training loss or the gradients became NaN or infinite (the step was not applied)."""


def combine_seed(*parts: int) -> int:
    """A 63-bit seed from integers (FNV-1a style): the seed of the ``mse_sample`` draws."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def gaussian_epoch_nll(mse: Tensor, min_scale: float, half_width: float) -> tuple[Tensor, Tensor]:
    """NLL and bits per sample of ``Normal(mean, sqrt(v))`` at its own MSE ``v`` (the MLP's
    training metrics): ``0.5 log(2 pi v) + 1/2`` and ``(NLL - log 2h) / ln 2`` (for a scale
    hundreds of bins wide the bin mass is the density times the bin width ``2h``)."""
    nll = 0.5 * torch.log(2 * math.pi * mse.clamp(min=min_scale**2)) + 0.5
    return nll, (nll - math.log(2 * half_width)) / LN2


def _means() -> nn.ModuleDict:
    """One float64 mean over the epoch's examples per metric, summed over DDP ranks."""
    return nn.ModuleDict({m: MeanMetric(nan_strategy="disable").set_dtype(torch.float64) for m in METRICS})


class WaveformPredictor(pl.LightningModule):
    """MLP (``head="gaussian"``), MDN (``head="mixture"``) or another registered head."""

    def __init__(
        self,
        head: str = "gaussian",
        components: int = 3,
        likelihood: Literal["continuous", "discretised"] = "continuous",
        hidden: list[int] = [300, 300],  # noqa: B006 (jsonargparse needs a literal default)
        activation: str = "tanh",
        context_fields: list[str] = ["phone", "next_phone"],  # noqa: B006
        phone_encoding: Literal["onehot", "embedding"] = "onehot",
        embedding_dim: int = 16,
        min_scale: float = 1e-3,
        min_scale_bins: float = 0.1,
        metric_seed: int = 0,
        data_fingerprint: str | None = None,
        norm_mean: float | None = None,
        norm_std: float | None = None,
        sample_rate: int | None = None,
        window: int | None = None,
        n_phone_ids: int | None = None,
        phones: list[str] | None = None,
        phone_context: str | None = None,
        pad: str | None = None,
        phone_durations: dict[str, float] | None = None,
    ):
        """
        Args:
            head: output distribution, a registered head (docs/heads.md).
            components: mixture components K (ignored by "gaussian" and "mulaw_softmax").
            likelihood: the "mixture" head's training loss: the "continuous" density or the
                "discretised" mass of the target's 16-bit bin.
            hidden: sizes of the fully connected trunk layers.
            activation: tanh, relu, gelu or sigmoid.
            context_fields: phone context inputs: phone, next_phone, prev_phone, position.
            phone_encoding: "onehot" (as in 2014) or a learned "embedding".
            embedding_dim: size of the learned phone embedding.
            min_scale: floor added to the predicted scales (normalised units).
            min_scale_bins: floor of the logistic mixture's scales, in 16-bit bin widths.
            metric_seed: seed of the draws of the mse_sample metrics.

        The others (:data:`DATA_HPARAMS`) come from the data: ``waveform-mdn fit`` links them
        from the datamodule's ``data_hparams()``; in Python pass ``**datamodule.data_hparams()``.
        """
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.head {head!r}: unknown head; registered: {sorted(HEADS)}")
        if likelihood != "continuous" and likelihood not in HEADS[head].likelihood_options:
            raise ConfigError(f"model.likelihood {likelihood!r}: not one the {head} head is trained on "
                              "(the mixture head: continuous or discretised; the others have a loss of their own)")
        if window is None or n_phone_ids is None:
            raise ConfigError("WaveformPredictor needs the data's window and n_phone_ids: pass "
                              "**datamodule.data_hparams() (waveform-mdn fit links them)")
        self.save_hyperparameters()
        self.net = Predictor(
            window=window, n_phone_ids=n_phone_ids, context_fields=context_fields, phone_encoding=phone_encoding,
            embedding_dim=embedding_dim, hidden=hidden, activation=activation, head=head, components=components,
            min_scale=min_scale, head_options={"likelihood": likelihood, "min_scale_bins": min_scale_bins,
                                               "norm_mean": norm_mean, "norm_std": norm_std},
        )
        self.train_metrics, self.val_metrics = _means(), _means()
        for metric in self.train_metrics.values():  # in checkpoints: a mid-epoch resume keeps the epoch's sums
            metric.persistent(True)
        self._generator: torch.Generator | None = None
        self._loss, self._batch_idx = torch.zeros(()), 0
        self._restored: int | None = None  # the epoch of training sums restored from a checkpoint

    @property
    def derives_nll(self) -> bool:
        """The Gaussian's NLL and bits come from the epoch's MSE (its variance), not per batch."""
        return isinstance(self.net.head, GaussianHead)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.net.params(batch)

    def setup(self, stage: str) -> None:
        if self.trainer.strategy.root_device.type == "mps":  # no float64 there
            for metric in (*self.train_metrics.values(), *self.val_metrics.values()):
                metric.set_dtype(torch.float32)

    @torch.no_grad()
    def _update(self, metrics: nn.ModuleDict, params: tuple[Tensor, ...], target: Tensor,
                sums: tuple[Tensor, Tensor] | None, seed: tuple[int, ...]) -> None:
        """Add one batch: squared errors of the mean and of one seeded draw, and ``sums`` =
        (NLL sum, bits sum) unless the epoch end derives them (the Gaussian)."""
        head = self.net.head
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(combine_seed(self.hparams.metric_seed, *seed, self.global_rank))
        target = target.float()
        metrics["mse"].update((head.mean_from_params(params) - target).square())
        metrics["mse_sample"].update((head.sample_from_params(params, self._generator) - target).square())
        if sums is not None:  # as n equal values: MeanMetric's nan_strategy "disable" drops weights
            n = target.numel()
            metrics["nll"].update(sums[0].double().div(n).expand(n))
            metrics["bits_per_sample"].update(sums[1].double().div(n).expand(n))

    def _log_means(self, stage: str, metrics: nn.ModuleDict, names=METRICS) -> None:
        for name in names:  # Lightning computes them (summed over ranks) at the epoch end, then resets them
            self.log(f"{stage}/{name}", metrics[name], on_step=False, on_epoch=True)

    def _counted(self, metrics: nn.ModuleDict) -> bool:
        """This epoch has sums: updated, or restored from a checkpoint (the same answer on every rank)."""
        return metrics["mse"].update_count > 0 or (metrics is self.train_metrics and self._restored is not None)

    def _set_variance(self) -> None:
        """The Gaussian's variance (generation noise): the training MSE of the epoch so far."""
        if self.derives_nll and self._counted(self.train_metrics):
            mse = float(self.train_metrics["mse"].compute())
            if math.isfinite(mse) and mse > 0:
                self.net.head.var.fill_(mse)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        head, target = self.net.head, batch["target"]
        params = self.net.params(batch)
        loss = head.loss(params, target)
        loss_sum = loss.sum()
        detached = tuple(p.detach() for p in params)
        sums = None if self.derives_nll else head.training_sums(detached, target, loss.detach())
        self._update(self.train_metrics, detached, target, sums, (1, self.current_epoch, batch_idx))
        self._loss, self._batch_idx = loss_sum.detach(), batch_idx  # for the check before the update
        return loss_sum / target.numel()

    def on_train_start(self) -> None:
        if self._restored != self.current_epoch:  # sums of an epoch that ended: not this one's
            self.on_train_epoch_start()

    def on_train_epoch_start(self) -> None:
        # not called when a resume continues an epoch: the checkpoint's sums stay
        self._restored = None
        for metric in self.train_metrics.values():
            metric.reset()

    def on_train_epoch_end(self) -> None:
        if not self._counted(self.train_metrics):
            return
        self._set_variance()  # also when no validation runs
        if self.derives_nll:
            nll, bits = gaussian_epoch_nll(self.train_metrics["mse"].compute(), self.hparams.min_scale,
                                           self.net.head.norm.half_width)
            self.log_dict({"train/nll": nll.float(), "train/bits_per_sample": bits.float()}, sync_dist=True)
        self._log_means("train", self.train_metrics, ("mse", "mse_sample") if self.derives_nll else METRICS)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping and the NaN policy on one gradient norm: a step whose loss or
        gradients are not finite stops the run before the update."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_val and gradient_clip_algorithm != "value":
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:  # the norm before clipping by value, which would make an infinite gradient finite
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if not bool(torch.isfinite(norm + self._loss)):
            self._raise_nonfinite()

    def _raise_nonfinite(self) -> None:
        ckpt = next((cb.last_model_path or cb.best_model_path for cb in self.trainer.checkpoint_callbacks
                     if cb.last_model_path or cb.best_model_path), "")
        where = f"resume from {ckpt} (`--ckpt_path last`)" if ckpt else "no checkpoint has been written yet"
        raise NonFiniteLossError(
            f"non-finite training loss or gradient at epoch {self.current_epoch}, global step {self.global_step} "
            f"(batch {self._batch_idx} of the epoch), not applied; {where}. "
            "Try a smaller learning rate, trainer.gradient_clip_val, or a larger model.min_scale."
        )

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self._set_variance()
        for metric in self.val_metrics.values():
            metric.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        head, target = self.net.head, batch["target"]
        params = self.net.params(batch)
        sums = head.nll(params, target).sum(), head.bits(params, target).sum()
        self._update(self.val_metrics, params, target, sums, (2, batch_idx))

    def on_validation_epoch_end(self) -> None:
        if not self._counted(self.val_metrics):
            return
        if self.derives_nll:
            self.net.head.valid_mse.fill_(float(self.val_metrics["mse"].compute()))
        if self.trainer.state.fn == TrainerFn.FITTING:  # TensorBoard's HPARAMS tab
            self.log("hp_metric", self.val_metrics["nll"].compute().float(), sync_dist=True)
        self._log_means("val", self.val_metrics)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # every rank runs this hook: the epoch's training sums so far, summed over the ranks
        for name, metric in self.train_metrics.items():
            with metric.sync_context():
                checkpoint["state_dict"].update(metric.state_dict(prefix=f"train_metrics.{name}."))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {})
        for key in ARCH_HPARAMS:
            if saved.get(key) is not None and saved[key] != self.hparams.get(key):
                raise ConfigError(
                    f"the checkpoint has {key}={saved[key]}, the data {key}={self.hparams.get(key)}; a checkpoint "
                    "can only be trained or validated on data with the same window and phone set"
                )
        old, new = saved.get("data_fingerprint"), self.hparams.get("data_fingerprint")
        if old is not None and new is not None and old != new:
            rank_zero_warn(f"the checkpoint was trained on data {old}, the datamodule holds {new}")
        sums = [k for k in checkpoint["state_dict"] if k.startswith("train_metrics.")]
        self._restored = int(checkpoint["epoch"]) if sums else None
        for key in sums if self.global_rank > 0 else ():  # the sums of all ranks are added once, on rank 0
            del checkpoint["state_dict"][key]

    def on_fit_start(self) -> None:
        for logger in self.loggers:  # the HPARAMS tab, with hp_metric = val/nll (logged at each validation)
            if isinstance(logger, TensorBoardLogger) and self.global_rank == 0:
                logger.log_hyperparams(self.hparams, metrics={"hp_metric": float("nan")})
