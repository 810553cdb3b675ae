"""Which files ``--data.predict.path`` names (:mod:`lit_celeba.data.photos` reads them): an image,
a folder searched recursively for the formats that predict reads, or a ``.txt`` list. A folder's
images of other formats (a GIF, a TIFF, a phone's HEIC) are passed over, and a note says so."""

from __future__ import annotations

import sys
from pathlib import Path

from lit_celeba.base.errors import PhotoError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LIST_SUFFIX = ".txt"
# Images that a folder's search skips, and says so: formats that read_rgb refuses.
OTHER_IMAGE_SUFFIXES = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".jp2",
                        ".ppm", ".pgm", ".pbm", ".tga", ".ico", ".psd", ".dng")  # fmt: skip


def _in_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """The files under ``folder`` (hidden ones left out), in sorted order: those that predict
    reads, by their suffix in any case, and the images of other formats, which it passes over."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES + OTHER_IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip
    read = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return read, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def find_photos(predict_path: str | Path) -> list[Path]:
    """The photo paths that ``predict_path`` names (see the module docstring)."""
    path = Path(predict_path).expanduser()
    if path.is_dir():
        photos, skipped = _in_folder(path)
        others = _skipped(path, skipped)
        if not photos:
            raise PhotoError(
                f"--data.predict.path {path} holds no {'/'.join(IMAGE_SUFFIXES)} files "
                f"(searched recursively){others}."
            )
        if others:
            print(f"Note: --data.predict.path {path}: predicting on its {len(photos)} "
                  f"{'/'.join(IMAGE_SUFFIXES)} file(s) only{others}.", file=sys.stderr)  # fmt: skip
        return photos
    if path.is_file() and path.suffix.lower() == LIST_SUFFIX:
        try:  # utf-8-sig: Windows editors start a UTF-8 file with a byte-order mark
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise PhotoError(
                f"--data.predict.path {path} is not UTF-8 text (byte {err.start}: "
                f"{err.object[err.start:err.start + 1]!r}). Save the list as UTF-8, one image "
                "path per line."
            ) from None
        lines = [line.strip() for line in text.splitlines()]
        photos = [path.parent / line for line in lines if line and not line.startswith("#")]
        if not photos:
            raise PhotoError(f"--data.predict.path {path} lists no image paths.")
        return photos
    if path.is_file():
        return [path]
    raise PhotoError(
        f"--data.predict.path {path} does not exist; give an image file, a folder of images or "
        f"a {LIST_SUFFIX} file with one image path per line."
    )


def _skipped(folder: Path, skipped: list[Path]) -> str:
    """``; skipped ...``: the images in ``folder`` of formats that predict does not read (a
    GIF, a TIFF, a phone's HEIC), which a folder's search passes over; ``""`` when none."""
    if not skipped:
        return ""
    shown = ", ".join(str(p.relative_to(folder)) for p in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return (f"; skipped {len(skipped)} image(s) of a format it does not read ({shown}{more}): "
            "convert them to JPEG or PNG to predict on them")  # fmt: skip
