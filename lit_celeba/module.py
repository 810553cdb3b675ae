"""The LightningModule: loss, metrics, logging and optimizer around any network from ``nets.py``."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy, BinaryCalibrationError

from lit_celeba.nets import Init, Pooling, RecipeCNN

Batch = tuple[torch.Tensor, torch.Tensor]


class AttributeClassifier(pl.LightningModule):
    """Binary face-attribute classifier: BCE-with-logits on one logit per image.

    Subclasses build the network and hand it over; everything else (loss, metrics, logging,
    optimizer) is shared. Logged: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``,
    ``test/loss``, ``test/acc``. Accuracy thresholds the probability at 0.5 (the logit at 0),
    not the logit at 0.5 as the Keras original did by accident. ``test/ece`` is the expected
    calibration error: the gap between the predicted probability and the observed share of
    positives, averaged over 15 equal-width probability bins weighted by their share of images.

    The default optimizer is the recipe's Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7); the CLI's
    ``--optimizer`` replaces it.
    """

    def __init__(self, net: nn.Module, channels_last: bool = False, compile: bool = False) -> None:
        super().__init__()
        # channels-last suits oneDNN (CPU) and tensor-core (GPU) convolutions; it is a layout
        # only and changes no value beyond float rounding.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.compile_net = compile
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()
        self.test_acc = BinaryAccuracy()
        self.test_ece = BinaryCalibrationError(n_bins=15, norm="l1")

    def configure_model(self) -> None:
        if self.compile_net:
            self.net.compile()  # in place, so the checkpoint's keys stay the plain ones

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def _step(
        self,
        batch: Batch,
        stage: str,
        accuracy: BinaryAccuracy,
        calibration: BinaryCalibrationError | None = None,
    ) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        # Probabilities, not logits: torchmetrics only applies the sigmoid itself when some value
        # falls outside [0, 1], so logits that happen to lie inside would be thresholded at 0.5.
        accuracy(torch.sigmoid(logits), targets.long())
        batch_size = len(images)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
        )
        self.log(
            f"{stage}/acc",
            accuracy,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
        )
        if calibration is not None:
            calibration(torch.sigmoid(logits), targets.long())
            self.log(
                f"{stage}/ece", calibration, on_step=False, on_epoch=True, batch_size=batch_size
            )
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def full_precision(self) -> torch.autocast:
        """Mixed precision is a training speed-up only: validation, test and predict run in
        float32, so reported metrics and probabilities don't depend on the training precision."""
        return torch.autocast(self.device.type, enabled=False)

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        with self.full_precision():
            return self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        with self.full_precision():
            return self._step(batch, "test", self.test_acc, self.test_ece)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Probability of the target attribute per image, shape (batch, 1)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with self.full_precision():
            return torch.sigmoid(self(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)


class RecipeClassifier(AttributeClassifier):
    """The recipe's CNN (388,673 parameters at the defaults) with the post's suggested variations:
    dropout probability, channel widths, and global-average vs flatten pooling; ``channels_last``
    and ``compile`` (``torch.compile``) are speed settings that leave the results unchanged."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.5,
        pooling: Pooling = "gap",
        image_size: int = 64,
        init: Init = "keras",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        net = RecipeCNN(
            channels, dropout=dropout, pooling=pooling, image_size=image_size, init=init
        )
        super().__init__(net, channels_last=channels_last, compile=compile)
        self.save_hyperparameters()
