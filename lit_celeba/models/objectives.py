"""The training loss: the recipe's BCE, with label smoothing; the positive weights
(``pos_weight``) are :mod:`lit_celeba.methods.positive_weights`, the group objectives
(``reweight``, ``group_dro``) :mod:`lit_celeba.methods.group_training`."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import SettingError
from lit_celeba.methods import group_training
from lit_celeba.methods.groups import OBJECTIVES
from lit_celeba.methods.positive_weights import positive_weight_note, positive_weights

Objective = Literal["erm", "reweight", "group_dro"]


def attribute_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE-with-logits summed over the K attributes and averaged over the images; for one
    attribute (times 1, exact) the recipe's loss. ``pos_weight`` (K,) weighs each attribute's
    positive images."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    return loss * targets.shape[1]


def smoothed_targets(targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Label smoothing for binary targets: 1 becomes ``1 - eps/2`` and 0 becomes ``eps/2`` (the
    two-class form of ``CrossEntropyLoss(label_smoothing=eps)``). It keeps the logits from
    growing without bound on easy faces, which mostly improves calibration."""
    if label_smoothing == 0.0:
        return targets
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


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


def count_training_set(module: Any, datamodule: Any) -> None:
    """At the start of a fit, what the objective needs from the training set, into the
    module's buffers: the images per group (reweight, Group DRO) and the positive weights
    (``pos_weight``), saying which attributes these leave at 1."""
    counts = group_training.training_group_counts(module.objective, module.group_names,
                                                  module.target_attrs, module.subgroups,
                                                  datamodule)  # fmt: skip
    if counts is not None:
        module.train_group_counts.copy_(counts)
    if hasattr(module, "pos_weight"):
        share = getattr(datamodule, "train_positive_share", None)
        module.pos_weight.copy_(positive_weights(share))
        note = positive_weight_note(share, module.target_attrs)
        if note is not None:
            rank_zero_info(note)


def check_objective(
    objective: str, dro_eta: float, dro_adjust: float, label_smoothing: float
) -> None:
    """Each setting in its own terms (the CLI adds the ``model.`` key)."""
    if objective not in OBJECTIVES:
        raise SettingError("objective", f"must be one of {', '.join(OBJECTIVES)}; got "
                           f"{objective!r}")  # fmt: skip
    if dro_eta <= 0:
        raise SettingError("dro_eta", f"must be positive, got {dro_eta}")
    if dro_adjust < 0:
        raise SettingError("dro_adjust", f"must be 0 (off) or more, got {dro_adjust}")
    if not 0.0 <= label_smoothing < 1.0:
        raise SettingError("label_smoothing", f"must be in [0, 1), got {label_smoothing}")
