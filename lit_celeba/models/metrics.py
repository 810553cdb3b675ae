"""Accuracy per subgroup (how well each target attribute is predicted for Young=1 and Young=0)
and per group (target value x subgroup values, for worst-group accuracy)."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric
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


class _AccuracyWithin(MultilabelStatScores):
    """Accuracy of each of ``num_targets`` targets among the images of each of ``num_sets`` sets
    (an image may be in any number of them), counted and synced across processes by torchmetrics.

    Each (set, target) pair is one label of the underlying ``MultilabelStatScores``, whose target
    is ignored (``ignore_index``) for the images outside the set. Nothing is read back to the
    host in an update: no validation of the inputs, and 0/1 predictions (torchmetrics would check
    on the host whether probabilities lie in [0, 1] on the CPU).
    """

    def __init__(self, num_sets: int, num_targets: int, threshold: float) -> None:
        super().__init__(
            num_labels=num_sets * num_targets,
            threshold=threshold,
            average=None,
            ignore_index=-1,
            validate_args=False,  # 0/1 predictions and labels from RecipeClassifier: no checks
        )
        self.num_sets = num_sets
        self.num_targets = num_targets

    def _update_within(
        self, predicted: torch.Tensor, target: torch.Tensor, member: torch.Tensor
    ) -> None:
        """``predicted`` and ``target``: 0/1 of shape (B, K); ``member``: bool (B, sets)."""
        shape = (len(predicted), self.num_sets, self.num_targets)
        masked = torch.where(member[..., None], target.long()[:, None, :], -1).expand(shape)
        super().update(
            predicted[:, None, :].expand(shape).flatten(1), masked.flatten(1)
        )  # fmt: skip

    def _accuracy_and_count(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Accuracy (float64, sets x targets; NaN for an empty set) and size of each set."""
        shape = (self.num_sets, self.num_targets)
        total = (self.tp + self.fp + self.tn + self.fn).reshape(shape)
        # Float division: 0/0 is NaN for an empty set.
        accuracy = (self.tp + self.tn).reshape(shape).double() / total.double()
        return accuracy, total[:, 0]


class SubgroupAccuracy(_AccuracyWithin):
    """Accuracy of each of ``num_labels`` targets within each value (0 and 1) of ``num_groups``
    subgroup attributes.

    ``update(preds, targets, groups)`` takes 0/1 predictions (or probabilities) and 0/1 targets
    of shape (B, K) and 0/1 subgroup values of shape (B, G); each (subgroup, value) is one set of
    :class:`_AccuracyWithin`.

    ``compute()`` returns ``{"accuracy": (G, 2, K), "count": (G, 2)}``, indexed by subgroup value
    (``[:, 1]`` is value 1); the accuracy of an empty subgroup value is NaN rather than 0.
    """

    def __init__(self, num_labels: int, num_groups: int, threshold: float = 0.5) -> None:
        if num_labels < 1 or num_groups < 1:
            raise ValueError(f"need a label and a group at least, got {num_labels=}, {num_groups=}")
        super().__init__(num_groups * 2, num_labels, threshold)
        self.num_groups = num_groups

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        values = torch.arange(2, device=groups.device)
        member = groups.long()[:, :, None] == values  # (B, G, 2)
        self._update_within(preds, target, member.flatten(1))

    def compute(self) -> dict[str, torch.Tensor]:
        accuracy, count = self._accuracy_and_count()
        shape = (self.num_groups, 2)
        return {"accuracy": accuracy.reshape(*shape, -1).float(), "count": count.reshape(shape)}


class GroupAccuracy(_AccuracyWithin):
    """Accuracy and size of each group (:mod:`lit_celeba.groups`) of one target attribute.

    ``update(probs, targets, groups)``: probabilities and 0/1 targets of shape (B, 1) and the
    group index (B,); each group is one set of :class:`_AccuracyWithin`. ``compute()`` returns
    ``{"accuracy": (num_groups,), "count": (num_groups,)}``, NaN accuracy for an empty group.

    Not torchmetrics' ``BinaryGroupStatRates`` (torchmetrics 1.9.0, read and run): its update
    copies the groups' sizes to the host (``_flexible_bincount(...).cpu().tolist()``), a host
    sync per batch whatever ``validate_args``, and it numbers the groups present in the batch
    from 0, so a batch without group 1 counts group 2's images as group 1's (torchmetrics issue
    3489); and its ``compute`` gives rates only, without the groups' sizes.
    """

    def __init__(self, num_groups: int, threshold: float = PROBABILITY_THRESHOLD) -> None:
        super().__init__(num_groups, 1, threshold)

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        # Above the threshold predicts 1, as for the overall accuracy: a probability of exactly
        # 0.5 (a zero logit, or any logit near 0 under bf16) is the same prediction for both.
        predicted = (preds.reshape(-1, 1) > self.threshold).long()
        member = groups[:, None] == torch.arange(self.num_sets, device=groups.device)
        self._update_within(predicted, target.reshape(-1, 1), member)

    def compute(self) -> dict[str, torch.Tensor]:
        accuracy, count = self._accuracy_and_count()
        return {"accuracy": accuracy[:, 0], "count": count}
