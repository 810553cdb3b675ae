"""Labelled photos for ``calibrate --photo_labels CSV``: a calibration fitted on photos like the
user's own, cut into faces exactly as ``predict`` cuts them, instead of on CelebA's validation
faces.

Why: a temperature and thresholds fitted on CelebA's aligned validation faces do not hold on
ordinary photos (``docs/in_the_wild.md``: on LFW portraits women were called men on 12 % of
their photos and men women on 3 %, with an ECE of 0.046 against 0.015 on CelebA's test faces).
The network's ranking of the faces is good there (AUROC 0.984); where the line between the
classes falls, and how sure the network should say it is, are what moved.

The CSV: a header, then one row per photo. The first column names the photo (a path, relative to
the CSV's own folder unless absolute; the column may be called ``file``, ``path`` or ``image``);
then one column per target attribute of the checkpoint (and per subgroup, for a checkpoint that
evaluates subgroups), named as the attribute (any case), with 1 or 0 (CelebA's -1 is read as 0).
Other columns are ignored. Each photo is read and searched for faces by
:class:`~lit_celeba.data.photos.PhotoDataset` with the data module's own settings
(``data.predict.align``, ``data.predict.min_face_size``) and its label goes to its **largest**
face: the person a portrait is of. A photo that cannot be read, or holds no face large enough to
judge, is left out and counted.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lit_celeba.base.errors import PhotoError
from lit_celeba.data.faces import face_size, too_small
from lit_celeba.data.photos import PhotoDataset
from lit_celeba.data.transforms import columns_read

PHOTO_COLUMNS = ("file", "path", "image")
_VALUES = {"1": 1, "0": 0, "-1": 0}


def read_photo_labels(
    csv_path: str | Path, attributes: Sequence[str]
) -> list[tuple[Path, list[int]]]:
    """The photos and 0/1 labels (one per attribute, in ``attributes``' order) of a labels CSV
    (see the module docstring); a clear error naming the file, row and column otherwise."""
    path = Path(csv_path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise PhotoError(f"--photo_labels {path} {what}; give a CSV of photos and labels")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PhotoError(f"--photo_labels {path}: cannot be read as a CSV ({err})") from err
    if not rows:
        raise PhotoError(f"--photo_labels {path} is empty; it needs a header and a row per photo")
    header = [name.strip() for name in rows[0]]
    lower = [name.lower() for name in header]
    if not header or lower[0] not in PHOTO_COLUMNS:
        raise PhotoError(
            f"--photo_labels {path}: the first column must name the photo "
            f"({' or '.join(PHOTO_COLUMNS)}); the header is {','.join(header)}"
        )
    missing = [a for a in attributes if a.lower() not in lower]
    if missing:
        raise PhotoError(f"--photo_labels {path} has no column for {', '.join(missing)} (the "
                         f"checkpoint's attributes and subgroups); its columns: "
                         f"{', '.join(header)}")  # fmt: skip
    columns = [lower.index(a.lower()) for a in attributes]
    labelled = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise PhotoError(f"--photo_labels {path}, line {number}: {len(row)} cells, the "
                             f"header has {len(header)}")  # fmt: skip
        labels = []
        for k in columns:
            value = row[k].strip()
            if value not in _VALUES:
                raise PhotoError(f"--photo_labels {path}, line {number}, column {header[k]}: "
                                 f"{value!r} is not a label (1, or 0 / -1)")  # fmt: skip
            labels.append(_VALUES[value])
        photo = Path(row[0].strip()).expanduser()
        labelled.append((photo if photo.is_absolute() else path.parent / photo, labels))
    if not labelled:
        raise PhotoError(f"--photo_labels {path} lists no photo")
    return labelled


class LabelledFaces(Dataset):
    """Each labelled photo's largest face (uint8 (218, C, 3), as ``predict`` cuts it) and its
    labels: ``(image, targets)`` with the K target labels, ``(image, targets, groups)`` when the
    CSV's labels go on past them (the subgroup values that a model with subgroups evaluates);
    ``None`` for a photo that is unreadable or has no face large enough to judge."""

    def __init__(self, photos: PhotoDataset, labels: Sequence[Sequence[int]], targets: int) -> None:
        self.photos = photos
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...] | None:
        item = self.photos[index]
        if item.image is None:
            return None
        if item.faces:
            judged = [f for f in item.faces if not too_small(f, self.photos.min_face_size)]
            image = item.image[max(range(len(judged)), key=lambda i: face_size(judged[i]))]
        else:  # framed whole (data.predict.align never, or one of CelebA's own aligned images)
            image = item.image
        return image, *self._parts(self.labels[index])

    def _parts(self, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A photo's (or a batch's) labels as ``(targets,)`` or ``(targets, groups)``."""
        if self.labels.shape[1] == self.targets:
            return (labels,)
        return labels[..., : self.targets], labels[..., self.targets :]

    def collate(self, items: Sequence[tuple[torch.Tensor, ...] | None]) -> tuple:
        """The images and labels of the photos with a face; empty tensors of the right shapes
        when none of the batch's has one."""
        kept = [item for item in items if item is not None]
        if kept:
            return tuple(torch.stack(part) for part in zip(*kept, strict=True))
        images = torch.empty((0, *self.photos.image_shape), dtype=torch.uint8)
        return images, *self._parts(self.labels[:0])


class LabelledPhotoData(pl.LightningDataModule):
    """The labelled photos of ``csv_path`` as a validation set, with the eval transforms, photo
    settings and target attributes of ``data`` (the run's :class:`CelebADataModule`)."""

    def __init__(self, data: pl.LightningDataModule, csv_path: str | Path) -> None:
        super().__init__()
        self.data = data
        self.target_attrs = list(data.target_attrs)
        self.csv_path = csv_path
        # A model with subgroups evaluates them too: the CSV labels them as well.
        wanted = self.target_attrs + list(data.subgroups)
        photos, labels = zip(*read_photo_labels(csv_path, wanted), strict=True)
        dataset = PhotoDataset(photos, columns_read(data.image_size), data.predict.align,
                               data.predict.min_face_size)  # fmt: skip
        self.faces = LabelledFaces(dataset, labels, len(self.target_attrs))

    def fitted_on(self, faces: int) -> str:
        """What a calibration fitted on ``faces`` of these photos' faces was fitted on."""
        listed = len(self.faces)
        return (f"faces of the photos in {self.csv_path} ({listed - faces} of its {listed} "
                "photos left out: unreadable or no face large enough to judge)")  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.faces,
            batch_size=self.data.batch_size,
            num_workers=self.data.num_workers,
            collate_fn=self.faces.collate,
        )

    def setup(self, stage: str) -> None:
        # The run's data module transforms the batches (its hook reads the trainer's state).
        self.data.trainer = self.trainer

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.data.on_after_batch_transfer(batch, dataloader_idx)
