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

from lit_celeba.photos import PhotoBatch, PhotoDataset


class CSVPredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (image, probability of the target attribute, predicted label,
    true label; with several target attributes a probability, prediction and truth column per
    attribute) into ``output_dir``, or into the run's log folder when that is ``None``; the data
    module's ``predict_output``, when set, names the file (or an existing folder for it) instead.

    On the user's photos (``--data.predict_path``) the columns are path, probability, predicted
    label and error: a file that could not be read has an error and no probability. ``failures``
    counts those (``None`` after a CelebA split).
    """

    def __init__(self, output_dir: str | None = None, filename: str = "predictions.csv") -> None:
        # Photo batches carry their paths and read errors, which only the batch hook sees.
        super().__init__(write_interval="batch_and_epoch")
        self.output_dir = output_dir
        self.filename = filename
        self.path: Path | None = None
        self.rows = 0
        self.failures: int | None = None
        self._photo_rows: list[tuple[str, float | None, str]] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._photo_rows = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(batch, PhotoBatch):
            return
        probabilities = iter(prediction.float().cpu().reshape(-1).tolist())
        for path, error in zip(batch.paths, batch.errors, strict=True):
            self._photo_rows.append((path, None if error else next(probabilities), error))

    def _output_path(self, trainer: pl.Trainer) -> Path:
        predict_output = getattr(trainer.datamodule, "predict_output", None)
        if predict_output:
            path = Path(predict_output).expanduser()
            return path / self.filename if path.is_dir() else path
        return Path(self.output_dir or trainer.log_dir or ".") / self.filename

    def _write_photo_rows(self, trainer: pl.Trainer, dataset: PhotoDataset) -> None:
        attr = getattr(trainer.datamodule, "target_attr", "target")
        rows = self._photo_rows
        if trainer.world_size > 1:  # each rank read its own photos: one file, in listing order
            shards: list[Any] = [None] * distributed.get_world_size()
            distributed.all_gather_object(shards, rows)
            order = {path: i for i, path in enumerate(dataset.paths)}
            rows = sorted((row for shard in shards for row in shard), key=lambda r: order[r[0]])
        self.rows = len(rows)
        self.failures = sum(prob is None for _, prob, _ in rows)
        path = self._output_path(trainer)  # reads log_dir: a DDP broadcast, on every rank
        if not trainer.is_global_zero:
            return
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", f"prob_{attr}", f"pred_{attr}", "error"])
            for photo, prob, error in rows:
                if prob is None:
                    writer.writerow([photo, "", "", error])
                else:
                    writer.writerow([photo, f"{prob:.6f}", int(prob >= 0.5), ""])
        rank_zero_info(
            f"Wrote {self.rows} row(s) ({self.rows - self.failures} predicted, {self.failures} "
            f"unreadable) to {self.path}"
        )

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        dataset = trainer.predict_dataloaders.dataset
        if isinstance(dataset, PhotoDataset):
            self._write_photo_rows(trainer, dataset)
            return
        # One list of batches per dataloader; predict uses one dataloader.
        indices = [i for batch in batch_indices[0] for i in batch]
        probabilities = torch.cat([p.float().cpu() for p in predictions]).reshape(len(indices), -1)
        if trainer.world_size > 1:
            indices, probabilities = _gather_on_all_ranks(indices, probabilities)
        attrs = getattr(trainer.datamodule, "target_attrs", None) or [
            getattr(trainer.datamodule, "target_attr", "target")
        ]
        path = self._output_path(trainer)  # reads log_dir: a DDP broadcast, on every rank
        if not trainer.is_global_zero:
            return
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        self.rows, self.failures = len(indices), None
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
