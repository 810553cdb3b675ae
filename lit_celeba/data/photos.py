"""A user's own photos for ``predict``: finding them, reading any common format and mode, and
bringing them to CelebA's aligned 178x218 framing.

``--data.predict_path`` is one of:

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

A file that cannot be read does not stop the run: its item carries an error message and no
image, and :func:`collate_photos` leaves it out of the batch's images but keeps its path and
error, so the prediction writer can give it a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from lit_celeba.data.transforms import CROP_SIZE, keep_columns
from lit_celeba.errors import PhotoError

FRAME_WIDTH, FRAME_HEIGHT = CROP_SIZE, 218
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LIST_SUFFIX = ".txt"
# Pillow's names; MPO is the multi-picture JPEG that many cameras and phones write.
SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class PhotoItem(NamedTuple):
    image: torch.Tensor | None  # uint8 (218, C, 3); None when the file could not be read
    path: str
    error: str  # "" when the file was read


class PhotoBatch(NamedTuple):
    """``images`` holds only the readable photos, in order; ``paths`` and ``errors`` hold all of
    them (``error == ""`` marks the readable ones). ``batch[0]`` is the images, as for CelebA:
    uint8 (B, 218, C, 3) from the loader, float (B, 3, S, S) once the data module's
    ``on_after_batch_transfer`` has transformed them (B may be 0)."""

    images: torch.Tensor
    paths: list[str]
    errors: list[str]


def find_photos(predict_path: str | Path) -> list[Path]:
    """The photo paths that ``predict_path`` names (see the module docstring)."""
    path = Path(predict_path).expanduser()
    if path.is_dir():
        photos = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not photos:
            raise PhotoError(
                f"--data.predict_path {path} holds no {'/'.join(IMAGE_SUFFIXES)} files "
                "(searched recursively)."
            )
        return photos
    if path.is_file() and path.suffix.lower() == LIST_SUFFIX:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        photos = [path.parent / line for line in lines if line and not line.startswith("#")]
        if not photos:
            raise PhotoError(f"--data.predict_path {path} lists no image paths.")
        return photos
    if path.is_file():
        return [path]
    raise PhotoError(
        f"--data.predict_path {path} does not exist; give an image file, a folder of images or "
        f"a {LIST_SUFFIX} file with one image path per line."
    )


def read_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as upright 8-bit RGB; raises on an unreadable or unsupported file."""
    with Image.open(path) as image:
        if image.format not in SUPPORTED_FORMATS:
            supported = ", ".join(dict.fromkeys(SUPPORTED_FORMATS.values()))
            raise ValueError(f"unsupported image format {image.format} (supported: {supported})")
        # Let the JPEG decoder downscale huge photos by a power of two (much faster); it stays
        # at least 218 pixels on each side, more than the frame needs whatever the orientation.
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


def load_frame(path: str | Path) -> torch.Tensor:
    """The photo at ``path``, framed, as a uint8 tensor of shape (3, 218, 178)."""
    pixels = np.asarray(frame(read_rgb(path)), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


class PhotoDataset(Dataset):
    """Photos read from ``paths``, framed, and kept as the decoded cache keeps CelebA: uint8
    (218, C, 3), only the source ``columns`` (``transforms.columns_read(image_size)``). Items
    are :class:`PhotoItem`; batch them with :meth:`collate`."""

    def __init__(self, paths: Sequence[str | Path], columns: np.ndarray) -> None:
        self.paths = [str(p) for p in paths]
        self.columns = columns
        self.image_shape = (FRAME_HEIGHT, len(columns), 3)

    @classmethod
    def from_path(cls, predict_path: str | Path, columns: np.ndarray) -> PhotoDataset:
        return cls(find_photos(predict_path), columns)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> PhotoItem:
        path = self.paths[index]
        try:
            image = keep_columns(load_frame(path), self.columns)
        # One bad file must not stop the run, whatever Pillow raises for it (OSError for most,
        # but SyntaxError, ValueError or DecompressionBombError for some broken files).
        except Exception as err:
            return PhotoItem(None, path, _describe(err))
        return PhotoItem(image, path, "")

    def collate(self, items: Sequence[PhotoItem]) -> PhotoBatch:
        """Stacks the readable images (an empty batch of the right shape when none is)."""
        images = [item.image for item in items if item.image is not None]
        empty = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        stacked = torch.stack(images) if images else empty
        return PhotoBatch(stacked, [item.path for item in items], [item.error for item in items])


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
