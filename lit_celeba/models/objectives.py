"""The training loss: the recipe's BCE; label smoothing is :mod:`lit_celeba.methods.smoothing`,
the positive weights (``pos_weight``) :mod:`lit_celeba.methods.positive_weights`, the group
objectives (``reweight``, ``group_dro``) :mod:`lit_celeba.methods.group_training`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lit_celeba.methods import group_training
from lit_celeba.methods.smoothing import smoothed_targets


def attribute_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE-with-logits summed over the K attributes and averaged over the images; for one
    attribute (times 1, exact) the recipe's loss. ``pos_weight`` (K,) weighs each attribute's
    positive images."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    return loss * targets.shape[1]


def training_loss(
    module: Any, logits: torch.Tensor, targets: torch.Tensor, subgroup_values: torch.Tensor | None
) -> torch.Tensor:
    """The loss a training step of ``module`` minimises: the BCE of the smoothed targets, or for
    ``reweight`` and ``group_dro`` :func:`~lit_celeba.methods.group_training.group_loss`."""
    smoothed = smoothed_targets(targets, module.label_smoothing)
    pos_weight = getattr(module, "pos_weight", None)
    if module.objective == "erm":
        return attribute_bce(logits, smoothed, pos_weight)
    return group_training.group_loss(module, logits, targets, smoothed, subgroup_values)
