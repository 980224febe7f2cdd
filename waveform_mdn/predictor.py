"""The next-sample predictor network: a window of samples + phone context -> a distribution.

:class:`Predictor` (a plain ``nn.Module``) maps a window of the ``W`` previous normalised
samples plus the phone context to a distribution over the next normalised sample:

    input = [window (W floats), one-hot(phone), one-hot(next_phone), ...]
    trunk = Linear -> act -> Linear -> act ...       (default 2 x 300 tanh)
    head  = heads.build_head(name)                   ("gaussian" = MLP, "mixture" = MDN, ...)

The first layer is stored **split** into a window part and a context part. With
``phone_encoding="onehot"`` the context part is one table of ``n_phone_ids x H`` per
context field, i.e. exactly the columns of a Linear layer applied to the concatenated
one-hot vectors (initialised like that Linear layer, with the fan-in of the full input),
but looked up instead of multiplied. With ``phone_encoding="embedding"`` one learned
embedding table (``embedding_dim``) is shared by the fields and projected by a Linear
layer. Either way, the context contributes an additive term to the first layer's
pre-activation, which generation can compute once per phone segment::

    net = module.net.eval()                       # WaveformPredictor.net is a Predictor
    with torch.inference_mode():
        bias = net.context_bias(phone, next_phone, prev_phone, position)   # [B, H0]
        params = net.head.params(net.features_from_bias(window, bias))     # window: [B, W]
        x = net.head.sample_from_params(params, generator=g)               # [B] next sample

``context_bias`` needs only the fields in ``net.context_fields`` (the others may be
``None``); ``position`` changes every sample, so when ``"position"`` is a context field,
recompute the bias or add ``position[:, None] * net.position_weight`` yourself. For the
Gaussian head, the sampling noise is ``sqrt(head.var)`` (training MSE);
``head.use_variance("valid")`` switches to the validation MSE.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from data_prep.errors import InputError

from .heads import Head, build_head

CONTEXT_FIELDS = ("phone", "next_phone", "prev_phone", "position")
PHONE_FIELDS = ("phone", "next_phone", "prev_phone")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class ConfigError(InputError):
    """A model setting that cannot work (a user error: reported in one line, not a traceback)."""


def checked_settings(context_fields: Sequence[str], phone_encoding: str, activation: str,
                     hidden: Sequence[int]) -> tuple[tuple[str, ...], list[int]]:
    """The context fields and layer sizes, or a :class:`ConfigError` naming the bad setting."""
    fields = tuple(context_fields)
    bad = [f for f in fields if f not in CONTEXT_FIELDS]
    if bad or len(set(fields)) != len(fields):
        raise ConfigError(f"context_fields must be distinct names from {CONTEXT_FIELDS}, not {list(fields)}")
    if phone_encoding not in ("onehot", "embedding"):
        raise ConfigError(f"phone_encoding must be 'onehot' or 'embedding', not {phone_encoding!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    sizes = [int(h) for h in hidden]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden must list at least one positive layer size, not {sizes}")
    return fields, sizes


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
        head_options: dict | None = None,
    ):
        """``head_options``: more keyword arguments of the head (``likelihood``,
        ``min_scale_bins``, and ``norm_mean``/``norm_std``, which place the 16-bit bins)."""
        super().__init__()
        fields, hidden = checked_settings(context_fields, phone_encoding, activation, hidden)
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
        self.head: Head = build_head(head, hidden[-1], components=components, min_scale=min_scale,
                                     **(head_options or {}))

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

