"""CelebA's files: find the layout on disk, index the annotations, pick subsets and their labels.

Two layouts are recognised, with only the attribute and partition files required to detect them:

official (as ``torchvision.datasets.CelebA`` lays it out)::

    root/celeba/img_align_celeba/000001.jpg ...
    root/celeba/list_attr_celeba.txt
    root/celeba/list_eval_partition.txt

    (``root`` may also be the ``celeba`` folder itself)

kaggle (the "CelebFaces Attributes" data set on Kaggle)::

    root/img_align_celeba/img_align_celeba/000001.jpg ...
    root/list_attr_celeba.csv
    root/list_eval_partition.csv

The two files are parsed by :mod:`lit_celeba.data.annotations`, which accepts the real files'
quirks. A root that holds both layouts is refused rather than one of them picked silently: the
two copies may differ, and the user should say which one the run is about.

The same files in their archives, and tfds' TFRecords: :mod:`lit_celeba.data.sources`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lit_celeba.attributes import valid_names
from lit_celeba.base.errors import CelebAError
from lit_celeba.data.annotations import read_attributes, read_partition
from lit_celeba.data.layout_errors import EXPECTED_TREES, no_copy_error

SPLITS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
FACE_SIZE = (178, 218)  # CelebA's aligned faces (img_align_celeba): width, height
@dataclass(frozen=True)
class CelebAFiles:
    """Where the files of one CelebA copy are."""

    layout: Literal["official", "kaggle"]
    image_dir: Path
    attr_file: Path
    partition_file: Path


@dataclass(frozen=True)
class CelebAIndex:
    """The annotations of one CelebA copy: file names, 0/1 attributes (int8), and partitions."""

    files: CelebAFiles
    image_names: list[str]
    attr_names: list[str]
    attributes: np.ndarray  # (N, 40) int8 in {0, 1}
    partition: np.ndarray  # (N,) int8 in {0, 1, 2}

    def attr_column(self, name: str) -> int:
        """The column of attribute ``name``, looked up by name (never by position)."""
        try:
            return self.attr_names.index(name)
        except ValueError:
            raise CelebAError(
                f"Unknown attribute {name!r} (not a column of {self.files.attr_file}). "
                f"{valid_names(name, self.attr_names)}"
            ) from None

    def split_indices(self, split: str, size: int | None = None) -> np.ndarray:
        """Row indices of the first ``size`` images of ``split`` in file order (all if None)."""
        if split not in SPLITS:
            raise CelebAError(f"Unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        rows = np.flatnonzero(self.partition == SPLITS[split])
        if len(rows) == 0:
            raise CelebAError(
                f"The {split!r} split has no images in {self.files.partition_file} (no line gives "
                f"partition {SPLITS[split]}). Use a copy of CelebA with a {split} partition, or "
                "run a stage that reads another split."
            )
        if size is None:
            return rows
        if size < 1 or size > len(rows):
            raise CelebAError(
                f"Requested {size} images of the {split!r} split (data.subsets."
                f"{'val' if split == 'valid' else split}), but "
                f"{self.files.partition_file} lists {len(rows)} there; choose a size from 1 to "
                f"{len(rows)}, or null for the whole split."
            )
        return rows[:size]


def find_files(root: str | os.PathLike) -> CelebAFiles:
    """Detect which layout ``root`` holds; raise :class:`CelebAError` naming what is missing."""
    root = Path(root).expanduser()
    if not root.exists():
        raise CelebAError(f"The data root {root} does not exist.\n{EXPECTED_TREES}")
    if not root.is_dir():
        raise CelebAError(f"The data root {root} is not a folder.\n{EXPECTED_TREES}")
    candidates = [
        CelebAFiles(
            "official",
            root / "celeba" / "img_align_celeba",
            root / "celeba" / "list_attr_celeba.txt",
            root / "celeba" / "list_eval_partition.txt",
        ),
        CelebAFiles(
            "official",
            root / "img_align_celeba",
            root / "list_attr_celeba.txt",
            root / "list_eval_partition.txt",
        ),
        CelebAFiles(
            "kaggle",
            root / "img_align_celeba" / "img_align_celeba",
            root / "list_attr_celeba.csv",
            root / "list_eval_partition.csv",
        ),
    ]
    complete = [f for f in candidates if f.attr_file.is_file() and f.partition_file.is_file()]
    if len(complete) > 1:
        found = "\n".join(f"  {f.layout}: {f.attr_file}, {f.partition_file}" for f in complete)
        raise CelebAError(
            f"The data root {root} holds more than one copy of CelebA's annotation files:\n"
            f"{found}\nPoint data.root at the folder of the one to use, or move the others away."
        )
    if complete:
        return complete[0]
    raise no_copy_error(root, candidates)


def face_size_problem(path: str | os.PathLike, width: int, height: int) -> str | None:
    """The message for an image that is not one of CelebA's aligned faces, or None if it is."""
    if (width, height) == FACE_SIZE:
        return None
    return (
        f"Image {path} is {width}x{height} pixels, not CelebA's aligned {FACE_SIZE[0]}x"
        f"{FACE_SIZE[1]} (width x height): the data set must hold the aligned faces of "
        "img_align_celeba. Replace the file from a fresh copy of CelebA."
    )


def load_index(root: str | os.PathLike) -> CelebAIndex:
    """Find and read one CelebA copy; the two annotation files must list the same images."""
    return read_index(find_files(root))


def read_index(
    files: CelebAFiles, attr_text: str | None = None, partition_text: str | None = None
) -> CelebAIndex:
    """Read the annotation files of ``files`` (or their given texts, see read_attributes)."""
    image_names, attr_names, attributes = read_attributes(files.attr_file, attr_text)
    partition_names, partition = read_partition(files.partition_file, partition_text)
    if partition_names != image_names:
        mismatch = next(
            (
                i
                for i, (a, b) in enumerate(zip(image_names, partition_names, strict=False))
                if a != b
            ),
            min(len(image_names), len(partition_names)),
        )
        raise CelebAError(
            f"{files.attr_file} and {files.partition_file} disagree: they list "
            f"{len(image_names)} and {len(partition_names)} images, first differing at entry "
            f"{mismatch + 1}. Both files must come from the same CelebA release."
        )
    return CelebAIndex(files, image_names, attr_names, attributes, partition)


def label_arrays(
    index: CelebAIndex,
    rows: np.ndarray,
    target_attrs: Sequence[str],
    subgroups: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of images ``rows``: targets (N, K) float32 and subgroup values (N, G) int64,
    both 0/1, columns in the order given. Unknown names raise CelebAError listing the valid ones.
    """
    target_columns = [index.attr_column(name) for name in target_attrs]
    group_columns = [index.attr_column(name) for name in subgroups]
    selected = index.attributes[rows]
    return (
        selected[:, target_columns].astype(np.float32),
        selected[:, group_columns].astype(np.int64),
    )
