"""Device-resident batches: a subset's decoded cache held on the training device, batches taken by
index there.

On a GPU the recipe's network takes well under a millisecond per batch of 32, so the fixed cost of
a DataLoader (a Python call per batch, a pinned copy, a host-to-device transfer) would be most of
the step. Here each subset's uint8 cache (1.4 GB for the recipe's 17,000 faces at 64 px) is copied
to the device once; each epoch the sampler's order becomes one index tensor on the device, and a
batch is a slice of it and one ``index_select``. The recipe's crop, resize and flip then run on the
batch as on the memory-mapped path (``CelebADataModule.on_after_batch_transfer``).

The order is the very one the memory-mapped ``DataLoader`` takes for the same seed: the same
sampler (``RandomSampler``, ``GroupBalancedSampler``, a ``DistributedSampler`` under DDP), read
once per epoch, and the one draw from torch's generator that a ``DataLoader`` makes when an epoch's
iterator starts (its workers' base seed), so the random crops and flips that follow are the same
too (tests/test_device_batches.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DistributedSampler, RandomSampler, Sampler
from tqdm.auto import tqdm

from lit_celeba.data.datasets import CachedImages
from lit_celeba.data.sampling import evaluation_sampler
from lit_celeba.data.settings import ON_DEVICE

# Left free on the device beyond the cached subsets: activations, gradients, optimizer state and
# the allocator's slack of the recipe's network take well under a gigabyte at batch 512.
DEVICE_HEADROOM_BYTES = 4 * 2**30
_COPY_CHUNK_BYTES = 256 * 2**20


class DeviceBatches:
    """Batches of ``dataset`` (a ``CachedImages``) from tensors on ``device``.

    An iterable with a length, which Lightning takes in place of a ``DataLoader``: an item is
    ``(images, targets)`` or ``(images, targets, groups)`` as ``CachedImages`` gives them, already
    on ``device``. ``sampler`` gives each epoch's order (``None``: the subset in order); Lightning
    calls its ``set_epoch`` as it does a ``DataLoader``'s. ``dataset`` stays reachable, as on a
    ``DataLoader`` (the prediction writer reads the image names from it).
    """

    def __init__(
        self,
        dataset: Any,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        sampler: Sampler[int] | None = None,
        draw_base_seed: bool = True,
    ) -> None:
        self.dataset = dataset
        self.tensors = tensors
        self.batch_size = batch_size
        self.sampler = sampler
        self.batch_sampler = None  # read by Lightning, as on a DataLoader, to see the sampler
        self.draw_base_seed = draw_base_seed
        self.device = tensors[0].device
        self._in_order: torch.Tensor | None = None

    def __len__(self) -> int:
        count = len(self.sampler) if isinstance(self.sampler, Sized) else len(self.tensors[0])
        return -(-count // self.batch_size)

    def _order(self) -> torch.Tensor:
        if self.sampler is None:
            if self._in_order is None:
                self._in_order = torch.arange(len(self.tensors[0]), device=self.device)
            return self._in_order
        # One host-to-device copy per epoch; the sampler's own Python list is per epoch too.
        return torch.tensor(list(self.sampler), dtype=torch.long).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.draw_base_seed:
            # What DataLoader.__iter__ draws from torch's generator before the sampler runs.
            torch.empty((), dtype=torch.int64).random_()
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield tuple(tensor.index_select(0, rows) for tensor in self.tensors)


def fits_on_device(nbytes: int, device: torch.device) -> tuple[bool, str]:
    """Whether ``nbytes`` of cached images fit in ``device``'s free memory with
    ``DEVICE_HEADROOM_BYTES`` to spare, and a sentence that says so with the numbers. A CPU
    "device" holds them in RAM, where the memory map already keeps them: always fits."""
    if device.type != "cuda":
        return True, "on the CPU"
    free, total = torch.cuda.mem_get_info(device)
    gib = 2**30
    numbers = (
        f"{nbytes / gib:.1f} GiB of cached images, {free / gib:.1f} GiB free of "
        f"{total / gib:.1f} GiB on {device}, {DEVICE_HEADROOM_BYTES / gib:.0f} GiB kept for "
        "training"
    )
    return nbytes + DEVICE_HEADROOM_BYTES <= free, numbers


def images_on_device(images: np.ndarray, device: torch.device, description: str) -> torch.Tensor:
    """The memory-mapped cache ``images`` as a tensor on ``device``. On the CPU the tensor is a view
    of the memory map (nothing is copied; pages load as batches touch them); on a GPU it is copied
    in chunks, with a progress bar."""
    with warnings.catch_warnings():
        # The map is read-only and stays so: nothing ever writes to these tensors.
        warnings.filterwarnings("ignore", message=r".*not writable", category=UserWarning)
        host = torch.from_numpy(images)
    if device.type == "cpu":
        return host
    on_device = torch.empty(host.shape, dtype=host.dtype, device=device)
    rows = max(1, _COPY_CHUNK_BYTES * len(host) // max(1, host.nbytes))
    with tqdm(total=host.nbytes, unit="B", unit_scale=True, desc=description) as bar:
        for start in range(0, len(host), rows):
            chunk = host[start : start + rows]
            on_device[start : start + rows].copy_(chunk)
            bar.update(chunk.nbytes)
    return on_device


def subset_on_device(
    dataset: Any, device: torch.device, stage: str
) -> tuple[torch.Tensor, ...] | None:
    """A ``CachedImages`` subset's images, targets (and subgroup values) on ``device``, or
    ``None`` where they do not fit, which it says: its batches then take the memory-mapped path."""
    images = dataset.images()
    fits, numbers = fits_on_device(images.nbytes, device)
    if not fits:
        rank_zero_info(f"The {stage} subset stays in the memory-mapped cache and comes through "
                       f"a DataLoader: it does not fit ({numbers}).")  # fmt: skip
        return None
    on_device = images_on_device(images, device, f"The {stage} subset to {device}")
    labels = [dataset.targets] + ([] if dataset.groups is None else [dataset.groups])
    if device.type == "cuda":
        rank_zero_info(f"The {stage} subset is on {device}: batches are taken there "
                       f"({numbers}).")  # fmt: skip
    return (on_device, *(t.to(device) for t in labels))


def resident_tensors(
    dataset: Any,
    stage: str,
    device: torch.device,
    wanted: bool | None,
    kept: dict[str, tuple[torch.Tensor, ...] | None],
) -> tuple[torch.Tensor, ...] | None:
    """The cached subset of ``stage`` on ``device``, copied once into ``kept`` (by stage), or
    None where its batches take the memory-mapped path: not ``wanted`` (None: on a CUDA device),
    not cached, or too large (which it says)."""
    wanted = device.type == "cuda" if wanted is None else wanted
    # predict runs once over its images: nothing to gain from the copy.
    if not wanted or stage == "predict" or not isinstance(dataset, CachedImages):
        return None
    if stage not in kept:
        kept[stage] = subset_on_device(dataset, device, stage)
    return kept[stage]


def resident_order(
    stage: str, dataset: Any, trainer: Any, shuffle: bool, balanced: Sampler[int] | None
) -> Sampler[int] | None:
    """The order of a device-resident subset: what the DataLoader path uses for the same stage
    (``balanced``, the group-balanced sampler of a training subset, when there is one), including
    what Lightning gives it under DDP (a shuffling DistributedSampler seeded by
    ``seed_everything``)."""
    if stage in ("val", "test"):
        return evaluation_sampler(dataset, trainer)
    if balanced is not None:
        return balanced
    if trainer is not None and trainer.world_size > 1:
        return DistributedSampler(
            dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
            shuffle=shuffle, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),
        )  # fmt: skip
    return RandomSampler(dataset) if shuffle else None


def device_batches(
    dataset: Any, stage: str, trainer: Any, cache: bool | str, kept: dict, batch_size: int,
    shuffle: bool, balanced: Sampler[int] | None,
) -> DeviceBatches | None:  # fmt: skip
    """The stage's batches taken on the training device, when the ``data.cache`` setting
    (``cache``) keeps the subset there (:func:`resident_tensors`; ``kept``, the tensors already
    on the device per stage); None: a ``DataLoader`` reads it."""
    device = trainer.strategy.root_device if trainer else torch.device("cpu")
    resident = resident_tensors(dataset, stage, device, ON_DEVICE[cache], kept)
    if resident is None:
        return None
    return DeviceBatches(dataset, resident, batch_size,
                         resident_order(stage, dataset, trainer, shuffle, balanced))  # fmt: skip
