"""The LightningModule: a :class:`~waveform_mdn.predictor.Predictor` trained on Lightning's own loop.

:class:`WaveformPredictor` wraps the network (``.net``) with the training and validation
steps, the epoch metrics and the NaN policy. Everything else is Lightning's: automatic
optimisation (``trainer.accumulate_grad_batches``, ``trainer.gradient_clip_val``), the
optimizer and the learning-rate schedule (LightningCLI's ``optimizer:`` and
``lr_scheduler:`` sections, e.g. :class:`waveform_mdn.schedules.LinearAnnealLR`; in Python,
a ``configure_optimizers`` of your own), checkpoints and resuming.

Hyperparameters include the data-derived :data:`DATA_HPARAMS`: ``waveform-mdn fit`` links
them from the datamodule's ``data_hparams()``; in Python pass ``**datamodule.data_hparams()``.
So a checkpoint is self-contained: ``WaveformPredictor.load_from_checkpoint(path).net`` is
ready for generation, and ``norm_mean``/``norm_std`` undo the normalisation (and place the
16-bit bins of the bits per sample).

Metrics (logged identically for every head, epoch level, as sums and counts in a
torchmetrics :class:`EpochSums` summed over DDP ranks, so they equal single-process
values): ``{train,val}/bits_per_sample`` mean ``-log2`` probability of the target's 16-bit
code (one scale for every head, >= 0; :mod:`waveform_mdn.heads.discretise`),
``{train,val}/nll`` mean NLL per sample in nats of the density over the
*normalised* signal (it can be negative: a density can exceed 1), ``{train,val}/mse``
squared error of the point prediction (the mean), ``{train,val}/mse_sample`` squared error
of one value drawn by the head's own sampler (``head.sample_from_params``, from a generator
seeded by ``metric_seed``, epoch, batch and rank, so the draws are reproducible and resume
exactly). The per-step extra work: element-wise operations on detached tensors, one draw
per example, and whichever of the NLL and the bits is not the loss (``Head.training_sums``;
the Gaussian derives both from the epoch MSE, :mod:`waveform_mdn.heads.gaussian`).

NaN policy: a non-finite step never changes the weights or the optimizer state. With
``check_finite_every_n_steps=1`` the loss and the gradients are checked before each
optimizer step, and a non-finite one raises :class:`NonFiniteLossError` (naming the epoch,
the step and the checkpoint to resume from) before anything is updated. With ``N > 1`` (no
host sync per step, for GPUs) each step is applied and, where the flag computed on the
device says it was not finite, undone on the device (parameters and optimizer state are
restored from a copy); the error is raised at the next check (every N steps, and at the end
of each epoch), naming the range of steps.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torch.distributions import Distribution

from .epoch_metrics import EpochSums, combine_seed
from .heads import HEADS, Head
from .predictor import ACTIVATIONS, CONTEXT_FIELDS, PHONE_FIELDS, ConfigError, Predictor

__all__ = [
    "ACTIVATIONS", "CONTEXT_FIELDS", "DATA_HPARAMS", "PHONE_FIELDS", "ConfigError", "EpochSums",
    "NonFiniteLossError", "Predictor", "WaveformPredictor",
]

DATA_HPARAMS = (
    "data_fingerprint", "norm_mean", "norm_std", "sample_rate", "window", "n_phone_ids",
    "phones", "phone_context", "pad", "phone_durations",
)
#: hyperparameters that change the architecture: a checkpoint must match the data in these
ARCH_HPARAMS = ("window", "n_phone_ids")
#: checkpoint key of the (rank-summed) training sums of the current epoch (mid-epoch resume)
TRAIN_SUMS_KEY = "waveform_mdn_train_sums"


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss or the gradients become NaN or infinite."""


@torch.no_grad()
def step_or_undo(step_ok: Callable[[], Tensor], optimizer: torch.optim.Optimizer, step: Callable[[], Any]) -> None:
    """Run ``step()``; where the device flag ``step_ok()`` (read after it) is false, put the
    parameters and the optimizer state back as they were. No host sync, except at a step that
    creates the optimizer's state (the first one), whose new state is dropped if not ok, and
    for state kept on another device than the flag (Adam's step count on the CPU for CUDA
    parameters, unless the optimizer is fused or capturable)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fresh = [p for p in params if p not in optimizer.state]
    saved = [
        (t, t.clone())
        for p in params
        for t in (p, *(v for v in optimizer.state.get(p, {}).values() if isinstance(v, Tensor)))
    ]
    step()
    ok = step_ok()
    flags = {ok.device: ok}
    for t, old in saved:
        if t.device not in flags:
            flags[t.device] = ok.to(t.device)
        t.copy_(torch.where(flags[t.device], t, old))
    if any(p in optimizer.state for p in fresh) and not bool(ok):
        for p in fresh:
            optimizer.state.pop(p, None)


class WaveformPredictor(pl.LightningModule):
    """LightningModule: MLP (``head="gaussian"``), MDN (``head="mixture"``) or another
    registered head (:mod:`waveform_mdn.heads`)."""

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
        check_finite_every_n_steps: int = 1,
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
            head: output distribution, one of the registered heads ("gaussian" = MLP,
                "mixture" = MDN, "logistic_mixture", "mulaw_softmax"; see docs/heads.md).
            components: mixture components K (ignored by "gaussian" and "mulaw_softmax").
            likelihood: what the "mixture" head is trained on: "continuous" (the density,
                the 2014 MDN) or "discretised" (the mass of the target's 16-bit bin).
            hidden: sizes of the fully connected trunk layers.
            activation: tanh, relu, gelu or sigmoid.
            context_fields: phone context inputs: phone, next_phone, prev_phone, position.
            phone_encoding: "onehot" (as in 2014) or a learned "embedding".
            embedding_dim: size of the learned phone embedding.
            min_scale: floor added to the predicted scales (normalised units).
            min_scale_bins: floor of the logistic mixture's scales, in 16-bit bin widths.
            metric_seed: seed of the draws used by the mse_sample metrics.
            check_finite_every_n_steps: how often the training loss and gradients are
                checked for NaN/inf on the host (1 = every step; larger avoids a device
                sync per step on GPUs; a non-finite step is never applied either way).

        The others (:data:`DATA_HPARAMS`) come from the data: ``waveform-mdn fit`` links them
        from the datamodule's ``data_hparams()``.
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
        self.train_sums, self.val_sums = EpochSums(), EpochSums()
        self._generator: torch.Generator | None = None
        self._loss = self._step_ok = torch.ones(())  # the last loss sum, its step's finiteness flag
        self._nonfinite: Tensor | None = None  # any non-finite step since the last check (device flag)
        self._batch_idx = self._window_start = 0
        self._restored_sums: tuple[int, Tensor] | None = None

    @property
    def head(self) -> Head:
        return self.net.head

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.net.params(batch)

    def distribution(self, batch: dict[str, Tensor]) -> Distribution:
        return self.net.distribution(batch)

    def setup(self, stage: str) -> None:
        if self.trainer.strategy.root_device.type == "mps":  # no float64 there
            for sums in (self.train_sums, self.val_sums):
                sums.set_dtype(torch.float32)

    # -- metrics ----------------------------------------------------------------------
    def _seeded(self, *parts: int) -> torch.Generator:
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device)
        return self._generator.manual_seed(combine_seed(self.hparams.metric_seed, *parts, self.global_rank))

    @torch.no_grad()
    def _observe(self, sums: EpochSums, params: tuple[Tensor, ...], target: Tensor, nll_sum: Tensor | None,
                 bits_sum: Tensor | None, generator: torch.Generator) -> None:
        """Add one batch to ``sums``: a few operations on detached tensors, no host sync."""
        head = self.net.head
        draws = torch.stack([head.mean_from_params(params), head.sample_from_params(params, generator=generator)])
        sums.update((draws - target.float()).square().sum(-1), target.numel(), nll_sum, bits_sum)

    def _means(self, sums: EpochSums) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """(nll, mse, mse_sample, bits) over the epoch so far, summed over ranks; None before any batch."""
        if sums.update_count == 0:
            return None
        total = sums.compute()
        n = total[3].clamp(min=1)
        return total[0] / n, total[1] / n, total[2] / n, total[4] / n

    def _log_stage(self, stage: str, nll: Tensor, mse: Tensor, mse_sample: Tensor, bits: Tensor) -> None:
        for name, value in (("bits_per_sample", bits), ("nll", nll), ("mse", mse), ("mse_sample", mse_sample)):
            # reduced over ranks already: sync_dist's mean of equal values changes nothing
            self.log(f"{stage}/{name}", value.float(), on_step=False, on_epoch=True, sync_dist=True)

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        head, target = self.net.head, batch["target"]
        params = self.net.params(batch)
        loss = head.loss(params, target)
        loss_sum = loss.sum()
        with torch.no_grad():  # NLL and bits: the loss is one of them, or they come at the epoch end
            nll_sum, bits_sum = head.training_sums(tuple(p.detach() for p in params), target, loss.detach())
        self._observe(self.train_sums, params, target, nll_sum, bits_sum,
                      self._seeded(1, self.current_epoch, batch_idx))
        self._loss = loss_sum.detach()  # for the finiteness check before the update
        return loss_sum / target.numel()

    def on_train_start(self) -> None:
        # resumed from a checkpoint written inside an epoch (Lightning then continues that
        # epoch without calling on_train_epoch_start): its sums so far, once (rank 0)
        restored, self._restored_sums = self._restored_sums, None
        if restored is not None and restored[0] == self.current_epoch and self.global_rank == 0:
            nll, se_sum, se_sample, count, *bits = restored[1].to(self.device).unbind()
            self.train_sums.update(torch.stack([se_sum, se_sample]), count, nll, bits[0] if bits else None)

    def on_train_epoch_start(self) -> None:
        self.train_sums.reset()

    def on_train_epoch_end(self) -> None:
        self._check_nonfinite(self.global_step - 1, -1, force=True)
        means = self._means(self.train_sums)
        if means is None:
            return
        nll, mse, mse_sample, bits = means
        head = self.net.head
        head.observe_training_mse(float(mse))  # also when no validation runs (the Gaussian's noise)
        nll = head.epoch_nll(nll, mse)
        self._log_stage("train", nll, mse, mse_sample, head.epoch_bits(bits, nll))

    # -- the NaN policy -----------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning calls this between the backward pass and the update: check the loss and
        the gradients, then clip as ``trainer.gradient_clip_val``/``_algorithm`` say (by
        norm: with the gradient norm the check computed; by value: Lightning's own)."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        self._step_ok = torch.isfinite(norm + self._loss)  # not finite if either is not
        if max(int(self.hparams.check_finite_every_n_steps), 1) == 1 and not bool(self._step_ok):
            self._raise_nonfinite(self.current_epoch, self._batch_idx, self.global_step, self.global_step)
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        self._batch_idx = batch_idx
        if max(int(self.hparams.check_finite_every_n_steps), 1) == 1:  # checked before the update
            optimizer.step(closure=optimizer_closure)
            return
        step = self.global_step
        torch_optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps it
        step_or_undo(lambda: self._step_ok, torch_optimizer, lambda: optimizer.step(closure=optimizer_closure))
        if self._nonfinite is None:
            self._nonfinite, self._window_start = ~self._step_ok, step
        else:
            self._nonfinite |= ~self._step_ok
        self._check_nonfinite(step, batch_idx)

    def _check_nonfinite(self, step: int, batch_idx: int, force: bool = False) -> None:
        """With sparse checks: raise if a step since the last check was not finite."""
        every = max(int(self.hparams.check_finite_every_n_steps), 1)
        if self._nonfinite is None or not (force or (step + 1) % every == 0):
            return
        flag, self._nonfinite = self._nonfinite, None
        if bool(flag):
            self._raise_nonfinite(self.current_epoch, batch_idx, self._window_start, step)

    def _raise_nonfinite(self, epoch: int, batch_idx: int, first: int, last: int) -> None:
        steps = f"global step {last}" if first == last else f"one of global steps {first}..{last}"
        batch = f" (batch {batch_idx} of the epoch)" if batch_idx >= 0 else ""
        ckpt = next((cb.last_model_path or cb.best_model_path for cb in self.trainer.checkpoint_callbacks
                     if cb.last_model_path or cb.best_model_path), "")
        where = f"resume from {ckpt} (`--ckpt_path last`)" if ckpt else "no checkpoint has been written yet"
        raise NonFiniteLossError(
            f"non-finite training loss or gradient at epoch {epoch}, {steps}{batch}, not applied; {where}. "
            "Try a smaller learning rate, trainer.gradient_clip_val, or a larger model.min_scale."
        )

    # -- validation -------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        trainer = self.trainer
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            means = self._means(self.train_sums)
            if means is not None:  # the Gaussian's variance: the training MSE of the epoch so far
                self.net.head.observe_training_mse(float(means[1]))
        self.val_sums.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        head, target = self.net.head, batch["target"]
        params = self.net.params(batch)
        self._observe(self.val_sums, params, target, head.nll(params, target).sum(), head.bits(params, target).sum(),
                      self._seeded(2, batch_idx))

    def on_validation_epoch_end(self) -> None:
        means = self._means(self.val_sums)
        if means is None:
            return
        nll, mse, mse_sample, bits = means
        self.net.head.observe_validation_mse(float(mse))
        self._log_stage("val", nll, mse, mse_sample, bits)
        if self.trainer.state.fn == TrainerFn.FITTING:
            self.log("hp_metric", nll.float(), sync_dist=True)  # TensorBoard's HPARAMS tab

    # -- checkpoints and logged hyperparameters ----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the training sums of the epoch so far, summed over ranks (every rank runs this hook)
        if self.train_sums.update_count > 0:
            checkpoint[TRAIN_SUMS_KEY] = {"epoch": self.current_epoch, "sums": self.train_sums.compute().cpu()}

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
        sums = checkpoint.get(TRAIN_SUMS_KEY)
        self._restored_sums = (int(sums["epoch"]), sums["sums"]) if sums is not None else None

    def on_fit_start(self) -> None:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if loggers and self.global_rank == 0:
            params = {**self.hparams, **self._run_settings()}
            for logger in loggers:  # the HPARAMS tab, with hp_metric = val/nll (logged each validation)
                logger.log_hyperparams(params, metrics={"hp_metric": float("nan")})

    def _run_settings(self) -> dict[str, Any]:
        t = self.trainer
        settings: dict[str, Any] = {
            "n_parameters": sum(p.numel() for p in self.parameters()),
            "trainer.max_epochs": t.max_epochs, "trainer.world_size": t.world_size,
            "trainer.precision": str(t.precision), "trainer.gradient_clip_val": t.gradient_clip_val,
            "trainer.accumulate_grad_batches": t.accumulate_grad_batches,
        }
        for i, opt in enumerate(t.optimizers):
            settings[f"optimizer.{i}"] = type(opt).__name__
            settings.update({f"optimizer.{i}.{k}": v for k, v in opt.defaults.items()
                             if isinstance(v, (int, float, str, bool))})
        for i, config in enumerate(t.lr_scheduler_configs):
            settings[f"lr_scheduler.{i}"] = type(config.scheduler).__name__
        return settings
