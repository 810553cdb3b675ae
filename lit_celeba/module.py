"""The LightningModule: loss, metrics, logging and optimizer around any network from ``nets.py``."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy

from lit_celeba.nets import Init, Pooling, RecipeCNN, ResNetArch, resnet

Batch = tuple[torch.Tensor, torch.Tensor]


class AttributeClassifier(pl.LightningModule):
    """Binary face-attribute classifier: BCE-with-logits on one logit per image.

    Subclasses build the network and hand it over; everything else (loss, metrics, logging,
    optimizer) is shared. Logged: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``,
    ``test/loss``, ``test/acc``. Accuracy thresholds the probability at 0.5 (the logit at 0),
    not the logit at 0.5 as the Keras original did by accident.

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
        # The epoch's mean loss as a metric too: under DDP it syncs the sums over all ranks, also
        # when ranks saw different numbers of images, where `self.log(loss, sync_dist=True)`
        # would not (Lightning 2.6 rounds the mean image count down: its issue #21838).
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def configure_model(self) -> None:
        if self.compile_net:
            self.net.compile()  # in place, so the checkpoint's keys stay the plain ones

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def _step(self, batch: Batch, stage: str, accuracy: BinaryAccuracy) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        # Probabilities, not logits: torchmetrics only applies the sigmoid itself when some value
        # falls outside [0, 1], so logits that happen to lie inside would be thresholded at 0.5.
        accuracy(torch.sigmoid(logits), targets.long())
        batch_size = len(images)
        mean_loss = getattr(self, f"{stage}_loss")
        mean_loss.update(loss.detach(), weight=batch_size)
        self.log(
            f"{stage}/loss",
            mean_loss,
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
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test", self.test_acc)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Probability of the target attribute per image, shape (batch, 1)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
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


class ResNetClassifier(AttributeClassifier):
    """A stronger backbone for the whole data set: torchvision's ResNet (``arch``, ResNet-18 by
    default) trained from scratch, with the same loss, metrics, logging and optimizer as the
    recipe's model. ``image_size`` is the data's (the CLI links it) and is kept in the checkpoint;
    128 suits the ResNet's 32-fold downsampling."""

    def __init__(
        self,
        arch: ResNetArch = "resnet18",
        image_size: int = 128,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(resnet(arch), channels_last=channels_last, compile=compile)
        self.save_hyperparameters()
