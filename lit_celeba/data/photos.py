"""A user's own photos for ``predict``: finding them, reading any common format and mode, and
bringing them to CelebA's aligned 178x218 framing.

``--data.predict.path`` is one of:

- an image file (JPEG, PNG, WebP or BMP);
- a folder, searched recursively for files named ``*.jpg``, ``*.jpeg``, ``*.png``, ``*.webp``
  or ``*.bmp`` (any case; hidden files and folders are left out), in sorted order;
- a ``.txt`` file with one image path per line (blank lines and ``#`` comments are skipped;
  relative paths are relative to the folder of the ``.txt`` file). Every listed path gets a row.

Reading (Pillow): the EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images
become 8-bit RGB (16-bit values are scaled by 255/65535, not clipped); transparent images
(RGBA, LA, palette with transparency) are composited on white.

The framing rule: resize to width 178 keeping the aspect ratio (bilinear, antialiased), then
pad (black, equally above and below) or crop (equally above and below) to height 218. An aligned
CelebA image passes through unchanged, and a square photo of a face is exactly the 178x178 square
that the recipe's eval crop (rows 20..197) keeps. The framed photo then takes CelebA's path: it
keeps the columns the resize reads, as the decoded cache does, and its batch gets the data
module's batched eval transform on the device (:class:`~lit_celeba.data.transforms.BatchTransform`).

Faces (``align``, ``data.predict.align``): ``"auto"`` (the default) takes a photo of exactly 178x218
pixels as one of CelebA's own aligned images and frames it as above, and looks for faces in any
other photo: each face found (:mod:`lit_celeba.data.faces`, YuNet) is warped to CelebA's aligned
framing on its five landmarks and becomes a row of its own; a photo without a face gets one row
that says so (:data:`~lit_celeba.data.faces.NO_FACE`) and no prediction, and so does a face
smaller than ``min_face_size`` pixels (:func:`~lit_celeba.data.faces.too_small`: too small to
judge, its size in the error). ``"always"`` looks for faces in every photo, ``"never"`` frames
every photo whole.

A file that cannot be read does not stop the run: its item carries an error message and no
image, and :meth:`PhotoDataset.collate` leaves it out of the batch's images but keeps its path
and error, so the prediction writer can give it a row.

Finding the photos is :mod:`lit_celeba.data.photo_paths`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from lit_celeba.base.errors import PhotoError, SettingError
from lit_celeba.data.faces import (
    MIN_FACE_SIZE,
    NO_FACE,
    Face,
    FaceDetector,
    align,
    is_celeba_aligned,
    too_small,
)
from lit_celeba.data.photo_paths import find_photos  # noqa: F401 (tests import it here)
from lit_celeba.data.transforms import CROP_SIZE, keep_columns

FRAME_WIDTH, FRAME_HEIGHT = CROP_SIZE, 218
# Pillow's names; MPO is the multi-picture JPEG that many cameras and phones write.
SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
Align = Literal["auto", "always", "never"]
ALIGN_MODES: tuple[str, ...] = get_args(Align)


@dataclass(frozen=True)
class PredictPhotos:
    """``data.predict``: the photos ``predict`` reads instead of a CelebA split, and how it cuts
    them into faces (``calibrate --photo_labels`` cuts its photos the same way).

    ``path``: an image, a folder (recursively) or a ``.txt`` list of paths (the module docstring);
    null, the default, predicts on CelebA's test split. ``align``: ``auto`` finds and aligns every
    face in a photo that is not 178x218 (CelebA's aligned size, taken as is), ``always`` in every
    photo, ``never`` frames each photo whole. ``min_face_size``: a face whose box has a shorter
    side under this many pixels (in the photo) is too small to judge: its row gives its box and
    says so, with no prediction; 0 judges every face. One setting, a group of keys
    (``--data.predict.path my_photos/``; in a config file ``data: {predict: {path: my_photos/}}``).
    """

    path: str | None = None
    align: Align = "auto"
    min_face_size: int = MIN_FACE_SIZE


# data.predict's default: predict reads CelebA's test split; photos are cut as this says.
PREDICT_ON_TEST_SPLIT = PredictPhotos()


def check_predict_photos(predict: PredictPhotos) -> None:
    if predict.min_face_size < 0:
        raise SettingError("predict.min_face_size", "must be 0 (judge every face) or more "
                           f"pixels, got {predict.min_face_size}")  # fmt: skip


class PhotoItem(NamedTuple):
    # uint8 (218, C, 3) for a framed photo, (F, 218, C, 3) for the F of its faces large enough
    # to judge; None when the file could not be read or holds no such face
    image: torch.Tensor | None
    path: str
    error: str  # "" when the file was read
    faces: tuple[Face, ...] | None = None  # the faces found; None when none were sought


class PhotoBatch(NamedTuple):
    """One row per framed photo, per face found, per photo without a face and per unreadable
    file: ``paths``, ``errors`` and ``faces`` hold every row (``error == ""`` marks the rows with
    an image, which a face too small to judge lacks; ``faces`` is ``(index in its photo, Face)``
    or None), ``images`` only the rows with an image, in order. ``batch[0]`` is the images, as
    for CelebA: uint8 (B, 218, C, 3) from the loader, float (B, 3, S, S) once the data module's
    ``on_after_batch_transfer`` has transformed them (B may be 0)."""

    images: torch.Tensor
    paths: list[str]
    errors: list[str]
    faces: list[tuple[int, Face] | None] | None = None


def read_rgb(path: str | Path, draft: bool = True) -> Image.Image:
    """The image at ``path`` as upright 8-bit RGB; raises on an unreadable or unsupported file.
    ``draft=False`` decodes a JPEG at its full size (for face detection, whose boxes are in the
    photo's own pixels)."""
    with Image.open(path) as image:
        if image.format not in SUPPORTED_FORMATS:
            supported = ", ".join(dict.fromkeys(SUPPORTED_FORMATS.values()))
            raise ValueError(f"unsupported image format {image.format} (supported: {supported})")
        # Let the JPEG decoder downscale huge photos by a power of two (much faster); it stays
        # at least 218 pixels on each side, more than the frame needs whatever the orientation.
        if draft:
            image.draft(None, (FRAME_HEIGHT, FRAME_HEIGHT))
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255, which turns most pixels white.
        values = np.asarray(image, dtype=np.float64) * (255 / 65535)
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def frame(image: Image.Image) -> Image.Image:
    """CelebA's aligned 178x218 framing: resize to width 178 keeping the aspect ratio, then pad
    with black or crop, equally above and below, to height 218."""
    width, height = image.size
    new_height = max(1, round(height * FRAME_WIDTH / width))
    # Pillow's bilinear filter widens its support when it shrinks, so it is antialiased.
    resized = image.resize((FRAME_WIDTH, new_height), Image.Resampling.BILINEAR)
    top = (new_height - FRAME_HEIGHT) // 2
    if top >= 0:
        return resized.crop((0, top, FRAME_WIDTH, top + FRAME_HEIGHT))
    canvas = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), (0, 0, 0))
    canvas.paste(resized, (0, (FRAME_HEIGHT - new_height) // 2))
    return canvas


def _tensor(image: Image.Image) -> torch.Tensor:
    pixels = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def load_frame(path: str | Path) -> torch.Tensor:
    """The photo at ``path``, framed, as a uint8 tensor of shape (3, 218, 178)."""
    return _tensor(frame(read_rgb(path)))


class PhotoDataset(Dataset):
    """Photos read from ``paths``, framed or cut into aligned faces (``align``, see the module
    docstring; ``"never"`` here, ``"auto"`` in the data module), and kept as the decoded cache
    keeps CelebA: uint8 (218, C, 3), only the source ``columns``
    (``transforms.columns_read(image_size)``). A face under ``min_face_size`` pixels (the
    shorter side of its box) is not judged. Items are :class:`PhotoItem`; batch them with
    :meth:`collate`."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        columns: np.ndarray,
        align: Align = "never",
        min_face_size: int = MIN_FACE_SIZE,
    ) -> None:
        if align not in ALIGN_MODES:
            raise PhotoError(
                f"data.predict.align must be one of {', '.join(ALIGN_MODES)}; got {align!r}"
            )
        self.paths = [str(p) for p in paths]
        self.columns = columns
        self.align = align
        self.min_face_size = min_face_size
        self.image_shape = (FRAME_HEIGHT, len(columns), 3)
        self._detector: FaceDetector | None = None  # made in the process that reads

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_detector": None}  # OpenCV's detector does not pickle

    @classmethod
    def from_path(
        cls,
        predict_path: str | Path,
        columns: np.ndarray,
        align: Align = "never",
        min_face_size: int = MIN_FACE_SIZE,
    ) -> PhotoDataset:
        return cls(find_photos(predict_path), columns, align, min_face_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> PhotoItem:
        path = self.paths[index]
        try:
            if self.align == "never":
                return PhotoItem(keep_columns(load_frame(path), self.columns), path, "")
            return self._faces(read_rgb(path, draft=False), path)
        # One bad file must not stop the run, whatever Pillow raises for it (OSError for most,
        # but SyntaxError, ValueError or DecompressionBombError for some broken files).
        except Exception as err:
            return PhotoItem(None, path, _describe(err))

    def _faces(self, photo: Image.Image, path: str) -> PhotoItem:
        if self.align == "auto" and is_celeba_aligned(photo):
            return PhotoItem(keep_columns(_tensor(photo), self.columns), path, "")
        if self._detector is None:
            self._detector = FaceDetector()
        faces = tuple(self._detector(photo))
        if not faces:
            return PhotoItem(None, path, NO_FACE, ())
        crops = [keep_columns(_tensor(align(photo, face.landmarks)), self.columns)
                 for face in faces if not too_small(face, self.min_face_size)]  # fmt: skip
        return PhotoItem(torch.stack(crops) if crops else None, path, "", faces)

    def collate(self, items: Sequence[PhotoItem]) -> PhotoBatch:
        """Stacks the images of the framed photos and of the faces found (an empty batch of the
        right shape when there is none), one row each, and a row for every other item."""
        images, paths, errors, faces = [], [], [], []
        for item in items:
            if item.faces:  # one row per face; the image rows: the faces large enough to judge
                images += [] if item.image is None else list(item.image)
                paths += [item.path] * len(item.faces)
                errors += [too_small(face, self.min_face_size) for face in item.faces]
                faces += list(enumerate(item.faces))
                continue
            if item.image is not None:
                images.append(item.image)
            paths.append(item.path)
            errors.append(item.error)
            faces.append(None)
        empty = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        stacked = torch.stack(images) if images else empty
        return PhotoBatch(stacked, paths, errors, faces if self.align != "never" else None)


def _describe(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a folder, not an image"
    message = str(err).replace("\n", " ").strip()
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def photo_loader(dataset: PhotoDataset, batch_size: int, num_workers: int) -> DataLoader:
    """The ``predict`` loader for photos: file order, with the collate that tolerates bad files."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=dataset.collate,
        pin_memory=torch.cuda.is_available(),
    )
