"""The datasets of one CelebA subset, both in the decoded cache's layout (uint8 (218, C, 3), only
the source columns the resize reads), transformed per batch on the training device
(``CelebADataModule.on_after_batch_transfer``): :class:`CelebAImages` decodes each JPEG on access,
:class:`CachedImages` reads whole batches from the decoded cache; :func:`subset_dataset` makes
either for a split of a CelebA copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_celeba.data.cache import build_cache, open_cache
from lit_celeba.data.celeba import label_arrays
from lit_celeba.data.copies import CelebACopy
from lit_celeba.data.framing import Framing
from lit_celeba.data.images import ImageSource, as_source, decode_face
from lit_celeba.data.order import SubsetOrder, subset_rows


def _label_tensors(
    targets: np.ndarray, groups: np.ndarray | None, count: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Targets as float (N, K) for the loss, subgroup values as long (N, G) or None."""
    as_targets = torch.as_tensor(targets, dtype=torch.float32).reshape(count, -1)
    return as_targets, None if groups is None else torch.as_tensor(groups, dtype=torch.long)


class CelebAImages(Dataset):
    """Images of one subset with their 0/1 targets, decoded from JPEG on access into the layout
    of the decoded cache: uint8 (218, C, 3), only the source ``columns`` the resize reads. A
    batch of them is transformed as a cached one, on the training device
    (``CelebADataModule.on_after_batch_transfer``).

    With ``groups`` (the (N, G) subgroup values) an item is ``(image, targets, groups)``.
    """

    def __init__(
        self,
        source: ImageSource | Path,
        image_names: list[str],
        targets: np.ndarray,
        columns: np.ndarray,
        groups: np.ndarray | None = None,
        framing: Framing = "celeba",
    ) -> None:
        self.source = as_source(source)
        self.framing = framing
        self.image_dir = getattr(self.source, "image_dir", None)  # None for archives, TFRecords
        self.image_names = image_names
        self.targets, self.groups = _label_tensors(targets, groups, len(image_names))
        self.columns = columns

    def __len__(self) -> int:
        return len(self.image_names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = self.image_names[index]
        data, where = self.source.read(name), self.source.where(name)
        image, _ = decode_face(data, where, self.columns, self.framing)
        if self.groups is not None:
            return image, self.targets[index], self.groups[index]
        return image, self.targets[index]


class CachedImages(Dataset):
    """Images of one subset from the decoded cache (:mod:`lit_celeba.data.cache`), fetched a
    whole batch at a time as uint8 (B, 218, C, 3); the recipe's transforms run afterwards on the
    batch, on the training device (``CelebADataModule.on_after_batch_transfer``). With ``groups``
    (the
    (N, G) subgroup values) a batch is ``(images, targets, groups)``."""

    def __init__(
        self,
        cache_path: Path,
        image_names: list[str],
        targets: np.ndarray,
        columns: np.ndarray,
        groups: np.ndarray | None = None,
        source: ImageSource | None = None,
    ) -> None:
        self.cache_path = cache_path
        # Where the JPEGs came from, as CelebAImages has it.
        self.source = source
        self.image_dir = getattr(source, "image_dir", None)
        self.image_names = image_names
        self.columns = columns
        self.targets, self.groups = _label_tensors(targets, groups, len(image_names))
        self._images: np.ndarray | None = None

    def images(self) -> np.ndarray:
        if self._images is None:  # opened in each process that reads, never pickled
            self._images = open_cache(self.cache_path, len(self.image_names), self.columns)
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.image_names)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        order = np.asarray(indices)
        batch = (torch.from_numpy(self.images()[order]), self.targets[order])
        return batch if self.groups is None else (*batch, self.groups[order])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(part[0] for part in self.__getitems__([index]))


def batch_as_is(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch  # CachedImages.__getitems__ already returns whole batches


def subset_dataset(
    copy: CelebACopy,
    split: str,
    size: int | None,
    order: SubsetOrder,
    target_attrs: list[str],
    subgroups: list[str],
    columns: np.ndarray,
    cache_dir: Path | None,
    framing: Framing,
) -> CelebAImages | CachedImages:
    """The first ``size`` images of ``split`` in ``order``, checked against the copy's images,
    with their targets (and subgroup values when ``subgroups`` names any), in the layout of
    ``columns``: from the decoded cache in ``cache_dir`` (built first if needed), or decoded on
    access when that is None."""
    index, source = copy.index, copy.source
    rows = subset_rows(index, split, size, order, source.tfds_order_only)
    names = [index.image_names[i] for i in rows]
    source.check(names, split, index.files.attr_file)
    targets, group_values = label_arrays(index, rows, target_attrs, subgroups)
    group_values = group_values if subgroups else None
    if cache_dir is not None:
        path = build_cache(source, names, cache_dir, columns, description=f"the {split} subset",
                           framing=framing)  # fmt: skip
        return CachedImages(path, names, targets, columns, group_values, source=source)
    return CelebAImages(source, names, targets, columns, group_values, framing)
