"""The order in which a subset takes the first N images of a split.

``file``: the order of ``list_eval_partition`` (000001.jpg, 000002.jpg, ...): "the first 16,000
files".

``tfds``: the order TensorFlow Datasets writes each split in, which ``tfds.load('celeb_a',
split='train').take(16000)`` reads, so the recipe's very subsets. tfds sorts a split by
``md5(split name + key)`` read as a 128-bit integer (``tensorflow_datasets.core.hashing.Hasher``
with the split name as salt, both UTF-8); celeb_a's key is the bare file name (``000001.jpg``)
and its split names are ``train``, ``validation`` and ``test``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.celeba import CelebAIndex

SubsetOrder = Literal["file", "tfds"]
ORDERS = ("file", "tfds")
TFDS_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


def tfds_key(split: str, name: str) -> int:
    """tfds' sort key of image ``name`` in ``split`` (tfds' split name, e.g. ``validation``)."""
    return int(hashlib.md5(split.encode() + name.encode()).hexdigest(), 16)


def tfds_sorted(split: str, names: Sequence[str]) -> list[int]:
    """Positions of ``names`` in tfds order."""
    keys = [tfds_key(split, name) for name in names]
    return sorted(range(len(names)), key=keys.__getitem__)


def subset_rows(
    index: CelebAIndex,
    split: str,
    size: int | None,
    order: SubsetOrder,
    stored_in_tfds_order: bool = False,
) -> np.ndarray:
    """Row indices of the first ``size`` images of ``split`` (all if None) in ``order``.

    A tfds copy (``stored_in_tfds_order``) already holds its records in tfds order and knows no
    file names, so it has no ``file`` order.
    """
    if order not in ORDERS:
        raise CelebAError(f"Unknown data.subsets.order {order!r}; valid orders: file, tfds")
    if stored_in_tfds_order and order == "file":
        raise CelebAError(
            f"data.subsets.order is 'file', but the data root {index.files.image_dir} is a tfds "
            "copy, which stores no file names: its images come in tfds order only. Set "
            "data.subsets.order tfds (the recipe's subsets), or use the official files for 'file'."
        )
    index.split_indices(split, size)  # checks split and size with the usual message
    rows = index.split_indices(split)
    if order == "tfds" and not stored_in_tfds_order:
        names = [index.image_names[row] for row in rows]
        rows = rows[tfds_sorted(TFDS_SPLIT_NAMES[split], names)]
    return rows if size is None else rows[:size]
