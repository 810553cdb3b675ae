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


class CSVPredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (image, probability of the target attribute, predicted label,
    true label) into ``output_dir``, or into the run's log folder when that is ``None``.
    With several target attributes: a probability, prediction and truth column per attribute."""

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
        # One list of batches per dataloader; predict uses one dataloader.
        indices = [i for batch in batch_indices[0] for i in batch]
        probabilities = torch.cat([p.float().cpu() for p in predictions]).reshape(len(indices), -1)
        attrs = getattr(trainer.datamodule, "target_attrs", None) or [
            getattr(trainer.datamodule, "target_attr", "target")
        ]
        out_dir = Path(self.output_dir or trainer.log_dir or ".")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / self.filename
        with open(self.path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["image"] + [f"{kind}_{a}" for a in attrs for kind in ("prob", "pred", "true")]
            )
            for index, probs in zip(indices, probabilities.tolist(), strict=True):
                truths = dataset.targets[index].long().tolist()
                cells = [dataset.image_names[index]]
                for prob, truth in zip(probs, truths, strict=True):
                    cells += [f"{prob:.6f}", int(prob >= 0.5), truth]
                writer.writerow(cells)
        rank_zero_info(f"Wrote {len(indices)} predictions to {self.path}")
