"""``CelebADataModule``: CelebA from disk, the recipe's subsets, and its train/eval transforms."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lit_celeba.data.cache import default_cache_dir
from lit_celeba.data.copies import CelebACopy, find_copy, load_copy
from lit_celeba.data.datasets import CachedImages, CelebAImages, batch_as_is, subset_dataset
from lit_celeba.data.demo_set import DemoSet, prepare_demo_set
from lit_celeba.data.framing import Framing, check_framing
from lit_celeba.data.photos import (
    PREDICT_ON_TEST_SPLIT,
    PhotoBatch,
    PhotoDataset,
    PredictPhotos,
    photo_loader,
)
from lit_celeba.data.sampling import count_train_groups, evaluation_sampler, rank_balanced_sampler
from lit_celeba.data.settings import (
    RECIPE_SUBSETS,
    Cache,
    Sampler,
    Subsets,
    check_numbers,
    target_and_subgroup_lists,
)
from lit_celeba.data.transforms import BatchTransform, columns_read
from lit_celeba.methods.colour import RECIPE_COLOUR, ColourChanges
from lit_celeba.methods.degradations import PhotoDegradations
from lit_celeba.speed.device_batches import DeviceBatches, device_batches

Split = Literal["train", "valid", "test"]


class CelebADataModule(pl.LightningDataModule):
    """CelebA from ``root`` (official or Kaggle layout, see :mod:`lit_celeba.data.celeba`).

    Args:
        root: the folder that holds CelebA.
        target_attr: the attribute to predict, one of the 40 names in ``list_attr_celeba``, a
            list of them (targets (N, K), one column per name in this order), or ``all``.
        subgroups: attributes whose 0/1 value comes with every validation and test image as a
            third batch element ``(images, targets, groups)``, groups of shape (B, G); ``None``
            keeps the batches ``(images, targets)``. The CLI sets it from ``model.subgroups``.
        subsets: the images each stage reads: the first ``train``, ``val`` and ``test`` of each
            split in their ``order`` (``file`` or ``tfds``, the recipe's very subsets); null takes
            the whole split (:class:`~lit_celeba.data.settings.Subsets`).
        image_size: side of the square network input (the recipe: 64).
        batch_size: images per batch, for every stage.
        num_workers: DataLoader worker processes.
        synthetic: generate a CelebA-format demo set at ``root`` on first use (with
            ``subsets``' numbers of images) instead of reading the real one, with its
            ``seed`` and ``correlate`` (:class:`~lit_celeba.data.demo_set.DemoSet`); null reads
            CelebA. It never overwrites a folder it did not generate.
        cache: ``true`` (the default) decodes each subset's JPEGs once into a memory-mapped
            uint8 cache and, when training on a CUDA GPU, keeps each cached subset on the device
            and takes its batches there by index, without a ``DataLoader``
            (:mod:`lit_celeba.speed.device_batches`; the same batches and augmentations for the
            same seed), unless it does not fit in the GPU's free memory, which it says.
            ``memory``: the memory-mapped cache through the ``DataLoader`` on any device.
            ``device``: the cache's batches by index on any device (on a CPU, the memory map
            read directly, no copy); ``num_workers`` then only applies to ``predict``.
            ``false`` decodes every image on access in the loader workers, into the same layout.
            Either way the recipe's transforms run per batch on the training device
            (:class:`~lit_celeba.data.transforms.BatchTransform`), with the same values.
        cache_dir: where the cache files go (default ``$XDG_CACHE_HOME/lit_celeba``, else
            ``~/.cache/lit_celeba``); a node-local disk for multi-node runs. With ``cache``, a
            tfds copy's index of its records is kept there too.
        predict: ``predict`` on your own photos instead of CelebA's test split, and how faces are
            found in them: ``path`` (an image, a folder or a ``.txt`` list of paths), ``align``
            and ``min_face_size`` (:class:`~lit_celeba.data.photos.PredictPhotos`). CelebA need
            not be on disk then. Where the predictions go is the writer's setting
            (``--prediction.output``: :class:`~lit_celeba.callbacks.predictions.PredictionWriter`).
        colour: the colour changes of the training images after the flip (brightness,
            contrast, saturation: each image's factor uniform in [1 - s, 1 + s], torchvision's
            ``ColorJitter``); 0, the recipe, leaves the training transform exactly as it is
            (:class:`~lit_celeba.methods.colour.ColourChanges`).
        framing: ``celeba``, CelebA's faces as CelebA aligned them, or ``detector``, each passed
            once through ``predict``'s own detector and alignment (:mod:`lit_celeba.data.framing`)
            so that training, evaluation and predict see faces framed one way.
        photo: what photos have and CelebA lacks, as training augmentations after the colour
            changes: alignment errors, low resolution, blur, noise, grey, JPEG
            (:mod:`lit_celeba.methods.degradations` lists the keys); null, the recipe, is off.
        sampler: how each epoch draws the training images: ``random``, a shuffle of the subset,
            or ``group_balanced``, so that every group (target value x subgroup values,
            :mod:`lit_celeba.methods.groups`) comes equally often
            (:class:`~lit_celeba.data.sampling.GroupBalancedSampler`), which needs one target
            and ``subgroups``. An epoch keeps its number of images either way.

    With one target and ``subgroups``, ``setup("fit")`` prints the number of training images in
    each group and keeps them as ``train_group_counts``, and the training batches carry the
    subgroup values too, ``(images, targets, groups)`` (the objectives that weigh the loss by
    group read both; ``train_subgroups`` says whether they do).
    """

    def __init__(
        self,
        root: str = "data/celeba",
        target_attr: str | list[str] = "Male",
        subsets: Subsets = RECIPE_SUBSETS,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 2,
        synthetic: DemoSet | None = None,
        cache: Cache = True,
        cache_dir: str | None = None,
        predict: PredictPhotos = PREDICT_ON_TEST_SPLIT,
        subgroups: list[str] | None = None,
        colour: ColourChanges = RECIPE_COLOUR,
        photo: PhotoDegradations | None = None,
        framing: Framing = "celeba",
        sampler: Sampler = "random",
    ) -> None:
        super().__init__()
        check_numbers(
            subsets=subsets,
            colour=colour,
            batch_size=batch_size, num_workers=num_workers, image_size=image_size,
            synthetic=synthetic, cache=cache,
            predict=predict,
        )  # fmt: skip
        # Every argument, the groups as plain mappings (checkpoints load weights_only).
        groups = {"subsets": subsets, "colour": colour, "synthetic": synthetic, "predict": predict}
        self.save_hyperparameters(ignore=list(groups))
        self.save_hyperparameters({name: group and dataclasses.asdict(group)
                                   for name, group in groups.items()})  # fmt: skip
        self.root = Path(root).expanduser()
        self.target_attr = target_attr
        self.target_attrs, self.subgroups = target_and_subgroup_lists(
            target_attr, subgroups, sampler=sampler
        )
        self.sampler = sampler
        self.train_subgroups = len(self.target_attrs) == 1 and bool(self.subgroups)
        self.train_group_counts: torch.Tensor | None = None
        self.train_positive_share: torch.Tensor | None = None
        self.subsets = subsets
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.synthetic = synthetic
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.batch_transform = BatchTransform(image_size, colour, photo=photo)
        self.predict = predict
        check_framing(framing)  # after BatchTransform's checks of the photo settings
        self.framing = framing
        self.datasets: dict[str, CelebAImages | CachedImages | PhotoDataset] = {}
        # Per stage, the cached subset's tensors on the device: copied once per setup.
        self._on_device: dict[str, tuple[torch.Tensor, ...]] = {}

    def prepare_data(self) -> None:
        """Only touches files: generates the demo set if asked, then checks the layout."""
        if self.predict.path is not None and self.trainer is not None and self.trainer.predicting:
            return  # predicting on the user's photos needs no CelebA
        if self.synthetic is not None:
            prepare_demo_set(self.root, self.synthetic, self.subsets)
        find_copy(self.root)

    def _subset(self, copy: CelebACopy, split: Split, size: int | None, groups: bool = False):
        # The cache is built here rather than in prepare_data because only setup knows the
        # stage; the cache's file lock makes the other ranks wait for the one that builds it.
        return subset_dataset(
            copy, split, size, self.subsets.order, self.target_attrs,
            self.subgroups if groups else [], columns_read(self.image_size),
            self.cache_dir if self.cache else None, self.framing,
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        if stage == "predict" and self.predict.path is not None:
            photos, columns = self.predict, columns_read(self.image_size)
            self.datasets["predict"] = PhotoDataset.from_path(photos.path, columns, photos.align,
                                                              photos.min_face_size)  # fmt: skip
            return
        # The tfds index is kept only where the user lets the cache be written; with cache off,
        # nothing is written and the TFRecords are read at every setup.
        copy = load_copy(self.root, self.cache_dir if self.cache else None)
        for name in self.target_attrs + self.subgroups:
            copy.index.attr_column(name)  # fail early, listing the valid names
        if stage == "fit":
            self.datasets["train"] = self._subset(
                copy, "train", self.subsets.train, groups=self.train_subgroups
            )
            # Each target's share of positives in the training subset (the model's pos_weight).
            self.train_positive_share = self.datasets["train"].targets.float().mean(0)
            if self.train_subgroups:  # each training image's group (the sampler's), and counts
                self.train_groups, self.train_group_counts = count_train_groups(
                    self.datasets["train"], self.target_attrs[0], self.subgroups
                )
        if stage in ("fit", "validate"):
            # Only evaluation reports subgroups; train and predict batches stay (images, targets).
            self.datasets["val"] = self._subset(copy, "valid", self.subsets.val, groups=True)
        if stage == "test":
            self.datasets["test"] = self._subset(copy, "test", self.subsets.test, groups=True)
        if stage == "predict":  # without photos, the test split, as test reads it
            self.datasets["predict"] = self._subset(copy, "test", self.subsets.test)

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader | DeviceBatches:
        dataset = self.datasets[stage]
        balanced = None
        if stage == "train" and self.sampler == "group_balanced":
            balanced = rank_balanced_sampler(self.trainer, self.train_groups,
                                             len(self.train_group_counts))  # fmt: skip
        on_device = device_batches(dataset, stage, self.trainer, self.cache, self._on_device,
                                   self.batch_size, shuffle, balanced)  # fmt: skip
        if on_device is not None:
            return on_device
        sampler = evaluation_sampler(dataset, self.trainer) if stage in ("val", "test") else None
        if balanced is not None:
            sampler, shuffle = balanced, False
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=batch_as_is if isinstance(dataset, CachedImages) else None,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Every batch (cached, decoded on access, or the user's photos) arrives as uint8 in the
        cache's layout and gets the recipe's transforms here, on the device."""
        if not isinstance(batch, (tuple, list)) or batch[0].dtype != torch.uint8:
            return batch  # already transformed
        training = self.trainer is not None and self.trainer.training
        transform = self.batch_transform.train if training else self.batch_transform.eval
        images = transform(batch[0])
        if self.trainer is not None:  # "64-true", "16-true", "bf16-true": the network's dtype
            images = self.trainer.precision_plugin.convert_input(images)
        if isinstance(batch, PhotoBatch):  # keeps the paths and errors the writer reads
            return batch._replace(images=images)
        return (images, *batch[1:])

    def teardown(self, stage: str) -> None:
        self._on_device.clear()  # gives the device memory back once a stage is over

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        if isinstance(self.datasets["predict"], PhotoDataset):
            return photo_loader(self.datasets["predict"], self.batch_size, self.num_workers)
        return self._loader("predict")
