"""Decision thresholds chosen on a validation set (``model.thresholds``, off by default).

``fixed`` keeps 0.5; ``balanced_accuracy`` and ``f1`` take, per attribute, the cut between two
calibrated validation probabilities that maximises that score (the midpoint of the two, so
``probability > threshold`` selects exactly the faces above the cut).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from lit_celeba.base.errors import SettingError
from lit_celeba.models.outputs import DEFAULT_THRESHOLD

# How the thresholds were chosen: the fixed 0.5, or on the validation set for the best balanced
# accuracy or F1 of each attribute.
ThresholdRule = Literal["fixed", "balanced_accuracy", "f1"]
THRESHOLD_RULES: tuple[str, ...] = get_args(ThresholdRule)


def check_rule(rule: str) -> None:
    """Refuses a threshold rule that is not one of :data:`THRESHOLD_RULES`."""
    if rule not in THRESHOLD_RULES:
        raise SettingError("thresholds", f"must be one of {', '.join(THRESHOLD_RULES)}; "
                           f"got {rule!r}")  # fmt: skip


def choose_thresholds(
    probabilities: torch.Tensor, targets: torch.Tensor, rule: str
) -> torch.Tensor:
    """The threshold (K,) of each attribute under ``rule`` (see the module docstring), from
    calibrated validation probabilities and 0/1 targets (N, K). An attribute whose validation
    images are all of one class, or where no cut beats chance, keeps 0.5."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"thresholds must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")
    count = probabilities.shape[1]
    thresholds = torch.full((count,), DEFAULT_THRESHOLD)
    if rule == "fixed":
        return thresholds
    for k in range(count):
        chosen = _best_cut(probabilities[:, k].double().cpu(), targets[:, k].double().cpu(), rule)
        if chosen is not None:
            thresholds[k] = chosen
    return thresholds


def _best_cut(p: torch.Tensor, y: torch.Tensor, rule: str) -> float | None:
    positives, negatives = y.sum(), (1 - y).sum()
    if positives == 0 or negatives == 0:
        return None
    order = torch.argsort(p, descending=True)
    p, y = p[order], y[order]
    # Cut after position i (the top i + 1 faces predicted positive), only between distinct values.
    tp = torch.cumsum(y, 0)
    fp = torch.cumsum(1 - y, 0)
    distinct = torch.cat([p[1:] < p[:-1], torch.tensor([True])])
    if rule == "balanced_accuracy":
        score = (tp / positives + (negatives - fp) / negatives) / 2
    else:
        score = 2 * tp / (tp + fp + positives)
    score = torch.where(distinct, score, -1.0)
    best = int(torch.argmax(score))
    if rule == "balanced_accuracy" and score[best] <= 0.5:
        return None  # no cut beats chance: 0.5 stays
    below = float(p[best + 1]) if best + 1 < len(p) else 0.0
    return (float(p[best]) + below) / 2
