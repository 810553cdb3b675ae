"""``python -m lit_celeba calibrate --ckpt_path CKPT``: the calibration of an existing checkpoint,
fitted again on the validation split, written into a copy of the checkpoint.

``fit`` already fits a calibration at each validation (:mod:`lit_celeba.methods.calibration`)
and stores it in every checkpoint; this command is for a checkpoint from before calibration
existed, or to choose the thresholds by another rule (``--thresholds fixed`` puts every threshold
back at 0.5, ``balanced_accuracy`` or ``f1`` chooses each attribute's own), to turn the
temperatures off (``--temperature_scaling false``) or to fit a bias beside them (``--bias true``,
Platt scaling). It runs like ``validate`` (the same config,
``--data.*`` settings and ``--ckpt_path last``), then writes ``calibrated.ckpt`` into its own run
folder (or ``--out``, which must not exist): the checkpoint it read, unchanged but for its
calibration, so ``test``, ``predict`` and ``export`` use the new one. The checkpoint it read is
never written to.

``--photo_labels CSV`` fits it on labelled photos instead (each photo's largest face, found and
aligned as ``predict`` does; :mod:`lit_celeba.data.labelled_photos`): photos like the ones the
checkpoint will see, where CelebA's validation faces leave probabilities and thresholds that do
not hold (``docs/in_the_wild.md``).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import UsageError
from lit_celeba.checkpoints.load import load_checkpoint
from lit_celeba.checkpoints.run_folders import run_came_to_nothing
from lit_celeba.data.labelled_photos import LabelledPhotoData
from lit_celeba.methods.calibration import CHECKPOINT_KEY, calibration_state, fit_calibration
from lit_celeba.methods.thresholds import ThresholdRule
from lit_celeba.models.evaluation import attribute_metrics
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.one_class import one_class_names
from lit_celeba.models.outputs import Calibration
from lit_celeba.paths import output_file

CALIBRATED_FILE = "calibrated.ckpt"


class CelebATrainer(pl.Trainer):
    """Lightning's ``Trainer`` with one more command, :meth:`calibrate`."""

    def calibrate(
        self,
        model: AttributeClassifier,
        datamodule: pl.LightningDataModule | None = None,
        ckpt_path: str | None = None,
        thresholds: ThresholdRule | None = None,
        temperature_scaling: bool | None = None,
        out: str | None = None,
        photo_labels: str | None = None,
        bias: bool | None = None,
    ) -> Calibration:
        """Fit the checkpoint's calibration on the validation split and write the checkpoint
        with it.

        Args:
            model: the checkpoint's network (the CLI builds it from the checkpoint).
            datamodule: the data, whose validation split the calibration is fitted on.
            ckpt_path: the checkpoint to calibrate (a file, or ``last``).
            thresholds: ``fixed`` (0.5), ``balanced_accuracy`` or ``f1``; by default the rule
                the checkpoint was trained with (``model.thresholds``).
            temperature_scaling: fit a temperature per attribute; by default as trained.
            out: where to write the calibrated checkpoint (default: ``calibrated.ckpt`` in this
                run's folder; a folder, ending with ``/`` or existing, gets it inside:
                :mod:`lit_celeba.paths`); an existing file is refused.
            photo_labels: a CSV of labelled photos to fit on instead of the validation split,
                each photo's largest face cut as ``predict`` cuts it
                (:mod:`lit_celeba.data.labelled_photos`).
            bias: fit a bias per attribute beside the temperature (Platt scaling): for photos
                where the line between the classes is not where CelebA puts it, so that the
                probabilities hold there too, not only the decisions; by default as the
                checkpoint's calibration (a bias if it has one).
        """
        if ckpt_path is None or not Path(ckpt_path).is_file():
            raise UsageError(f"calibrate needs a checkpoint file as --ckpt_path, got {ckpt_path}")
        target = output_file(out, CALIBRATED_FILE) or Path(self.log_dir or ".") / CALIBRATED_FILE
        if target.exists():
            raise FileExistsError(f"--out {target} already exists; choose another path")
        rule = thresholds or model.thresholds
        scaling = model.temperature_scaling if temperature_scaling is None else temperature_scaling
        if bias and not scaling:
            typed, fix = (("--temperature_scaling false", "drop one of the two")
                          if temperature_scaling is not None else
                          ("this checkpoint was calibrated with --temperature_scaling false",
                           "add --temperature_scaling true"))  # fmt: skip
            raise UsageError(f"calibrate --bias true needs the temperature scaling on: without it "
                             f"({typed}) the probabilities are the network's own and a bias would "
                             f"only move the thresholds; {fix}")  # fmt: skip
        photos = None if photo_labels is None else LabelledPhotoData(datamodule, photo_labels)
        data = datamodule if photos is None else photos
        self.validate(model, datamodule=data, ckpt_path=ckpt_path, verbose=False)
        if model.validation_rows is None:
            run_came_to_nothing()
            smallest = datamodule.predict.min_face_size
            raise UsageError(f"calibrate found no face to judge in the photos of --photo_labels "
                             f"{photo_labels}: none was found, or none of at least "
                             f"data.predict.min_face_size {smallest} px" if photos is not None else
                             "calibrate found no validation images "
                             "(data.subsets.val?)")  # fmt: skip
        logits, targets = model.validation_rows
        source = "validation images" if photos is None else photos.fitted_on(len(targets))
        before = getattr(model, "loaded_calibration", model.calibration)
        if bias is None:  # as the checkpoint: a rule or source changed keeps its bias
            bias = before.has_bias and bool(scaling)
        # On labelled photos, an attribute of one class keeps the checkpoint's calibration: fit's
        # rule for it (temperature 1, threshold 0.5) would throw that away.
        keep = None if photos is None else before
        fitted = fit_calibration(logits, targets, scaling, rule, bias, keep)
        named = one_class_names(model.target_attrs, targets) if photos is not None else []
        if self.is_global_zero:
            checkpoint = load_checkpoint(ckpt_path)
            checkpoint[CHECKPOINT_KEY] = calibration_state(fitted, checkpoint.get("global_step"))
            # The settings it was fitted with: test, predict and export apply it with them.
            hparams = checkpoint.setdefault("hyper_parameters", {})
            hparams.update(thresholds=rule, temperature_scaling=bool(scaling))
            target.parent.mkdir(parents=True, exist_ok=True)
            self.strategy.checkpoint_io.save_checkpoint(checkpoint, target)
            summary = _summary(model, logits, targets, before, fitted, target, source)
            if named:
                summary += (f"\nThe labelled faces hold one class only of {', '.join(named)}: "
                            "their calibration is the checkpoint's, unchanged. Label photos of "
                            "both classes to fit it.")  # fmt: skip
            if before.has_bias and not bias:
                summary += ("\nThe checkpoint's biases were dropped (--bias false, or the "
                            "temperature scaling off).")  # fmt: skip
            rank_zero_info(summary)
        return fitted


def _summary(
    model: AttributeClassifier, logits, targets, before: Calibration, after: Calibration,
    written: Path, source: str,
) -> str:  # fmt: skip
    """The fitting set's mean ECE, accuracy and balanced accuracy under both calibrations,
    and the new temperatures and thresholds."""
    lines = [f"Calibrated on {len(targets)} {source} (thresholds: {after.rule}):"]
    for name, calibration in (("before", before), ("after", after)):
        probabilities, predictions = calibration.apply(logits)
        metrics = attribute_metrics(probabilities, predictions, targets)
        lines.append(
            f"  {name}: ECE {metrics['ece'].mean():.4f}, accuracy "
            f"{metrics['accuracy'].mean():.4f}, balanced accuracy "
            f"{metrics['balanced_accuracy'].nanmean():.4f}"
        )
    for k, attribute in enumerate(model.target_attrs[:5]):
        shift = f", bias {after.bias[k]:+.3f}" if after.has_bias else ""
        lines.append(f"  {attribute}: temperature {after.temperature[k]:.3f}{shift}, threshold "
                     f"{after.threshold[k]:.3f}")  # fmt: skip
    if len(model.target_attrs) > 5:
        lines.append(f"  ... and {len(model.target_attrs) - 5} more attributes")
    lines.append(f"Wrote {written}")
    return "\n".join(lines)
