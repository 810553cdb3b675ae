"""Group-balanced sampling: each group drawn equally often, on one process or under DDP."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

from lit_celeba.groups import group_counts


class GroupBalancedSampler(DistributedSampler):
    """Draws ``len(groups)`` indices per epoch (with replacement), each image with probability
    proportional to ``1 / its group's size``, so every non-empty group is drawn equally often.

    The epoch's draw is one seeded ``torch.multinomial`` over the whole training set, the same on
    every rank (seed and epoch), then sharded by rank: under DDP the ranks see disjoint slices
    of one balanced draw. A ``DistributedSampler`` subclass, so Lightning neither wraps it nor
    swaps it for its own; it calls :meth:`set_epoch` every epoch. Indices only: it works with
    any dataset, including ``CachedImages``, whose ``__getitems__`` fetches each batch whole.
    """

    def __init__(
        self, groups: torch.Tensor, num_groups: int, seed: int = 0, num_replicas: int = 1,
        rank: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(
            range(len(groups)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        counts = group_counts(groups, num_groups).double()
        # An empty group has no image to weigh; the others share its turn.
        self.weights = (1.0 / counts.clamp(min=1))[groups]
        # Every rank the same number of indices: the epoch's draw is rounded up to a multiple
        # of the ranks (extra draws, not repeats of a shard).
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.total_size, True, generator=generator)
        return iter(draw[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
