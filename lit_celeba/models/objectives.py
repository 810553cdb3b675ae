"""The training losses: the recipe's BCE, label smoothing, and the group objectives (reweighting
and online Group DRO, docs/groups.md). Plain tensor functions; the LightningModule holds the group
state they read and update (its ``train_group_counts`` and ``dro_q`` buffers, so checkpoints keep
them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from lit_celeba.base.errors import AttributeMismatchError, SettingError, UsageError
from lit_celeba.groups import OBJECTIVES, group_index, group_names
from lit_celeba.models.methods import (
    group_dro_step,
    group_loss_sums,
    inverse_frequency_weights,
    smoothed_targets,
)

Objective = Literal["erm", "reweight", "group_dro"]
# A positive weighs at most this many negatives: an attribute with a handful of positives in the
# training subset would otherwise put nearly all its loss on them.
MAX_POSITIVE_WEIGHT = 100.0
# Sums a tensor over every process (the strategy's reduce under DDP; the identity on one).
Reduce = Callable[[torch.Tensor], torch.Tensor]


def attribute_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE-with-logits summed over the K attributes and averaged over the images; for one
    attribute (times 1, exact) the recipe's loss. ``pos_weight`` (K,) weighs each attribute's
    positive images."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    return loss * targets.shape[1]


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


def count_training_set(module: Any, datamodule: Any) -> None:
    """At the start of a fit, what the objective needs from the training set, into the
    module's buffers: the images per group (reweight, Group DRO) and the positive weights
    (``pos_weight``), saying which attributes these leave at 1."""
    counts = training_group_counts(module.objective, module.group_names, module.target_attrs,
                                   module.subgroups, datamodule)  # fmt: skip
    if counts is not None:
        module.train_group_counts.copy_(counts)
    if hasattr(module, "pos_weight"):
        share = getattr(datamodule, "train_positive_share", None)
        module.pos_weight.copy_(positive_weights(share))
        note = positive_weight_note(share, module.target_attrs)
        if note is not None:
            rank_zero_info(note)


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
    """The loss a training step minimises. ``reweight`` and ``group_dro`` need one target, the
    batch's ``subgroup_values`` (B, G) and the training images per group; ``group_dro`` updates
    ``dro_q`` in place with one exponentiated-gradient step (Sagawa et al. 2020), from the
    losses of the whole global batch (``reduce``), so every process keeps the same weights."""
    smoothed = smoothed_targets(targets, label_smoothing)
    if objective == "erm":
        return attribute_bce(logits, smoothed, pos_weight)
    if subgroup_values is None or train_group_counts is None:
        raise AttributeMismatchError(
            f"model.objective {objective} needs the subgroup values in the training batches; "
            "the data module carries them with one target_attr and model.subgroups."
        )
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), smoothed.float(), reduction="none", pos_weight=pos_weight
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


# The state that only training by group needs: dropped, not refused, when a checkpoint is
# loaded by a model that has other groups or another objective (testing with other subgroups).
GROUP_BUFFERS = ("train_group_counts", "dro_q")


def training_groups(targets: Sequence[str], subgroups: Sequence[str]) -> list[str]:
    """The names of the groups (target value x subgroup values) that one target and its
    subgroups make, in group-index order; none for several targets or no subgroups."""
    if len(targets) != 1 or not subgroups:
        return []
    if targets[0] in subgroups:
        raise SettingError(
            "subgroups",
            f"must not hold the target {targets[0]}: its groups (target value x subgroup "
            "values) would include pairs that cannot exist",
        )
    return group_names(targets[0], subgroups)


def group_buffers(objective: str, num_groups: int) -> dict[str, torch.Tensor]:
    """The buffers ``objective`` keeps with ``num_groups`` groups: the training images per group
    (filled when fit starts) and Group DRO's weights. Buffers, so checkpoints keep them and a
    resumed Group DRO run goes on with the weights it had reached."""
    if objective == "erm" or not num_groups:
        return {}
    buffers = {"train_group_counts": torch.zeros(num_groups)}
    if objective == "group_dro":
        buffers["dro_q"] = torch.full((num_groups,), 1.0 / num_groups)
    return buffers


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


def training_group_counts(
    objective: str, names: Sequence[str], targets: Sequence[str], subgroups: Sequence[str],
    datamodule: object,
) -> torch.Tensor | None:  # fmt: skip
    """The training images per group that ``objective`` weighs by (``None`` for ``erm``), from
    the data module; checked when fit starts, since only training needs them. Warns of groups
    without training images."""
    if objective == "erm":
        return None
    if not names:
        raise SettingError(
            "objective",
            f"{objective} trains on groups, which need one target attribute and at least one "
            f"subgroup (model.subgroups, e.g. [Male]); got targets {list(targets)} and subgroups "
            f"{list(subgroups) or 'none'}",
        )
    counts = getattr(datamodule, "train_group_counts", None)
    if counts is None:
        raise UsageError(
            f"model.objective {objective} needs the training images per group, which the data "
            "module counts in setup('fit') (CelebADataModule does, with one target and "
            "subgroups)."
        )
    empty = [name for name, count in zip(names, counts, strict=True) if int(count) == 0]
    if empty:
        rank_zero_warn(f"Groups without training images: {', '.join(empty)}")
    return torch.as_tensor(counts, dtype=torch.float32)


def match_group_buffers(
    state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor], objective: str
) -> None:
    """The group state of a checkpoint only fits a model with the same groups and objective:
    anything else (testing a Group DRO checkpoint with plain settings, or other subgroups)
    loads the weights without it, and a model that wants it keeps its own (``own``, its
    buffers)."""
    for name in GROUP_BUFFERS:
        saved = state.get(name)
        if saved is not None and (name not in own or own[name].shape != saved.shape):
            del state[name]
            if objective != "erm" and name in own:
                rank_zero_warn(f"The checkpoint's {name} is for other groups: not loaded.")
        elif saved is None and name in own:
            state[name] = own[name].detach().clone()
