"""Accuracy per subgroup: how well each target attribute is predicted for Young=1 and Young=0."""

from __future__ import annotations

import torch
from torchmetrics.classification import MultilabelStatScores


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
