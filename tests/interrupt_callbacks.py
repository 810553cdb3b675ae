"""A callback for the interruption tests: it holds training mid-epoch until a signal arrives.

The tests add it with ``--trainer.callbacks+=tests.interrupt_callbacks.PauseMidEpoch`` to a
``fit`` that runs in a subprocess, wait for its ready file, and then send the signal, so the
signal always lands at the same point of the same epoch whatever the machine's load.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class PauseMidEpoch(Callback):
    def __init__(self, ready_file: str, epoch: int = 1, batch: int = 1, timeout: float = 120.0):
        self.ready_file = Path(ready_file)
        self.epoch, self.batch, self.timeout = epoch, batch, timeout

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        batch_idx = args[-1] if args else kwargs["batch_idx"]
        if trainer.current_epoch != self.epoch or batch_idx != self.batch:
            return
        self.ready_file.touch()
        deadline = time.monotonic() + self.timeout
        # SIGKILL ends the process here; SIGINT raises KeyboardInterrupt out of sleep; SIGTERM
        # only sets Lightning's flag, which its loop checks after this hook returns.
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)


class PauseInEvaluation(Callback):
    """Holds a validation loop (``calibrate``'s) or a predict loop after its ``batch``-th batch
    until the process is killed, having touched ``ready_file``: for the tests that kill
    calibrate or predict midway and run it again."""

    def __init__(self, ready_file: str, batch: int = 0, timeout: float = 120.0):
        self.ready_file = Path(ready_file)
        self.batch, self.timeout = batch, timeout

    def _pause(self, batch_idx: int) -> None:
        if batch_idx != self.batch:
            return
        self.ready_file.touch()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:  # fmt: skip
        self._pause(batch_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                             dataloader_idx=0) -> None:  # fmt: skip
        self._pause(batch_idx)
