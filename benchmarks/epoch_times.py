"""A callback for the benchmarks: each training epoch's time without its validation, the first
step's time (where ``torch.compile`` compiles), and the final validation accuracy, written as JSON
to the file ``$EPOCH_TIMES_OUT`` when ``fit`` ends.

    PYTHONPATH=benchmarks python -m lit_celeba fit ... --trainer.callbacks+=epoch_times.EpochTimes
"""

from __future__ import annotations

import json
import os
import time

import pytorch_lightning as pl
import torch


def _synchronize(module: pl.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class EpochTimes(pl.Callback):
    def __init__(self) -> None:
        self.train_seconds: list[float] = []
        self.images: list[int] = []
        self.first_step_seconds: float | None = None
        self._epoch_start = 0.0
        self._step_start: float | None = None
        self._seen = 0
        self._open = False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _synchronize(pl_module)
        self._epoch_start, self._seen, self._open = time.perf_counter(), 0, True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_seconds is None and self._step_start is None:
            self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += len(batch[0])
        if self.first_step_seconds is None:
            _synchronize(pl_module)
            self.first_step_seconds = time.perf_counter() - self._step_start

    def _end_of_training_part(self, pl_module) -> None:
        if self._open:
            self._open = False
            _synchronize(pl_module)
            self.train_seconds.append(time.perf_counter() - self._epoch_start)
            self.images.append(self._seen)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._end_of_training_part(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end_of_training_part(pl_module)  # epochs without validation

    def on_fit_end(self, trainer, pl_module) -> None:
        out = os.environ.get("EPOCH_TIMES_OUT")
        if not out:
            return
        val_acc = trainer.callback_metrics.get("val/acc")
        with open(out, "w") as f:
            json.dump({
                "train_seconds": self.train_seconds, "images": self.images,
                "first_step_seconds": self.first_step_seconds,
                "val_acc": None if val_acc is None else float(val_acc),
            }, f)  # fmt: skip
