"""Faces in a user's photo, brought to CelebA's aligned framing before ``predict``.

The network learnt from CelebA's *aligned* images: 178x218 pixels, the eyes level and at fixed
places. A selfie or a group photo is brought there face by face: :class:`FaceDetector` finds
every face and its five landmarks (eyes, nose tip, mouth corners), and :func:`align` warps each
face with the similarity transform (rotation, uniform scale, shift; no shear) that puts its
landmarks closest, in least squares, onto :data:`CELEBA_LANDMARKS`.

The detector is YuNet (Wu, Peng and Yu, "YuNet: A Tiny Millisecond-level Face Detector",
Machine Intelligence Research 2023) through OpenCV's ``cv2.FaceDetectorYN``; its weights,
``models/face_detection_yunet_2023mar.onnx`` (227 KB, MIT licence beside it), ship inside this
package, so nothing is downloaded. It was chosen over dlib's detectors by measurement
(``docs/faces.md``, ``benchmarks/face_alignment.py``): on 1,000 real faces placed at a random scale,
angle (up to 20 degrees) and position in a larger photo it found more faces, in a fraction of the
time, and its five landmarks are CelebA's own five.

The template, :data:`CELEBA_LANDMARKS`: the mean positions of CelebA's five annotated landmarks
in its aligned 178x218 images (``list_landmarks_align_celeba.txt``, columns ``lefteye``,
``righteye``, ``nose``, ``leftmouth``, ``rightmouth``; "left" is the eye on the image's left),
to the pixel, as quoted under that file's header in the CelebA-HQ alignment scripts of
Pidhorskyi et al.'s ALAE (``dataset_preparation/``); checked against YuNet's landmarks on 1,000
aligned CelebA test faces, whose means all lie within 1.7 pixels of it (``docs/faces.md``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

FRAME_SIZE = (178, 218)  # CelebA's aligned images, width x height
# (x, y) of lefteye, righteye, nose, leftmouth, rightmouth in CelebA's aligned 178x218 images.
CELEBA_LANDMARKS = np.array(
    [[69.0, 111.0], [108.0, 111.0], [88.0, 136.0], [72.0, 152.0], [105.0, 152.0]]
)
LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
# YuNet finds faces of about 10 to 300 pixels (its model card): a larger photo is searched at a
# size whose longer side is this, and the boxes are scaled back.
DETECTION_SIZE = 640
NO_FACE = "no face found"


class Face(NamedTuple):
    """One detected face, in the photo's own pixels (after its EXIF rotation): ``box`` is
    ``(x, y, width, height)``, ``landmarks`` five ``(x, y)`` in :data:`LANDMARK_NAMES`' order,
    ``score`` the detector's confidence in [0, 1]. A tuple, so that Lightning moves the batches
    that carry it to the device as they are."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float


def face_columns() -> list[str]:
    """The CSV columns of a face: its index in the photo, box, landmarks and score."""
    marks = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
    return ["face", "box_x", "box_y", "box_width", "box_height", *marks, "face_score"]


def face_cells(index: int | None, face: Face | None) -> list:
    """:func:`face_columns`' cells of the ``index``-th face of a photo (counted from 0; the CSV
    counts from 1, as the pictures number them); empty cells for a photo without a face, or one
    taken as framed."""
    if face is None:
        return [""] * len(face_columns())
    numbers = [*face.box, *(v for point in face.landmarks for v in point)]
    return [index + 1, *(f"{v:.1f}" for v in numbers), f"{face.score:.3f}"]


class FaceDetector:
    """Every face in an RGB photo, with its five landmarks (YuNet, see the module docstring).

    Args:
        score_threshold: the least confidence for a face (OpenCV's model zoo uses 0.9; lower
            finds more turned or small faces and more false ones).
        nms_threshold: overlap above which two boxes are one face.
    """

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.3) -> None:
        import cv2  # OpenCV loads in about 0.1 s: only when faces are sought
        from cv2.utils import logging as cv_logging

        # OpenCV 5 warns on stderr, for every detector, that its new graph engine takes no
        # target device; the detector runs on the CPU all the same.
        level = cv_logging.getLogLevel()
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(model_path()), "", (DETECTION_SIZE, DETECTION_SIZE), score_threshold,
                nms_threshold, 5000,
            )  # fmt: skip
        finally:
            cv_logging.setLogLevel(level)
        self._settings = f"{YUNET_FILE} score>={score_threshold} nms={nms_threshold}"

    def identity(self) -> str:
        """What decides the faces found besides the photo (the cache key of reframed faces)."""
        return f"{self._settings} search={DETECTION_SIZE}"

    def __call__(self, image: Image.Image) -> list[Face]:
        """The faces of an RGB ``image``, from left to right."""
        scale = min(1.0, DETECTION_SIZE / max(image.size))
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)  # antialiased when shrinking
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, found = self._detector.detect(bgr)
        faces = []
        for row in [] if found is None else found / np.array([scale] * 14 + [1.0]):
            points = row[4:14].reshape(5, 2)
            faces.append(Face(tuple(map(float, row[:4])),
                              tuple((float(x), float(y)) for x, y in points), float(row[14])))
        return sorted(faces, key=lambda face: face.box[0])


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) that maps the (N, 2) points
    ``source`` closest to ``target`` in least squares (Umeyama 1991, without reflection)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    u, singular, vt = np.linalg.svd(t.T @ s / len(s))
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    d = np.diag([1.0, sign])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(singular) @ d) / s.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def align(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The face whose five ``landmarks`` are given, warped to CelebA's aligned 178x218 framing
    (outside the photo: black, as :func:`~lit_celeba.data.photos.frame` pads)."""
    landmarks = np.asarray(landmarks, np.float64)
    matrix = similarity(landmarks, CELEBA_LANDMARKS)
    scale = float(np.hypot(*matrix[:, 0]))
    if scale < 0.5:
        # A large face: shrink the photo first (antialiased), so that the warp, which samples
        # bilinearly without antialiasing, does not alias.
        factor = min(1.0, 2 * scale)
        original = np.array(image.size, np.float64)
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        landmarks = landmarks * (np.array(size) / original)
        matrix = similarity(landmarks, CELEBA_LANDMARKS)
    # Pillow's affine transform maps output pixels to input ones: the inverse.
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    return image.convert("RGB").transform(
        FRAME_SIZE, Image.Transform.AFFINE, tuple(inverse.reshape(-1)), Image.Resampling.BILINEAR
    )


def is_celeba_aligned(image: Image.Image) -> bool:
    """Whether a photo is taken as one of CelebA's own aligned images: exactly 178x218, the
    size of every one of them (``data.align: auto`` leaves these as they are)."""
    return image.size == FRAME_SIZE


def model_path() -> Path:
    """Where the detector's weights are (inside the installed package)."""
    return Path(str(files("lit_celeba.data.models").joinpath(YUNET_FILE)))
