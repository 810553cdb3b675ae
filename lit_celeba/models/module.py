"""The LightningModule: loss, metrics, logging and optimizer around any network from ``nets.py``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import BinaryAccuracy, BinaryCalibrationError, MultilabelAccuracy

from lit_celeba.attributes import attribute_list
from lit_celeba.errors import AttributeMismatchError, SettingError
from lit_celeba.models.attribute_table import (
    attribute_rows,
    format_markdown,
    format_text,
    write_csv,
)
from lit_celeba.models.averaging import WarmupEMA
from lit_celeba.models.methods import flip_averaged_logit, smoothed_targets
from lit_celeba.models.metrics import SubgroupAccuracy
from lit_celeba.models.nets import Init, Pooling, RecipeCNN, ResNetArch, resnet

# (images, targets), or (images, targets, subgroup values) when subgroups are evaluated.
Batch = tuple[torch.Tensor, ...]


class AttributeClassifier(pl.LightningModule):
    """Face-attribute classifier: BCE-with-logits on one logit per image and target attribute.

    Subclasses build the network and hand it over; everything else (loss, metrics, logging,
    optimizer) is shared. Logged for one attribute: ``train/loss``, ``train/acc``, ``val/loss``,
    ``val/acc``, ``test/loss``, ``test/acc``. Accuracy thresholds the probability at 0.5 (the
    logit at 0), not the logit at 0.5 as the Keras original did by accident.

    For K > 1 ``target_attrs`` the loss is summed over the attributes (averaged over images),
    ``{stage}/acc/<attribute>`` is logged per attribute and ``{stage}/acc`` is their mean (the
    accuracy over all image-attribute decisions), so checkpoint monitors work for any K.
    With ``subgroups``, validation and test batches carry the subgroup values as a third element
    and ``{stage}/acc/<target>|<subgroup>=<0|1>``, ``{stage}/gap/<target>|<subgroup>`` (the
    absolute difference) and ``{stage}/gap_max`` are logged for ``val`` and ``test``. ``test``
    ends with a per-attribute table (printed, TensorBoard text, ``test_attributes.csv``) when
    there is more than one attribute or any subgroup.
    ``test/ece`` (one attribute) is the expected calibration error: the gap between the predicted
    probability and the observed share of positives, averaged over 15 equal-width probability
    bins weighted by their share of images.

    The default optimizer is the recipe's Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7); the CLI's
    ``--optimizer`` replaces it.

    Methods newer than the recipe, each off by default (docs/beyond_the_recipe.md):
    ``label_smoothing`` smooths the training targets (validation and test losses stay the plain
    BCE, comparable between runs); ``tta_flip`` evaluates (validation, test, predict) on the mean
    of the probabilities of each face and its mirror image; ``ema_decay`` validates, checkpoints
    and so tests and exports an exponential moving average of the weights
    (:class:`~lit_celeba.models.averaging.WarmupEMA`).
    """

    def __init__(
        self,
        net: nn.Module,
        target_attrs: Sequence[str] = ("Male",),
        subgroups: Sequence[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise SettingError("label_smoothing", f"must be in [0, 1), got {label_smoothing}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise SettingError("ema_decay", f"must be in (0, 1) or null, got {ema_decay}")
        self.label_smoothing = label_smoothing
        self.tta_flip = tta_flip
        self.ema_decay = ema_decay
        # channels-last suits oneDNN (CPU) and tensor-core (GPU) convolutions; it is a layout
        # only and changes no value beyond float rounding.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.compile_net = compile
        self.target_attrs = attribute_list(target_attrs, "target_attrs")
        self.subgroups = attribute_list(subgroups, "subgroups")
        if not self.target_attrs:
            raise SettingError("target_attrs", "names no attribute")
        num_targets, num_groups = len(self.target_attrs), len(self.subgroups)
        if num_targets == 1:
            self.train_acc, self.val_acc, self.test_acc = (BinaryAccuracy() for _ in range(3))
            self.test_ece = BinaryCalibrationError(n_bins=15, norm="l1")
        else:
            self.train_acc, self.val_acc, self.test_acc = (
                MultilabelAccuracy(num_labels=num_targets, average=None) for _ in range(3)
            )
            self.test_ece = None
        if self.subgroups:
            self.val_subgroup_acc = SubgroupAccuracy(num_targets, num_groups)
            self.test_subgroup_acc = SubgroupAccuracy(num_targets, num_groups)
        # The epoch's mean loss as a metric too: under DDP it syncs the sums over all ranks, also
        # when ranks saw different numbers of images, where `self.log(loss, sync_dist=True)`
        # would not (Lightning 2.6 rounds the mean image count down: its issue #21838).
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def configure_model(self) -> None:
        if self.compile_net:
            self.net.compile()  # in place, so the checkpoint's keys stay the plain ones

    def configure_callbacks(self) -> list[pl.Callback]:
        return [WarmupEMA(self.ema_decay)] if self.ema_decay is not None else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def evaluation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits that validation, test and predict use: with ``tta_flip``, those of the
        mean probability of each image and its mirror image (the network run twice)."""
        logits = self(images)
        if not self.tta_flip:
            return logits
        return flip_averaged_logit(logits, self(images.flip(-1)))

    def _step(
        self,
        batch: Batch,
        stage: str,
        accuracy: Metric,
        calibration: BinaryCalibrationError | None = None,
    ) -> torch.Tensor:
        images, targets = batch[0], batch[1]
        training = stage == "train"
        logits = self(images) if training else self.evaluation_logits(images)
        # The mean over images and attributes times K: summed over the attributes, averaged over
        # the images; for one attribute (times 1, exact) the recipe's loss.
        loss_targets = smoothed_targets(targets, self.label_smoothing) if training else targets
        loss = F.binary_cross_entropy_with_logits(logits, loss_targets) * targets.shape[1]
        # Probabilities, not logits: torchmetrics only applies the sigmoid itself when some value
        # falls outside [0, 1], so logits that happen to lie inside would be thresholded at 0.5.
        probs, labels = torch.sigmoid(logits), targets.long()
        # update, not forward: only the epoch value is logged, so a per-batch value is wasted work.
        accuracy.update(probs, labels)
        if self.subgroups and stage != "train":
            if len(batch) < 3:
                raise AttributeMismatchError(
                    f"model.subgroups is {self.subgroups} but the {stage} batches carry no "
                    "subgroup values; give the data module the same subgroups (the CLI links "
                    "model.subgroups to data.subgroups)."
                )
            getattr(self, f"{stage}_subgroup_acc").update(probs, labels, batch[2])
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
        if len(self.target_attrs) == 1:
            self.log(
                f"{stage}/acc",
                accuracy,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=batch_size,
            )
        if calibration is not None:
            calibration.update(probs, labels)
            self.log(
                f"{stage}/ece", calibration, on_step=False, on_epoch=True, batch_size=batch_size
            )
        return loss

    def _log_epoch_metrics(self, stage: str) -> dict[str, Any]:
        """Logs the per-attribute and subgroup metrics (the one-attribute ``{stage}/acc`` is
        logged as a metric object in ``_step``); returns their computed values for the table."""
        computed: dict[str, Any] = {}
        metrics: dict[str, torch.Tensor] = {}
        accuracy: Metric = getattr(self, f"{stage}_acc")
        if len(self.target_attrs) > 1 and accuracy.update_called:
            per_attribute = accuracy.compute()
            accuracy.reset()
            computed["accuracy"] = per_attribute.tolist()
            metrics |= {
                f"{stage}/acc/{name}": value
                for name, value in zip(self.target_attrs, per_attribute, strict=True)
            }
            self.log(f"{stage}/acc", per_attribute.mean(), prog_bar=True)
        subgroup_acc: SubgroupAccuracy | None = getattr(self, f"{stage}_subgroup_acc", None)
        if subgroup_acc is not None and subgroup_acc.update_called:
            result = subgroup_acc.compute()
            subgroup_acc.reset()
            computed["subgroups"], computed["subgroup_sizes"] = result["accuracy"], result["count"]
            metrics |= self._subgroup_metrics(stage, result["accuracy"])
        self.log_dict(metrics)
        return computed

    def _subgroup_metrics(self, stage: str, accuracy: torch.Tensor) -> dict[str, torch.Tensor]:
        # A subgroup value with no images has no accuracy and no gap: left out, not logged as 0.
        metrics: dict[str, torch.Tensor] = {}
        gaps = []
        for g, group in enumerate(self.subgroups):
            for k, target in enumerate(self.target_attrs):
                for value in (1, 0):
                    if not accuracy[g, value, k].isnan():
                        metrics[f"{stage}/acc/{target}|{group}={value}"] = accuracy[g, value, k]
                gap = (accuracy[g, 1, k] - accuracy[g, 0, k]).abs()
                if not gap.isnan():
                    metrics[f"{stage}/gap/{target}|{group}"] = gap
                    gaps.append(gap)
        if gaps:
            metrics[f"{stage}/gap_max"] = torch.stack(gaps).max()
        return metrics

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        computed = self._log_epoch_metrics("test")
        if len(self.target_attrs) == 1 and self.subgroups and self.test_acc.update_called:
            computed["accuracy"] = [self.test_acc.compute().item()]
        if "accuracy" in computed and (len(self.target_attrs) > 1 or self.subgroups):
            self._report_test_table(computed)

    def _report_test_table(self, computed: dict[str, Any]) -> None:
        """The per-attribute table: printed, as TensorBoard text, and as ``test_attributes.csv``
        in the run's log folder (rank zero only)."""
        if not self.trainer.is_global_zero:
            return
        subgroups = self.subgroups if "subgroups" in computed else []
        rows = attribute_rows(
            self.target_attrs, computed["accuracy"], subgroups, computed.get("subgroups")
        )
        sizes = ""
        if subgroups:
            counts = computed["subgroup_sizes"]
            sizes = "Test images per subgroup: " + ", ".join(
                f"{group}=1: {int(counts[g, 1])}, {group}=0: {int(counts[g, 0])}"
                for g, group in enumerate(subgroups)
            )
        path = Path(self.trainer.log_dir or ".") / "test_attributes.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv(rows, path, subgroups)
        mean = sum(computed["accuracy"]) / len(computed["accuracy"])
        rank_zero_info(
            f"Test accuracy per attribute (mean {mean:.4f}):\n{format_text(rows, subgroups)}"
            + (f"\n{sizes}" if sizes else "")
            + f"\nWrote {path}"
        )
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                text = format_markdown(rows, subgroups) + (f"\n\n{sizes}" if sizes else "")
                logger.experiment.add_text("test/attributes", text, global_step=self.global_step)

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
        """Probability of each target attribute per image, shape (batch, K)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with self.full_precision():
            return torch.sigmoid(self.evaluation_logits(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs before the weights load: a clear message instead of a tensor size mismatch.
        saved = checkpoint.get("hyper_parameters", {}).get("target_attrs")
        if saved is not None and list(saved) != self.target_attrs:
            shown = ", ".join(saved)
            raise AttributeMismatchError(
                f"The checkpoint was trained to predict {len(saved)} attribute(s) ({shown}) but "
                f"this run predicts {self.target_attrs}; set data.target_attr to the checkpoint's "
                "attributes, in the same order (the config the checkpoint was trained with does)."
            )


class RecipeClassifier(AttributeClassifier):
    """The recipe's CNN (388,673 parameters at the defaults) with the post's suggested variations:
    dropout probability, channel widths, and global-average vs flatten pooling; ``channels_last``
    and ``compile`` (``torch.compile``) are speed settings that leave the results unchanged.

    ``target_attrs`` (one output each) is set by the CLI from ``data.target_attr``. ``subgroups``
    only changes what validation and test report, so it is not saved with the checkpoint: a
    checkpoint can be tested with any subgroups.

    Off by default, so that the defaults are the recipe: ``batch_norm`` (after each convolution,
    see :class:`~lit_celeba.models.nets.RecipeCNN`), and ``label_smoothing``, ``tta_flip`` and
    ``ema_decay`` (see :class:`AttributeClassifier`).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.5,
        pooling: Pooling = "gap",
        image_size: int = 64,
        init: Init = "keras",
        target_attrs: Sequence[str] = ("Male",),
        subgroups: Sequence[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        batch_norm: bool = False,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        ema_decay: float | None = None,
    ) -> None:
        num_outputs = len(attribute_list(target_attrs, "target_attrs"))
        net = RecipeCNN(
            channels,
            dropout=dropout,
            pooling=pooling,
            image_size=image_size,
            num_outputs=num_outputs,
            init=init,
            batch_norm=batch_norm,
        )
        super().__init__(
            net, target_attrs, subgroups, channels_last=channels_last, compile=compile,
            label_smoothing=label_smoothing, tta_flip=tta_flip, ema_decay=ema_decay,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["subgroups"])


class ResNetClassifier(AttributeClassifier):
    """A stronger backbone for the whole data set: torchvision's ResNet (``arch``, ResNet-18 by
    default) trained from scratch, with the same loss, metrics, logging and optimizer as the
    recipe's model. ``image_size`` is the data's (the CLI links it) and is kept in the checkpoint;
    128 suits the ResNet's 32-fold downsampling."""

    def __init__(
        self,
        arch: ResNetArch = "resnet18",
        image_size: int = 128,
        target_attrs: Sequence[str] = ("Male",),
        subgroups: Sequence[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        num_outputs = len(attribute_list(target_attrs, "target_attrs"))
        super().__init__(
            resnet(arch, num_outputs=num_outputs), target_attrs, subgroups,
            channels_last=channels_last, compile=compile,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["subgroups"])
