"""Training and evaluation methods newer than the recipe, as plain tensor functions; the
LightningModule (``module.py``) switches each on by a setting that is off by default."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_targets(targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Label smoothing for binary targets: 1 becomes ``1 - eps/2`` and 0 becomes ``eps/2`` (the
    two-class form of ``CrossEntropyLoss(label_smoothing=eps)``). It keeps the logits from
    growing without bound on easy faces, which mostly improves calibration."""
    if label_smoothing == 0.0:
        return targets
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


def flip_averaged_logit(logits: torch.Tensor, flipped_logits: torch.Tensor) -> torch.Tensor:
    """The logit of the mean of two probabilities, ``sigmoid(a)`` and ``sigmoid(b)``.

    Flip test-time augmentation averages the probabilities of a face and of its mirror image;
    returned as a logit so that the loss, the metrics and the predictions downstream stay those
    of a plain network. Computed in log space: ``log(mean p) - log(mean (1 - p))``, finite even
    where a probability rounds to 0 or 1 in float32.
    """
    log_p = torch.logaddexp(F.logsigmoid(logits), F.logsigmoid(flipped_logits))
    log_q = torch.logaddexp(F.logsigmoid(-logits), F.logsigmoid(-flipped_logits))
    return log_p - log_q  # the two "- log 2" of the means cancel


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
