"""Flip test-time augmentation (``model.tta_flip``, off by default): each image's logit is that
of the mean probability of the image and its mirror image."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def final_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta_flip: bool
) -> torch.Tensor:
    """The uncalibrated logits (B, K) of ``images``; with ``tta_flip`` those of the mean
    probability of each image and its mirror image (the network run twice)."""
    logits = forward(images)
    if not tta_flip:
        return logits
    return flip_averaged_logit(logits, forward(images.flip(-1)))


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
