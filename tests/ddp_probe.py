"""A test-only callback that records, per rank and stage, which images each rank was given.

Used by ``tests/test_distributed.py`` through ``--trainer.callbacks+=tests.ddp_probe.ShardRecorder``
(the CLI subprocesses have this checkout on ``PYTHONPATH``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class ShardRecorder(pl.Callback):
    """Writes ``<out_dir>/<stage>-rank<R>.json``: the rank, the number of ranks, the sampler's
    class, the image names its sampler handed out in order, and the targets of the batches that
    reached the model (to show the batches are those images). The sanity check is left out."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.records: dict[str, dict[str, Any]] = {}

    def _start(self, trainer: pl.Trainer, stage: str, loader: Any) -> None:
        if trainer.sanity_checking:
            return
        sampler = loader.sampler
        names = [loader.dataset.image_names[i] for i in sampler]
        self.records[stage] = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "sampler": type(sampler).__name__,
            "names": names,
            "targets": [],
        }

    def _batch(self, trainer: pl.Trainer, stage: str, batch: Any) -> None:
        if not trainer.sanity_checking:
            self.records[stage]["targets"] += batch[1].reshape(-1).int().tolist()

    def _end(self, trainer: pl.Trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{stage}-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.records[stage]))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, "train", trainer.train_dataloader)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch(trainer, "train", batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(trainer, "train")

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "val", trainer.val_dataloaders)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, "val", batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "test", trainer.test_dataloaders)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, "test", batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "test")
