"""The optimizer and learning-rate schedule of a fit: what the module's ``configure_optimizers``
returns.

Both are LightningCLI's callables (``OptimizerCallable``, ``LRSchedulerCallable``), given as
``--model.optimizer`` and ``--model.scheduler`` (class path and init_args); the recipe's Adam at a
constant rate is the default. How a schedule is stepped is
:func:`lit_celeba.models.schedules.optimizer_config`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim import Optimizer

from lit_celeba.base.errors import LitCelebaError, SettingError
from lit_celeba.models.schedules import optimizer_config

RECIPE_EPS = 1e-7  # the recipe's Keras Adam; torch's default is 1e-8


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
