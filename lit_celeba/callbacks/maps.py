"""``predict --prediction.maps true``: beside the CSV, one picture per photo with where the
network looked for each face and attribute.

The pictures go into the folder ``<csv name without .csv>_maps/`` next to the CSV, one
``NNNN_<photo name>.png`` per readable photo (``NNNN``: its place in the CSV's order, so that two
photos of the same name in different folders do not meet): the photo itself, each face found
framed and numbered with its five landmarks, and under it a row per face (or the framed photo):
the network's input, then that input with the activation map of each target attribute laid over
(:mod:`lit_celeba.explain.maps`: the evidence for the class predicted), captioned with that
class and its probability (``Female 56%``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw
from pytorch_lightning.callbacks import Callback

from lit_celeba.base.files import atomic_write
from lit_celeba.callbacks import output_attributes
from lit_celeba.callbacks.pictures import (
    _font,
    _grid,
    _scale_for,
    _text_width,
    _to_pil,
    class_names,
)
from lit_celeba.callbacks.predictions import PredictionWriter
from lit_celeba.data.photos import PhotoBatch, read_rgb
from lit_celeba.explain.maps import activation_maps, overlay

PHOTO_WIDTH = 720  # the photo at the top of a picture is shrunk to at most this width
BOX_COLOUR = (0, 200, 0)
TILES_PER_ROW = 8
PICTURE_NAME = re.compile(r"^\d{4}_.*\.png$")  # NNNN_<photo name>.png


class PredictionMaps(Callback):
    """Writes the pictures of the module docstring when the trainer's :class:`PredictionWriter`
    has ``maps`` true and ``predict`` runs on photos; otherwise does nothing. ``written`` lists
    the files."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self._order: dict[str, int] = {}

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.written = []
        dataset = getattr(trainer.predict_dataloaders, "dataset", None)
        self._order = {path: i for i, path in enumerate(getattr(dataset, "paths", []))}
        if _maps_writer(trainer) and self._order:
            # The pictures of the predictions this run replaces (the CSV was checked to be
            # replaceable): none of an earlier run's is left beside the new ones.
            folder = self._folder(trainer)
            if trainer.is_global_zero and folder.is_dir():
                for old in folder.iterdir():
                    if PICTURE_NAME.match(old.name) and old.is_file():
                        old.unlink()
            trainer.strategy.barrier("maps folder cleared")

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not _maps_writer(trainer) or not isinstance(batch, PhotoBatch) or not len(batch.images):
            return
        attributes = output_attributes(pl_module, trainer.datamodule)
        images, predictions = batch.images, outputs["predictions"]
        count, k = len(images), len(attributes)
        # Every image for every attribute in one pass: attribute-major (K * B).
        repeated = images.repeat(k, 1, 1, 1)
        which = torch.arange(k, device=images.device).repeat_interleave(count)
        signs = predictions.T.reshape(-1).float() * 2 - 1
        maps = activation_maps(pl_module.net, repeated, which, signs)
        laid = overlay(repeated, maps).reshape(k, count, *images.shape[1:]).transpose(0, 1).cpu()
        probabilities = outputs["probabilities"].float().cpu()
        decisions = predictions.long().cpu()
        folder = self._folder(trainer)
        rows = [i for i, error in enumerate(batch.errors) if not error]  # rows with an image
        faces = batch.faces or [None] * len(batch.paths)
        by_photo: dict[str, list[int]] = {}
        for image_row, batch_row in enumerate(rows):
            by_photo.setdefault(batch.paths[batch_row], []).append(image_row)
        for path, image_rows in by_photo.items():
            found = [faces[rows[r]] for r in image_rows]
            picture = photo_picture(path, found, images[image_rows].cpu(), laid[image_rows],
                                    probabilities[image_rows], decisions[image_rows],
                                    attributes)  # fmt: skip
            target = folder / f"{self._order.get(path, 0):04d}_{Path(path).stem}.png"
            with atomic_write(target, "wb", fsync=False) as fh:  # a picture predict can redo
                picture.save(fh, format="PNG")
            self.written.append(target)

    def _folder(self, trainer: pl.Trainer) -> Path:
        csv_path = _maps_writer(trainer)._output_path(trainer)
        return csv_path.with_name(f"{csv_path.stem}_maps")


def _maps_writer(trainer: pl.Trainer) -> PredictionWriter | None:
    """The trainer's prediction writer when it asks for maps (its CSV says where they go)."""
    return next((c for c in trainer.callbacks if isinstance(c, PredictionWriter) and c.maps), None)


def photo_picture(
    path: str, faces: list[Any], inputs: torch.Tensor, laid: torch.Tensor,
    probabilities: torch.Tensor, decisions: torch.Tensor, attributes: list[str],
) -> Image.Image:  # fmt: skip
    """The photo with its faces framed and numbered (``faces``: ``(index, Face)`` or None for a
    framed photo), then per face its input and its K overlays (``laid``, (F, K, 3, S, S)),
    captioned with the decisions (F, K) and their probabilities."""
    parts = [_marked_photo(path, faces)]
    font, scale = _font(14), _scale_for(inputs.shape[-1])
    rows = zip(faces, inputs, laid, probabilities.tolist(), decisions.tolist(), strict=True)
    for face, image, overlays, probs, said in rows:
        label = f"face {face[0] + 1}" if face is not None else "photo"
        cards = [_card(_to_pil(image, scale), label, font)]
        captions = [_caption(*c) for c in zip(attributes, probs, said, strict=True)]
        for laid_over, caption in zip(overlays, captions, strict=True):
            cards.append(_card(_to_pil(laid_over, scale), caption, font))
        parts.append(Image.fromarray(_grid(cards, columns=min(len(cards), TILES_PER_ROW + 1))))
    width = max(p.width for p in parts)
    page = Image.new("RGB", (width, sum(p.height for p in parts)), (255, 255, 255))
    top = 0
    for part in parts:
        page.paste(part, (0, top))
        top += part.height
    return page


def _caption(attribute: str, probability: float, said: int) -> str:
    """The class the map explains (the predicted one) and its probability: ``Female 56%``."""
    share = probability if said else 1 - probability
    return f"{class_names(attribute)[said]} {share * 100:.0f}%"


def _card(tile: Image.Image, caption: str, font: Any) -> Image.Image:
    """The tile with its caption under it, the card widened to the caption where it is longer
    (``not 5_o_Clock_Shadow 95%``)."""
    width = max(tile.width, _text_width(caption, font) + 8)
    card = Image.new("RGB", (width, tile.height + 20), (255, 255, 255))
    card.paste(tile, ((width - tile.width) // 2, 0))
    draw = ImageDraw.Draw(card)
    draw.text((width // 2, tile.height + 3), caption, fill=(0, 0, 0), font=font, anchor="ma")
    return card


def _marked_photo(path: str, faces: list[Any]) -> Image.Image:
    photo = read_rgb(path, draft=False)
    shrink = min(1.0, PHOTO_WIDTH / photo.width)
    if shrink < 1.0:
        size = (round(photo.width * shrink), max(1, round(photo.height * shrink)))
        photo = photo.resize(size, Image.Resampling.BILINEAR)
    draw, font = ImageDraw.Draw(photo), _font(max(12, photo.width // 40))
    for face in faces:
        if face is None:
            continue
        index, found = face
        x, y, w, h = (v * shrink for v in found.box)
        draw.rectangle((x, y, x + w, y + h), outline=BOX_COLOUR, width=max(2, photo.width // 300))
        draw.text((x + 3, y + 2), str(index + 1), fill=BOX_COLOUR, font=font)
        for px, py in found.landmarks:
            r = max(2, photo.width // 250)
            draw.ellipse((px * shrink - r, py * shrink - r, px * shrink + r, py * shrink + r),
                         fill=(255, 255, 0))  # fmt: skip
    return photo
