"""Fitting a :class:`~lit_celeba.models.outputs.Calibration` on a validation set: a temperature
per attribute (temperature scaling, Guo et al. 2017) and a decision threshold per attribute.

The temperature minimises the validation negative log-likelihood of the attribute's logits
divided by it: one convex problem in ``1 / temperature`` per attribute, solved here by Newton's
method on all attributes at once (torch's LBFGS would need autograd inside a validation epoch,
which runs under inference mode). Dividing by a positive temperature keeps every logit's sign,
so decisions at 0.5 and the ranking of the faces (AUROC) do not change; only how confident the
probabilities are.

The thresholds (``rule``): ``fixed`` keeps 0.5; ``balanced_accuracy`` and ``f1`` take, per
attribute, the cut between two calibrated validation probabilities that maximises that score
(the midpoint of the two, so ``probability > threshold`` selects exactly the faces above the cut).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lit_celeba.models.outputs import DEFAULT_THRESHOLD, THRESHOLD_RULES, Calibration

NEWTON_STEPS = 50
# 1 / temperature stays within these: a network whose logits say nothing (or the opposite of the
# labels) would otherwise be "calibrated" to a constant or a flipped probability.
MIN_INVERSE, MAX_INVERSE = 1e-2, 1e2


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The temperature (K,) of each attribute that minimises the mean binary cross-entropy of
    ``logits / temperature`` against ``targets`` (both (N, K))."""
    z, y = logits.double(), targets.double()
    inverse = torch.ones(z.shape[1], dtype=torch.float64, device=z.device)
    for _ in range(NEWTON_STEPS):
        p = torch.sigmoid(inverse * z)
        gradient = ((p - y) * z).mean(0)
        curvature = (p * (1 - p) * z * z).mean(0).clamp(min=1e-12)
        step = gradient / curvature
        inverse = (inverse - step).clamp(MIN_INVERSE, MAX_INVERSE)
        if step.abs().max() < 1e-10:
            break
    return (1.0 / inverse).float()


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


def fit_calibration(
    logits: torch.Tensor, targets: torch.Tensor, temperature: bool = True, rule: str = "fixed"
) -> Calibration:
    """A calibration fitted on uncalibrated validation ``logits`` and ``targets`` (N, K): the
    temperatures (or 1 where ``temperature`` is off, or the attribute has one class only), then
    the thresholds on the probabilities those temperatures give."""
    count = targets.shape[1]
    temperatures = fit_temperature(logits, targets).cpu() if temperature else torch.ones(count)
    # An attribute with one class only: any temperature "fits" it (0.01 or 100, the bounds), and
    # would wreck its probabilities elsewhere. It stays 1, as its threshold stays 0.5.
    one_class = (targets.amin(0) == targets.amax(0)).cpu()
    temperatures = torch.where(one_class, torch.ones(count), temperatures)
    probabilities = torch.sigmoid(logits.float().cpu() / temperatures)
    return Calibration(temperatures, choose_thresholds(probabilities, targets, rule), rule)


class ValidateTheLastEpoch(pl.Callback):
    """The last epoch of a fit validates, whatever ``check_val_every_n_epoch`` says: each
    validation fits the calibration, so the final checkpoints carry one fitted to their own
    weights (with 2 and 3 epochs, last.ckpt had epoch 2's temperatures on epoch 3's weights)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 == trainer.max_epochs
        if last and every is not None and every > 1:
            trainer.check_val_every_n_epoch = 1
