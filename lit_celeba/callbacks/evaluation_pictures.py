"""The evaluation pictures of :class:`~lit_celeba.callbacks.dashboards.TensorBoardDashboards`,
from the validation and test steps' own outputs: the gallery (``{stage}/predictions``), the
confusion matrix (``{stage}/confusion_matrix``), the reliability diagram (``{stage}/reliability``,
before and after the calibration where one applies), the PR curves (``{stage}/pr_curve``, one
per attribute for K > 1 as ``{stage}/pr_curve/<attribute>``) and the activation maps of the
most confident right answers and the worst mistakes (``{stage}/maps``, ``{stage}/maps/<attribute>``
for K > 1; :mod:`lit_celeba.explain`). Under DDP every rank keeps its share and all are gathered
(N, K) before rank 0 draws; the maps' faces are rank 0's own, as the gallery's are."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional.classification import (
    binary_confusion_matrix,
    multilabel_confusion_matrix,
)
from torchmetrics.utilities.distributed import gather_all_tensors

from lit_celeba.base.lightning_internals import logging_step
from lit_celeba.callbacks import output_attributes
from lit_celeba.callbacks.pictures import (
    _font,
    _text_width,
    class_names,
    confusion_matrices_picture,
    confusion_matrix_picture,
    gallery_picture,
    reliability_picture,
)
from lit_celeba.callbacks.summaries import add_png
from lit_celeba.explain.candidates import MapCandidates, faces_per_kind
from lit_celeba.explain.maps import has_maps, overlaid
from lit_celeba.models.evaluation import calibration_errors
from lit_celeba.models.outputs import Calibration


class EvaluationPictures:
    """Collects an evaluation epoch's step outputs and draws them (see the module docstring)."""

    def __init__(self, gallery_size: int, maps_per_kind: int = 0) -> None:
        self.gallery_size = gallery_size
        self.maps_per_kind = maps_per_kind
        self._maps = MapCandidates(maps_per_kind)
        self.reset()

    def reset(self) -> None:
        self._logits: list[torch.Tensor] = []
        self._probabilities, self._predictions, self._targets, self._gallery = [], [], [], []
        self._maps.reset()

    def collect(self, batch: Any, outputs: Any, gallery: bool) -> None:
        """Keeps a batch's step outputs: the very probabilities and decisions that its metrics
        count (flip TTA, EMA weights and calibration included). ``batch`` is what the model was
        given, after on_after_batch_transfer: the gallery shows the network's own input, on the
        rank that draws it (``gallery``)."""
        if not isinstance(outputs, dict) or "predictions" not in outputs:
            return
        probabilities, predictions = outputs["probabilities"], outputs["predictions"]
        targets = batch[1].reshape(predictions.shape).long()
        self._logits.append(outputs["logits"])
        self._probabilities.append(probabilities)
        self._predictions.append(predictions)
        self._targets.append(targets)
        missing = self.gallery_size - sum(len(g[0]) for g in self._gallery)
        if missing > 0 and gallery:  # rank 0's first images
            shown = (batch[0], probabilities, predictions, targets)
            self._gallery.append(tuple(t[:missing].detach().float().cpu() for t in shown))
        if gallery:
            self._maps.count = faces_per_kind(self.maps_per_kind, predictions.shape[1])
            self._maps.update(batch[0], probabilities, predictions, targets)

    def publish(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, writer: SummaryWriter | None,
        stage: str,
    ) -> None:  # fmt: skip
        """Gathers the epoch's outputs from every rank (each must call it) and, where
        ``writer`` is given, draws them."""
        attributes = output_attributes(pl_module, trainer.datamodule)
        # Every rank takes part in the gather, also one that saw no batch.
        logits = _all_ranks(self._logits, len(attributes), pl_module.device)
        probabilities = _all_ranks(self._probabilities, len(attributes), pl_module.device)
        predictions = _all_ranks(self._predictions, len(attributes), pl_module.device).long()
        targets = _all_ranks(self._targets, len(attributes), pl_module.device).long()
        if writer is None or not len(probabilities):
            self.reset()
            return
        step = logging_step(trainer)
        single = len(attributes) == 1
        if self._gallery:
            images, *gallery = (torch.cat(p) for p in zip(*self._gallery, strict=True))
            names = class_names(attributes[0]) if single else attributes
            picture = gallery_picture(images, *gallery, names)
            add_png(writer, f"{stage}/predictions", picture, step)
        if single:  # today's picture and tag, unchanged
            matrix = binary_confusion_matrix(predictions[:, 0], targets[:, 0])
            picture = confusion_matrix_picture(matrix, class_names(attributes[0]))
            writer.add_pr_curve(f"{stage}/pr_curve", targets[:, 0], probabilities[:, 0], step)
        else:
            matrices = multilabel_confusion_matrix(predictions, targets, num_labels=len(attributes))
            picture = confusion_matrices_picture(matrices, attributes)
            for k, name in enumerate(attributes):
                tag = f"{stage}/pr_curve/{name}"
                writer.add_pr_curve(tag, targets[:, k], probabilities[:, k], step)
        add_png(writer, f"{stage}/confusion_matrix", picture, step)
        # During fit the steps' probabilities are uncalibrated; the calibration this validation
        # fits (in the module's epoch end, after this) is the "after".
        calibration_of = getattr(pl_module, "calibration_of", None)
        fitting = stage == "val" and trainer.state.fn == "fit" and calibration_of is not None
        fitted = calibration_of(logits, targets) if fitting else None
        add_png(writer, f"{stage}/reliability",
                _reliability(logits, probabilities, targets, fitted), step)  # fmt: skip
        self._publish_maps(pl_module, writer, stage, attributes, step)
        self.reset()

    def _publish_maps(
        self, pl_module: pl.LightningModule, writer: SummaryWriter, stage: str,
        attributes: list[str], step: int,
    ) -> None:  # fmt: skip
        if self._maps.count <= 0:
            return
        if not has_maps(pl_module.net):
            rank_zero_warn(f"No activation maps for a {type(pl_module.net).__name__}: they know "
                           "the recipe CNN and torchvision's ResNets.")  # fmt: skip
            self._maps.count = self.maps_per_kind = 0
            return
        chosen = overlaid(pl_module.net, [self._maps.chosen(k) for k in range(len(attributes))])
        for name, rows in zip(attributes, chosen, strict=True):
            picture = maps_picture(rows, class_names(name))
            if picture is not None:
                tag = f"{stage}/maps" if len(attributes) == 1 else f"{stage}/maps/{name}"
                add_png(writer, tag, picture, step)


def _reliability(
    logits: torch.Tensor, probabilities: torch.Tensor, targets: torch.Tensor,
    fitted: Calibration | None = None,
) -> np.ndarray:  # fmt: skip
    """The reliability diagram of the uncalibrated probabilities and of the calibrated ones (the
    steps', or ``fitted``'s where given), each labelled with its mean ECE; one curve where the
    two are the same (no calibration)."""
    if fitted is not None:
        probabilities, _ = fitted.apply(logits)
    plain, _ = Calibration.identity(targets.shape[1]).apply(logits)
    curves = [("before calibration", plain), ("after calibration", probabilities)]
    if torch.allclose(plain, probabilities):
        curves = [("probabilities", probabilities)]
    return reliability_picture([
        (f"{label}: ECE {calibration_errors(p, targets).mean():.3f}", p, targets)
        for label, p in curves
    ])  # fmt: skip


def _all_ranks(parts: list[torch.Tensor], columns: int, device: torch.device) -> torch.Tensor:
    """This rank's (n, K) ``parts`` stacked with every other rank's, in rank order, on the CPU.
    torchmetrics' gather pads and trims the ranks' shares (along every dimension, so the 2-D
    shape survives), which differ in size when the evaluation set does not divide by the number
    of processes."""
    local = torch.cat(parts) if parts else torch.empty(0, columns, device=device)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local.cpu()
    return torch.cat(gather_all_tensors(local.float())).cpu()


MAP_ROWS = {"right": "most confident right answers", "wrong": "worst mistakes"}


def maps_picture(rows: dict[str, Any], names: tuple[str, str]) -> np.ndarray | None:
    """One attribute's faces with their activation maps laid over: a headed gallery row per
    kind (:data:`MAP_ROWS`; ``rows`` maps a kind to a
    :class:`~lit_celeba.explain.candidates.Chosen`), the captions as :func:`gallery_picture`'s
    for one attribute with class ``names``. ``None`` when there is no face."""
    parts = []
    for kind, heading in MAP_ROWS.items():
        chosen = rows.get(kind)
        if chosen is None or not len(chosen.images):
            continue
        gallery = gallery_picture(chosen.images, chosen.probabilities, chosen.predictions,
                                  chosen.targets, names, columns=len(chosen.images))  # fmt: skip
        parts.append((heading, Image.fromarray(gallery)))
    if not parts:
        return None
    font, line = _font(16), 24
    width = max(max(p.width, _text_width(f"{names[1]}: {h}", font) + 16) for h, p in parts)
    page = Image.new("RGB", (width, sum(p.height + line for _, p in parts)), (255, 255, 255))
    draw, top = ImageDraw.Draw(page), 0
    for heading, picture in parts:
        draw.text((8, top + 4), f"{names[1]}: {heading}", fill=(0, 0, 0), font=font)
        page.paste(picture, (0, top + line))
        top += picture.height + line
    return np.asarray(page)
