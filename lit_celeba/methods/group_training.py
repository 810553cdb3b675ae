"""Training by group (docs/groups.md): the groups' buffers, reweighting and online Group DRO.

Plain tensor functions; the LightningModule holds the group state they read and update (its
``train_group_counts`` and ``dro_q`` buffers, so checkpoints keep them). Group numbering is
:mod:`lit_celeba.methods.groups`, shared with the data module's sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn

from lit_celeba.base.errors import AttributeMismatchError, SettingError, UsageError
from lit_celeba.base.lightning_internals import attached_trainer
from lit_celeba.methods.groups import group_index, group_names

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


def group_loss(
    module: Any,
    logits: torch.Tensor,
    targets: torch.Tensor,
    smoothed: torch.Tensor,
    subgroup_values: torch.Tensor | None,
) -> torch.Tensor:
    """The loss of ``module``'s ``reweight`` or ``group_dro`` objective, from one target (its
    ``smoothed`` form too), the batch's ``subgroup_values`` (B, G) and the module's training
    images per group; ``group_dro`` updates the module's ``dro_q`` in place with one
    exponentiated-gradient step (Sagawa et al. 2020), from the losses of the whole global batch
    (summed over the processes by the strategy), so every process keeps the same weights."""
    objective = module.objective
    train_group_counts = getattr(module, "train_group_counts", None)
    if subgroup_values is None or train_group_counts is None:
        raise AttributeMismatchError(
            f"model.objective {objective} needs the subgroup values in the training batches; "
            "the data module carries them with one target_attr and model.subgroups."
        )
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), smoothed.float(), reduction="none",
        pos_weight=getattr(module, "pos_weight", None),
    ).reshape(-1)  # fmt: skip
    groups = group_index(targets, subgroup_values)
    if objective == "reweight":
        return (inverse_frequency_weights(train_group_counts)[groups] * losses).mean()
    dro_q = getattr(module, "dro_q", None)
    if dro_q is None:
        raise ValueError("objective group_dro needs the group weights dro_q")
    sums, counts = group_loss_sums(losses, groups, len(dro_q))
    with torch.no_grad():
        trainer = attached_trainer(module)
        all_sums, all_counts = sums.detach(), counts
        if trainer is not None:
            all_sums = trainer.strategy.reduce(all_sums, reduce_op="sum")
            all_counts = trainer.strategy.reduce(all_counts, reduce_op="sum")
        adjust = module.dro_adjust
        adjustment = adjust / train_group_counts.clamp(min=1).sqrt() if adjust > 0 else None
        dro_q.copy_(group_dro_step(dro_q, all_sums / all_counts.clamp(min=1), all_counts > 0,
                                   module.dro_eta, adjustment))  # fmt: skip
    return (dro_q * (sums / counts.clamp(min=1))).sum()


def group_loss_sums(
    losses: torch.Tensor, groups: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the sum of the images' losses (differentiable) and their number, (num_groups,)
    each, from per-image losses (B,) and the group index (B,)."""
    sums = losses.new_zeros(num_groups).scatter_add(0, groups, losses)
    counts = losses.new_zeros(num_groups).scatter_add(0, groups, torch.ones_like(losses))
    return sums, counts


def inverse_frequency_weights(counts: torch.Tensor) -> torch.Tensor:
    """Weight of an image of each group: ``N / (groups * n_g)``, so that every non-empty group
    weighs the same in all and the weights average 1 over the training set (the loss keeps
    ERM's scale); 0 for an empty group, which has no image to weigh."""
    counts = counts.double()
    present = counts > 0
    weights = counts.sum() / (present.sum() * counts.clamp(min=1))
    return torch.where(present, weights, 0.0).float()


def group_dro_step(
    q: torch.Tensor,
    group_loss: torch.Tensor,
    present: torch.Tensor,
    eta: float,
    adjustment: torch.Tensor | None = None,
) -> torch.Tensor:
    """One exponentiated-gradient step of online Group DRO (Sagawa et al., ICLR 2020, Alg. 1):
    ``q_g <- q_g * exp(eta * loss_g)``, normalised to sum 1. ``adjustment`` (their ``C /
    sqrt(n_g)``, "group adjustments") is added to the losses first, favouring small groups whose
    loss generalises worst. Groups absent from the batch keep their weight before the
    normalisation: a batch says nothing about them."""
    adjusted = group_loss if adjustment is None else group_loss + adjustment
    step = torch.where(present, eta * adjusted, 0.0)
    # In log space: exp of a large loss times eta could overflow float32 otherwise.
    logits = torch.log(q) + step
    return torch.softmax(logits, 0)


def dro_weight_scalars(names: Sequence[str], dro_q: torch.Tensor) -> dict[str, torch.Tensor]:
    """``train/dro_weight/<group>``: Group DRO's weight of each group, logged each epoch."""
    return {f"train/dro_weight/{name}": dro_q[g] for g, name in enumerate(names)}


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


def fill_group_counts(module: Any, datamodule: object) -> None:
    """At the start of a fit, the training images per group into ``module``'s
    ``train_group_counts`` when its objective weighs by group."""
    counts = training_group_counts(module.objective, module.group_names, module.target_attrs,
                                   module.subgroups, datamodule)  # fmt: skip
    if counts is not None:
        module.train_group_counts.copy_(counts)


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
