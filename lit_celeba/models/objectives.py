"""The training losses: the recipe's BCE, label smoothing, and the group objectives (reweighting
and online Group DRO, docs/groups.md). Plain tensor functions; the LightningModule holds the group
state they read and update (its ``train_group_counts`` and ``dro_q`` buffers, so checkpoints keep
them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from lit_celeba.groups import group_index
from lit_celeba.models.methods import (
    group_dro_step,
    group_loss_sums,
    inverse_frequency_weights,
    smoothed_targets,
)

Objective = Literal["erm", "reweight", "group_dro"]
# Sums a tensor over every process (the strategy's reduce under DDP; the identity on one).
Reduce = Callable[[torch.Tensor], torch.Tensor]


def attribute_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over the K attributes and averaged over the images; for one
    attribute (times 1, exact) the recipe's loss."""
    return F.binary_cross_entropy_with_logits(logits, targets) * targets.shape[1]


def training_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    objective: Objective = "erm",
    subgroup_values: torch.Tensor | None = None,
    train_group_counts: torch.Tensor | None = None,
    dro_q: torch.Tensor | None = None,
    dro_eta: float = 0.01,
    dro_adjust: float = 0.0,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """The loss a training step minimises. ``reweight`` and ``group_dro`` need one target, the
    batch's ``subgroup_values`` (B, G) and the training images per group; ``group_dro`` updates
    ``dro_q`` in place with one exponentiated-gradient step (Sagawa et al. 2020), from the
    losses of the whole global batch (``reduce``), so every process keeps the same weights."""
    smoothed = smoothed_targets(targets, label_smoothing)
    if objective == "erm":
        return attribute_bce(logits, smoothed)
    if subgroup_values is None or train_group_counts is None:
        raise ValueError(f"objective {objective} needs the subgroup values and group counts")
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), smoothed.float(), reduction="none"
    ).reshape(-1)
    groups = group_index(targets, subgroup_values)
    if objective == "reweight":
        return (inverse_frequency_weights(train_group_counts)[groups] * losses).mean()
    if dro_q is None:
        raise ValueError("objective group_dro needs the group weights dro_q")
    sums, counts = group_loss_sums(losses, groups, len(dro_q))
    with torch.no_grad():
        reduce = reduce or (lambda tensor: tensor)
        all_sums, all_counts = reduce(sums.detach()), reduce(counts)
        adjustment = dro_adjust / train_group_counts.clamp(min=1).sqrt() if dro_adjust > 0 else None
        dro_q.copy_(group_dro_step(dro_q, all_sums / all_counts.clamp(min=1), all_counts > 0,
                                   dro_eta, adjustment))  # fmt: skip
    return (dro_q * (sums / counts.clamp(min=1))).sum()
