"""A CelebA copy's images: where their bytes come from, and how they become the decoded faces.

An :class:`ImageSource` lists names and reads the bytes of a name; it never unpacks anything.
The decoded cache, the on-the-fly dataset and the augmentation preview read through it, so every
form of CelebA on disk gives the same pixels. :class:`FolderSource` is an unpacked folder; the
zip and TFRecord sources are in :mod:`lit_celeba.data.sources`, and
:func:`lit_celeba.data.copies.load_copy` detects the form at a data root and returns its
annotations with one of them. :func:`decode_face` is the one decoding of a CelebA face, for the
cache and for the images decoded on access alike.

Sources are used from forked worker processes: each process opens its own file handles (a
shared descriptor would share one file offset between processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.celeba import face_size_problem
from lit_celeba.data.framing import Framing, reframe
from lit_celeba.data.transforms import keep_columns


class ImageSource:
    """The JPEG bytes of a CelebA copy, by image name."""

    #: True when the copy stores its images in tfds order and knows no file names.
    tfds_order_only = False

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        return [self.read(name) for name in names]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def where(self, name: str) -> str:
        """The image's place, for messages."""
        raise NotImplementedError

    def identity(self) -> str:
        """What tells this copy from any other: the start of the cache key."""
        raise NotImplementedError

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        """One line per image that changes when the image does (size, date or CRC)."""
        raise NotImplementedError

    def check(self, names: Sequence[str], split: str, attr_file: Path) -> None:
        """Raise naming the images of ``names`` that this source lacks."""

    def for_names(self, names: Sequence[str]) -> ImageSource:
        """This source reduced to ``names``: what a decoding process needs to be sent."""
        return self


class FolderSource(ImageSource):
    """An unpacked ``img_align_celeba`` folder."""

    def __init__(self, image_dir: Path, layout: str = "official") -> None:
        self.image_dir = Path(image_dir)
        self.layout = layout

    def read(self, name: str) -> bytes:
        path = self.image_dir / name
        try:
            return path.read_bytes()
        except OSError as err:
            raise CelebAError(
                f"Cannot read image {path}: {err}. Replace the file from a fresh copy of CelebA."
            ) from None

    def where(self, name: str) -> str:
        return str(self.image_dir / name)

    def identity(self) -> str:
        return str(self.image_dir.resolve())  # the cache key of a folder is unchanged

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        for name in names:
            stat = (self.image_dir / name).stat()
            yield f"{name} {stat.st_size} {stat.st_mtime_ns}"

    def check(self, names: Sequence[str], split: str, attr_file: Path) -> None:
        if not self.image_dir.is_dir():
            raise CelebAError(
                f"The image folder {self.image_dir} is missing (the annotation files were found "
                f"in the {self.layout} layout). Unpack img_align_celeba there, or put "
                "img_align_celeba.zip beside the annotation files."
            )
        on_disk = set(os.listdir(self.image_dir))
        missing = [n for n in names if n not in on_disk]
        if missing:
            raise CelebAError(
                f"{len(missing)} image(s) of the {split!r} subset listed in {attr_file} are "
                f"missing from {self.image_dir}: {shown_names(missing)}. "
                "Unpack the complete img_align_celeba archive there."
            )


def shown_names(names: Sequence[str]) -> str:
    """The first five of ``names`` for a message, then "..." if there are more."""
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def as_source(images: ImageSource | os.PathLike | str) -> ImageSource:
    """An image source; a plain path is an unpacked folder."""
    return images if isinstance(images, ImageSource) else FolderSource(Path(images))


def decode_bytes(data: bytes, where: str) -> torch.Tensor:
    """JPEG (or PNG) bytes as uint8 3xHxW RGB; ``where`` names the image in the error."""
    try:
        # bytearray: torch.frombuffer warns about read-only buffers; the copy is 10 KB.
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            mode=ImageReadMode.RGB)  # fmt: skip
    except (RuntimeError, OSError, ValueError) as err:
        raise CelebAError(
            f"Cannot read image {where}: {err}. Replace the file from a fresh copy of CelebA."
        ) from None


def decode_face(
    data: bytes, path: str, columns: np.ndarray, framing: Framing = "celeba"
) -> tuple[torch.Tensor, bool]:
    """A CelebA face's JPEG bytes in ``framing`` (:mod:`~lit_celeba.data.framing`) and in the
    layout the cache stores and the transforms read
    (:func:`~lit_celeba.data.transforms.keep_columns`), and whether it was reframed; an image of
    another size than CelebA's aligned faces is refused with the same message wherever it is
    read."""
    image = decode_bytes(data, path)
    problem = face_size_problem(path, image.shape[2], image.shape[1])
    if problem is not None:
        raise CelebAError(problem)
    image, reframed = reframe(image, framing)
    return keep_columns(image, columns), reframed
