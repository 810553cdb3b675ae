"""The training loss: the recipe's BCE, with label smoothing and positive weights; the group
objectives (``reweight``, ``group_dro``) are :mod:`lit_celeba.methods.group_training`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import SettingError, UsageError
from lit_celeba.groups import OBJECTIVES
from lit_celeba.methods import group_training
from lit_celeba.methods.group_training import Reduce

Objective = Literal["erm", "reweight", "group_dro"]
# A positive weighs at most this many negatives: an attribute with a handful of positives in the
# training subset would otherwise put nearly all its loss on them.
MAX_POSITIVE_WEIGHT = 100.0


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
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss a training step minimises: the BCE of the smoothed targets, or for ``reweight``
    and ``group_dro`` :func:`~lit_celeba.methods.group_training.group_loss`."""
    smoothed = smoothed_targets(targets, label_smoothing)
    if objective == "erm":
        return attribute_bce(logits, smoothed, pos_weight)
    return group_training.group_loss(logits, targets, smoothed, objective, subgroup_values,
                                     train_group_counts, dro_q, dro_eta, dro_adjust, reduce,
                                     pos_weight)  # fmt: skip


def positive_weights(positive_share: torch.Tensor | None) -> torch.Tensor:
    """BCE's ``pos_weight`` that gives each attribute's positives the weight of its negatives in
    the training set: negatives / positives, (K,), at most :data:`MAX_POSITIVE_WEIGHT`; 1 for an
    attribute of one class only (no positives: nothing to weigh; no negatives: weight 0 would
    leave only the pull of label smoothing's negative part, towards "no")."""
    if positive_share is None:
        raise UsageError("model.pos_weight needs the training set's share of positives per "
                         "attribute, which CelebADataModule counts in setup('fit')")  # fmt: skip
    share = torch.as_tensor(positive_share, dtype=torch.float32)
    weights = (1 - share) / share.clamp(min=1e-12)
    both = (share > 0) & (share < 1)
    return torch.where(both, weights.clamp(max=MAX_POSITIVE_WEIGHT), 1.0)


def positive_weight_note(positive_share: torch.Tensor, attributes: Sequence[str]) -> str | None:
    """A line naming the attributes that ``model.pos_weight`` leaves at 1 because the training
    images hold one class of them only; None when there is none."""
    share = torch.as_tensor(positive_share, dtype=torch.float32).tolist()
    named = [f"{a} ({'every' if s >= 1 else 'no'} image)" for a, s in
             zip(attributes, share, strict=True) if s <= 0 or s >= 1]  # fmt: skip
    if not named:
        return None
    return (f"Note: model.pos_weight leaves the weight of {', '.join(named)} at 1: the training "
            "images hold one class of it only, so there is nothing to balance.")


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
