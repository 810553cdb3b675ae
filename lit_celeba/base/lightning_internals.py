"""The private Lightning and TensorBoard attributes this package needs, one function each, so that
an upgrade that renames one breaks here and nowhere else."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel
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


def use_averaged_model(callback: WeightAveraging, model: AveragedModel) -> None:
    """Give a ``WeightAveraging`` callback the ``AveragedModel`` that its hooks update, swap in for
    validation and save: its ``setup`` builds torch's own class, and no argument or hook chooses
    another (``lit_celeba.methods.averaging.HostCountedAverage``)."""
    callback._average_model = model


def averaged_model(callback: WeightAveraging) -> AveragedModel | None:
    """A ``WeightAveraging`` callback's ``AveragedModel``: ``None`` until its ``setup`` for fit,
    so outside training; no public property says which."""
    return callback._average_model


def subcommands_action(parser: Any) -> Any:
    """jsonargparse's subcommands action of a parser, the one way to add a subcommand parser
    after LightningCLI made them (``add_subcommands`` may be called only once)."""
    return parser._subcommands_action


def summary_table(*args: Any) -> str:
    """The model summary's table as Lightning's ``ModelSummary`` prints it (its private
    ``_format_summary_table``), for a summary that leaves out what was not counted."""
    from pytorch_lightning.utilities.model_summary.model_summary import _format_summary_table

    return _format_summary_table(*args)
