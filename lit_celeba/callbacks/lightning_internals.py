"""The private Lightning and TensorBoard attributes the dashboards need, one function each, so that
an upgrade that renames one breaks here and nowhere else."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.tensorboard import SummaryWriter


def should_log_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes its logged values at this training step (every
    ``log_every_n_steps``); no public property says so."""
    return trainer._logger_connector.should_update_logs


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives its own scalars (and LearningRateMonitor its learning rate), so
    that a picture sits at the same step as the val/acc it belongs to; ``global_step`` is one
    ahead of it when validation runs at the end of a training epoch."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def file_writer(writer: SummaryWriter) -> Any:
    """The ``SummaryWriter``'s event-file writer, which takes raw ``Summary`` protobufs."""
    return writer._get_file_writer()


def default_hp_metric(logger: Any) -> bool:
    """Whether a ``TensorBoardLogger`` writes Lightning's placeholder ``hp_metric``."""
    return bool(getattr(logger, "_default_hp_metric", False))


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's trainer, or ``None`` outside one (``module.trainer`` raises there)."""
    return module._trainer
