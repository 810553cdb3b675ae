"""What evaluation adds with subgroups (docs/groups.md): each target's accuracy within each value
of each subgroup attribute and the gaps between them, and with one target the accuracy of each
group (target value x subgroup values, numbered by :mod:`lit_celeba.methods.groups`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lit_celeba.methods.groups import group_index
from lit_celeba.models.metrics import ratio


def subgroup_and_group_results(
    stage: str,
    target_attrs: Sequence[str],
    subgroups: Sequence[str],
    group_names: Sequence[str],
    predictions: torch.Tensor,
    targets: torch.Tensor,
    subgroup_values: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The scalars an evaluation epoch logs about subgroups and groups (see
    :func:`lit_celeba.models.evaluation.epoch_results`), and what the test tables show."""
    accuracy, counts = subgroup_accuracy(predictions, targets, subgroup_values)
    results: dict[str, Any] = {"subgroups": accuracy, "subgroup_sizes": counts}
    scalars = _subgroup_scalars(stage, target_attrs, subgroups, accuracy)
    if group_names:
        groups = group_index(targets, subgroup_values)
        accuracy, counts = group_accuracy(predictions, groups, targets, len(group_names))
        results["groups"], results["group_sizes"] = accuracy, counts
        scalars |= _group_scalars(stage, group_names, accuracy, counts)
    return scalars, results


def subgroup_accuracy(
    predictions: torch.Tensor, targets: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy (G, 2, K) of each target within each value (0, 1) of each of G subgroup
    attributes, NaN for a value no image has, and the images per value (G, 2)."""
    num_groups, num = values.shape[1], targets.shape[1]
    member = values[:, :, None] == torch.arange(2, device=values.device)  # (N, G, 2)
    right = (predictions == targets).double()  # (N, K)
    correct = torch.einsum("ngv,nk->gvk", member.double(), right)
    counts = member.sum(0)
    return ratio(correct, counts[..., None].expand(num_groups, 2, num)), counts


def group_accuracy(
    predictions: torch.Tensor, groups: torch.Tensor, targets: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and size of each group (:mod:`lit_celeba.methods.groups`) of one target; NaN
    accuracy for an empty group."""
    right = predictions.reshape(-1) == targets.reshape(-1)
    counts = torch.bincount(groups, minlength=num_groups)
    correct = torch.bincount(groups, right.double(), minlength=num_groups)
    return ratio(correct, counts), counts


def _subgroup_scalars(
    stage: str, target_attrs: Sequence[str], subgroups: Sequence[str], accuracy: torch.Tensor
) -> dict[str, torch.Tensor]:
    # A subgroup value with no images has no accuracy and no gap: left out, not logged as 0.
    scalars: dict[str, torch.Tensor] = {}
    gaps = []
    for g, group in enumerate(subgroups):
        for k, target in enumerate(target_attrs):
            for value in (1, 0):
                if not accuracy[g, value, k].isnan():
                    scalars[f"{stage}/acc/{target}|{group}={value}"] = accuracy[g, value, k]
            gap = (accuracy[g, 1, k] - accuracy[g, 0, k]).abs()
            if not gap.isnan():
                scalars[f"{stage}/gap/{target}|{group}"] = gap
                gaps.append(gap)
    if gaps:
        scalars[f"{stage}/gap_max"] = torch.stack(gaps).max()
    return scalars


def _group_scalars(
    stage: str, names: Sequence[str], accuracy: torch.Tensor, counts: torch.Tensor
) -> dict[str, torch.Tensor]:
    # An empty group (none in this subset) has no accuracy: left out of the worst and mean.
    scalars: dict[str, torch.Tensor] = {}
    for name, acc, size in zip(names, accuracy, counts, strict=True):
        scalars[f"{stage}/group_size/{name}"] = size.double()
        if size > 0:
            scalars[f"{stage}/group_acc/{name}"] = acc
    present = accuracy[counts > 0]
    if len(present):
        scalars[f"{stage}/worst_group_acc"] = present.min()
        scalars[f"{stage}/mean_group_acc"] = present.mean()
    return scalars
