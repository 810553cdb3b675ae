"""Callbacks: the prediction writer (the CLI discards what ``trainer.predict`` returns)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_info
from torch import distributed


class CSVPredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (image, probability of the target attribute, predicted label,
    true label) into ``output_dir``, or into the run's log folder when that is ``None``."""

    def __init__(self, output_dir: str | None = None, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.filename = filename
        self.path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        dataset = trainer.predict_dataloaders.dataset
        probabilities = torch.cat([p.float().cpu() for p in predictions]).reshape(-1)
        # One list of batches per dataloader; predict uses one dataloader.
        indices = [i for batch in batch_indices[0] for i in batch]
        if trainer.world_size > 1:
            indices, probabilities = _gather_on_all_ranks(indices, probabilities)
        attr = getattr(trainer.datamodule, "target_attr", "target")
        out_dir = Path(self.output_dir or trainer.log_dir or ".")  # log_dir: a DDP broadcast
        if not trainer.is_global_zero:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / self.filename
        with open(self.path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", f"prob_{attr}", f"pred_{attr}", f"true_{attr}"])
            for index, prob in zip(indices, probabilities.tolist(), strict=True):
                truth = int(dataset.targets[index, 0].item())
                writer.writerow(
                    [dataset.image_names[index], f"{prob:.6f}", int(prob >= 0.5), truth]
                )
        rank_zero_info(f"Wrote {len(indices)} predictions to {self.path}")


def _gather_on_all_ranks(
    indices: list[int], probabilities: torch.Tensor
) -> tuple[list[int], torch.Tensor]:
    """Under DDP each rank predicted its own images (Lightning's sampler for ``predict`` repeats
    none); gather them all, back in the subset's order, so that one file holds every image."""
    shards: list[Any] = [None] * distributed.get_world_size()
    distributed.all_gather_object(shards, (indices, probabilities.tolist()))
    pairs = sorted((i, p) for shard_indices, shard_probs in shards
                   for i, p in zip(shard_indices, shard_probs, strict=True))  # fmt: skip
    return [i for i, _ in pairs], torch.tensor([p for _, p in pairs])
