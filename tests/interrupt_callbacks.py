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
