"""Group-balanced sampling: each group drawn equally often, on one process or under DDP; the
training images' groups it draws by, counted; and the evaluation subsets' order under DDP.

torch's ``WeightedRandomSampler`` draws; under DDP Lightning's ``DistributedSamplerWrapper`` shards
the draw, which every rank makes alike (same seed, same epoch), into disjoint slices.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import Sampler, WeightedRandomSampler

from lit_celeba.methods.groups import describe_counts, group_counts, group_index, group_names


class GroupBalancedSampler(WeightedRandomSampler):
    """``WeightedRandomSampler`` (with replacement) of each image with probability proportional
    to ``1 / its group's size``, so every non-empty group is drawn equally often; ``num_samples``
    draws per epoch (``len(groups)`` by default).

    The one addition is :meth:`set_epoch`, which Lightning calls every epoch (through
    ``DistributedSamplerWrapper`` under DDP): each epoch's draw comes from a generator seeded with
    ``seed + epoch``, so it is the same on every rank and after a resume, and differs between
    epochs. Indices only: it works with any dataset, including ``CachedImages``, whose
    ``__getitems__`` fetches each batch whole.
    """

    def __init__(
        self, groups: torch.Tensor, num_groups: int, seed: int = 0, num_samples: int | None = None
    ) -> None:
        counts = group_counts(groups, num_groups).double()
        # An empty group has no image to weigh; the others share its turn.
        weights = (1.0 / counts.clamp(min=1))[groups]
        draws = len(groups) if num_samples is None else num_samples
        super().__init__(weights, draws, replacement=True, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.seed + self.epoch)
        # Drawn now, not on the first next(): two iterators never share the generator's state.
        return iter(list(super().__iter__()))


def balanced_sampler(
    groups: torch.Tensor, num_groups: int, seed: int = 0, num_replicas: int = 1, rank: int = 0
) -> Sampler[int]:
    """A :class:`GroupBalancedSampler`; under DDP (``num_replicas > 1``) wrapped in Lightning's
    ``DistributedSamplerWrapper``, which gives rank ``r`` the draws ``r, r + num_replicas, ...``
    of one epoch's draw. That draw is rounded up to a multiple of the ranks (extra draws, not
    repeats of a shard), so every rank takes as many steps. ``shuffle=False``: the draw is
    already random, and it keeps each rank's shard a plain slice of it.

    A ``DistributedSampler``, so Lightning neither wraps it again nor swaps it for its own.
    """
    if num_replicas <= 1:
        return GroupBalancedSampler(groups, num_groups, seed)
    draws = -(-len(groups) // num_replicas) * num_replicas
    return DistributedSamplerWrapper(
        GroupBalancedSampler(groups, num_groups, seed, num_samples=draws),
        num_replicas=num_replicas, rank=rank, shuffle=False,
    )  # fmt: skip


def rank_balanced_sampler(trainer: Any, groups: torch.Tensor, num_groups: int) -> Sampler[int]:
    """:func:`balanced_sampler` for this process's rank under ``trainer`` (one process without
    one), seeded by a draw from torch's generator: every rank seeded torch alike, so they all
    draw one seed and shard one draw."""
    replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    return balanced_sampler(groups, num_groups, seed, replicas, rank)


def count_train_groups(
    dataset: Any, target: str, subgroups: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The group of each image of the training ``dataset`` (its ``targets`` and subgroup values
    ``groups``; :mod:`lit_celeba.methods.groups`) and the images per group, which it prints (the
    model's objectives read the counts)."""
    groups = group_index(dataset.targets.reshape(len(dataset.targets), 1), dataset.groups)
    names = group_names(target, subgroups)
    counts = group_counts(groups, len(names))
    rank_zero_info(f"Training images per group: {describe_counts(names, counts)}")
    return groups, counts


def evaluation_sampler(dataset: Any, trainer: Any) -> Sampler[int] | None:
    """Under DDP, every image of the val/test subset on exactly one rank, so the synced metrics
    equal a single process's; Lightning's own sampler would pad the subset with repeated images
    up to a multiple of the number of ranks. Ranks may then run one batch fewer than others:
    safe, since evaluation syncs once per epoch, as long as every rank has an image."""
    if trainer is None or trainer.world_size < 2 or len(dataset) < trainer.world_size:
        return None  # Lightning adds its padding sampler where there is more than one rank
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
