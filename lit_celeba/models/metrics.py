"""Accuracy per subgroup (how well each target attribute is predicted for Young=1 and Young=0)
and per group (target value x subgroup values, for worst-group accuracy)."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MultilabelStatScores

# A probability above it predicts 1: torchmetrics' own rule (``preds > threshold``).
PROBABILITY_THRESHOLD = 0.5


class DeviceMean(MeanMetric):
    """``MeanMetric`` whose ``update`` reads nothing back to the host.

    torchmetrics checks every value for NaN with ``if nans.any()``, which waits for the GPU at
    every step; with ``nan_strategy="disable"`` it skips the check but also drops the weights (as of
    torchmetrics 1.9). Here a NaN loss makes the epoch's mean NaN, which is what should show.
    ``update(value, weight)``: a tensor (its elements each weigh ``weight``), detached.
    """

    def update(self, value: torch.Tensor, weight: float = 1.0) -> None:  # type: ignore[override]
        value = value.detach()
        self.mean_value += value.sum().to(self.mean_value.dtype) * weight
        self.weight += weight * value.numel()


class SubgroupAccuracy(MultilabelStatScores):
    """Accuracy of each of ``num_labels`` targets within each value (0 and 1) of ``num_groups``
    subgroup attributes.

    ``update(probs, targets, groups)`` takes probabilities and 0/1 targets of shape (B, K) and 0/1
    subgroup values of shape (B, G). Each (subgroup, value, target) triple is one label of the
    underlying ``MultilabelStatScores``, whose target is ignored for images outside the subgroup
    value, so torchmetrics does the counting and the syncing across processes.

    ``compute()`` returns ``{"accuracy": (G, 2, K), "count": (G, 2)}``, indexed by subgroup value
    (``[:, 1]`` is value 1); the accuracy of an empty subgroup value is NaN rather than 0.
    """

    def __init__(self, num_labels: int, num_groups: int, threshold: float = 0.5) -> None:
        if num_labels < 1 or num_groups < 1:
            raise ValueError(f"need a label and a group at least, got {num_labels=}, {num_groups=}")
        super().__init__(
            num_labels=num_groups * 2 * num_labels,
            threshold=threshold,
            average=None,
            ignore_index=-1,
            validate_args=False,  # 0/1 predictions and labels from RecipeClassifier: no checks
        )
        self.num_targets = num_labels
        self.num_groups = num_groups

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        batch = len(preds)
        values = torch.arange(2, device=groups.device)
        member = groups.long()[:, :, None] == values  # (B, G, 2)
        shape = (batch, self.num_groups, 2, self.num_targets)
        masked = torch.where(member[..., None], target.long()[:, None, None, :], -1).expand(shape)
        super().update(
            preds[:, None, None, :].expand(shape).reshape(batch, -1), masked.reshape(batch, -1)
        )

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, tn, fn = self._final_state()
        shape = (self.num_groups, 2, self.num_targets)
        total = (tp + fp + tn + fn).reshape(shape)
        # Float division: 0/0 is NaN for an empty subgroup value.
        accuracy = (tp + tn).reshape(shape).double() / total.double()
        return {"accuracy": accuracy.float(), "count": total[..., 0]}


class GroupAccuracy(Metric):
    """Accuracy and size of each group (:mod:`lit_celeba.groups`) of one target attribute.

    ``update(probs, targets, groups)``: probabilities and 0/1 targets of shape (B, 1) and the
    group index (B,). The counts are summed over processes under DDP. ``compute()`` returns
    ``{"accuracy": (num_groups,), "count": (num_groups,)}``, NaN accuracy for an empty group.
    """

    full_state_update = False

    def __init__(self, num_groups: int, threshold: float = PROBABILITY_THRESHOLD) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.threshold = threshold
        self.add_state("correct", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        # Above the threshold predicts 1, as for the overall accuracy: a probability of exactly
        # 0.5 (a zero logit, or any logit near 0 under bf16) is the same prediction for both.
        right = ((preds.reshape(-1) > self.threshold) == target.reshape(-1).bool()).long()
        # scatter_add_ rather than bincount: no host sync for the output size on a GPU.
        self.correct.scatter_add_(0, groups, right)
        self.total.scatter_add_(0, groups, torch.ones_like(groups))

    def compute(self) -> dict[str, torch.Tensor]:
        return {"accuracy": self.correct.double() / self.total.double(), "count": self.total}
