"""``--trainer.logger false``: the run still gets a folder of its own, and what needs a logger is
left out.

Without a logger Lightning writes config.yaml, checkpoints/ and the CSVs into
``trainer.default_root_dir`` (the working folder by default) itself, so a second run in the same
folder would stop at LightningCLI's "config.yaml ... to NOT exist" check, or overwrite the first
run's last.ckpt. Instead each run without a logger gets the next ``version_N`` under
``trainer.default_root_dir`` (``runs`` when unset), created and held like a logger's run folders
(:func:`~lit_celeba.checkpoints.run_folders.claim_folder_without_logger`).
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.checkpoints.run_folders import claim_folder_without_logger

DEFAULT_ROOT = "runs"
# Callbacks that only write to a logger: LearningRateMonitor refuses to start without one.
LOGGER_ONLY_CALLBACKS = (
    "pytorch_lightning.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lit_celeba.callbacks.lr_monitor.LearningRateMonitor",
    "lit_celeba.callbacks.dashboards.TensorBoardDashboards",
)


def has_no_logger(logger: Any) -> bool:
    """``logger: false`` (or an empty list); ``None`` is Lightning's default logger."""
    return logger is False or (isinstance(logger, list) and not logger)


def without_logger_only_callbacks(callbacks: Any) -> tuple[list[Any], list[str]]:
    """The configured callbacks without those that need a logger, and the names of those."""
    callbacks = [] if callbacks is None else callbacks
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    kept, dropped = [], []
    for callback in callbacks:
        class_path = str(getattr(callback, "class_path", ""))
        if class_path in LOGGER_ONLY_CALLBACKS:
            dropped.append(class_path.rsplit(".", 1)[-1])
        else:
            kept.append(callback)
    return kept, dropped


def without_logger(trainer: Any) -> None:
    """``trainer`` (a command's parsed ``trainer`` section) made to run without a logger: a run
    folder of its own, and no callbacks that need a logger; says which were left out."""
    folder = claim_folder_without_logger(trainer.get("default_root_dir"), DEFAULT_ROOT)
    trainer.default_root_dir = str(folder)
    trainer.callbacks, dropped = without_logger_only_callbacks(trainer.get("callbacks"))
    left_out = f"; left out, as they need one: {', '.join(dropped)}" if dropped else ""
    rank_zero_info(f"No logger: this run's files go to {trainer.default_root_dir}{left_out}.")
