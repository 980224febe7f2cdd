"""The 2014 learning-rate schedule as a torch scheduler that a config file can name
(``lr_scheduler: {class_path: waveform_mdn.schedules.LinearAnnealLR}``; docs/training.md)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from data_prep.errors import InputError


class LinearAnnealLR(LRScheduler):
    """The base rate for epochs ``< start_epoch``, then ``base * (end_epoch - e) / (end_epoch -
    start_epoch)``, 0 from ``end_epoch`` on. (``SequentialLR`` of ``ConstantLR`` and ``LinearLR``
    gives the same rates but takes scheduler objects, which a config file cannot build.)"""

    def __init__(self, optimizer: Optimizer, start_epoch: int = 50, end_epoch: int = 200, last_epoch: int = -1):
        if not 0 <= int(start_epoch) <= int(end_epoch):
            raise InputError(f"lr_scheduler: need 0 <= start_epoch <= end_epoch, not {start_epoch} and {end_epoch}")
        self.start_epoch, self.end_epoch = int(start_epoch), int(end_epoch)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate in ``epoch``."""
        if epoch < self.start_epoch:
            return 1.0
        return max(0.0, (self.end_epoch - epoch) / max(self.end_epoch - self.start_epoch, 1))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
