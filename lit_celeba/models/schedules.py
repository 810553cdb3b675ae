"""A learning-rate schedule stepped after every optimizer step, for ``--model.scheduler``.

Lightning steps a scheduler once per epoch unless told otherwise; :func:`optimizer_config`, what
the module's ``configure_optimizers`` returns with a schedule, adds what lit_celeba's schedules
need:

- a :class:`PerStepLR` (``WarmupCosineLR``) is stepped every optimizer step, and without its own
  ``total_steps`` it runs over the whole fit; so are torch's ``OneCycleLR`` and ``CyclicLR``,
  which are made to step after every batch;
- a ``ReduceLROnPlateau`` watches its ``monitor``, and one that watches a validation metric steps
  only at the epochs that validate (Lightning steps it at every epoch's end, and stops where
  validation was skipped).

    --model.scheduler lit_celeba.models.schedules.WarmupCosineLR --model.scheduler.warmup_steps 500
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CyclicLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
)

from lit_celeba.base.errors import CheckpointError, SettingError, UsageError

PLATEAU_NEEDS_MONITOR = (
    "is a ReduceLROnPlateau, which needs the metric it watches: use --model.scheduler "
    "pytorch_lightning.cli.ReduceLROnPlateau --model.scheduler.monitor val/loss (or "
    "--model.scheduler.monitor val/acc --model.scheduler.mode max)"
)
# torch's schedulers meant to step after every batch (their documentation says so).
TORCH_PER_STEP = (OneCycleLR, CyclicLR)

# ConstantLR's step at which it would stop scaling (and divide by a factor of 0): never reached.
_FOREVER = 2**62


class PerStepLR(LRScheduler):
    """A scheduler that wants ``interval: step``; ``total_steps`` ``None`` means the trainer's
    ``estimated_stepping_batches``, filled in by :func:`optimizer_config`."""

    total_steps: int | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self) is PerStepLR:  # jsonargparse offers every LRScheduler subclass
            raise UsageError(
                "model.scheduler PerStepLR is the base class of the per-step schedules; use "
                "lit_celeba.models.schedules.WarmupCosineLR"
            )
        super().__init__(*args, **kwargs)

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps = int(total_steps)


class WarmupCosineLR(SequentialLR, PerStepLR):
    """Linear warm-up over ``warmup_steps`` optimizer steps to each group's learning rate, then a
    cosine decay to ``final_ratio`` times it at the last step of the run (step ``total_steps``),
    and ``final_ratio`` times it after that.

    torch's own schedulers, one after the other (``SequentialLR``): ``LinearLR`` from
    ``1 / warmup_steps`` (the first step's rate) to 1, ``CosineAnnealingLR`` over the remaining
    ``total_steps - warmup_steps`` steps (at least 1), then ``ConstantLR`` at ``final_ratio``. They
    are built once the run's number of steps is known: at once when ``total_steps`` is given,
    otherwise by :func:`optimizer_config`. Everything, the step count included, is in
    ``state_dict``: a resumed run goes on at the same learning rate.

    The warm-up spares the first updates, taken with Adam's still-noisy second-moment estimate,
    the full learning rate; the cosine decay ends the run with small steps, which the recipe's
    constant rate never takes (its validation accuracy was still rising at epoch 30 on real
    faces).
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
            raise UsageError(f"model.scheduler.warmup_steps must be 0 or more, got {warmup_steps}")
        if not 0.0 <= final_ratio <= 1.0:
            raise UsageError(f"model.scheduler.final_ratio must be in [0, 1], got {final_ratio}")
        if total_steps is not None and total_steps < 1:
            raise UsageError(
                f"model.scheduler.total_steps must be 1 or more (or null: the whole fit), got "
                f"{total_steps}"
            )
        # SequentialLR.__init__ runs in set_total_steps, once the phases' lengths are known.
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.final_ratio = final_ratio
        self.total_steps = None
        self.first_epoch = last_epoch
        if total_steps is not None:
            self.set_total_steps(total_steps)

    def set_total_steps(self, total_steps: int) -> None:
        """Build the phases for a run of ``total_steps`` optimizer steps (before the first)."""
        self.total_steps = int(total_steps)
        optimizer, warmup, final = self.optimizer, self.warmup_steps, self.final_ratio
        rates = {group.get("initial_lr", group["lr"]) for group in optimizer.param_groups}
        if final > 0 and len(rates) > 1:
            # CosineAnnealingLR's floor (eta_min) is one rate for all groups.
            raise UsageError(
                "model.scheduler.final_ratio above 0 needs one learning rate for all parameter "
                f"groups, got {sorted(rates)}"
            )
        decay = max(1, self.total_steps - warmup)
        phases: list[LRScheduler] = []
        if warmup:
            phases.append(LinearLR(optimizer, 1.0 / warmup, 1.0, total_iters=warmup - 1))
        phases.append(CosineAnnealingLR(optimizer, T_max=decay, eta_min=final * max(rates)))
        phases.append(ConstantLR(optimizer, factor=final, total_iters=_FOREVER))
        milestones = [warmup, warmup + decay] if warmup else [decay]
        super().__init__(optimizer, phases, milestones, self.first_epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "_schedulers" not in state_dict:
            raise CheckpointError(
                "This checkpoint's WarmupCosineLR state was written by an earlier lit_celeba, "
                "which kept only a step count; resume it with that version, or start a new run."
            )
        if self.total_steps is None:  # phases to load the states into
            rates = [group["lr"] for group in self.optimizer.param_groups]
            self.set_total_steps(state_dict["total_steps"])
            for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
                group["lr"] = rate  # building them set the first step's
        super().load_state_dict(state_dict)


def optimizer_config(
    trainer: pl.Trainer, optimizer: Optimizer, scheduler: LRScheduler | ReduceLROnPlateau
) -> dict[str, Any]:
    """``configure_optimizers``' return value for ``optimizer`` and its ``scheduler``."""
    rule: dict[str, Any] = {"scheduler": scheduler}
    if isinstance(scheduler, PerStepLR) and scheduler.total_steps is None:
        scheduler.set_total_steps(trainer.estimated_stepping_batches)
    if isinstance(scheduler, (PerStepLR, *TORCH_PER_STEP)):
        rule.update(interval="step", frequency=1)
    elif isinstance(scheduler, ReduceLROnPlateau):
        monitor = getattr(scheduler, "monitor", None)  # Lightning's subclass takes one
        if not monitor:
            raise SettingError("scheduler", f"{PLATEAU_NEEDS_MONITOR}.")
        rule["monitor"] = monitor
        every = getattr(trainer, "check_val_every_n_epoch", None)
        if str(monitor).startswith("val/") and every and every > 1:
            # Epoch e (from 0) validates when (e + 1) % every == 0; Lightning steps the
            # scheduler when (e + 1) % frequency == 0.
            rule["frequency"] = every
    return {"optimizer": optimizer, "lr_scheduler": rule}
