"""The next-sample predictor: one trunk, a pluggable output head, trained by Lightning.

:class:`Predictor` (a plain ``nn.Module``) maps a window of the ``W`` previous normalised
samples plus the phone context to a distribution over the next normalised sample:

    input = [window (W floats), one-hot(phone), one-hot(next_phone), ...]
    trunk = Linear -> act -> Linear -> act ...       (default 2 x 300 tanh)
    head  = heads.build_head(name)                   ("gaussian" = MLP, "mixture" = MDN)

The first layer is stored **split** into a window part and a context part. With
``phone_encoding="onehot"`` the context part is one table of ``n_phone_ids x H`` per
context field, i.e. exactly the columns of a Linear layer applied to the concatenated
one-hot vectors (initialised like that Linear layer, with the fan-in of the full input),
but looked up instead of multiplied. With ``phone_encoding="embedding"`` one learned
embedding table (``embedding_dim``) is shared by the fields and projected by a Linear
layer. Either way, the context contributes an additive term to the first layer's
pre-activation, which generation can compute once per phone segment.

Fast path for generation (one step per sample, one or many streams)::

    net = module.net.eval()                       # WaveformPredictor.net is a Predictor
    with torch.inference_mode():
        bias = net.context_bias(phone, next_phone, prev_phone, position)   # [B, H0]
        # per sample: ring buffer -> window [B, W] (normalised)
        x = net.step(window, bias, generator=g, temperature=1.0)          # [B] next sample
        # or, for more control:
        params = net.head.params(net.features_from_bias(window, bias))
        x = net.head.sample_from_params(params, generator=g)

``context_bias`` needs only the fields in ``net.context_fields`` (the others may be
``None``); ``position`` changes every sample, so when ``"position"`` is a context field,
recompute the bias or add ``position[:, None] * net.position_weight`` yourself (see
:meth:`Predictor.context_bias`). For the Gaussian head, the sampling noise is
``sqrt(head.var)`` (training MSE); ``head.use_variance("valid")`` switches to the
validation MSE.

:class:`WaveformPredictor` (a LightningModule) wraps a Predictor with training, metrics
and optimisation. Its hyperparameters include the data-derived ``data_fingerprint``,
``norm_mean``, ``norm_std``, ``sample_rate``, ``window``, ``n_phone_ids``, ``phones``,
``phone_context`` and ``pad``, copied from the datamodule at setup, so a checkpoint is
self-contained: ``WaveformPredictor.load_from_checkpoint(path).net`` is ready for
generation, and ``norm_mean``/``norm_std`` undo the normalisation.

Metrics (logged identically for every head, epoch level, sums and counts reduced across
DDP ranks, so they equal single-process values): ``{train,val}/nll`` mean NLL per sample
in nats of the density over the *normalised* signal (it can be negative: a density can
exceed 1), ``{train,val}/mse`` squared error of the point prediction (the mean),
``{train,val}/mse_sample`` squared error of one value drawn from the predictive
distribution. For the Gaussian head the NLL uses the maximum-likelihood variance, the
training MSE of the epoch (see :mod:`waveform_mdn.heads`).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.distributions import Distribution

from .heads import HEADS, Head, build_head

CONTEXT_FIELDS = ("phone", "next_phone", "prev_phone", "position")
PHONE_FIELDS = ("phone", "next_phone", "prev_phone")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
DATA_HPARAMS = (
    "data_fingerprint", "norm_mean", "norm_std", "sample_rate", "window", "n_phone_ids",
    "phones", "phone_context", "pad",
)
#: hyperparameters that change the architecture: a mismatch with the data is an error
_ARCH_HPARAMS = ("window", "n_phone_ids")
#: plain (non-Module, non-tensor) attributes set on every step by Lightning or by us
_PLAIN_ATTRS = frozenset({"_current_fx_name", "_nonfinite_first_step"})


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


class Predictor(nn.Module):
    """Window + phone context -> distribution over the next normalised sample."""

    def __init__(
        self,
        window: int = 240,
        n_phone_ids: int = 62,
        context_fields: Sequence[str] = ("phone", "next_phone"),
        phone_encoding: str = "onehot",
        embedding_dim: int = 16,
        hidden: Sequence[int] = (300, 300),
        activation: str = "tanh",
        head: str = "gaussian",
        components: int = 3,
        min_scale: float = 1e-3,
    ):
        super().__init__()
        fields = tuple(context_fields)
        bad = [f for f in fields if f not in CONTEXT_FIELDS]
        if bad or len(set(fields)) != len(fields):
            raise ValueError(f"context_fields must be distinct names from {CONTEXT_FIELDS}, not {list(fields)}")
        if phone_encoding not in ("onehot", "embedding"):
            raise ValueError(f"phone_encoding must be 'onehot' or 'embedding', not {phone_encoding!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must list at least one positive layer size, not {hidden}")
        self.window = int(window)
        self.n_phone_ids = int(n_phone_ids)
        self.context_fields = fields
        self.phone_fields = tuple(f for f in fields if f in PHONE_FIELDS)
        self.use_position = "position" in fields
        self.phone_encoding = phone_encoding
        h0 = hidden[0]

        # first layer, split: window part (with the bias) + context part
        self.window_proj = nn.Linear(self.window, h0)
        if phone_encoding == "onehot":
            fan_in = self.window + len(self.phone_fields) * self.n_phone_ids + int(self.use_position)
            self.phone_tables = nn.ModuleDict({f: nn.Embedding(self.n_phone_ids, h0) for f in self.phone_fields})
            self.embedding = None
            self.context_proj = None
        else:
            fan_in = self.window + len(self.phone_fields) * int(embedding_dim) + int(self.use_position)
            self.phone_tables = nn.ModuleDict()
            self.embedding = nn.Embedding(self.n_phone_ids, int(embedding_dim)) if self.phone_fields else None
            self.context_proj = (
                nn.Linear(len(self.phone_fields) * int(embedding_dim), h0, bias=False) if self.phone_fields else None
            )
        self.position_weight = nn.Parameter(torch.empty(h0)) if self.use_position else None
        # initialise as one nn.Linear over the concatenated input would be
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            for p in [self.window_proj.weight, self.window_proj.bias, *self.phone_tables.parameters()]:
                p.uniform_(-bound, bound)
            if self.context_proj is not None:
                self.context_proj.weight.uniform_(-bound, bound)
            if self.position_weight is not None:
                self.position_weight.uniform_(-bound, bound)
        self.act0 = ACTIVATIONS[activation]()
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        self.trunk = nn.Sequential(*layers)
        self.head: Head = build_head(head, hidden[-1], components=components, min_scale=min_scale)

    # -- generation-friendly pieces ---------------------------------------------------
    def context_bias(
        self,
        phone: Tensor | None = None,
        next_phone: Tensor | None = None,
        prev_phone: Tensor | None = None,
        position: Tensor | None = None,
    ) -> Tensor:
        """Context part of the first layer's pre-activation plus its bias, ``[B, H0]``."""
        given = {"phone": phone, "next_phone": next_phone, "prev_phone": prev_phone}
        missing = [f for f in self.phone_fields if given[f] is None]
        if self.use_position and position is None:
            missing.append("position")
        if missing:
            raise ValueError(f"context fields {missing} are needed by this model")
        bias = self.window_proj.bias
        if self.phone_fields:
            ids = [given[f].long() for f in self.phone_fields]
            if self.phone_encoding == "onehot":
                for f, i in zip(self.phone_fields, ids):
                    bias = bias + self.phone_tables[f](i)
            else:
                emb = torch.cat([self.embedding(i) for i in ids], dim=-1)
                bias = bias + self.context_proj(emb)
        if self.use_position:
            bias = bias + position.to(bias.dtype)[..., None] * self.position_weight
        if bias.dim() == 1:  # no context field at all
            bias = bias.unsqueeze(0)
        return bias

    def features_from_bias(self, window: Tensor, bias: Tensor) -> Tensor:
        """Trunk output ``[B, H]`` from the window ``[B, W]`` and :meth:`context_bias`."""
        h = nn.functional.linear(window, self.window_proj.weight) + bias
        return self.trunk(self.act0(h))

    def features(
        self,
        window: Tensor,
        phone: Tensor | None = None,
        next_phone: Tensor | None = None,
        prev_phone: Tensor | None = None,
        position: Tensor | None = None,
    ) -> Tensor:
        return self.features_from_bias(window, self.context_bias(phone, next_phone, prev_phone, position))

    def step(
        self, window: Tensor, bias: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """One generation step: draw the next normalised sample ``[B]``."""
        return self.head.sample_from_params(
            self.head.params(self.features_from_bias(window, bias)), generator=generator, temperature=temperature
        )

    # -- batch-level API --------------------------------------------------------------
    def batch_features(self, batch: dict[str, Tensor]) -> Tensor:
        return self.features(
            batch["window"], batch.get("phone"), batch.get("next_phone"), batch.get("prev_phone"),
            batch.get("position"),
        )

    def params(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.head.params(self.batch_features(batch))

    def distribution(self, batch: dict[str, Tensor]) -> Distribution:
        """Distribution over the normalised next sample of each example, batch shape ``[B]``."""
        return self.head.distribution(self.batch_features(batch))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.params(batch)


class _LinearAnneal:
    """LR factor: 1 for epochs < start, then linearly down to 0 at ``end``."""

    def __init__(self, start: int, end: int):
        self.start, self.end = int(start), int(end)

    def __call__(self, epoch: int) -> float:
        if epoch < self.start:
            return 1.0
        return max(0.0, (self.end - epoch) / max(self.end - self.start, 1))


def _metric_seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


class WaveformPredictor(pl.LightningModule):
    """LightningModule: MLP (``head="gaussian"``) or MDN (``head="mixture"``)."""

    def __init__(
        self,
        head: str = "gaussian",
        components: int = 3,
        hidden: list[int] = [300, 300],  # noqa: B006 (jsonargparse needs a literal default)
        activation: str = "tanh",
        context_fields: list[str] = ["phone", "next_phone"],  # noqa: B006
        phone_encoding: Literal["onehot", "embedding"] = "onehot",
        embedding_dim: int = 16,
        min_scale: float = 1e-3,
        optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
        lr: float = 0.001,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        betas: list[float] = [0.9, 0.999],  # noqa: B006
        anneal_start_epoch: int | None = 50,
        anneal_end_epoch: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
        metric_seed: int = 0,
        check_finite_every_n_steps: int = 1,
        # filled from the datamodule at setup (leave them null in configs)
        data_fingerprint: str | None = None,
        norm_mean: float | None = None,
        norm_std: float | None = None,
        sample_rate: int | None = None,
        window: int | None = None,
        n_phone_ids: int | None = None,
        phones: list[str] | None = None,
        phone_context: str | None = None,
        pad: str | None = None,
    ):
        """
        Args:
            head: output distribution, one of the registered heads ("gaussian" = MLP,
                "mixture" = MDN).
            components: mixture components K (ignored by "gaussian").
            hidden: sizes of the fully connected trunk layers.
            activation: tanh, relu, gelu or sigmoid.
            context_fields: phone context inputs: phone, next_phone, prev_phone, position.
            phone_encoding: "onehot" (as in 2014) or a learned "embedding".
            embedding_dim: size of the learned phone embedding.
            min_scale: floor added to the predicted scales (normalised units).
            optimizer: "sgd" (as in 2014), "adam" or "adamw".
            lr: learning rate (0.001 in 2014).
            momentum: SGD momentum.
            weight_decay: L2 penalty (decoupled for AdamW).
            betas: Adam betas.
            anneal_start_epoch: epochs at the full learning rate before it decays linearly
                to 0 (50 in 2014); null keeps it constant.
            anneal_end_epoch: epoch at which the learning rate reaches 0 (null:
                trainer.max_epochs).
            gradient_clip_val: clip gradients at this norm (or value); null: no clipping.
                (Optimisation is manual, so this replaces trainer.gradient_clip_val.)
            gradient_clip_algorithm: "norm" (total 2-norm) or "value".
            metric_seed: seed of the draws used by the mse_sample metrics.
            check_finite_every_n_steps: how often the training loss is checked for
                NaN/inf (1 = every step; larger avoids a device sync per step on GPUs).
            data_fingerprint: set from the data at setup.
            norm_mean: set from the data at setup.
            norm_std: set from the data at setup.
            sample_rate: set from the data at setup.
            window: set from the data at setup.
            n_phone_ids: set from the data at setup.
            phones: set from the data at setup.
            phone_context: set from the data at setup.
            pad: set from the data at setup.
        """
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; registered: {sorted(HEADS)}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net: Predictor | None = None
        if window is not None and n_phone_ids is not None:
            self._build()
        self._acc: dict[str, Tensor] = {}
        self._count: dict[str, int] = {}
        self._generators: dict[str, torch.Generator] = {}
        self._nonfinite: Tensor | None = None
        self._nonfinite_first_step = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook call (~40 times per step);
        # nn.Module.__setattr__ costs microseconds each, which shows at batch 128 on a CPU.
        if name in _PLAIN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- construction -----------------------------------------------------------------
    def _build(self) -> None:
        hp = self.hparams
        self.net = Predictor(
            window=hp.window, n_phone_ids=hp.n_phone_ids, context_fields=hp.context_fields,
            phone_encoding=hp.phone_encoding, embedding_dim=hp.embedding_dim, hidden=hp.hidden,
            activation=hp.activation, head=hp.head, components=hp.components, min_scale=hp.min_scale,
        )

    def set_data_hparams(self, info: dict[str, Any]) -> None:
        """Copy the data-derived hyperparameters (``datamodule.data_hparams()``); build the net."""
        for key in _ARCH_HPARAMS:
            mine = self.hparams.get(key)
            if self.net is not None and mine is not None and info.get(key) is not None and mine != info[key]:
                raise ValueError(
                    f"model {key}={mine} does not match the data ({key}={info[key]}); "
                    "a checkpoint can only be trained further on data with the same window and phone set"
                )
        old = self.hparams.get("data_fingerprint")
        if old is not None and info.get("data_fingerprint") not in (None, old):
            from pytorch_lightning.utilities import rank_zero_warn

            rank_zero_warn(
                f"the model was trained on data {old}, the datamodule holds {info['data_fingerprint']}; "
                "continuing with the new data's hyperparameters"
            )
        data = {k: info[k] for k in DATA_HPARAMS if k in info}
        self.hparams.update(data)
        # Lightning logs `hparams_initial` (TensorBoard, hparams.yaml, read by `compare`)
        initial = getattr(self, "_hparams_initial", None)
        if initial is not None:
            initial.update(data)
        if self.net is None:
            self._build()

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "data_hparams"):
            self.set_data_hparams(dm.data_hparams())
        if self.net is None:
            raise RuntimeError(
                "WaveformPredictor needs the data's window and n_phone_ids: train it with a "
                "WaveformDataModule, or pass window= and n_phone_ids="
            )

    @property
    def head(self) -> Head:
        return self.net.head

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.net.params(batch)

    def distribution(self, batch: dict[str, Tensor]) -> Distribution:
        return self.net.distribution(batch)

    # -- metrics ----------------------------------------------------------------------
    def _acc_dtype(self) -> torch.dtype:
        return torch.float32 if self.device.type == "mps" else torch.float64

    def _reset(self, stage: str, seed: int) -> None:
        # sums of NLL, squared error of the mean, squared error of a draw (on the device,
        # no sync per step) and the example count (a Python int)
        self._acc[stage] = torch.zeros(3, dtype=self._acc_dtype(), device=self.device)
        self._count[stage] = 0
        gen = self._generators.get(stage)
        if gen is None or gen.device != self.device:
            gen = torch.Generator(device=self.device)
            self._generators[stage] = gen
        gen.manual_seed(seed)

    def _reduced(self, stage: str) -> Tensor:
        """``[nll_sum, se_sum, se_sample_sum, count]`` summed over DDP ranks."""
        acc = self._acc.get(stage)
        if acc is None:
            acc = torch.zeros(3, dtype=self._acc_dtype(), device=self.device)
        count = torch.tensor([float(self._count.get(stage, 0))], dtype=acc.dtype, device=acc.device)
        acc = torch.cat([acc, count])
        if self._trainer is not None and self.trainer.world_size > 1:
            acc = self.trainer.strategy.reduce(acc, reduce_op="sum")
        return acc

    def compute(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        """Loss of a batch; accumulates the metric sums of ``stage`` ("train"/"val")."""
        head = self.net.head
        target = batch["target"]
        params = self.net.params(batch)
        if type(head).loss is Head.loss:  # trained by NLL: the loss is the metric
            nll = head.nll(params, target)
            loss = nll.mean()
        else:
            loss = head.loss(params, target).mean()
            with torch.no_grad():
                nll = head.nll(params, target)
        with torch.no_grad():
            target = target.float()
            point = head.mean_from_params(params)
            if stage not in self._acc:
                self._reset(stage, 0)
            sample = head.sample_from_params(params, generator=self._generators[stage])
            stats = torch.stack([nll.detach().sum(), (point - target).square().sum(), (sample - target).square().sum()])
            self._acc[stage] += stats.to(self._acc[stage].dtype)
            self._count[stage] += target.numel()
        return loss

    def _log_stage(self, stage: str, sums: Tensor) -> None:
        n = sums[3].clamp(min=1)
        nll, mse, mse_sample = sums[0] / n, sums[1] / n, sums[2] / n
        if stage == "train":
            nll = self.net.head.epoch_nll(nll, mse)
        for name, value in (("nll", nll), ("mse", mse), ("mse_sample", mse_sample)):
            # already reduced from sums and counts, so equal on every rank; sync_dist's mean of
            # equal values changes nothing (and keeps Lightning from warning)
            self.log(f"{stage}/{name}", value.float(), on_step=False, on_epoch=True, sync_dist=True)

    # -- training ---------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._reset("train", _metric_seed(self.hparams.metric_seed, 1, self.current_epoch, self.global_rank))

    def training_step(self, batch: dict[str, Tensor] | list[dict[str, Tensor]], batch_idx: int) -> Tensor:
        # Manual optimisation: one optimizer step per mini-batch. A Lightning batch is one
        # mini-batch (a dict) or, with ``data.group_batches > 1``, a list of them, which
        # spreads Lightning's fixed per-batch cost over several steps.
        batches = batch if isinstance(batch, (list, tuple)) else [batch]
        if len(batches) > 1 and self.trainer.world_size > 1:
            raise ValueError("data.group_batches > 1 is for single-process training; set it to 1 under DDP")
        opt = self.optimizers()
        hp = self.hparams
        loss = None
        for mini in batches:
            loss = self.compute(mini, "train")
            self._check_finite(loss, batch_idx)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if int(hp.check_finite_every_n_steps) > 1:
                self._drop_nonfinite_update(loss)
            if hp.gradient_clip_val:
                self.clip_gradients(
                    opt, gradient_clip_val=hp.gradient_clip_val, gradient_clip_algorithm=hp.gradient_clip_algorithm
                )
            opt.step()
        if len(batches) > 1:
            # Lightning's logging step counts batches; make it count optimizer steps, so that
            # curves (and log_every_n_steps) do not depend on data.group_batches
            loop = self.trainer.fit_loop.epoch_loop
            if hasattr(loop, "_batches_that_stepped"):
                loop._batches_that_stepped += len(batches) - 1
        return loss.detach()

    def _drop_nonfinite_update(self, loss: Tensor) -> None:
        """Between the (sparse) checks, a non-finite loss or gradient must not reach the
        weights: zero the gradients of such a step, on the device, without a host sync.
        (The step is then reported at the next check; checkpoints never hold NaN weights.)"""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        ok = torch.isfinite(loss.detach())
        for g in grads:
            ok = ok & torch.isfinite(g).all()
        keep = ok.to(grads[0].dtype)
        for g in grads:
            g.nan_to_num_(0.0, 0.0, 0.0).mul_(keep)
        self._nonfinite = (self._nonfinite | ~ok) if self._nonfinite is not None else ~ok

    def _check_finite(self, loss: Tensor, batch_idx: int) -> None:
        step = self.global_step  # optimizer steps taken before this one
        every = max(int(self.hparams.check_finite_every_n_steps), 1)
        bad = ~torch.isfinite(loss.detach())
        if every == 1:
            if bad:
                self._raise_nonfinite(loss, batch_idx, step, step)
            return
        if self._nonfinite is None or self._nonfinite.device != loss.device:
            self._nonfinite = torch.zeros((), dtype=torch.bool, device=loss.device)
            self._nonfinite_first_step = step
        self._nonfinite |= bad
        if (step + 1) % every == 0:
            if self._nonfinite:
                self._raise_nonfinite(loss, batch_idx, self._nonfinite_first_step, step)
            self._nonfinite_first_step = step + 1

    def _raise_nonfinite(self, loss: Tensor, batch_idx: int, first: int, last: int) -> None:
        steps = f"global step {last}" if first == last else f"one of global steps {first}..{last}"
        ckpt = ""
        for cb in getattr(self.trainer, "checkpoint_callbacks", []):
            path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
            if path:
                ckpt = path
                break
        where = f"resume from {ckpt} (`--ckpt_path last`)" if ckpt else "no checkpoint has been written yet"
        raise NonFiniteLossError(
            f"non-finite training loss at epoch {self.current_epoch}, {steps} (batch {batch_idx} of the epoch); "
            f"{where}. Try a smaller model.lr, model.gradient_clip_val, or a larger model.min_scale."
        )

    # -- learning rate: a function of the epoch (stateless, so resuming is exact) ------
    def lr_factor(self, epoch: int) -> float:
        hp = self.hparams
        if hp.anneal_start_epoch is None:
            return 1.0
        end = hp.anneal_end_epoch
        if end is None:
            end = self.trainer.max_epochs if self._trainer is not None else None
            if end is None or end < 0:
                raise ValueError(
                    "linear annealing needs an end: set trainer.max_epochs or model.anneal_end_epoch "
                    "(or model.anneal_start_epoch: null for a constant learning rate)"
                )
        return _LinearAnneal(hp.anneal_start_epoch, end)(epoch)

    def _set_lr(self, epoch: int) -> None:
        factor = self.lr_factor(epoch)
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = self.hparams.lr * factor

    def on_train_start(self) -> None:
        self._set_lr(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        # a non-finite step after the last sparse check of the epoch is still reported
        if self._nonfinite is not None and bool(self._nonfinite):
            self._raise_nonfinite(torch.tensor(float("nan")), -1, self._nonfinite_first_step, self.global_step - 1)
        sums = self._reduced("train")
        if float(sums[3]) > 0:  # also when no validation ran (the Gaussian's noise for generation)
            self.net.head.observe_training_mse(float(sums[1] / sums[3]))
        self._log_stage("train", sums)
        self._set_lr(self.current_epoch + 1)  # logged by LearningRateMonitor at the next epoch start

    # -- validation -------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        trainer = self.trainer
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            train = self._reduced("train")
            if float(train[3]) > 0:
                self.net.head.observe_training_mse(float(train[1] / train[3]))
        self._reset("val", _metric_seed(self.hparams.metric_seed, 2, self.global_rank))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.compute(batch, "val")

    def on_validation_epoch_end(self) -> None:
        sums = self._reduced("val")
        if float(sums[3]) > 0:
            self.net.head.observe_validation_mse(float(sums[1] / sums[3]))
        self._log_stage("val", sums)

    # -- optimisation -----------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        params = list(self.parameters())
        # fused kernels (one pass over all parameters) where the device supports them
        fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {}
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, **fused)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay, **fused)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay, **fused)
        else:
            raise ValueError(f"optimizer must be sgd, adam or adamw, not {hp.optimizer!r}")
        return opt

    # -- logging of hyperparameters ---------------------------------------------------
    def on_fit_start(self) -> None:
        if self.global_rank != 0:
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                write_hparams_summary(logger, dict(self.hparams), self._extra_hparams())

    def _extra_hparams(self) -> dict[str, Any]:
        extra = {"n_parameters": sum(p.numel() for p in self.parameters())}
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "hparams"):
            for k, v in dm.hparams.items():
                extra[f"data.{k}"] = v
        t = self.trainer
        extra.update({
            "trainer.max_epochs": t.max_epochs, "trainer.world_size": t.world_size,
            "trainer.precision": str(t.precision), "trainer.gradient_clip_val": t.gradient_clip_val,
            "trainer.accumulate_grad_batches": t.accumulate_grad_batches,
        })
        return extra


METRIC_TAGS = ("train/nll", "train/mse", "train/mse_sample", "val/nll", "val/mse", "val/mse_sample")


def write_hparams_summary(logger, hparams: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write TensorBoard's HPARAMS session for a run, listing the metric tags (no values)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    flat: dict[str, Any] = {}
    for k, v in {**hparams, **(extra or {})}.items():
        if isinstance(v, bool) or isinstance(v, (int, float, str)):
            flat[k] = v
        elif v is None:
            flat[k] = "None"
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            flat[k] = v.item()
        else:
            flat[k] = str(v)
    exp, ssi, sei = hparams_summary(flat, {tag: 0.0 for tag in METRIC_TAGS})
    writer = logger.experiment._get_file_writer()
    for summary in (exp, ssi, sei):
        writer.add_summary(summary)
