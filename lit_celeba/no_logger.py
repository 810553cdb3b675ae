"""``--trainer.logger false``: the run still gets a folder of its own, and what needs a logger is
left out.

Without a logger Lightning writes config.yaml, checkpoints/ and the CSVs into
``trainer.default_root_dir`` (the working folder by default) itself, so a second run in the same
folder would stop at LightningCLI's "config.yaml ... to NOT exist" check, or overwrite the first
run's last.ckpt. Instead each run without a logger gets the first free ``version_N`` under
``trainer.default_root_dir`` (``runs`` when unset), like a logger's run folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.cli_messages import check_writable

# Ranks that Lightning starts itself (DDP's subprocess launcher) inherit rank 0's environment:
# they take rank 0's folder instead of choosing one of their own, which rank 0 may already hold.
RUN_DIR_ENV = "LIT_CELEBA_RUN_DIR"
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


def free_run_dir(root: str | os.PathLike | None) -> Path:
    """The first ``version_N`` under ``root`` (``runs`` when ``None``) that does not exist."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    base = Path(root if root is not None else DEFAULT_ROOT).expanduser()
    n = 0
    while (base / f"version_{n}").exists():
        n += 1
    run_dir = base / f"version_{n}"
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


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
    trainer.default_root_dir = str(free_run_dir(trainer.get("default_root_dir")))
    check_writable(Path(trainer.default_root_dir).parent, "trainer.default_root_dir")
    trainer.callbacks, dropped = without_logger_only_callbacks(trainer.get("callbacks"))
    left_out = f"; left out, as they need one: {', '.join(dropped)}" if dropped else ""
    rank_zero_info(f"No logger: this run's files go to {trainer.default_root_dir}{left_out}.")
