"""The one place where logits become what a user sees: probabilities and 0/1 decisions.

An image's *final logit* per attribute is the network's, averaged with its mirror image's under
``tta_flip`` (:mod:`lit_celeba.methods.flip`), then divided by the attribute's temperature and
shifted by its bias; its probability is the sigmoid of that, and its decision is 1 where the
probability is above the attribute's threshold (:class:`Calibration`). The LightningModule's
evaluation steps return these, and every consumer reads them there: the metrics, the dashboards,
the prediction writer, the test tables.
The exports wrap the same computation in :class:`lit_celeba.commands.predictor.Predictor`.

A checkpoint without a calibration (one written before calibration existed, or trained with it
off) has temperature 1, bias 0 and threshold 0.5 for every attribute: the plain sigmoid and the
rule "above 0.5 is 1" of torchmetrics. A calibration from before the bias existed has bias 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Above it a probability predicts 1: torchmetrics' own rule (``preds > threshold``).
DEFAULT_THRESHOLD = 0.5


@dataclass
class Calibration:
    """Per attribute a temperature (the logit is divided by it), a bias (added after: Platt
    scaling; 0 unless ``calibrate --bias`` fitted one) and a decision threshold on the
    probability, as (K,) float tensors; ``rule`` says how the thresholds were chosen."""

    temperature: torch.Tensor
    threshold: torch.Tensor
    rule: str = "fixed"
    bias: torch.Tensor | None = None
    # Copies on each device, made once: a copy from the host in every training step would make
    # the host wait for the GPU there.
    _on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.bias is None:
            self.bias = torch.zeros_like(self.temperature)

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The temperatures, thresholds and biases on ``device``."""
        if device not in self._on_device:
            self._on_device[device] = (self.temperature.to(device), self.threshold.to(device),
                                       self.bias.to(device))  # fmt: skip
        return self._on_device[device]

    @classmethod
    def identity(cls, num_attributes: int) -> Calibration:
        """Temperature 1, bias 0 and threshold 0.5: the plain sigmoid and the 0.5 rule."""
        return cls(torch.ones(num_attributes), torch.full((num_attributes,), DEFAULT_THRESHOLD))

    @property
    def has_bias(self) -> bool:
        """Whether any attribute has a bias (``calibrate --bias``)."""
        return bool((self.bias != 0).any())

    @property
    def is_identity(self) -> bool:
        return bool((self.temperature == 1).all() and not self.has_bias
                    and (self.threshold == DEFAULT_THRESHOLD).all())  # fmt: skip

    def scaled(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (B, K) of uncalibrated ones, for the loss."""
        temperature, _, bias = self.on(logits.device)
        return logits / temperature.to(logits.dtype) + bias.to(logits.dtype)

    def apply(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities and 0/1 decisions (B, K) of uncalibrated logits."""
        return decide(logits.float(), *self.on(logits.device))

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """What an evaluation step hands to every consumer, from uncalibrated final logits."""
        probabilities, predictions = self.apply(logits.detach())
        return {"logits": logits.detach(), "probabilities": probabilities,
                "predictions": predictions}  # fmt: skip


def decide(
    logits: torch.Tensor, temperature: torch.Tensor, threshold: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``sigmoid(logit / temperature + bias)`` and decisions ``probability >
    threshold`` (long 0/1) of uncalibrated logits (B, K), per attribute (K,) temperatures,
    thresholds and biases."""
    probability = torch.sigmoid(logits / temperature + bias)
    return probability, (probability > threshold).long()
