"""Where the face search stops, what a photo costs, and what the score threshold trades.

    python benchmarks/face_search.py [--sizes 250x250 1024x768 4000x3000 8000x6000 ...]
        [--repeat 3] [--wider WILD_DEV] [--thresholds 0.7 0.74 0.78 0.8 ...]
        [--scales 1.0 640]

Limits (without ``--wider``): for each photo size, a photo of that size (a plain background)
holding the astronaut's face (scikit-image's ``astronaut``, NASA, public domain) at box widths
from 8 to 64 pixels side by side, and a second photo holding it as large as the photo allows;
each goes through :class:`~lit_celeba.data.faces.FaceDetector` (``predict``'s own search).
Printed per size: the search's scales, the smallest face found (every larger one of the ladder
found too), whether the largest was found, the median seconds of the search (``--repeat`` runs
of the ladder photo) and how far the process's peak memory rose above its start (the sizes run
from small to large, so each row's rise is its own size's).

WIDER (``--wider``, instead: the folder ``../shared/wild_faces/build.py`` writes): every development
photo is searched once at the lowest of ``--thresholds``, and each threshold keeps the faces
that score at least it (the same faces a search at that threshold finds: a face is only ever
merged away by a surer one). Printed per threshold: the share of valid faces of at least 32 px
found and false detections a photo, counted by ``benchmarks/wild_figures.py``'s
``wider_figures`` (IoU >= 0.4).

``--scales`` replaces the search's scales for this run, either part (each a fraction of the
photo's own size, or ``640``: the longer side at 640 pixels, finest first), to compare others;
``--scales 640`` is the single pass that ``predict`` made before it searched at several sizes.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # in_the_wild.py and wild_figures.py

import in_the_wild  # noqa: E402
import wild_figures  # noqa: E402

from lit_celeba.data import faces  # noqa: E402
from lit_celeba.data.photos import read_rgb  # noqa: E402

BOX_COLUMNS = ("box_x", "box_y", "box_width", "box_height")  # predict's CSV
LADDER = (8, 10, 12, 14, 16, 20, 24, 32, 48, 64)  # face box widths, pixels
# The astronaut around her face (its box: about 90 px wide at x 178, y 63 of her 512).
CROP, FACE_WIDTH = (118, 0, 358, 260), 90


def her_face(width: float) -> Image.Image:
    """The astronaut cut around her face, scaled so that her face's box is ``width`` wide."""
    crop = Image.fromarray(skimage.data.astronaut()).crop(CROP)
    scale = width / FACE_WIDTH
    return crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))


def ladder_photo(size: tuple[int, int]) -> tuple[Image.Image, dict[int, tuple[int, int]]]:
    """A photo of ``size`` with her face at each :data:`LADDER` width that fits, in rows; and
    where each face's crop went."""
    photo = Image.new("RGB", size, (120, 130, 110))
    places, x, y, row = {}, 10, 10, 0
    for width in LADDER:
        face = her_face(width)
        if x + face.width > size[0] - 10:
            x, y, row = 10, y + row + 10, 0
        if y + face.height > size[1] - 10:
            break
        photo.paste(face, (x, y))
        places[width] = (x, y)
        x, row = x + face.width + 10, max(row, face.height)
    return photo, places


def found_widths(found: list[faces.Face], places: dict[int, tuple[int, int]]) -> set[int]:
    """The ladder's faces that a detected box overlaps by IoU >= 0.4 (her box: 90x113 at
    (60, 63) in the crop, scaled)."""
    hits = set()
    for width, (x, y) in places.items():
        s = width / FACE_WIDTH
        truth = (x + 60 * s, y + 63 * s, 90 * s, 113 * s)
        if any(wild_figures.iou(face.box, truth) >= wild_figures.IOU_FOUND for face in found):
            hits.add(width)
    return hits


def limits(sizes: list[tuple[int, int]], repeat: int) -> None:
    detector = faces.FaceDetector()
    start_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("photo       scales                 smallest found  largest (px) found  s a photo  "
          "peak rise MB")  # fmt: skip
    for size in sizes:
        photo, places = ladder_photo(size)
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            found = detector(photo)
            seconds.append(time.perf_counter() - start)
        hits = found_widths(found, places)
        misses = [w for w in places if w not in hits]
        smallest = min((w for w in places if w > max(misses, default=0)), default=None)
        largest_width = 0.8 * min(size) * FACE_WIDTH / 260  # her crop 80 % of the shorter side
        big = Image.new("RGB", size, (120, 130, 110))
        face = her_face(largest_width)
        big.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 2))
        large = found_widths(detector(big), {round(largest_width): ((size[0] - face.width) // 2,
                                                                    (size[1] - face.height) // 2)})
        scales = " ".join(f"{s:.3g}" for s in faces.search_scales(size))
        rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_mb
        print(f"{size[0]}x{size[1]:<6} {scales:22s} {smallest or '-':>14} "
              f"{round(largest_width):>7} {'yes' if large else 'no':>5} "
              f"{statistics.median(seconds):10.3f} {rise:13.0f}")  # fmt: skip


def wider(root: Path, thresholds: list[float]) -> None:
    photos = [r["file"] for r in in_the_wild.read_csv(root / "wider" / "groups.csv")]
    truths = in_the_wild.read_csv(root / "wider" / "faces.csv")
    detector = faces.FaceDetector(score_threshold=min(thresholds))
    rows, start = [], time.perf_counter()
    for name in photos:
        for face in detector(read_rgb(root / "wider" / "images" / name, draft=False)):
            box = {k: f"{v:.1f}" for k, v in zip(BOX_COLUMNS, face.box, strict=True)}
            rows.append({"path": name, **box, "score": face.score, "prob_Male": ""})
    seconds = time.perf_counter() - start
    print(f"WIDER: {len(photos)} photos, {seconds / len(photos):.3f} s a photo (search only)")
    print("threshold  found (valid >= 32 px)  false a photo")
    for threshold in sorted(thresholds):
        kept = [row for row in rows if row["score"] >= threshold]
        figures = wild_figures.wider_figures(kept, truths, photos, seconds)
        print(f"{threshold:9.2f}  {figures['found'] * 100:20.1f} %  "
              f"{figures['false_per_photo']:13.3f}")  # fmt: skip


def use_scales(chosen: list[str]) -> None:
    """Replace the search's scales for this run (see the module docstring)."""

    def scales(size: tuple[int, int]) -> list[float]:
        longest = max(size)
        coarse = min(1.0, faces.DETECTION_SIZE / longest)  # never enlarged, as predict did
        return [coarse if s == "640" else float(s) for s in chosen]

    faces.search_scales = scales


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["250x250", "640x480", "1024x768",
                        "2048x1536", "4000x3000", "6000x4000", "8000x6000"])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wider", type=Path, help="the wild_faces build: the threshold sweep")
    parser.add_argument("--thresholds", nargs="+", type=float,
                        default=[0.6, 0.7, 0.72, 0.74, 0.76, 0.77, 0.78, 0.79, 0.8, 0.82, 0.85])
    parser.add_argument("--scales", nargs="+", help="replace the search's scales (640: the "
                        "longer side at 640 pixels, else a fraction of the photo's size)")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    if args.scales:
        use_scales(args.scales)
    if args.wider:
        wider(args.wider, args.thresholds)
        return
    limits(sorted(sizes, key=lambda s: s[0] * s[1]), args.repeat)


if __name__ == "__main__":
    sys.exit(main())
