"""An evaluation epoch's metrics, computed once from all of its rows.

The evaluation steps keep each image's uncalibrated final logits, targets and subgroup values
(:class:`EpochRows`, gathered over processes under DDP); at the epoch's end the metrics come from
them with torchmetrics' functions, so that one set of probabilities and decisions (those of
:mod:`lit_celeba.models.outputs`) feeds every number, whatever the calibration.

Per attribute (:func:`attribute_metrics`): accuracy; balanced accuracy, the mean of the
true-positive and true-negative rates (a rare attribute that is never predicted scores 0.5, not
its share of negatives); AUROC and average precision of the probabilities; F1; the expected
calibration error (15 equal-width bins, weighted by their share of the images); the share of
positives and the accuracy of always answering the majority class. A number that the images
leave undefined (AUROC without a positive, say) is NaN, and means leave it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
    multilabel_stat_scores,
)
from torchmetrics.utilities import dim_zero_cat

from lit_celeba.base.errors import AttributeMismatchError
from lit_celeba.methods import group_metrics
from lit_celeba.models.metrics import ratio
from lit_celeba.models.outputs import Calibration

ECE_BINS = 15
# The per-attribute columns, in the test table's order.
ATTRIBUTE_METRICS = (
    "accuracy", "balanced_accuracy", "auroc", "average_precision", "f1", "ece",
    "positive_share", "majority_baseline",
)  # fmt: skip


class Rows(Metric):
    """Every row given to ``update`` during an epoch, in order; under DDP every process's rows
    (torchmetrics pads and trims uneven shares in its gather)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, rows: torch.Tensor) -> None:
        self.rows.append(rows.detach())

    def compute(self) -> torch.Tensor:
        return dim_zero_cat(self.rows)


class EpochRows(nn.Module):
    """The rows an evaluation epoch keeps: uncalibrated final logits (N, K) and targets (N, K),
    and with subgroups their values (N, G)."""

    def __init__(self, subgroups: Sequence[str]) -> None:
        super().__init__()
        self.subgroups = list(subgroups)
        self.logits, self.targets = Rows(), Rows()
        self.subgroup_values = Rows() if subgroups else None

    def update(self, logits: torch.Tensor, targets: torch.Tensor, values: torch.Tensor | None):
        if self.subgroup_values is not None and values is None:
            raise AttributeMismatchError(
                f"model.subgroups is {self.subgroups} but the evaluation batches carry no "
                "subgroup values; the data module needs the same subgroups (the CLI links them)."
            )
        self.logits.update(logits.float())
        self.targets.update(targets.long())
        if self.subgroup_values is not None:
            self.subgroup_values.update(values.long())

    @property
    def empty(self) -> bool:
        return not self.logits.update_called

    def collect(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """The epoch's rows from every process; resets them for the next epoch. None when there
        are none (no batch, or only empty ones: calibrate's labelled photos without a face)."""
        if self.empty:
            return None
        logits, targets = self.logits.compute(), self.targets.compute()
        values = None
        if self.subgroup_values is not None and self.subgroup_values.update_called:
            values = self.subgroup_values.compute()
        for metric in (self.logits, self.targets, self.subgroup_values):
            if metric is not None:
                metric.reset()
        return (logits, targets, values) if len(targets) else None


def attribute_metrics(
    probabilities: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each of :data:`ATTRIBUTE_METRICS` as a (K,) float64 tensor, from calibrated probabilities,
    0/1 decisions and 0/1 targets, each (N, K)."""
    num = targets.shape[1]
    stats = multilabel_stat_scores(predictions, targets, num_labels=num, average=None,
                                   validate_args=False).double().reshape(num, -1)  # fmt: skip
    tp, fp, tn, fn = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    positives, negatives = tp + fn, tn + fp
    share = ratio(positives, positives + negatives)
    # Both classes present, else ranking (and the true-positive or -negative rate) is undefined:
    # NaN, without asking torchmetrics (whose warnings would not say which attribute).
    both, any_positive = ((positives > 0) & (negatives > 0)).tolist(), (positives > 0).tolist()
    nan = torch.tensor(torch.nan, dtype=torch.float64)
    auroc = [binary_auroc(probabilities[:, k], targets[:, k], validate_args=False).double().cpu()
             if both[k] else nan for k in range(num)]  # fmt: skip
    precision = [
        binary_average_precision(probabilities[:, k], targets[:, k], validate_args=False)
        .double().cpu() if any_positive[k] else nan for k in range(num)
    ]  # fmt: skip
    return {
        "accuracy": ratio(tp + tn, positives + negatives),
        "balanced_accuracy": (ratio(tp, positives) + ratio(tn, negatives)) / 2,
        "auroc": torch.stack(auroc),
        "average_precision": torch.stack(precision),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "ece": calibration_errors(probabilities, targets),
        "positive_share": share,
        "majority_baseline": torch.maximum(share, 1 - share),
    }


def calibration_errors(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The expected calibration error (:data:`ECE_BINS` bins, L1) of each attribute, (K,)."""
    # Contiguous per attribute: torchmetrics warns on a column slice of several attributes.
    return torch.stack([
        binary_calibration_error(p, y, n_bins=ECE_BINS, norm="l1", validate_args=False)
        for p, y in zip(probabilities.T.contiguous(), targets.T.contiguous(), strict=True)
    ]).double().cpu()  # fmt: skip


def epoch_results(
    stage: str,
    target_attrs: Sequence[str],
    subgroups: Sequence[str],
    group_names: Sequence[str],
    logits: torch.Tensor,
    targets: torch.Tensor,
    subgroup_values: torch.Tensor | None,
    calibration: Calibration,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The scalars an evaluation epoch logs, by name, and the results the test tables show.

    Logged: ``{stage}/acc``, ``{stage}/balanced_acc``, ``{stage}/auroc`` and ``{stage}/ece``
    (means over the attributes), ``test/ece_uncalibrated`` (before the temperatures), and for
    K > 1 ``{stage}/acc/<attribute>``. With subgroups ``{stage}/acc/<target>|<subgroup>=<0|1>``,
    ``{stage}/gap/<target>|<subgroup>`` and ``{stage}/gap_max``; with one target the groups
    (target value x subgroup values, docs/groups.md) add ``{stage}/group_acc/<group>``,
    ``{stage}/group_size/<group>``, ``{stage}/worst_group_acc`` and ``{stage}/mean_group_acc``
    (:mod:`lit_celeba.methods.group_metrics`).
    """
    probabilities, predictions = calibration.apply(logits)
    per_attribute = attribute_metrics(probabilities, predictions, targets)
    scalars = {
        f"{stage}/acc": per_attribute["accuracy"].mean(),
        f"{stage}/balanced_acc": per_attribute["balanced_accuracy"].nanmean(),
        f"{stage}/auroc": per_attribute["auroc"].nanmean(),
        f"{stage}/ece": per_attribute["ece"].mean(),
    }
    if stage == "test":
        plain, _ = Calibration.identity(len(target_attrs)).apply(logits)
        scalars["test/ece_uncalibrated"] = calibration_errors(plain, targets).mean()
    if len(target_attrs) > 1:
        scalars |= {f"{stage}/acc/{name}": value
                    for name, value in zip(target_attrs, per_attribute["accuracy"], strict=True)}
    results: dict[str, Any] = {"attributes": {k: v.tolist() for k, v in per_attribute.items()},
                               "threshold": calibration.threshold.tolist()}  # fmt: skip
    if subgroup_values is not None and subgroups:
        group_scalars, group_results = group_metrics.subgroup_and_group_results(
            stage, target_attrs, subgroups, group_names, predictions, targets, subgroup_values
        )
        scalars |= group_scalars
        results |= group_results
    return {k: v.float() for k, v in scalars.items()}, results

