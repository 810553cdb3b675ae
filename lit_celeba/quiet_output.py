"""What Lightning and torch print on every run that a user of lit_celeba cannot act on, left out
where it arises; everything else they say stays.

- Lightning's "💡 Tip: ... litlogger" line, at every Trainer's start: an advertisement.
- ``v_num=on_0`` in the progress bar: the last four characters of the run folder's name, which
  every command prints in full at its end (:class:`QuietProgressBar`).
- The FLOPs column and "0 Total Flops" of the model summary: Lightning counts FLOPs only for a
  module with an ``example_input_array``, so they read 0 (:class:`QuietModelSummary`).
- "The dirpath has changed from ... won't be reloaded", from a ``ModelCheckpoint`` restored
  outside ``fit``: validate, test and predict never use what it did not reload
  (:func:`quiet_evaluation`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary, ProgressBar, TQDMProgressBar

from lit_celeba.base.lightning_internals import summary_table

# The lines of Lightning's rank_zero_info left out: its advertisement, and its note that a
# summary was given (QuietModelSummary, below: the CLI's own choice, nothing for the user).
LEFT_OUT = ("💡 Tip: For seamless cloud logging", "Trainer already configured with model summary")


def _wanted(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LEFT_OUT)


# The logger that Lightning's rank_zero_info writes to (pytorch_lightning.utilities.rank_zero).
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_wanted)


def quiet_evaluation(subcommand: str) -> None:
    """Outside ``fit``, Lightning restores the config's checkpoint callbacks from the checkpoint
    and warns that their folder changed; nothing outside ``fit`` reads that state."""
    if subcommand != "fit":
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from .* won't be "
                                "reloaded")  # fmt: skip


class QuietProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num``."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class QuietModelSummary(ModelSummary):
    """Lightning's model summary, without the FLOPs it did not count."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]], total_parameters: int,
        trainable_parameters: int, model_size: float, total_training_modes: dict[str, int],
        total_flops: int, **summarize_kwargs: Any,
    ) -> None:  # fmt: skip
        columns = [c for c in summary_data if total_flops or c[0] != "FLOPs"]
        table = summary_table(total_parameters, trainable_parameters, model_size,
                              total_training_modes, total_flops, *columns)  # fmt: skip
        lines = [line for line in table.splitlines() if total_flops or "Total Flops" not in line]
        logging.getLogger(ModelSummary.__module__).info("\n" + "\n".join(lines))


def quiet_callbacks(trainer: Mapping[str, Any]) -> list[pl.Callback]:
    """The callbacks above, for a Trainer config (its ``callbacks``, ``enable_progress_bar`` and
    ``enable_model_summary``) that would get Lightning's own; none where the config has its
    own progress bar or summary, or turns them off."""
    given = trainer.get("callbacks") or []
    given = given if isinstance(given, list) else [given]
    added: list[pl.Callback] = []
    if trainer.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in given
    ):
        added.append(QuietProgressBar())
    if trainer.get("enable_model_summary") is not False and not any(
        isinstance(c, ModelSummary) for c in given
    ):
        added.append(QuietModelSummary())
    return added
