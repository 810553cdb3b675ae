"""``NoHostSync``: makes a training step that waits for the GPU an error (or a warning).

A training step of the recipe's network takes well under a millisecond on a current GPU; one
``.item()``, ``if tensor:`` or data-dependent shape (``nonzero``, boolean indexing) inside it makes
the host wait for every kernel queued so far, and the GPU then idles while Python catches up.
PyTorch's own ``torch.cuda.set_sync_debug_mode`` finds each such call; this callback turns it on
from the first training batch of each epoch (after the first ``skip_steps`` steps of the run,
which set things up once: optimizer state, the transforms' tables on the device) until the
epoch's end, so it covers the steps and everything between them (Lightning's loop, the other
callbacks, the next batch's fetch), not the validation.

``--trainer.callbacks+=lit_celeba.callbacks.host_sync.NoHostSync`` adds it to any run. On a CPU
there is nothing to wait for, and it does nothing.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class NoHostSync(Callback):
    def __init__(self, mode: Literal["warn", "error"] = "error", skip_steps: int = 2) -> None:
        if mode not in ("warn", "error"):
            raise ValueError(f"NoHostSync.mode must be 'warn' or 'error', got {mode!r}")
        self.mode = mode
        self.skip_steps = skip_steps
        self.checked_steps = 0
        self._active = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._active or pl_module.device.type != "cuda" or trainer.global_step < self.skip_steps:
            return
        torch.cuda.set_sync_debug_mode(self.mode)
        self._active = True

    def _stop(self) -> None:
        if self._active:
            torch.cuda.set_sync_debug_mode("default")
            self._active = False

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.checked_steps += self._active

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()  # validation inside an epoch (val_check_interval < 1) may read values

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._stop()  # the error itself, or anything else: leave the mode as it was
