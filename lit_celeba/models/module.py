"""The LightningModule: the steps, the optimizer and the logging around a network from
``nets.py``, which it takes as ``net``; the losses are :mod:`.objectives`, the metrics
:mod:`.evaluation`, and what the logits mean (probabilities, decisions) :mod:`.outputs`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import Metric
from torchmetrics.classification import MultilabelAccuracy

from lit_celeba.attributes import attribute_list, check_same_targets
from lit_celeba.base.errors import SettingError
from lit_celeba.base.lightning_internals import attached_trainer
from lit_celeba.methods import group_training
from lit_celeba.methods.averaging import WarmupEMA, check_ema_decay
from lit_celeba.methods.calibration import (
    ValidateTheLastEpoch,
    fit_calibration,
    restore_calibration,
    save_calibration,
)
from lit_celeba.methods.flip import final_logits
from lit_celeba.methods.groups import Objective, check_objective
from lit_celeba.methods.positive_weights import fill_positive_weights
from lit_celeba.methods.smoothing import check_smoothing
from lit_celeba.methods.thresholds import ThresholdRule, check_rule
from lit_celeba.models import objectives
from lit_celeba.models.evaluation import EpochRows, epoch_results
from lit_celeba.models.metrics import DeviceMean
from lit_celeba.models.nets import Net
from lit_celeba.models.one_class import say_one_class
from lit_celeba.models.optimization import configure, recipe_adam
from lit_celeba.models.outputs import Calibration
from lit_celeba.speed import compiling
from lit_celeba.speed.compiling import CompileMode

# (images, targets), or (images, targets, subgroup values) when subgroups are evaluated.
Batch = tuple[torch.Tensor, ...]


class AttributeClassifier(pl.LightningModule):
    """Face-attribute classifier: BCE-with-logits on one logit per image and target attribute.

    ``net`` is the network (:mod:`~lit_celeba.models.nets`: the recipe's ``RecipeCNN`` by
    default, or torchvision's ``ResNet``), with one output per target attribute; the CLI builds
    it from ``--model.net`` and links its ``image_size`` and ``num_outputs`` to the data's.
    ``subgroups``, which only changes what evaluation reports, is not saved with the checkpoint:
    a checkpoint can be tested with any subgroups. Logged per epoch: ``{stage}/loss`` and
    ``{stage}/acc`` (the mean over the K attributes, so checkpoint monitors work for any K), and
    for validation and test what :func:`~lit_celeba.models.evaluation.epoch_results` lists
    (per attribute, per subgroup and per group); ``test_results`` keeps the last test's numbers
    for the test tables. Evaluation (validation, test, predict) runs in float32 and returns the
    final logits, probabilities and decisions (:mod:`lit_celeba.models.outputs`: ``tta_flip``,
    and outside ``fit`` the checkpoint's calibration; validation during ``fit`` uses the plain
    sigmoid and 0.5, so that its curves compare from epoch to epoch), which the callbacks read.

    Settings newer than the recipe, off by default (docs/beyond_the_recipe.md):
    ``label_smoothing``, ``tta_flip``, ``ema_decay`` (an average of the weights validated,
    checkpointed and exported, :class:`~lit_celeba.methods.averaging.WarmupEMA`) and the group
    ``objective`` (:mod:`.objectives`, :mod:`lit_celeba.methods.group_training`). ``channels_last``
    and ``compile`` (:mod:`lit_celeba.speed.compiling`) are speed settings. Nothing in a training
    step reads a value back to the host (tests/test_host_sync.py).

    ``optimizer`` and ``scheduler`` are LightningCLI's callables (``--model.optimizer Adam
    --model.optimizer.lr 1e-3``, ``--model.scheduler StepLR``; :mod:`.optimization`); the
    default (or null) is the recipe's Adam (lr 1e-3, eps 1e-7) at a constant rate. Being how a fit
    trains, not what the checkpoint is, they are kept in the run's config.yaml, not in the
    checkpoint's hyperparameters.
    """

    def __init__(
        self,
        net: Net,
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
        temperature_scaling: bool = True,
        thresholds: ThresholdRule = "fixed",
        pos_weight: bool = False,
        optimizer: OptimizerCallable | None = recipe_adam,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, Net) or type(net) is Net:  # Net itself is no network
            raise SettingError(
                "net", f"must be a network of lit_celeba.models.nets (RecipeCNN or ResNet), whose "
                f"checkpoints can be rebuilt from their settings; got {type(net).__name__}"
            )  # fmt: skip
        # Every argument, defaults included (so a checkpoint keeps working if a default changes),
        # the network as its class path and settings (plain values: checkpoints load with
        # weights_only), but not the subgroups (any checkpoint tests with any) nor how it was
        # optimized (a callable; the run's config.yaml keeps it).
        self.save_hyperparameters(ignore=["net", "subgroups", "optimizer", "scheduler"])
        self.save_hyperparameters({"net": net.config()})  # added to the others, and logged
        check_objective(objective, dro_eta, dro_adjust)
        check_smoothing(label_smoothing)
        check_rule(thresholds)
        check_ema_decay(ema_decay)
        compiling.check_compile_mode(compile)
        self.label_smoothing, self.tta_flip, self.ema_decay = label_smoothing, tta_flip, ema_decay
        self.temperature_scaling, self.thresholds = temperature_scaling, thresholds
        # channels-last suits oneDNN (CPU) and tensor-core (GPU) convolutions; a layout only.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.compile_net = compile
        self.target_attrs = attribute_list(target_attrs, "target_attrs")
        self.subgroups = attribute_list(subgroups, "subgroups")
        if not self.target_attrs:
            raise SettingError("target_attrs", "names no attribute")
        num_targets = len(self.target_attrs)
        if net.settings.get("num_outputs", num_targets) != num_targets:
            raise SettingError(
                "net", f"has {net.settings['num_outputs']} outputs for {num_targets} target "
                f"attributes {self.target_attrs}: give it num_outputs {num_targets}"
            )  # fmt: skip
        self.objective, self.dro_eta, self.dro_adjust = objective, dro_eta, dro_adjust
        # None, as an earlier run's config.yaml saved "no optimizer given": the recipe's Adam.
        self.make_optimizer, self.make_scheduler = optimizer or recipe_adam, scheduler
        self.group_names = group_training.training_groups(self.target_attrs, self.subgroups)
        for name, value in group_training.group_buffers(objective, len(self.group_names)).items():
            self.register_buffer(name, value)
        if pos_weight:  # filled from the training set when fit starts; checkpoints keep it
            self.register_buffer("pos_weight", torch.ones(len(self.target_attrs)))
        # train/acc as a metric object: callbacks reading callback_metrics at on_train_epoch_end
        # see this epoch's value. validate_args=False: the checks read values back to the host.
        self.train_acc = MultilabelAccuracy(num_targets, average="micro", validate_args=False)
        self.train_acc_per_attribute = (
            MultilabelAccuracy(num_targets, average=None, validate_args=False)
            if num_targets > 1 else None
        )  # fmt: skip
        # The epoch's mean loss as a metric: under DDP it syncs the sums over all ranks, also
        # when ranks saw different numbers of images (Lightning's own mean does not: #21838).
        self.train_loss, self.val_loss, self.test_loss = DeviceMean(), DeviceMean(), DeviceMean()
        self.val_rows, self.test_rows = EpochRows(self.subgroups), EpochRows(self.subgroups)
        self.calibration = Calibration.identity(num_targets)
        self.calibration_step: int | None = None  # the training step it was fitted at
        self._identity = Calibration.identity(num_targets)
        self.test_results: dict[str, Any] = {}
        self._said: set[str] = set()  # the notes said, each once
        self.validation_rows: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images.contiguous(memory_format=self.memory_format))
        if self.compile_net == "reduce-overhead":
            # A CUDA graph's next replay overwrites its outputs, which callbacks may still hold.
            logits = logits.clone()
        return logits

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = batch[0], batch[1]
        logits = self(images)
        loss = objectives.training_loss(self, logits, targets, batch[2] if len(batch) > 2 else None)
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
        outputs = self.evaluate(batch[0] if isinstance(batch, (tuple, list)) else batch)
        return {key: outputs[key] for key in ("probabilities", "predictions")}

    def evaluate(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Uncalibrated ``logits``, ``probabilities`` and ``predictions`` (B, K), in float32."""
        with torch.autocast(self.device.type, enabled=False):
            logits = final_logits(self, images, self.tta_flip)
        return self.applied_calibration().outputs(logits)

    def applied_calibration(self) -> Calibration:
        """The checkpoint's calibration, but the plain sigmoid and 0.5 while fitting."""
        trainer = attached_trainer(self)
        fitting = trainer is not None and trainer.state.fn == "fit"
        return self._identity if fitting else self.calibration

    def calibration_of(self, logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
        """The calibration that a fit keeps for these uncalibrated validation rows (N, K)."""
        return fit_calibration(logits, targets, self.temperature_scaling, self.thresholds)

    def _evaluation_step(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        images, targets = batch[0], batch[1]
        outputs = self.evaluate(images)
        calibration = self.applied_calibration()
        loss = objectives.attribute_bce(calibration.scaled(outputs["logits"]), targets.float())
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
            self.log_dict(group_training.dro_weight_scalars(self.group_names, self.dro_q))

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_evaluation("test")

    def _log_evaluation(self, stage: str) -> dict[str, Any]:
        rows: EpochRows = getattr(self, f"{stage}_rows")
        if (collected := rows.collect()) is None:
            return {}
        logits, targets, values = collected
        say_one_class(stage, self.target_attrs, targets, self._said)
        if stage == "val":
            self.validation_rows = (logits, targets)  # uncalibrated, for the calibrate command
            if self._identity is self.applied_calibration():  # a fit: its checkpoints carry it
                self.calibration = self.calibration_of(logits, targets)
                self.calibration_step = self.global_step
        scalars, results = epoch_results(
            stage, self.target_attrs, self.subgroups, self.group_names, logits, targets, values,
            self.applied_calibration(),
        )  # fmt: skip
        self.log(f"{stage}/acc", scalars.pop(f"{stage}/acc"), prog_bar=True)
        self.log_dict(scalars)
        return results

    def configure_optimizers(self) -> Any:
        return configure(self, self.make_optimizer, self.make_scheduler)

    def configure_callbacks(self) -> list[pl.Callback]:
        averaging = [WarmupEMA(self.ema_decay)] if self.ema_decay is not None else []
        compiled = [compiling.CompiledSteps(self.compile_net)] if self.compile_net else []
        return [*averaging, *compiled, ValidateTheLastEpoch()]

    def configure_model(self) -> None:
        if self.compile_net:
            compiling.compile_in_place(self.net, self.compile_net)

    def on_fit_start(self) -> None:
        # A validate or test before this fit (same process, same module) ran under
        # torch.inference_mode, whose metric states a fit's validation may not update in place.
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
        group_training.fill_group_counts(self, self.trainer.datamodule)
        fill_positive_weights(self, self.trainer.datamodule)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_calibration(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        group_training.match_group_buffers(state, dict(self.named_buffers()), self.objective)
        # Before the weights load: a clear message instead of a tensor size mismatch.
        check_same_targets(checkpoint.get("hyper_parameters", {}).get("target_attrs"),
                           self.target_attrs)  # fmt: skip
        restore_calibration(self, checkpoint)
