"""The dashboards' pictures, drawn with Pillow as HxWx3 uint8 arrays: the augmentation preview,
the prediction gallery and the confusion matrix, or one small matrix per attribute (Pillow, not
matplotlib: they are drawn every validation epoch and must stay cheap, about 20 ms for both;
matplotlib needs about 0.25 s)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from lit_celeba.data.datamodule import CelebADataModule

CORRECT_COLOUR = (0, 150, 0)
WRONG_COLOUR = (210, 0, 0)
MIN_TILE = 128  # faces are enlarged (nearest neighbour) to at least this side, for legibility
GALLERY_ATTRIBUTES = 3  # caption lines per face with several target attributes


def class_names(target_attr: str) -> tuple[str, str]:
    """Names of target 0 and 1: CelebA's ``Male`` reads as Female/Male, as in the original post."""
    return ("Female", "Male") if target_attr == "Male" else (f"not {target_attr}", target_attr)


def raw_train_images(datamodule: CelebADataModule, count: int) -> torch.Tensor:
    """The first ``count`` training images before any transform, as the training batches bring
    them: uint8 (N, 218, C, 3), the columns the resize reads
    (:func:`~lit_celeba.data.transforms.columns_read`).

    Reads them from the train dataset itself, the decoded cache or the JPEGs decoded on access
    (``data.cache``), so the preview starts from the very pixels that training does.
    """
    dataset = datamodule.datasets["train"]
    return torch.stack([dataset[index][0] for index in range(min(count, len(dataset)))])


def augmentation_preview(
    datamodule: CelebADataModule, images: int, augmentations: int, seed: int
) -> np.ndarray:
    """One row for each of the first ``images`` training images with ``augmentations`` draws of
    the data module's own training transform (``datamodule.batch_transform.train``: the object
    and settings that training uses, colour changes included), as an HxWx3 uint8 array. The same
    ``seed`` gives the same picture."""
    raw = raw_train_images(datamodule, images)
    # Its own random stream: previewing must not change the batches that training draws.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # One batch, each image repeated: row by row, as the tiles are laid out.
        tiles = datamodule.batch_transform.train(raw.repeat_interleave(augmentations, dim=0))
    scale = _scale_for(tiles.shape[-1])
    return _grid([_to_pil(tile, scale) for tile in tiles], columns=augmentations)


def gallery_picture(
    images: torch.Tensor,
    probabilities: torch.Tensor,
    predictions: torch.Tensor,
    targets: torch.Tensor,
    names: tuple[str, str] | Sequence[str],
    columns: int = 5,
) -> np.ndarray:
    """Each face once, with a caption under it; returns an HxWx3 uint8 array.

    ``probabilities``, the 0/1 ``predictions`` (the model's decisions, at its thresholds) and
    ``targets`` are (N,) or (N, K). ``names`` is the pair of class names of one attribute
    (:func:`class_names`) or the K attribute names.

    One attribute: ``GT: <true label>`` and ``Pr(<attribute>)=NN%``, the original post's gallery;
    a wrong prediction is framed and captioned in red, a right one in green. K attributes: one
    line ``<attribute>: NN%`` per attribute, for the first
    :data:`GALLERY_ATTRIBUTES` only (40 lines would hide the faces), each green when right and red
    when wrong, so the colour gives the true label; the frame is red when any shown line is.
    """
    probabilities = probabilities.reshape(len(images), -1)
    predictions = predictions.reshape(len(images), -1)
    targets = targets.reshape(len(images), -1)
    single = probabilities.shape[1] == 1
    if single:
        pair = tuple(names) if len(names) == 2 else class_names(names[0])
        attributes = [pair[1]]
    else:
        attributes = list(names)[:GALLERY_ATTRIBUTES]
    font = _font(15)
    scale = _scale_for(images.shape[-1])
    border, line = 4, 19
    lines = 2 if single else len(attributes)
    cards = []
    rows = zip(images, probabilities.tolist(), predictions.tolist(), targets.tolist(), strict=True)
    for image, probs, decisions, truths in rows:
        right = [int(d) == int(t > 0.5) for d, t in zip(decisions, truths, strict=True)]
        if single:
            truth = int(truths[0] > 0.5)
            colour = CORRECT_COLOUR if right[0] else WRONG_COLOUR
            captions = [
                (f"GT: {pair[truth]}", colour),
                (f"Pr({pair[1]})={probs[0] * 100:.0f}%", colour),
            ]
        else:
            captions = [
                (f"{name}: {p * 100:.0f}%", CORRECT_COLOUR if ok else WRONG_COLOUR)
                for name, p, ok in zip(attributes, probs, right, strict=False)
            ]
            colour = CORRECT_COLOUR if all(right[: len(attributes)]) else WRONG_COLOUR
        face = _to_pil(image, scale)
        # Long attribute names widen the card rather than run off it (5_o_Clock_Shadow).
        width = max([face.width + 2 * border, *(_text_width(text, font) + 8 for text, _ in
                                                 captions)])  # fmt: skip
        card = Image.new("RGB", (width, face.height + 2 * border + lines * line + 6))
        card.paste((255, 255, 255), (0, 0, *card.size))
        card.paste(colour, (0, 0, card.width, face.height + 2 * border))
        card.paste(face, ((width - face.width) // 2, border))
        draw = ImageDraw.Draw(card)
        centre, top = card.width // 2, face.height + 2 * border + 3
        for index, (text, ink) in enumerate(captions):
            draw.text((centre, top + index * line), text, fill=ink, font=font, anchor="ma")
        cards.append(card)
    return (_grid(cards, columns=columns))


def confusion_matrix_picture(matrix: torch.Tensor, names: tuple[str, str]) -> np.ndarray:
    """A 2x2 confusion matrix (rows: true label, columns: predicted), each cell with its count and
    its share of the row, shaded by that share. Returns an HxWx3 uint8 array."""
    counts = matrix.cpu().long().tolist()
    font, bold = _font(15), _font(17)
    cell_w, cell_h = 130, 70
    left, top = 150, 70
    width, height = left + 2 * cell_w + 10, top + 2 * cell_h + 10
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    total = sum(map(sum, counts))
    accuracy = (counts[0][0] + counts[1][1]) / total if total else 0.0
    draw.text(
        (width // 2, 6), f"accuracy {accuracy:.1%} of {total}", fill=0, font=bold, anchor="ma"
    )
    draw.text((left + cell_w, 32), "predicted", fill=(80, 80, 80), font=font, anchor="ma")
    for j, name in enumerate(names):
        draw.text((left + j * cell_w + cell_w // 2, 50), name, fill=0, font=font, anchor="ma")
    rows = [f"true {name}" for name in names]
    _matrix_cells(draw, counts, (left, top, cell_w, cell_h), rows, (font, bold), with_share=True)
    return np.asarray(picture)


def confusion_matrices_picture(
    matrices: torch.Tensor, attributes: Sequence[str], columns: int = 5
) -> np.ndarray:
    """One small 2x2 confusion matrix per attribute, ``columns`` to a row: ``matrices`` is
    (K, 2, 2) as torchmetrics' ``multilabel_confusion_matrix`` returns it. Every attribute is
    drawn (all 40 fit in about 960x1100 pixels): each tile has the attribute and its accuracy
    above it, rows the true label (0, 1), columns the predicted one, each cell its count, shaded
    by its share of the row as in :func:`confusion_matrix_picture`. Returns an HxWx3 uint8 array.
    """
    font, bold = _font(13), _font(14)
    cell_w, cell_h, left, top = 64, 36, 52, 40
    tiles = []
    for matrix, name in zip(matrices.cpu().long().tolist(), attributes, strict=True):
        tile = Image.new("RGB", (left + 2 * cell_w + 8, top + 2 * cell_h + 6), (255, 255, 255))
        draw = ImageDraw.Draw(tile)
        total = sum(map(sum, matrix))
        accuracy = (matrix[0][0] + matrix[1][1]) / total if total else 0.0
        draw.text((tile.width // 2, 2), f"{name} {accuracy:.1%}", fill=0, font=bold, anchor="ma")
        for j in range(2):
            x = left + j * cell_w + cell_w // 2
            draw.text((x, 22), f"pred {j}", fill=(80, 80, 80), font=font, anchor="ma")
        _matrix_cells(draw, matrix, (left, top, cell_w, cell_h), ["true 0", "true 1"],
                      (font, bold), with_share=False)  # fmt: skip
        tiles.append(tile)
    return (_grid(tiles, columns=min(columns, len(tiles))))


RELIABILITY_COLOURS = ((150, 150, 150), (31, 119, 180))  # before calibration, after


def reliability_picture(
    curves: Sequence[tuple[str, torch.Tensor, torch.Tensor]], bins: int = 15
) -> np.ndarray:
    """A reliability diagram: per curve ``(label, probabilities, targets)`` (each (N, K), all K
    attributes' predictions pooled), the share of positives against the mean probability in each
    of ``bins`` equal-width probability bins, each bin a dot whose area follows its share of the
    predictions; the diagonal is perfect calibration; the legend is under the axes, where no
    curve runs. Returns an HxWx3 uint8 array."""
    size, left, top, legend = 360, 56, 40, 18
    height = top + size + 46 + legend * len(curves)
    picture = Image.new("RGB", (left + size + 20, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font = _font(13)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + x * size, top + (1 - y) * size

    draw.rectangle((*at(0, 1), *at(1, 0)), outline=(0, 0, 0))
    draw.line((*at(0, 0), *at(1, 1)), fill=(200, 200, 200), width=1)
    for tick in (0.0, 0.5, 1.0):
        draw.text((at(tick, 0)[0], top + size + 4), f"{tick:g}", fill=0, font=font, anchor="ma")
        draw.text((left - 6, at(0, tick)[1]), f"{tick:g}", fill=0, font=font, anchor="rm")
    draw.text((left + size / 2, top + size + 22), "mean predicted probability", fill=0,
              font=font, anchor="ma")  # fmt: skip
    draw.text((left + size / 2, 4), "share of positives per probability bin", fill=0,
              font=font, anchor="ma")  # fmt: skip
    for index, (label, probabilities, targets) in enumerate(curves):
        colour = RELIABILITY_COLOURS[-1] if len(curves) == 1 else RELIABILITY_COLOURS[index % 2]
        p, y = probabilities.reshape(-1).double(), targets.reshape(-1).double()
        which = (p * bins).long().clamp(max=bins - 1)
        count = torch.bincount(which, minlength=bins).double()
        mean_p = torch.bincount(which, p, minlength=bins) / count.clamp(min=1)
        share = torch.bincount(which, y, minlength=bins) / count.clamp(min=1)
        points = [at(float(mean_p[b]), float(share[b])) for b in range(bins) if count[b] > 0]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for b, (x, z) in zip([b for b in range(bins) if count[b] > 0], points, strict=True):
            radius = 2 + 10 * math.sqrt(float(count[b]) / len(p))
            draw.ellipse((x - radius, z - radius, x + radius, z + radius), fill=colour)
        y = top + size + 46 + legend * index
        draw.ellipse((left, y + 3, left + 9, y + 12), fill=colour)
        draw.text((left + 16, y), label, fill=colour, font=font)
    return np.asarray(picture)


def _matrix_cells(
    draw: ImageDraw.ImageDraw, counts: list[list[int]], box: tuple[int, int, int, int],
    rows: Sequence[str], fonts: tuple, with_share: bool,
) -> None:  # fmt: skip
    """A 2x2 confusion matrix's row labels and cells at ``box`` (left, top, cell width and
    height): each cell its count (and its share of the row), shaded by that share."""
    left, top, cell_w, cell_h = box
    font, bold = fonts
    for i, label in enumerate(rows):
        row_total = sum(counts[i])
        y = top + i * cell_h
        draw.text((left - 6, y + cell_h // 2), label, fill=0, font=font, anchor="rm")
        for j in range(2):
            share = counts[i][j] / row_total if row_total else 0.0
            x = left + j * cell_w
            ink = _shaded_cell(draw, (x, y, x + cell_w - 2, y + cell_h - 2), share)
            text = f"{counts[i][j]}\n{share:.0%}" if with_share else str(counts[i][j])
            centre = (x + cell_w // 2, y + cell_h // 2)
            draw.multiline_text(centre, text, fill=ink, font=bold, anchor="mm", align="center")


def _shaded_cell(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], share: float):
    """Fills a confusion-matrix cell from white to blue by its share of the row; returns the
    ink (white or black) that reads on it."""
    draw.rectangle(box, fill=tuple(round(255 + share * (c - 255)) for c in (31, 119, 180)))
    return (255, 255, 255) if share > 0.5 else (0, 0, 0)


def _text_width(text: str, font: Any) -> int:
    return math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _scale_for(side: int) -> int:
    return max(1, math.ceil(MIN_TILE / side))


def _to_pil(image: torch.Tensor, scale: int) -> Image.Image:
    """A float CxHxW image in [0, 1] (or uint8) as a PIL image, enlarged ``scale`` times."""
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().cpu().numpy())
    if scale > 1:
        size = (picture.width * scale, picture.height * scale)
        picture = picture.resize(size, Image.Resampling.NEAREST)
    return picture


def _grid(tiles: Sequence[Image.Image], columns: int, gap: int = 6) -> np.ndarray:
    """The tiles in rows of ``columns`` on white, ``gap`` pixels around each, as HxWx3 uint8
    (torchvision's ``make_grid``). Tiles of one picture share a size, except gallery cards widened
    for long attribute names: the narrower ones are padded with white on the right first."""
    width, height = max(t.width for t in tiles), max(t.height for t in tiles)
    padded = [
        F.pad(pil_to_tensor(tile), (0, width - tile.width, 0, height - tile.height), value=255)
        for tile in tiles
    ]  # fmt: skip
    grid = make_grid(padded, nrow=columns, padding=gap, pad_value=255)
    return grid.permute(1, 2, 0).contiguous().numpy()
