"""A callback for the checkpoint tests: val/acc that gets worse at every epoch.

``--trainer.callbacks+=tests.metric_callbacks.WorseningValAcc`` makes the best epoch by val/acc
the first one, so a test can tell "the newest epoch" from "the best epoch" in a few tiny epochs.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class WorseningValAcc(Callback):
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs the ModelCheckpoint callbacks after all others, so they read this value.
        if not trainer.sanity_checking:
            worse = 0.9 - 0.1 * trainer.current_epoch
            trainer.callback_metrics["val/acc"] = torch.tensor(worse)
