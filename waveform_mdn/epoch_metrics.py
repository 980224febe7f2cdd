"""The epoch metrics' sums, reduced over DDP ranks, and the seeds of the metrics' draws.

:class:`EpochSums` is one torchmetrics :class:`~torchmetrics.Metric` holding float64 sums,
so that a sharded epoch's means equal those of one process; :func:`combine_seed` makes the
``mse_sample`` draws reproducible (and resumable) per stage, epoch, batch and rank.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class EpochSums(Metric):
    """Sums of per-example NLL, squared error of the mean and of one draw, the example
    count and bits (float64). ``compute()`` returns ``[nll_sum, se_sum, se_sample_sum,
    count, bits_sum]`` summed over DDP ranks: the means of a sharded epoch equal those of
    one process."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("se", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bits", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, se: Tensor, count: int | Tensor, nll: Tensor | None = None, bits: Tensor | None = None) -> None:
        """``se = [se_sum, se_sample_sum]`` of a batch of ``count`` examples, ``nll`` its NLL
        sum and ``bits`` its bits sum (None: not measured; a head that derives its epoch
        values from the MSE)."""
        self.se += se
        self.count += count
        if nll is not None:
            self.nll += nll
        if bits is not None:
            self.bits += bits

    def compute(self) -> Tensor:
        return torch.cat([self.nll.view(1), self.se, self.count.view(1), self.bits.view(1)])


def combine_seed(*parts: int) -> int:
    """A 63-bit seed from integers (FNV-1a style): the draws of the ``mse_sample`` metrics are
    seeded by the run's seed, the stage, the epoch, the batch and the rank."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h
