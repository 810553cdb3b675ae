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

import math
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
# One pass of YuNet finds faces of about 10 to 400 pixels in its input (the astronaut's face
# scaled into a larger picture: scores 0.77 at 10 px, 0.91 from 24 to 400 px; docs/faces.md). A
# photo larger than DETECTION_SIZE is searched at full resolution (its smallest faces), then at
# sizes at most PASS_STEP times smaller each (faces too large for the finer pass), down to
# DETECTION_SIZE on the longer side (YuNet's training size), and the passes are merged by NMS.
DETECTION_SIZE = 640
PASS_STEP = 4.0
# A pass keeps only the faces under this many pixels in the next, coarser pass, which answers
# for the larger ones: at full resolution a 3x enlarged astronaut's mission patch scored 0.83
# (at 0.75 of that size 0.37, at 0.42 nothing), and on the WIDER photos no face was lost by it.
HANDOVER = 64
# The finest pass of a larger photo is at this size on its longer side: a full-resolution pass
# costs about 0.2 s a megapixel on one core (under load; docs/faces.md).
FINEST_SIZE = 4096
# ... or larger where that leaves it under the pixels of a 2:1 photo FINEST_SIZE wide: a long
# panorama (20000x600) at 4096 wide had its 50 px faces at 10 px, too small to find. Photos up
# to 2:1 are searched as before.
FINEST_PIXELS = FINEST_SIZE * FINEST_SIZE // 2
# A pass larger than this on a side is searched in overlapping tiles: at full resolution a
# 4000x3000 photo took 1.1 GB in one piece. A tiled pass keeps faces under HANDOVER * PASS_STEP
# pixels, which the overlap holds whole in one tile or the other.
TILE = 2048
TILE_OVERLAP = int(HANDOVER * PASS_STEP)
# Chosen on the 300 WIDER FACE development photos (docs/faces.md): the most faces found at no
# more than 0.1 false detections a photo.
SCORE_THRESHOLD = 0.78
# A face whose box has a shorter side under this many pixels gets a row that says so, without a
# prediction (data.predict.min_face_size).
MIN_FACE_SIZE = 32
NO_FACE = "no face found"
TOO_SMALL = "face too small to judge"


class Face(NamedTuple):
    """One detected face, in the photo's own pixels (after its EXIF rotation): ``box`` is
    ``(x, y, width, height)``, ``landmarks`` five ``(x, y)`` in :data:`LANDMARK_NAMES`' order,
    ``score`` the detector's confidence in [0, 1]. A tuple, so that Lightning moves the batches
    that carry it to the device as they are."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float


def face_size(face: Face) -> float:
    """A face's size in pixels: the shorter side of its box (as WIDER FACE measures faces)."""
    return min(face.box[2], face.box[3])


def too_small(face: Face, min_size: float) -> str:
    """The ``error`` of a face under ``min_size`` pixels (:func:`face_size`), which gets no
    prediction; ``""`` for a face to judge."""
    size = face_size(face)
    if size >= min_size:
        return ""
    return f"{TOO_SMALL}: {math.floor(size)} px, under data.predict.min_face_size {min_size}"


def search_scales(size: tuple[int, int]) -> list[float]:
    """The scales a photo of ``size`` (width, height) is searched at, finest first: its own
    pixels (at most :data:`FINEST_SIZE` on the longer side, or :data:`FINEST_PIXELS` in all
    when that is more: a panorama), then at most :data:`PASS_STEP` times smaller each, down to
    :data:`DETECTION_SIZE` on the longer side. A photo no larger than that: one pass at its own
    size."""
    longest = max(size)
    if longest <= DETECTION_SIZE:
        return [1.0]
    by_area = math.sqrt(FINEST_PIXELS / (size[0] * size[1]))
    finest, coarsest = min(1.0, max(FINEST_SIZE / longest, by_area)), DETECTION_SIZE / longest
    steps = math.ceil(math.log(finest / coarsest) / math.log(PASS_STEP))
    return [finest * (coarsest / finest) ** (k / steps) for k in range(steps + 1)]


def tiles(length: int) -> list[tuple[int, int]]:
    """The (start, stop) of the tiles along one side of ``length`` pixels: as few as keep each
    at most :data:`TILE` long, of one length, each overlapping the next by :data:`TILE_OVERLAP`;
    one tile when the side fits."""
    if length <= TILE:
        return [(0, length)]
    count = math.ceil((length - TILE_OVERLAP) / (TILE - TILE_OVERLAP))
    size = math.ceil((length + (count - 1) * TILE_OVERLAP) / count)
    starts = [min(i * (size - TILE_OVERLAP), length - size) for i in range(count)]
    return [(start, start + size) for start in starts]


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

    A photo is searched at every scale of :func:`search_scales`, a large pass in tiles
    (:func:`tiles`), and the faces of all passes are merged by non-maximum suppression.

    Args:
        score_threshold: the least confidence for a face (OpenCV's model zoo uses 0.9; lower
            finds more turned, blurred or small faces and more false ones; docs/faces.md).
        nms_threshold: overlap (IoU) above which two boxes are one face, in a pass and across.
    """

    def __init__(
        self, score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = 0.3
    ) -> None:
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
        self._thresholds = (score_threshold, nms_threshold)
        self._nms = cv2.dnn.NMSBoxes

    def identity(self) -> str:
        """What decides the faces found besides the photo (the cache key of reframed faces)."""
        search = f"{DETECTION_SIZE},{PASS_STEP},{HANDOVER},{FINEST_SIZE},{TILE}"
        return f"{YUNET_FILE} score>={self._thresholds[0]} nms={self._thresholds[1]} {search}"

    def __call__(self, image: Image.Image) -> list[Face]:
        """The faces of an RGB ``image``, from left to right."""
        image = image if image.mode == "RGB" else image.convert("RGB")  # a large photo: no copy
        scales = search_scales(image.size)
        passes, picture = [], image
        for scale, coarser in zip(scales, [*scales[1:], None], strict=True):
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            if size != picture.size:  # from the finer pass's picture (antialiased): cheaper
                picture = picture.resize(size, Image.Resampling.BILINEAR)
            for rows in self._search(np.asarray(picture)[:, :, ::-1], scale):
                if coarser is not None:  # the coarser pass answers for the larger faces
                    rows = rows[np.minimum(rows[:, 2], rows[:, 3]) * coarser < HANDOVER]
                passes.append(rows)
        found = np.concatenate(passes) if passes else np.empty((0, 15), np.float32)
        if len(passes) > 1:  # the same face from several passes or tiles: the surest box
            keep = self._nms(found[:, :4].tolist(), found[:, 14].tolist(), *self._thresholds)
            found = found[np.asarray(keep, dtype=np.int64).reshape(-1)]
        faces = []
        for row in found:
            points = row[4:14].reshape(5, 2)
            faces.append(Face(tuple(map(float, row[:4])),
                              tuple((float(x), float(y)) for x, y in points), float(row[14])))
        return sorted(faces, key=lambda face: face.box[0])

    def _search(self, bgr: np.ndarray, scale: float) -> list[np.ndarray]:
        """One pass over a BGR picture, tile by tile: YuNet's rows (box, landmarks, score) in
        the photo's own pixels (the picture's divided by ``scale``)."""
        height, width = bgr.shape[:2]
        rows = []
        for top, bottom in tiles(height):
            for left, right in tiles(width):
                tile = np.ascontiguousarray(bgr[top:bottom, left:right])
                self._detector.setInputSize((tile.shape[1], tile.shape[0]))
                _, found = self._detector.detect(tile)
                if found is None:
                    continue
                found[:, [0, 4, 6, 8, 10, 12]] += left  # x of the box and the landmarks
                found[:, [1, 5, 7, 9, 11, 13]] += top
                found[:, :14] /= scale
                rows.append(found)
        return rows


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
    size of every one of them (``data.predict.align: auto`` leaves these as they are)."""
    return image.size == FRAME_SIZE


def model_path() -> Path:
    """Where the detector's weights are (inside the installed package)."""
    return Path(str(files("lit_celeba.data.models").joinpath(YUNET_FILE)))
