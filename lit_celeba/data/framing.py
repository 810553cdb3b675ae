"""How a face is framed for the network, the same way in training and in ``predict``.

``predict`` finds the faces of a photo with the detector and warps each onto CelebA's mean
landmarks (:mod:`lit_celeba.data.faces`). CelebA's own aligned faces come framed by CelebA's
alignment instead, which put *its* landmarks, not the detector's, in place. ``data.framing:
detector`` passes every CelebA face (train, validation and test) once through the same detector
and the same warp, :func:`aligned_face`, as ``predict`` does with a photo, and the decoded cache
keeps the result: training, evaluation and prediction then see faces framed one way. A CelebA
face in which the detector finds no face keeps CelebA's framing (the build says how many).
"""

from __future__ import annotations

import os
import sys
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image

from lit_celeba.base.errors import CelebAError, SettingError
from lit_celeba.data.faces import CELEBA_LANDMARKS, Face, FaceDetector, align

Framing = Literal["celeba", "detector"]
FRAMINGS: tuple[str, ...] = get_args(Framing)
_detectors: dict[int, FaceDetector] = {}


def check_framing(framing: str) -> None:
    if framing not in FRAMINGS:
        raise SettingError("framing", f"must be one of {', '.join(FRAMINGS)}; got {framing!r}")


def process_detector() -> FaceDetector:
    """This process's detector: OpenCV's neither pickles nor survives a fork safely, so each
    decoder process makes its own, once."""
    pid = os.getpid()
    if pid not in _detectors:
        _detectors[pid] = FaceDetector()
    return _detectors[pid]


def aligned_face(photo: Image.Image, face: Face) -> torch.Tensor:
    """``face`` of ``photo`` warped onto CelebA's framing, as uint8 (3, 218, 178): the crop that
    ``predict`` gives the network for every face it finds."""
    pixels = np.asarray(align(photo, face.landmarks), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def framing_key(framing: Framing) -> str:
    """What decides a framed image's pixels besides the image itself, for the cache's key."""
    if framing == "celeba":
        return ""
    return f" framing={framing} {process_detector().identity()}"


def reframe(image: torch.Tensor, framing: Framing) -> tuple[torch.Tensor, bool]:
    """A decoded CelebA face (uint8 (3, 218, 178)) in ``framing``, and whether it was reframed
    (``False`` with ``detector`` when no face was found: CelebA's framing stays)."""
    if framing == "celeba":
        return image, False
    photo = Image.fromarray(image.permute(1, 2, 0).numpy())
    faces = process_detector()(photo)
    if not faces:
        return image, False
    # The face whose landmarks lie nearest CelebA's mean ones: the image's own subject.
    subject = min(faces, key=lambda f: np.abs(np.array(f.landmarks) - CELEBA_LANDMARKS).sum())
    return aligned_face(photo, subject), True


def say_unframed(count: int, reframed: int, framing: Framing, description: str) -> None:
    """After ``reframed`` of ``count`` faces of ``description`` were framed (a cache's build):
    say how many the detector did not find; none found at all is a :class:`CelebAError` (the
    setting would change nothing), and the build keeps no cache."""
    if framing != "celeba" and count and not reframed:
        raise CelebAError(
            f"data.framing {framing}: the {framing} found no face in any of the {count} images "
            f"of {description}, so not one would be framed as predict frames a photo. Are they "
            "CelebA's aligned faces? Check data.root, or train with --data.framing celeba."
        )
    if framing != "celeba" and reframed < count:
        print(f"The {framing} found no face in {count - reframed} of the {count} images of "
              f"{description}: they keep CelebA's own framing.", file=sys.stderr, flush=True)
