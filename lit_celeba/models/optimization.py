"""The optimizer and learning-rate schedule of a fit: what the module's ``configure_optimizers``
returns.

Both are LightningCLI's callables (``OptimizerCallable``, ``LRSchedulerCallable``), given as
``--model.optimizer`` and ``--model.scheduler`` (class path and init_args). Lightning steps a
scheduler once per epoch unless told otherwise; :func:`optimizer_config` adds what lit_celeba's
schedules need:

- a :class:`~.schedules.PerStepLR` (``WarmupCosineLR``) is stepped every optimizer step, and
  without its own ``total_steps`` it runs over the whole fit; so are torch's ``OneCycleLR`` and
  ``CyclicLR``, which are made to step after every batch;
- a ``ReduceLROnPlateau`` watches its ``monitor``, and one that watches a validation metric steps
  only at the epochs that validate (Lightning steps it at every epoch's end, and stops where
  validation was skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from lit_celeba.base.errors import LitCelebaError, SettingError
from lit_celeba.models.schedules import PerStepLR

# torch's schedulers meant to step after every batch (their documentation says so).
TORCH_PER_STEP = (OneCycleLR, CyclicLR)

RECIPE_EPS = 1e-7  # the recipe's Keras Adam; torch's default is 1e-8

PLATEAU_NEEDS_MONITOR = (
    "is a ReduceLROnPlateau, which needs the metric it watches: use --model.scheduler "
    "pytorch_lightning.cli.ReduceLROnPlateau --model.scheduler.monitor val/loss (or "
    "--model.scheduler.monitor val/acc --model.scheduler.mode max)"
)


def recipe_adam(params: Iterable[Any]) -> Optimizer:
    """The recipe's optimizer: Keras' Adam defaults (lr 1e-3, betas 0.9 and 0.999, eps 1e-7)."""
    return torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=RECIPE_EPS)


def configure(
    module: pl.LightningModule,
    make_optimizer: Callable[[Iterable[Any]], Optimizer],
    make_scheduler: Callable[[Optimizer], Any] | None,
) -> Any:
    """``module.configure_optimizers()``: the optimizer over its parameters and the scheduler.
    They are built here, when the fit starts, not when the CLI parses them: a setting the class
    refuses then (a negative learning rate, ``fused`` with ``foreach``, a OneCycleLR without its
    length) is a :class:`SettingError` naming the key, not a traceback."""
    optimizer = _built("optimizer", lambda: make_optimizer(module.parameters()))
    if make_scheduler is None:
        return optimizer
    return _built(
        "scheduler", lambda: optimizer_config(module.trainer, optimizer, make_scheduler(optimizer))
    )


def _built(setting: str, build: Callable[[], Any]) -> Any:
    """``build()``, with what the class refuses as a :class:`SettingError` of ``setting``."""
    try:
        return build()
    except LitCelebaError:
        raise
    except (ValueError, TypeError, RuntimeError) as err:
        raise SettingError(setting, f"could not be built: {err or type(err).__name__}") from err


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
