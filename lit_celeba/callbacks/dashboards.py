"""TensorBoard dashboards: what the original notebook plotted, live while training.

``TensorBoardDashboards`` adds to the module's per-epoch ``train/*``, ``val/*`` and ``test/*``
scalars:

- ``train/loss_step`` and ``train/acc_step``, the training curves per step;
- ``train_vs_val/loss`` and ``train_vs_val/acc`` in the sub-runs ``train`` and ``val``: the
  per-epoch values once more, so that train and validation share a chart in two colours;
- a Custom Scalars layout with those shared charts, the per-step curves and the learning rate;
- the HParams table: every run (fit, validate, test) is a session whose columns are its
  hyperparameters and the last value of each of its scalars, i.e. its final metrics;
- pictures: ``train/augmentations`` (2 training images, 5 augmentations each) when fitting starts;
  ``val/predictions`` and ``test/predictions`` (10 faces with the true label and Pr(attribute),
  wrong ones framed in red), ``val/confusion_matrix`` and ``test/confusion_matrix`` after each
  validation and test epoch; PR curves ``val/pr_curve`` and ``test/pr_curve`` in the PR Curves tab;
  ``val/maps`` and ``test/maps`` (``.../maps/<attribute>`` for each of K > 1 attributes): the
  most confident right answers and the worst mistakes of the epoch with their class-activation
  maps laid over (:mod:`lit_celeba.explain`).

With K > 1 target attributes the same tags hold: each face is shown once with one caption line
per attribute (the first 3), the confusion-matrix picture holds one small matrix per attribute
(all K: 40 fit in about 980x1000 pixels), and each attribute gets its PR curve
``{stage}/pr_curve/<attribute>``. One attribute, given as a name or a list of one, draws exactly
the pictures and tags above. Probabilities and targets stay (N, K) throughout, also in the DDP
gather.

The learning rate comes from Lightning's ``LearningRateMonitor`` (``lr-Adam``), next to this
callback in the configs. The pictures are drawn with Pillow, not matplotlib, because they are drawn
every validation epoch and must stay cheap (about 20 ms for the gallery and the confusion matrix;
matplotlib needs about 0.25 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from lit_celeba.base.lightning_internals import (
    default_hp_metric,
    file_writer,
    logging_step,
    should_log_this_step,
)
from lit_celeba.callbacks.evaluation_pictures import EvaluationPictures
from lit_celeba.callbacks.pictures import (
    augmentation_preview,
)
from lit_celeba.callbacks.summaries import add_png, run_hyperparameters, session_end_summary
from lit_celeba.data.datamodule import CelebADataModule

# The per-epoch train/* and val/* values again, under one tag in two sub-runs (<run>/train and
# <run>/val), the way Keras writes them: TensorBoard colours lines by run, so only this puts train
# and validation on one chart in two colours (Time Series' "train_vs_val" cards, Custom Scalars).
EPOCH_CURVES = {"loss": "train_vs_val/loss", "acc": "train_vs_val/acc"}
# Regular expressions of the tags each shared chart draws (Custom Scalars matches from the start).
SHARED_CHARTS = {
    "lit_celeba": {
        "loss per epoch (train vs validation)": ["Multiline", [r"^train_vs_val/loss$"]],
        "accuracy per epoch (train vs validation)": ["Multiline", [r"^train_vs_val/acc$"]],
        "training loss and accuracy per step": [
            "Multiline",
            [r"^train/loss_step$", r"^train/acc_step$"],
        ],
        "learning rate": ["Multiline", [r"^lr-"]],
    }
}
# Settings that cannot change a run's results; left out of the HParams table, whose first five
# columns are all it shows at first.
class TensorBoardDashboards(Callback):
    """Charts and pictures in TensorBoard; inert when the trainer has no ``TensorBoardLogger``.

    Args:
        gallery_size: faces in the prediction gallery (the first ones of the validation or test
            set, the same every epoch).
        preview_images: training images in the augmentation preview.
        preview_augmentations: augmentations shown per preview image.
        preview_seed: seed of the preview's augmentations; the training's random stream is left
            untouched, so a run draws the same batches with or without this callback.
        maps_per_kind: faces per attribute in the activation-map pictures, of each kind (the
            most confident right answers, the worst mistakes); 0 draws none. With many target
            attributes each gets fewer, 64 faces in all at most (one of each kind for 40:
            :func:`~lit_celeba.explain.candidates.faces_per_kind`).
    """

    def __init__(
        self,
        gallery_size: int = 10,
        preview_images: int = 2,
        preview_augmentations: int = 5,
        preview_seed: int = 1,
        maps_per_kind: int = 4,
    ) -> None:
        for name, value in (
            ("gallery_size", gallery_size),
            ("preview_images", preview_images),
            ("preview_augmentations", preview_augmentations),
            ("maps_per_kind", maps_per_kind),
        ):
            if value < 0:
                raise ValueError(f"TensorBoardDashboards.{name} must be 0 or more, got {value}")
        self.gallery_size = gallery_size
        self.preview_images = preview_images
        self.preview_augmentations = preview_augmentations
        self.preview_seed = preview_seed
        self._logger: TensorBoardLogger | None = None
        self._curve_writers: dict[str, SummaryWriter] = {}
        # The per-step curves' values, kept on the device until the epoch ends: reading them at
        # the step would make the host wait for the GPU every log_every_n_steps.
        self._step_values: list[tuple[int, dict[str, torch.Tensor]]] = []
        self._evaluation = EvaluationPictures(gallery_size, maps_per_kind)
        self._collecting = False

    # ---- lifecycle ---------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._logger = next(
            (lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None
        )
        # Every rank collects its share of the validation and test predictions (the pictures
        # and curves cover all images); only rank 0 writes: the other ranks' experiment is a dummy.
        self._collecting = self._logger is not None and stage != "predict"
        if self._logger is None or stage == "predict" or not trainer.is_global_zero:
            self._logger = None
            return
        if default_hp_metric(self._logger):
            rank_zero_warn(
                "TensorBoardLogger(default_hp_metric=True) declares `hp_metric` as the only metric "
                "of the HParams tab; set `default_hp_metric: false` in the logger's init_args so "
                "that the tab lists the run's real metrics."
            )
        if stage != "fit":  # fit logs its hparams in on_fit_start, once the optimizer exists
            self._log_hparams(trainer, pl_module, stage)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._end_session("STATUS_SUCCESS")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning skips teardown after an exception, so the session ends here.
        aborted = isinstance(exception, KeyboardInterrupt)
        # TensorBoard's session statuses have no "aborted": an interrupted run ends as unknown.
        self._end_session("STATUS_UNKNOWN" if aborted else "STATUS_FAILURE")

    def _end_session(self, status: str) -> None:
        self._write_step_values()  # an epoch cut short keeps the steps it logged
        for writer in self._curve_writers.values():
            writer.close()
        self._curve_writers = {}
        if self._logger is not None:
            file_writer(self._logger.experiment).add_summary(session_end_summary(status))
            self._logger.experiment.flush()
        self._logger = None
        self._collecting = False

    # ---- fit: shared charts, hparams, augmentation preview, per-step curves --------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._logger is None:
            return
        self._logger.experiment.add_custom_scalars(SHARED_CHARTS)
        log_dir = Path(self._logger.log_dir)
        self._curve_writers = {s: SummaryWriter(str(log_dir / s)) for s in ("train", "val")}
        self._log_hparams(trainer, pl_module, "fit")
        datamodule = trainer.datamodule
        wanted = self.preview_images and self.preview_augmentations
        if wanted and isinstance(datamodule, CelebADataModule):
            picture = augmentation_preview(
                datamodule, self.preview_images, self.preview_augmentations, self.preview_seed
            )
            add_png(self._logger.experiment, "train/augmentations", picture, logging_step(trainer))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._logger is None or outputs is None:  # None: the step skipped this batch
            return
        # Only on the steps that Lightning writes (every log_every_n_steps), straight to the
        # logger as LearningRateMonitor does: self.log() on every step costs milliseconds, as much
        # as a whole training step on a GPU.
        if not should_log_this_step(trainer):
            return
        # The step's own outputs (AttributeClassifier.training_step), not a second computation.
        step_metrics = {"train/loss_step": outputs["loss"].detach()}
        if "predictions" in outputs:
            right = outputs["predictions"] == batch[1].reshape(outputs["predictions"].shape)
            step_metrics["train/acc_step"] = right.float().mean()
        self._step_values.append((logging_step(trainer), step_metrics))

    def _write_step_values(self) -> None:
        """The per-step curves held since the epoch began, read back in one transfer."""
        if not self._step_values or self._logger is None:
            self._step_values = []
            return
        names = [list(values) for _, values in self._step_values]
        flat = torch.stack([v.float() for _, values in self._step_values for v in values.values()])
        numbers = iter(flat.tolist())
        for (step, _), keys in zip(self._step_values, names, strict=True):
            self._logger.log_metrics({name: next(numbers) for name in keys}, step)
        self._step_values = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_step_values()
        # Lightning writes the epoch's train/* at the step of the epoch's last batch, one back.
        self._write_epoch_curves(trainer, "train", logging_step(trainer) - 1)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write_epoch_curves(trainer, "val", logging_step(trainer))

    def _write_epoch_curves(self, trainer: pl.Trainer, stage: str, step: int) -> None:
        writer = self._curve_writers.get(stage)  # only while fitting
        if writer is None:
            return
        for metric, tag in EPOCH_CURVES.items():
            value = trainer.callback_metrics.get(f"{stage}/{metric}")
            if value is not None:
                writer.add_scalar(tag, float(value), step)

    # ---- validation and test: gallery, confusion matrix, PR curve ------------------------------

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation.reset()

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation.reset()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._collecting and not trainer.sanity_checking:
            self._evaluation.collect(batch, outputs, gallery=self._logger is not None)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._collecting:
            self._evaluation.collect(batch, outputs, gallery=self._logger is not None)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._collecting and not trainer.sanity_checking:
            self._evaluation.publish(trainer, pl_module, self._writer(), "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._collecting:
            self._evaluation.publish(trainer, pl_module, self._writer(), "test")

    def _writer(self) -> SummaryWriter | None:
        return self._logger.experiment if self._logger is not None else None

    # ---- hparams -------------------------------------------------------------------------------

    def _log_hparams(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Only the session's start (its hyperparameters), no Experiment summary: TensorBoard then
        # takes the table's columns from all runs together (fit and test runs alike) and each
        # metric's value from the last point of that scalar in the run, i.e. its final value.
        # log_hyperparams(params, metrics) would write an Experiment whose metric list hides
        # every metric that the first run found did not name.
        _, session_start, _ = hparams_summaries(run_hyperparameters(trainer, pl_module, stage), {})
        file_writer(self._logger.experiment).add_summary(session_start)
