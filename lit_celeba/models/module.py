"""The LightningModule: loss, metrics, logging and optimizer around any network from ``nets.py``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, BinaryCalibrationError, MultilabelAccuracy

from lit_celeba.attributes import attribute_list
from lit_celeba.errors import AttributeMismatchError, SettingError, UsageError
from lit_celeba.groups import OBJECTIVES, group_index, group_names
from lit_celeba.models.attribute_table import (
    GROUP_COLUMNS,
    attribute_rows,
    format_markdown,
    format_text,
    group_rows,
    write_csv,
)
from lit_celeba.models.averaging import WarmupEMA
from lit_celeba.models.methods import (
    flip_averaged_logit,
    group_dro_step,
    group_loss_sums,
    inverse_frequency_weights,
    smoothed_targets,
)
from lit_celeba.models.metrics import (
    PROBABILITY_THRESHOLD,
    DeviceMean,
    GroupAccuracy,
    SubgroupAccuracy,
)
from lit_celeba.models.nets import Init, Pooling, RecipeCNN, ResNetArch, resnet

# (images, targets), or (images, targets, subgroup values) when subgroups are evaluated.
Batch = tuple[torch.Tensor, ...]
Objective = Literal["erm", "reweight", "group_dro"]
# ``compile``: false, true (torch.compile's default mode) or one of its modes by name. A plain
# ``bool | str`` rather than a Literal, so that a misspelt mode gets the list of valid ones.
CompileMode = bool | str
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")
# The state that only training by group needs: dropped, not refused, when a checkpoint is
# loaded by a model that has other groups or another objective (testing with other subgroups).
_GROUP_BUFFERS = ("train_group_counts", "dro_q")


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

    ``compile``: ``torch.compile`` the network, ``true`` (its default mode) or a mode name
    (``reduce-overhead`` replays each step as CUDA graphs, ``max-autotune``); the first training
    step, where it compiles, is timed and printed apart. Nothing in a training step reads a
    value back to the host (no ``.item()``, no data-dependent shapes; tests/test_host_sync.py),
    so a GPU never waits for Python inside an epoch.

    Methods newer than the recipe, each off by default (docs/beyond_the_recipe.md):
    ``label_smoothing`` smooths the training targets (validation and test losses stay the plain
    BCE, comparable between runs); ``tta_flip`` evaluates (validation, test, predict) on the mean
    of the probabilities of each face and its mirror image; ``ema_decay`` validates, checkpoints
    and so tests and exports an exponential moving average of the weights
    (:class:`~lit_celeba.models.averaging.WarmupEMA`).

    Groups (docs/groups.md): with one target and ``subgroups``, the groups are the target value x
    subgroup values (:mod:`lit_celeba.groups`); validation and test log
    ``{stage}/group_acc/<group>`` (e.g. ``val/group_acc/Blond_Hair=1,Male=1``),
    ``{stage}/group_size/<group>``, ``{stage}/worst_group_acc`` (the lowest accuracy of a
    non-empty group, a checkpoint monitor) and ``{stage}/mean_group_acc``; the test table adds a
    group table (``test_groups.csv``). ``objective`` trains for them: ``erm``, the plain mean
    loss; ``reweight``, each image's loss weighted by the inverse of its group's training size;
    ``group_dro``, online Group DRO (Sagawa et al. 2020) with step size ``dro_eta`` and group
    adjustment ``dro_adjust`` (``C`` in ``loss_g + C / sqrt(n_g)``), whose group weights are the
    ``dro_q`` buffer, so checkpoints hold them and a resumed run continues from them. Both read
    the training images per group from the data module (``train_group_counts``), which counts
    them on the training split's labels.
    """

    def __init__(
        self,
        net: nn.Module,
        target_attrs: Sequence[str] = ("Male",),
        subgroups: Sequence[str] | None = None,
        channels_last: bool = False,
        compile: CompileMode = False,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        ema_decay: float | None = None,
        objective: Objective = "erm",
        dro_eta: float = 0.01,
        dro_adjust: float = 0.0,
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
        if compile not in COMPILE_MODES:
            shown = ", ".join(str(mode).lower() for mode in COMPILE_MODES)
            raise SettingError("compile", f"must be one of {shown}; got {compile!r}")
        self.compile_net = compile
        self._compile_started: float | None = None
        self._compile_reported = False
        self.first_step_seconds: float | None = None
        self.target_attrs = attribute_list(target_attrs, "target_attrs")
        self.subgroups = attribute_list(subgroups, "subgroups")
        if not self.target_attrs:
            raise SettingError("target_attrs", "names no attribute")
        num_targets, num_groups = len(self.target_attrs), len(self.subgroups)
        self._init_groups(objective, dro_eta, dro_adjust)
        # validate_args=False: the inputs are this module's own 0/1 predictions and labels, and
        # torchmetrics' checks of them read values back to the host at every step.
        if num_targets == 1:
            self.train_acc, self.val_acc, self.test_acc = (
                BinaryAccuracy(validate_args=False) for _ in range(3)
            )
            self.test_ece = BinaryCalibrationError(n_bins=15, norm="l1", validate_args=False)
        else:
            self.train_acc, self.val_acc, self.test_acc = (
                MultilabelAccuracy(num_labels=num_targets, average=None, validate_args=False)
                for _ in range(3)
            )
            self.test_ece = None
        if self.subgroups:
            self.val_subgroup_acc = SubgroupAccuracy(num_targets, num_groups)
            self.test_subgroup_acc = SubgroupAccuracy(num_targets, num_groups)
        # The epoch's mean loss as a metric too: under DDP it syncs the sums over all ranks, also
        # when ranks saw different numbers of images, where `self.log(loss, sync_dist=True)`
        # would not (Lightning 2.6 rounds the mean image count down: its issue #21838).
        self.train_loss, self.val_loss, self.test_loss = DeviceMean(), DeviceMean(), DeviceMean()

    def _init_groups(self, objective: str, dro_eta: float, dro_adjust: float) -> None:
        if objective not in OBJECTIVES:
            raise SettingError("objective", f"must be one of {', '.join(OBJECTIVES)}; got "
                               f"{objective!r}")  # fmt: skip
        if dro_eta <= 0:
            raise SettingError("dro_eta", f"must be positive, got {dro_eta}")
        if dro_adjust < 0:
            raise SettingError("dro_adjust", f"must be 0 (off) or more, got {dro_adjust}")
        has_groups = len(self.target_attrs) == 1 and bool(self.subgroups)
        self.objective, self.dro_eta, self.dro_adjust = objective, dro_eta, dro_adjust
        self.group_names = group_names(self.target_attrs[0], self.subgroups) if has_groups else []
        if has_groups:
            self.val_group_acc = GroupAccuracy(len(self.group_names))
            self.test_group_acc = GroupAccuracy(len(self.group_names))
        if objective != "erm" and has_groups:
            # Filled from the data module at the start of fit; a buffer so a checkpoint shows
            # the counts it trained with.
            self.register_buffer("train_group_counts", torch.zeros(len(self.group_names)))
        if objective == "group_dro" and has_groups:
            # A buffer: saved in every checkpoint and restored before training resumes, so a
            # resumed run continues with the weights the interrupted one had reached.
            self.register_buffer("dro_q", torch.full((len(self.group_names),),
                                                     1.0 / len(self.group_names)))  # fmt: skip

    def on_fit_start(self) -> None:
        # A validate or test before this fit (same process, same module) ran under
        # torch.inference_mode, so the metrics' reset states are inference tensors, which the
        # fit's validation (under no_grad only) may not update in place: fresh states here.
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
        # Checked here, not in __init__: a checkpoint loaded without subgroups (export, predict)
        # needs no groups, only training does.
        if self.objective == "erm":
            return
        if not self.group_names:
            raise SettingError(
                "objective",
                f"{self.objective} trains on groups, which need one target attribute and at "
                f"least one subgroup (model.subgroups, e.g. [Male]); got targets "
                f"{self.target_attrs} and subgroups {self.subgroups or 'none'}",
            )
        counts = getattr(self.trainer.datamodule, "train_group_counts", None)
        if counts is None:
            raise UsageError(
                f"model.objective {self.objective} needs the training images per group, which "
                "the data module counts in setup('fit') (CelebADataModule does, with one target "
                "and subgroups)."
            )
        self.train_group_counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        if self.objective == "group_dro" and self.dro_adjust > 0:
            empty = [n for n, c in zip(self.group_names, counts, strict=True) if int(c) == 0]
            if empty:
                rank_zero_warn(f"Groups without training images: {', '.join(empty)}")

    def _objective_loss(
        self, logits: torch.Tensor, loss_targets: torch.Tensor, targets: torch.Tensor,
        batch: Batch,
    ) -> torch.Tensor:  # fmt: skip
        """The training loss of ``reweight`` and ``group_dro`` (one target, so K = 1)."""
        if len(batch) < 3:
            raise AttributeMismatchError(
                f"model.objective {self.objective} needs the subgroup values in the training "
                "batches; give the data module train_subgroups=true (the CLI links it to "
                "model.objective)."
            )
        losses = F.binary_cross_entropy_with_logits(
            logits.float(), loss_targets.float(), reduction="none"
        ).reshape(-1)
        groups = group_index(targets, batch[2])
        if self.objective == "reweight":
            return (inverse_frequency_weights(self.train_group_counts)[groups] * losses).mean()
        sums, counts = group_loss_sums(losses, groups, len(self.group_names))
        group_loss = sums / counts.clamp(min=1)
        with torch.no_grad():
            # Every rank takes the same step from the losses of the whole global batch, so the
            # weights stay identical across ranks.
            all_sums = self.trainer.strategy.reduce(sums.detach(), reduce_op="sum")
            all_counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
            adjustment = self.dro_adjust / self.train_group_counts.clamp(min=1).sqrt()
            self.dro_q.copy_(
                group_dro_step(self.dro_q, all_sums / all_counts.clamp(min=1), all_counts > 0,
                               self.dro_eta, adjustment if self.dro_adjust > 0 else None)
            )  # fmt: skip
        return (self.dro_q * group_loss).sum()

    def configure_model(self) -> None:
        if self.compile_net:
            # In place, so the checkpoint's keys stay the plain ones. "reduce-overhead" captures
            # the steps in CUDA graphs: one launch per step instead of one per kernel.
            mode = None if self.compile_net is True else self.compile_net
            self.net.compile(mode=mode)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.compile_net == "reduce-overhead":
            # A new iteration for the CUDA graphs: the last step's outputs may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        if self.compile_net and self._compile_started is None:
            self._compile_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """With ``compile``, says how long the first training step took: compilation happens
        there, so that an epoch's time is not mistaken for the network's speed."""
        if self._compile_started is None or self._compile_reported:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # once, at the first step
        seconds = time.perf_counter() - self._compile_started
        self._compile_reported = True
        self.first_step_seconds = seconds
        mode = "default" if self.compile_net is True else self.compile_net
        rank_zero_info(f"torch.compile (mode {mode}): the first training step took "
                       f"{seconds:.1f} s, compilation included.")  # fmt: skip

    def configure_callbacks(self) -> list[pl.Callback]:
        return [WarmupEMA(self.ema_decay)] if self.ema_decay is not None else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images.contiguous(memory_format=self.memory_format))
        if self.compile_net == "reduce-overhead":
            # A CUDA graph's next replay overwrites its outputs; the dashboards keep logits
            # across steps, so they get a copy (B x K numbers).
            logits = logits.clone()
        return logits

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
        if training and self.objective != "erm":
            loss = self._objective_loss(logits, loss_targets, targets, batch)
        else:
            loss = F.binary_cross_entropy_with_logits(logits, loss_targets) * targets.shape[1]
        probs, labels = torch.sigmoid(logits), targets.long()
        # 0/1 predictions, thresholded as torchmetrics does (above 0.5): given probabilities, it
        # would first check on the host whether they lie in [0, 1], at every step.
        predicted = (probs > PROBABILITY_THRESHOLD).long()
        # update, not forward: only the epoch value is logged, so a per-batch value is wasted work.
        accuracy.update(predicted, labels)
        if self.subgroups and stage != "train":
            if len(batch) < 3:
                raise AttributeMismatchError(
                    f"model.subgroups is {self.subgroups} but the {stage} batches carry no "
                    "subgroup values; give the data module the same subgroups (the CLI links "
                    "model.subgroups to data.subgroups)."
                )
            getattr(self, f"{stage}_subgroup_acc").update(predicted, labels, batch[2])
            if self.group_names:
                groups = group_index(labels, batch[2])
                getattr(self, f"{stage}_group_acc").update(probs, labels, groups)
        batch_size = len(images)
        mean_loss = getattr(self, f"{stage}_loss")
        mean_loss.update(loss, weight=batch_size)
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
        group_acc: GroupAccuracy | None = getattr(self, f"{stage}_group_acc", None)
        if group_acc is not None and group_acc.update_called:
            result = group_acc.compute()
            group_acc.reset()
            computed["groups"], computed["group_sizes"] = result["accuracy"], result["count"]
            metrics |= self._group_metrics(stage, result["accuracy"], result["count"])
        if stage == "train" and self.objective == "group_dro":
            metrics |= {f"train/dro_weight/{name}": self.dro_q[g]
                        for g, name in enumerate(self.group_names)}  # fmt: skip
        self.log_dict(metrics)
        return computed

    def _group_metrics(
        self, stage: str, accuracy: torch.Tensor, count: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        # An empty group (none in this subset) has no accuracy: left out of the worst and mean.
        metrics: dict[str, torch.Tensor] = {}
        for name, acc, size in zip(self.group_names, accuracy, count, strict=True):
            metrics[f"{stage}/group_size/{name}"] = size.float()
            if size > 0:
                metrics[f"{stage}/group_acc/{name}"] = acc.float()
        present = accuracy[count > 0].float()
        if len(present):
            metrics[f"{stage}/worst_group_acc"] = present.min()
            metrics[f"{stage}/mean_group_acc"] = present.mean()
        return metrics

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
        if "groups" in computed:
            self._report_group_table(computed["groups"], computed["group_sizes"])

    def _report_group_table(self, accuracy: torch.Tensor, count: torch.Tensor) -> None:
        """The group table: printed, as TensorBoard text and as ``test_groups.csv``."""
        if not self.trainer.is_global_zero:
            return
        rows = group_rows(self.group_names, accuracy.tolist(), count.tolist())
        path = Path(self.trainer.log_dir or ".") / "test_groups.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv(rows, path, columns=GROUP_COLUMNS)
        present = accuracy[count > 0]
        summary = (f"worst {present.min().item():.4f}, mean {present.mean().item():.4f}"
                   if len(present) else "no images")  # fmt: skip
        rank_zero_info(
            f"Test accuracy per group ({summary}):\n{format_text(rows, columns=GROUP_COLUMNS)}"
            f"\nWrote {path}"
        )
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                text = format_markdown(rows, columns=GROUP_COLUMNS)
                logger.experiment.add_text("test/groups", text, global_step=self.global_step)

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
        self._match_group_buffers(checkpoint.get("state_dict", {}))
        # Runs before the weights load: a clear message instead of a tensor size mismatch.
        saved = checkpoint.get("hyper_parameters", {}).get("target_attrs")
        if saved is not None and list(saved) != self.target_attrs:
            shown = ", ".join(saved)
            raise AttributeMismatchError(
                f"The checkpoint was trained to predict {len(saved)} attribute(s) ({shown}) but "
                f"this run predicts {self.target_attrs}; set data.target_attr to the checkpoint's "
                "attributes, in the same order (the config the checkpoint was trained with does)."
            )


    def _match_group_buffers(self, state: dict[str, torch.Tensor]) -> None:
        """The group state of a checkpoint only fits a model with the same groups and objective:
        anything else (testing a Group DRO checkpoint with plain settings, or other subgroups)
        loads the weights without it, and a model that wants it keeps its own."""
        own = dict(self.named_buffers())
        for name in _GROUP_BUFFERS:
            saved = state.get(name)
            if saved is not None and (name not in own or own[name].shape != saved.shape):
                del state[name]
                if self.objective != "erm" and name in own:
                    rank_zero_warn(f"The checkpoint's {name} is for other groups: not loaded.")
            elif saved is None and name in own:
                state[name] = own[name].detach().clone()


class RecipeClassifier(AttributeClassifier):
    """The recipe's CNN (388,673 parameters at the defaults) with the post's suggested variations:
    dropout probability, channel widths, and global-average vs flatten pooling; ``channels_last``
    and ``compile`` (``torch.compile``) are speed settings that leave the results unchanged.

    ``target_attrs`` (one output each) is set by the CLI from ``data.target_attr``. ``subgroups``
    only changes what validation and test report, so it is not saved with the checkpoint: a
    checkpoint can be tested with any subgroups. ``objective``, ``dro_eta`` and ``dro_adjust``
    choose how training treats the groups (see :class:`AttributeClassifier`).

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
        compile: CompileMode = False,
        batch_norm: bool = False,
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        ema_decay: float | None = None,
        objective: Objective = "erm",
        dro_eta: float = 0.01,
        dro_adjust: float = 0.0,
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
            objective=objective, dro_eta=dro_eta, dro_adjust=dro_adjust,
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
        compile: CompileMode = False,
        objective: Objective = "erm",
        dro_eta: float = 0.01,
        dro_adjust: float = 0.0,
    ) -> None:
        num_outputs = len(attribute_list(target_attrs, "target_attrs"))
        super().__init__(
            resnet(arch, num_outputs=num_outputs), target_attrs, subgroups,
            channels_last=channels_last, compile=compile, objective=objective, dro_eta=dro_eta,
            dro_adjust=dro_adjust,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["subgroups"])
