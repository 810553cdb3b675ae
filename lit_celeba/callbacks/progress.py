"""``EpochLines``: one line per finished epoch on stdout, which ``compare`` shows under each run.

A progress bar redraws one line with carriage returns; through the pipe that ``compare`` reads a
run's output from, that is one endless line. This prints a plain line at each epoch's end
instead, after validation, starting with :data:`PREFIX` so that ``compare`` finds it among the
rest of the run's output (which goes to the run's log).
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

PREFIX = "[epoch] "
SHOWN = ("train/loss", "val/loss", "val/acc")


class EpochLines(Callback):
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = ", ".join(f"{name} {float(metrics[name]):.4f}" for name in SHOWN if name in metrics)
        seconds = time.perf_counter() - self._start
        print(f"{PREFIX}epoch {trainer.current_epoch + 1} of {trainer.max_epochs}: {shown} "
              f"({seconds:.0f} s)", flush=True)  # fmt: skip
