"""A learning-rate schedule stepped after every optimizer step, for ``--lr_scheduler``.

LightningCLI steps the schedulers it builds once per epoch; :func:`configure_optimizers` (used by
``cli.py``) steps a :class:`PerStepLR` per batch instead and tells it the run's number of steps.

    --lr_scheduler lit_celeba.models.schedules.WarmupCosineLR --lr_scheduler.warmup_steps 500
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lit_celeba.errors import UsageError
from lit_celeba.models.methods import warmup_cosine_factor


class PerStepLR(LRScheduler):
    """A scheduler that wants ``interval: step``; ``total_steps`` ``None`` means the trainer's
    ``estimated_stepping_batches``, filled in by :func:`configure_optimizers`."""

    total_steps: int | None

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps = int(total_steps)


class WarmupCosineLR(PerStepLR):
    """Linear warm-up over ``warmup_steps`` optimizer steps to each group's learning rate, then a
    cosine decay to ``final_ratio`` times it at the last step of the run.

    The warm-up spares the first updates, taken with Adam's still-noisy second-moment estimate,
    the full learning rate; the cosine decay ends the run with small steps, which the recipe's
    constant rate never takes (its validation accuracy was still rising at epoch 30 on real
    faces). The step count and everything else is in ``state_dict``: a resumed run goes on at
    the same learning rate.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        final_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise UsageError(f"lr_scheduler.warmup_steps must be 0 or more, got {warmup_steps}")
        if not 0.0 <= final_ratio <= 1.0:
            raise UsageError(f"lr_scheduler.final_ratio must be in [0, 1], got {final_ratio}")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_ratio = final_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        total = self.total_steps if self.total_steps is not None else step + 1
        return warmup_cosine_factor(step, self.warmup_steps, total, self.final_ratio)

    def get_lr(self) -> list[float]:
        # last_epoch counts the steps taken: 0 when built, so the first batch gets factor(0).
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


def configure_optimizers(
    lightning_module: pl.LightningModule, optimizer: Optimizer, lr_scheduler: Any = None
) -> Any:
    """LightningCLI's ``configure_optimizers`` with one addition: a :class:`PerStepLR` is
    stepped every optimizer step and, without a ``total_steps``, runs over the whole fit."""
    if not isinstance(lr_scheduler, PerStepLR):
        return pl.cli.LightningCLI.configure_optimizers(lightning_module, optimizer, lr_scheduler)
    if lr_scheduler.total_steps is None:
        lr_scheduler.set_total_steps(lightning_module.trainer.estimated_stepping_batches)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step", "frequency": 1},
    }
