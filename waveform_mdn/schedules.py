"""The 2014 learning-rate schedule as a torch scheduler, so that it can be named in YAML.

``lr = base lr`` for epochs ``< start_epoch``, then linearly down to 0 at ``end_epoch``:
``lr = base lr * (end_epoch - e) / (end_epoch - start_epoch)``, and 0 after it. In a
``waveform-mdn fit`` config (LightningCLI's own ``lr_scheduler`` section; Lightning steps
it once per epoch and saves its state in checkpoints, so resuming is exact)::

    optimizer:
      class_path: torch.optim.SGD
      init_args: {lr: 0.001}
    lr_scheduler:
      class_path: waveform_mdn.schedules.LinearAnnealLR
      init_args: {start_epoch: 50, end_epoch: 200}

(``torch.optim.lr_scheduler.SequentialLR`` of ``ConstantLR`` and ``LinearLR`` gives the same
rates, but it takes scheduler objects, which a config file cannot build.)
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class LinearAnnealLR(LRScheduler):
    """Constant learning rate until ``start_epoch``, then linear decay to 0 at ``end_epoch``."""

    def __init__(self, optimizer: Optimizer, start_epoch: int = 50, end_epoch: int = 200, last_epoch: int = -1):
        """
        Args:
            optimizer: the optimizer whose learning rates are scheduled.
            start_epoch: the last epoch at the full rate is ``start_epoch - 1``.
            end_epoch: the epoch at which the rate reaches 0 (e.g. ``trainer.max_epochs``).
            last_epoch: index of the last epoch (-1: a new schedule).
        """
        if not 0 <= int(start_epoch) <= int(end_epoch):
            raise ValueError(f"need 0 <= start_epoch <= end_epoch, not {start_epoch} and {end_epoch}")
        self.start_epoch, self.end_epoch = int(start_epoch), int(end_epoch)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate in ``epoch``."""
        if epoch < self.start_epoch:
            return 1.0
        return max(0.0, (self.end_epoch - epoch) / max(self.end_epoch - self.start_epoch, 1))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
