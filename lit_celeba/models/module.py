"""The LightningModule: the steps, the optimizer and the logging around any network from
``nets.py``; the losses are :mod:`.objectives`, the metrics :mod:`.evaluation`, and what the
logits mean (probabilities, decisions) :mod:`.outputs`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MultilabelAccuracy

from lit_celeba.attributes import attribute_list
from lit_celeba.callbacks.lightning_internals import attached_trainer
from lit_celeba.errors import AttributeMismatchError, SettingError, UsageError
from lit_celeba.groups import OBJECTIVES, group_names
from lit_celeba.models.averaging import WarmupEMA
from lit_celeba.models.evaluation import EpochRows, epoch_results
from lit_celeba.models.metrics import DeviceMean
from lit_celeba.models.nets import Init, Pooling, RecipeCNN, ResNetArch, resnet
from lit_celeba.models.objectives import Objective, attribute_bce, training_loss
from lit_celeba.models.outputs import (
    CHECKPOINT_KEY,
    Calibration,
    evaluation_outputs,
    final_logits,
)

# (images, targets), or (images, targets, subgroup values) when subgroups are evaluated.
Batch = tuple[torch.Tensor, ...]
# ``compile``: false, true (torch.compile's default mode) or one of its modes by name. A plain
# ``bool | str`` rather than a Literal, so that a misspelt mode gets the list of valid ones.
CompileMode = bool | str
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")
# The state that only training by group needs: dropped, not refused, when a checkpoint is
# loaded by a model that has other groups or another objective (testing with other subgroups).
_GROUP_BUFFERS = ("train_group_counts", "dro_q")


class AttributeClassifier(pl.LightningModule):
    """Face-attribute classifier: BCE-with-logits on one logit per image and target attribute.

    Subclasses build the network and hand it over. Logged per epoch: ``{stage}/loss`` and
    ``{stage}/acc`` for ``train``, ``val`` and ``test``; for K > 1 ``target_attrs`` the loss is
    summed over the attributes, ``{stage}/acc/<attribute>`` is logged per attribute and
    ``{stage}/acc`` is their mean, so checkpoint monitors work for any K. Validation and test
    add ``{stage}/balanced_acc``, ``{stage}/auroc`` and ``{stage}/ece`` (means over the
    attributes, :mod:`lit_celeba.models.evaluation`); test adds ``test/ece_uncalibrated``.
    With ``subgroups``, validation and test batches carry the subgroup values as a third element
    and ``{stage}/acc/<target>|<subgroup>=<0|1>``, ``{stage}/gap/<target>|<subgroup>`` and
    ``{stage}/gap_max`` are logged; with one target the groups (target value x subgroup values,
    docs/groups.md) add ``{stage}/group_acc/<group>``, ``{stage}/group_size/<group>``,
    ``{stage}/worst_group_acc`` and ``{stage}/mean_group_acc``. ``test_results`` keeps the last
    test's per-attribute and per-group numbers for the test tables.

    Evaluation (validation, test, predict) runs in float32 on the final logits
    (:mod:`lit_celeba.models.outputs`): ``tta_flip`` averages each face with its mirror image,
    and outside ``fit`` the checkpoint's calibration (per-attribute temperature and threshold)
    applies; during ``fit`` validation uses the plain sigmoid and 0.5, so that its curves stay
    comparable from epoch to epoch. The steps return those outputs, which the callbacks read.

    Settings newer than the recipe, off by default (docs/beyond_the_recipe.md):
    ``label_smoothing`` smooths the training targets; ``tta_flip``; ``ema_decay`` validates,
    checkpoints and so tests and exports an exponential moving average of the weights
    (:class:`~lit_celeba.models.averaging.WarmupEMA`). ``objective`` trains for the groups:
    ``erm``, ``reweight`` or ``group_dro`` (:mod:`.objectives`; ``dro_eta``, ``dro_adjust``).
    ``channels_last`` and ``compile`` (``torch.compile``; ``true`` or a mode name, the first
    training step timed apart) are speed settings. Nothing in a training step reads a value
    back to the host (tests/test_host_sync.py). The default optimizer is the recipe's Adam
    (lr 1e-3, eps 1e-7); the CLI's ``--optimizer`` replaces it.
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
        _check_settings(label_smoothing, ema_decay, compile, objective, dro_eta, dro_adjust)
        self.label_smoothing, self.tta_flip, self.ema_decay = label_smoothing, tta_flip, ema_decay
        # channels-last suits oneDNN (CPU) and tensor-core (GPU) convolutions; a layout only.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.compile_net = compile
        self._compile_started: float | None = None
        self.first_step_seconds: float | None = None
        self.target_attrs = attribute_list(target_attrs, "target_attrs")
        self.subgroups = attribute_list(subgroups, "subgroups")
        if not self.target_attrs:
            raise SettingError("target_attrs", "names no attribute")
        if len(self.target_attrs) == 1 and self.target_attrs[0] in self.subgroups:
            raise SettingError(
                "subgroups",
                f"must not hold the target {self.target_attrs[0]}: its groups (target value x "
                "subgroup values) would include pairs that cannot exist",
            )
        num_targets = len(self.target_attrs)
        self.objective, self.dro_eta, self.dro_adjust = objective, dro_eta, dro_adjust
        has_groups = num_targets == 1 and bool(self.subgroups)
        self.group_names = group_names(self.target_attrs[0], self.subgroups) if has_groups else []
        if objective != "erm" and has_groups:
            # Filled from the data module when fit starts; buffers, so checkpoints keep them and
            # a resumed Group DRO run goes on with the weights it had reached.
            self.register_buffer("train_group_counts", torch.zeros(len(self.group_names)))
        if objective == "group_dro" and has_groups:
            count = len(self.group_names)
            self.register_buffer("dro_q", torch.full((count,), 1.0 / count))
        # validate_args=False: the inputs are 0/1 decisions and labels, and torchmetrics' checks
        # of them read values back to the host at every step.
        # train/acc is logged as a metric object, so that callbacks reading callback_metrics at
        # on_train_epoch_end see this epoch's value; "micro": the mean over the attributes.
        self.train_acc = MultilabelAccuracy(num_targets, average="micro", validate_args=False)
        self.train_acc_per_attribute = (
            MultilabelAccuracy(num_targets, average=None, validate_args=False)
            if num_targets > 1 else None
        )  # fmt: skip
        # The epoch's mean loss as a metric: under DDP it syncs the sums over all ranks, also
        # when ranks saw different numbers of images (Lightning's own mean does not: #21838).
        self.train_loss, self.val_loss, self.test_loss = DeviceMean(), DeviceMean(), DeviceMean()
        self.val_rows = EpochRows(bool(self.subgroups))
        self.test_rows = EpochRows(bool(self.subgroups))
        self.calibration = Calibration.identity(num_targets)
        self._identity = Calibration.identity(num_targets)
        self.test_results: dict[str, Any] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images.contiguous(memory_format=self.memory_format))
        if self.compile_net == "reduce-overhead":
            # A CUDA graph's next replay overwrites its outputs, which callbacks may still hold.
            logits = logits.clone()
        return logits

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = batch[0], batch[1]
        logits = self(images)
        if self.objective != "erm" and self.group_names and len(batch) < 3:
            raise AttributeMismatchError(
                f"model.objective {self.objective} needs the subgroup values in the training "
                "batches; give the data module train_subgroups=true (the CLI links it to "
                "model.objective)."
            )
        loss = training_loss(
            logits, targets, self.label_smoothing, self.objective,
            subgroup_values=batch[2] if len(batch) > 2 else None,
            train_group_counts=getattr(self, "train_group_counts", None),
            dro_q=getattr(self, "dro_q", None), dro_eta=self.dro_eta, dro_adjust=self.dro_adjust,
            reduce=lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"),
        )  # fmt: skip
        _, predictions = self._identity.apply(logits.detach())
        for accuracy in (self.train_acc, self.train_acc_per_attribute):
            if accuracy is not None:
                accuracy.update(predictions, targets.long())
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(images))  # fmt: skip
        self._log_loss("train", loss, len(images))
        return {"loss": loss, "predictions": predictions}

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """``probabilities`` and 0/1 ``predictions`` (B, K) of each target attribute."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        outputs = self.evaluate(images)
        return {"probabilities": outputs["probabilities"], "predictions": outputs["predictions"]}

    def evaluate(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits`` (uncalibrated, after TTA), ``probabilities`` and ``predictions`` (B, K) as
        every consumer sees them, in float32 whatever the training precision."""
        with torch.autocast(self.device.type, enabled=False):
            logits = final_logits(self, images, self.tta_flip)
        return evaluation_outputs(logits, self.applied_calibration())

    def applied_calibration(self) -> Calibration:
        """The checkpoint's calibration, but the plain sigmoid and 0.5 while fitting."""
        trainer = attached_trainer(self)
        fitting = trainer is not None and trainer.state.fn == "fit"
        return self._identity if fitting else self.calibration

    def _evaluation_step(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        images, targets = batch[0], batch[1]
        if self.subgroups and len(batch) < 3:
            raise AttributeMismatchError(
                f"model.subgroups is {self.subgroups} but the {stage} batches carry no subgroup "
                "values; give the data module the same subgroups (the CLI links model.subgroups "
                "to data.subgroups)."
            )
        outputs = self.evaluate(images)
        calibration = self.applied_calibration()
        loss = attribute_bce(calibration.scaled(outputs["logits"]), targets.float())
        getattr(self, f"{stage}_rows").update(outputs["logits"], targets,
                                               batch[2] if len(batch) > 2 else None)  # fmt: skip
        self._log_loss(stage, loss, len(images))
        return {**outputs, "loss": loss, "targets": targets}

    def _log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        mean = getattr(self, f"{stage}_loss")
        mean.update(loss, weight=batch_size)
        self.log(f"{stage}/loss", mean, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch_size)  # fmt: skip

    def on_train_epoch_end(self) -> None:
        per_attribute = self.train_acc_per_attribute
        if per_attribute is not None and per_attribute.update_called:
            accuracy = per_attribute.compute()
            per_attribute.reset()
            self.log_dict({f"train/acc/{a}": v for a, v in zip(self.target_attrs, accuracy,
                                                                 strict=True)})  # fmt: skip
        if self.objective == "group_dro" and self.group_names:
            self.log_dict({f"train/dro_weight/{name}": self.dro_q[g]
                           for g, name in enumerate(self.group_names)})  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_evaluation("test")

    def _log_evaluation(self, stage: str) -> dict[str, Any]:
        rows: EpochRows = getattr(self, f"{stage}_rows")
        if rows.empty:
            return {}
        logits, targets, values = rows.collect()
        scalars, results = epoch_results(
            stage, self.target_attrs, self.subgroups, self.group_names, logits, targets, values,
            self.applied_calibration(),
        )  # fmt: skip
        acc = scalars.pop(f"{stage}/acc")
        self.log(f"{stage}/acc", acc, prog_bar=True)
        self.log_dict(scalars)
        return results

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def configure_callbacks(self) -> list[pl.Callback]:
        return [WarmupEMA(self.ema_decay)] if self.ema_decay is not None else []

    def configure_model(self) -> None:
        if self.compile_net:
            # In place, so the checkpoint's keys stay the plain ones. "reduce-overhead" captures
            # the steps in CUDA graphs: one launch per step instead of one per kernel.
            self.net.compile(mode=None if self.compile_net is True else self.compile_net)

    def on_fit_start(self) -> None:
        # A validate or test before this fit (same process, same module) ran under
        # torch.inference_mode, whose metric states a fit's validation may not update in place.
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
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
        empty = [n for n, c in zip(self.group_names, counts, strict=True) if int(c) == 0]
        if self.objective == "group_dro" and self.dro_adjust > 0 and empty:
            rank_zero_warn(f"Groups without training images: {', '.join(empty)}")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.compile_net == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs may be reused
        if self.compile_net and self._compile_started is None:
            self._compile_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """With ``compile``, says how long the first training step took: compilation happens
        there, so that an epoch's time is not mistaken for the network's speed."""
        if self._compile_started is None or self.first_step_seconds is not None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # once, at the first step
        self.first_step_seconds = time.perf_counter() - self._compile_started
        mode = "default" if self.compile_net is True else self.compile_net
        rank_zero_info(f"torch.compile (mode {mode}): the first training step took "
                       f"{self.first_step_seconds:.1f} s, compilation included.")  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.calibration.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._match_group_buffers(checkpoint.get("state_dict", {}))
        # Runs before the weights load: a clear message instead of a tensor size mismatch.
        saved = checkpoint.get("hyper_parameters", {}).get("target_attrs")
        if saved is not None and list(saved) != self.target_attrs:
            raise AttributeMismatchError(
                f"The checkpoint was trained to predict {len(saved)} attribute(s) "
                f"({', '.join(saved)}) but this run predicts {self.target_attrs}; set "
                "data.target_attr to the checkpoint's attributes, in the same order (the config "
                "the checkpoint was trained with does)."
            )
        # Checkpoints from before calibration load as temperature 1 and threshold 0.5.
        self.calibration = Calibration.from_state(checkpoint.get(CHECKPOINT_KEY),
                                                  len(self.target_attrs))  # fmt: skip

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


def _check_settings(
    label_smoothing: float, ema_decay: float | None, compile: CompileMode, objective: str,
    dro_eta: float, dro_adjust: float,
) -> None:  # fmt: skip
    """Each setting in its own terms (the CLI adds the ``model.`` key)."""
    problems = {
        "label_smoothing": (not 0.0 <= label_smoothing < 1.0, f"must be in [0, 1), got "
                            f"{label_smoothing}"),  # fmt: skip
        "ema_decay": (ema_decay is not None and not 0.0 < ema_decay < 1.0,
                      f"must be in (0, 1) or null, got {ema_decay}"),  # fmt: skip
        "compile": (compile not in COMPILE_MODES, "must be one of "
                    f"{', '.join(str(m).lower() for m in COMPILE_MODES)}; got {compile!r}"),
        "objective": (objective not in OBJECTIVES, f"must be one of {', '.join(OBJECTIVES)}; "
                      f"got {objective!r}"),  # fmt: skip
        "dro_eta": (dro_eta <= 0, f"must be positive, got {dro_eta}"),
        "dro_adjust": (dro_adjust < 0, f"must be 0 (off) or more, got {dro_adjust}"),
    }
    for setting, (bad, problem) in problems.items():
        if bad:
            raise SettingError(setting, problem)


class RecipeClassifier(AttributeClassifier):
    """The recipe's CNN (388,673 parameters at the defaults) with the post's variations: dropout
    probability, channel widths, global-average vs flatten pooling, and ``batch_norm`` (off in
    the recipe; see :class:`~lit_celeba.models.nets.RecipeCNN`). Every other argument is
    :class:`AttributeClassifier`'s. ``target_attrs`` (one output each) is set by the CLI from
    ``data.target_attr``; ``subgroups`` only changes what validation and test report, so it is
    not saved with the checkpoint: a checkpoint can be tested with any subgroups."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.5,
        pooling: Pooling = "gap",
        image_size: int = 64,
        init: Init = "keras",
        batch_norm: bool = False,
        target_attrs: Sequence[str] = ("Male",),
        **kwargs: Any,
    ) -> None:
        outputs = len(attribute_list(target_attrs, "target_attrs"))
        net = RecipeCNN(channels, dropout=dropout, pooling=pooling, image_size=image_size,
                        num_outputs=outputs, init=init, batch_norm=batch_norm)  # fmt: skip
        super().__init__(net, target_attrs, **kwargs)
        self.save_hyperparameters(ignore=["subgroups"])


class ResNetClassifier(AttributeClassifier):
    """A stronger backbone for the whole data set: torchvision's ResNet (``arch``, ResNet-18 by
    default) trained from scratch, with everything else :class:`AttributeClassifier`'s.
    ``image_size`` is the data's (the CLI links it) and is kept in the checkpoint; 128 suits the
    ResNet's 32-fold downsampling."""

    def __init__(
        self,
        arch: ResNetArch = "resnet18",
        image_size: int = 128,
        target_attrs: Sequence[str] = ("Male",),
        **kwargs: Any,
    ) -> None:
        outputs = len(attribute_list(target_attrs, "target_attrs"))
        super().__init__(resnet(arch, num_outputs=outputs), target_attrs, **kwargs)
        self.save_hyperparameters(ignore=["subgroups"])
