"""Groups for worst-group accuracy and group-robust training: the target/subgroup value pairs.

With one target attribute and subgroups ``[Male]``, the groups are the four pairs (target value,
Male value), numbered ``target * 2**G + the subgroup values read as a binary number`` (first
subgroup the highest bit), and named ``Blond_Hair=0,Male=0``, ``Blond_Hair=0,Male=1``,
``Blond_Hair=1,Male=0``, ``Blond_Hair=1,Male=1``. More subgroups give every combination of
their values. Both the data module (the sampler, the counts it prints) and the model (the
metrics, the objectives) number them here, so the two agree. Nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import torch

from lit_celeba.attributes import attribute_list
from lit_celeba.base.errors import SettingError

# The model's training objectives (group-balanced sampling is the data module's
# ``sampler: group_balanced``); all but ``erm`` read each training image's group from its batch.
Objective = Literal["erm", "reweight", "group_dro"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)


def check_objective(objective: str, dro_eta: float, dro_adjust: float) -> None:
    """Each setting in its own terms (the CLI adds the ``model.`` key)."""
    if objective not in OBJECTIVES:
        raise SettingError("objective", f"must be one of {', '.join(OBJECTIVES)}; got "
                           f"{objective!r}")  # fmt: skip
    if dro_eta <= 0:
        raise SettingError("dro_eta", f"must be positive, got {dro_eta}")
    if dro_adjust < 0:
        raise SettingError("dro_adjust", f"must be 0 (off) or more, got {dro_adjust}")


def needs_groups(target_attrs: list[str], subgroups: list[str] | None) -> str:
    """What a setting that draws or weighs by group needs, and what it got."""
    return (f"needs one target_attr and at least one subgroup (model.subgroups, e.g. [Male]); "
            f"got target_attr {target_attrs} and subgroups {subgroups or 'none'}")  # fmt: skip


def check_group_objective(model: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Refuse, before ``fit`` runs, an objective that weighs the loss by group without the groups
    (one target, some subgroups), with which the data module's training batches carry them."""
    objective = model.get("objective", "erm")
    if objective == "erm":
        return
    targets = attribute_list(data.get("target_attr"), "data.target_attr")
    subgroups = attribute_list(model.get("subgroups"), "model.subgroups")
    if len(targets) != 1 or not subgroups:
        raise SettingError("model.objective", f"{objective} weighs the training loss by group: it "
                           f"{needs_groups(targets, subgroups)}")  # fmt: skip


def group_names(target: str, subgroups: Sequence[str]) -> list[str]:
    """The name of each group, in group-index order."""
    names = []
    for index in range(2 ** (len(subgroups) + 1)):
        values = _bits(index, len(subgroups) + 1)
        pairs = zip([target, *subgroups], values, strict=True)
        parts = [f"{name}={value}" for name, value in pairs]
        names.append(",".join(parts))
    return names


def _bits(index: int, width: int) -> list[int]:
    return [(index >> (width - 1 - i)) & 1 for i in range(width)]


def group_index(targets: torch.Tensor, subgroup_values: torch.Tensor) -> torch.Tensor:
    """Group index (N,) of images with one 0/1 target (N, 1) and 0/1 subgroup values (N, G)."""
    columns = torch.cat([targets.reshape(len(targets), 1), subgroup_values], 1).long()
    weights = 2 ** torch.arange(columns.shape[1] - 1, -1, -1, device=columns.device)
    return (columns * weights).sum(1)


def group_counts(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Images per group (num_groups,) of a (N,) group index."""
    return torch.bincount(groups, minlength=num_groups)


def describe_counts(names: Sequence[str], counts: Sequence[int]) -> str:
    """``Blond_Hair=0,Male=0: 242, ...``: the line a run prints about its training groups."""
    return ", ".join(f"{name}: {int(count)}" for name, count in zip(names, counts, strict=True))
