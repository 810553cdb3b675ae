"""``predict``'s writer: the CSV of predictions (the CLI discards what ``trainer.predict``
returns), with its output settings, ``--prediction.output``, ``--prediction.overwrite`` and
``--prediction.maps`` (the CLI adds it with ``add_lightning_class_args``)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import distributed

from lit_celeba.base.errors import UsageError
from lit_celeba.base.files import atomic_write
from lit_celeba.callbacks import output_attributes
from lit_celeba.data.faces import NO_FACE, TOO_SMALL, face_cells, face_columns
from lit_celeba.data.photos import PhotoBatch, PhotoDataset
from lit_celeba.paths import output_file

FILENAME = "predictions.csv"
# The header's columns after the first ("image" for a CelebA split, "path" for photos).
_OUR_COLUMN = re.compile(r"^(prob|pred|true)_.+$|^error$")

# A predicted row: each attribute's probability and 0/1 decision, as predict_step returned them.
Row = list[tuple[float, int]]


def _rows(prediction: dict[str, torch.Tensor]) -> list[Row]:
    """One row per image of a ``predict_step`` output (its ``probabilities`` and
    ``predictions``, (B, K) each): the model's own decisions, at its own thresholds."""
    probabilities = prediction["probabilities"].float().cpu().tolist()
    decisions = prediction["predictions"].long().cpu().tolist()
    return [list(zip(p, d, strict=True)) for p, d in zip(probabilities, decisions, strict=True)]


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv``: image, probability of the target attribute, predicted label
    (the model's decision at its threshold), true label; with several target attributes a
    probability, prediction and truth column per attribute.

    On the user's photos (``--data.predict.path``) the columns are path, then a probability and a
    predicted label per attribute (``prob_<a>``, ``pred_<a>``), then error, one row per photo: a
    file that could not be read has an error and no probabilities. ``failures`` counts those
    (``None`` after a CelebA split). When faces are sought (``data.predict.align`` not
    ``never``), each face found is a row, with its index in the photo, box, five landmarks and
    detection score after the path (:func:`~lit_celeba.data.faces.face_columns`); a photo without
    a face is one row whose error says so and which ``faceless`` counts, and a face too small to
    judge a row with its box, no probability and the reason in error, which ``too_small`` counts.

    Args:
        output: the CSV file, or a folder for ``predictions.csv`` (a path that ends with a slash
            is a folder, also one that does not exist yet); ``None``, the default, writes
            ``predictions.csv`` into the run's log folder. It never overwrites a file that is not
            a predictions file of its own (:func:`check_output`).
        overwrite: replace earlier predictions at ``output``.
        maps: on photos, also write beside the CSV a picture per photo with its faces and their
            activation maps (:mod:`lit_celeba.callbacks.maps`).
    """

    def __init__(self, output: str | None = None, overwrite: bool = False,
                 maps: bool = False) -> None:  # fmt: skip
        # Photo batches carry their paths and read errors, which only the batch hook sees.
        super().__init__(write_interval="batch_and_epoch")
        self.output, self.overwrite, self.maps = output, overwrite, maps
        self.path: Path | None = None
        self.rows = 0
        self.files = 0  # photos: a photo with several faces has a row for each
        self.failures: int | None = None
        self.first_failure = ""  # "path: error" of the first unreadable file
        self.faceless = 0
        self.too_small = 0  # under min_face_size, the photos' data set's least face to judge
        self.min_face_size = 0
        # "Wrote N row(s) ... to PATH", for the CLI to print once the progress bar is closed.
        self.summary = ""
        self._photo_rows: list[tuple[str, Row | None, str, Any]] = []

    @property
    def predicted(self) -> int:
        """The photo rows with probabilities: neither unreadable, without a face nor with a face
        too small to judge."""
        return self.rows - (self.failures or 0) - self.faceless - self.too_small

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._photo_rows, self.summary = [], ""

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
        # One row per readable photo, in the batch's order (none when no photo was readable).
        rows = iter(_rows(prediction))
        faces = batch.faces or [None] * len(batch.paths)
        for path, error, face in zip(batch.paths, batch.errors, faces, strict=True):
            self._photo_rows.append((path, None if error else next(rows), error, face))

    def _output_path(self, trainer: pl.Trainer) -> Path:
        chosen = output_file(self.output, FILENAME)
        return chosen or Path(trainer.log_dir or ".") / FILENAME

    def _write_csv(self, trainer: pl.Trainer, header: list[str], rows: Iterable[list]) -> bool:
        """Writes the CSV on rank 0 and returns whether this rank wrote it; every rank must call
        it, as the log folder is a DDP broadcast. Written whole to a temporary and renamed into
        place: a run stopped midway leaves no partial file, nor half of an earlier one."""
        path = self._output_path(trainer)
        if not trainer.is_global_zero:
            return False
        self.path = path
        check_output(path, self.overwrite)
        with atomic_write(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        return True

    def _write_photo_rows(self, trainer: pl.Trainer, dataset: PhotoDataset) -> None:
        attrs = output_attributes(trainer.lightning_module, trainer.datamodule)
        rows = self._photo_rows
        if trainer.world_size > 1:
            order = {path: i for i, path in enumerate(dataset.paths)}
            rows = _from_all_ranks(rows, key=lambda row: order[row[0]])
        self.rows, self.files = len(rows), len({photo for photo, _, _, _ in rows})
        self.faceless = sum(error == NO_FACE for _, _, error, _ in rows)
        self.too_small = sum(error.startswith(TOO_SMALL) for _, _, error, _ in rows)
        self.min_face_size = dataset.min_face_size
        unpredicted = sum(row is None for _, row, _, _ in rows)
        self.failures = unpredicted - self.faceless - self.too_small
        self.first_failure = next(
            (f"{photo}: {error}" for photo, row, error, _ in rows
             if row is None and error != NO_FACE and not error.startswith(TOO_SMALL)), ""
        )  # fmt: skip
        faces = dataset.align != "never"
        header = ["path"] + (face_columns() if faces else [])
        header += [f"{kind}_{a}" for a in attrs for kind in ("prob", "pred")] + ["error"]
        cells = (
            [photo, *(face_cells(*(face or (None, None))) if faces else []),
             *([""] * (2 * len(attrs)) if row is None
               else [c for p, d in row for c in (f"{p:.6f}", d)]), error]
            for photo, row, error, face in rows
        )  # fmt: skip
        if self._write_csv(trainer, header, cells):
            without_face = (f", {self.faceless} without a face, {self.too_small} face(s) too "
                            "small to judge") if faces else ""  # fmt: skip
            self.summary = (
                f"Wrote {self.rows} row(s) ({self.predicted} predicted, {self.failures} "
                f"unreadable{without_face}) to {self.path}"
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
        rows = list(zip(indices, [row for p in predictions for row in _rows(p)], strict=True))
        if trainer.world_size > 1:
            rows = _from_all_ranks(rows, key=lambda row: row[0])
        attrs = output_attributes(trainer.lightning_module, trainer.datamodule)
        header = ["image"] + [f"{kind}_{a}" for a in attrs for kind in ("prob", "pred", "true")]
        self.rows, self.failures = len(rows), None
        if self._write_csv(trainer, header, (_split_cells(dataset, i, p) for i, p in rows)):
            self.summary = f"Wrote {self.rows} predictions to {self.path}"


def _split_cells(dataset: Any, index: int, row: Row) -> list:
    cells = [dataset.image_names[index]]
    truths = dataset.targets[index].long().tolist()
    for (probability, decision), truth in zip(row, truths, strict=True):
        cells += [f"{probability:.6f}", decision, truth]
    return cells


def _from_all_ranks(rows: list, key: Callable[[Any], int]) -> list:
    """Under DDP each rank predicted its own share (Lightning's sampler for ``predict`` repeats
    none): every rank's rows, back in the data's order, so that one file holds every image."""
    shards: list[Any] = [None] * distributed.get_world_size()
    distributed.all_gather_object(shards, rows)
    return sorted((row for shard in shards for row in shard), key=key)


def is_predictions_file(path: Path) -> bool:
    """Whether ``path`` starts with the header this writer writes (image or path, the face's
    columns after a path when faces are sought, then the prob_/pred_/true_ columns and error)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline(100_000)]), [])
    except (OSError, UnicodeDecodeError):
        return False
    columns = header[1:]
    if header[:1] == ["path"] and columns[: len(face_columns())] == face_columns():
        columns = columns[len(face_columns()) :]  # photos with their faces
    return header[:1] in (["image"], ["path"]) and bool(columns) and all(
        _OUR_COLUMN.match(column) for column in columns
    )


def check_output(path: Path | None, overwrite: bool) -> None:
    """Refuse a predictions file that would overwrite a file predict did not write (a photo, a
    list of photos, a checkpoint, anything), or earlier predictions unless ``overwrite``, or
    that cannot be created (a folder in its path is a file)."""
    if path is None:
        return
    key = "--prediction.output"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"{key} {path} exists and is not a file of predictions; predict never "
                         "replaces it. Give a new file name, or a folder, for the predictions.")
    if path.exists() and not is_predictions_file(path):
        raise UsageError(
            f"{key} {path} is an existing file that predict did not write (its first line is "
            "not a header of predictions); predict never overwrites it. Give a new file name, "
            "or a folder, for the predictions."
        )
    if path.exists() and not overwrite:
        raise UsageError(
            f"{key} {path} holds earlier predictions. Pass --prediction.overwrite true to "
            "replace them, or give another file name."
        )
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UsageError(
            f"Cannot write the predictions to {path}: {blocker} is a file, not a folder. "
            f"Give {key} a path in a folder you can write to."
        )
