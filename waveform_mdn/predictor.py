"""The next-sample predictor: a window of samples + phone context -> the head's parameters
(the network and its split first layer: ``docs/training.md``, generation: ``docs/generation.md``)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from data_prep.errors import InputError

from .data import CONTEXT_FIELDS
from .heads import Head, build_head

PHONE_FIELDS = ("phone", "next_phone", "prev_phone")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class ConfigError(InputError):
    """A model setting that cannot work."""


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
    """Window + phone context -> distribution over the next normalised sample.

    The first layer is split into a window part (``window_proj``) and a context part
    (:meth:`context_bias`, per-field tables, i.e. the columns a Linear over the one-hots
    would have), so generation computes the context part once per chunk of steps."""

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
        """``head_options``: more keyword arguments of the head (``likelihood``, ``norm_mean``, ...)."""
        super().__init__()
        fields, hidden = checked_settings(context_fields, phone_encoding, activation, hidden)
        self.window, self.n_phone_ids = int(window), int(n_phone_ids)
        self.context_fields = fields
        self.phone_fields = tuple(f for f in fields if f in PHONE_FIELDS)
        self.use_position = "position" in fields
        self.phone_encoding = phone_encoding
        h0, per_phone = hidden[0], (self.n_phone_ids if phone_encoding == "onehot" else int(embedding_dim))
        self.window_proj = nn.Linear(self.window, h0)
        self.phone_tables = nn.ModuleDict()
        self.embedding = self.context_proj = None
        if phone_encoding == "onehot":
            self.phone_tables.update({f: nn.Embedding(self.n_phone_ids, h0) for f in self.phone_fields})
        elif self.phone_fields:
            self.embedding = nn.Embedding(self.n_phone_ids, int(embedding_dim))
            self.context_proj = nn.Linear(len(self.phone_fields) * int(embedding_dim), h0, bias=False)
        self.position_weight = nn.Parameter(torch.empty(h0)) if self.use_position else None
        # initialised as one nn.Linear over the concatenated input would be
        bound = 1.0 / math.sqrt(self.window + len(self.phone_fields) * per_phone + int(self.use_position))
        with torch.no_grad():
            for p in [self.window_proj.weight, self.window_proj.bias, *self.phone_tables.parameters(),
                      *([] if self.context_proj is None else [self.context_proj.weight]),
                      *([] if self.position_weight is None else [self.position_weight])]:
                p.uniform_(-bound, bound)
        self.act0 = ACTIVATIONS[activation]()
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        self.trunk = nn.Sequential(*layers)
        self.head: Head = build_head(head, hidden[-1], components=components, min_scale=min_scale,
                                     **(head_options or {}))

    def context_bias(self, phone: Tensor | None = None, next_phone: Tensor | None = None,
                     prev_phone: Tensor | None = None, position: Tensor | None = None) -> Tensor:
        """The first layer's bias plus its context part, ``[*ids.shape, H0]`` (``[1, H0]``
        without context fields); only the fields in ``context_fields`` are needed."""
        given = {"phone": phone, "next_phone": next_phone, "prev_phone": prev_phone}
        missing = [f for f in self.phone_fields if given[f] is None]
        missing += ["position"] if self.use_position and position is None else []
        if missing:
            raise ValueError(f"context fields {missing} are needed by this model")
        bias = self.window_proj.bias
        if self.phone_encoding == "onehot":
            for f in self.phone_fields:
                bias = bias + self.phone_tables[f](given[f].long())
        elif self.phone_fields:
            bias = bias + self.context_proj(torch.cat([self.embedding(given[f].long()) for f in self.phone_fields], -1))
        if self.use_position:
            bias = bias + position.to(bias.dtype)[..., None] * self.position_weight
        return bias.unsqueeze(0) if bias.dim() == 1 else bias

    def features_from_bias(self, window: Tensor, bias: Tensor) -> Tensor:
        """Trunk output ``[B, H]`` from the window ``[B, W]`` and :meth:`context_bias` ``[B or 1, H0]``."""
        return self.trunk(self.act0(torch.addmm(bias, window, self.window_proj.weight.t())))

    def features(self, window: Tensor, phone: Tensor | None = None, next_phone: Tensor | None = None,
                 prev_phone: Tensor | None = None, position: Tensor | None = None) -> Tensor:
        return self.features_from_bias(window, self.context_bias(phone, next_phone, prev_phone, position))

    def batch_features(self, batch: dict[str, Tensor]) -> Tensor:
        return self.features(batch["window"], *(batch.get(f) for f in CONTEXT_FIELDS))

    def params(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.head.params(self.batch_features(batch))

    def distribution(self, batch: dict[str, Tensor]) -> Distribution:
        """Distribution over the normalised next sample of each example, batch shape ``[B]``."""
        return self.head.distribution(self.batch_features(batch))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.params(batch)
