"""CelebA's two annotation files, ``list_attr_celeba`` and ``list_eval_partition``, read from
their text (``.txt``, the official release) or CSV (``.csv``, Kaggle's) form.

The real text files have quirks that the parsers accept: a count line, a header with a trailing
space, values padded with double spaces, sometimes CRLF line endings, and (after a Windows editor)
a UTF-8 byte-order mark. What they refuse (a truncated file, a value that is not 1 or -1, an image
listed twice) is a :class:`~lit_celeba.base.errors.CelebAError` naming the file and the line.
:mod:`lit_celeba.data.celeba` finds the files and joins the two into one index.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lit_celeba.base.errors import CelebAError


def _lines(path: Path) -> list[str]:
    # newline=None folds CRLF and CR into "\n", as the real files come both ways; utf-8-sig drops
    # the byte-order mark that Windows editors write, which would otherwise stick to line 1.
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        return fh.read().splitlines()


def _refuse_duplicates(path: Path, names: Sequence[str], line_numbers: Sequence[int]) -> None:
    """One image listed twice would be trained (or scored) twice, with whichever labels."""
    first_line: dict[str, int] = {}
    for name, line_no in zip(names, line_numbers, strict=True):
        if name in first_line:
            raise CelebAError(
                f"{path}: the image {name!r} is listed twice, on lines {first_line[name]} and "
                f"{line_no}; each image must appear once. Fix or re-download the file."
            )
        first_line[name] = line_no


def _parse_values(path: Path, line_no: int, values: Sequence[str], n_attrs: int) -> list[bool]:
    if len(values) != n_attrs:
        raise CelebAError(
            f"{path}, line {line_no}: expected a file name and {n_attrs} values, "
            f"found {len(values)} values. Fix or re-download the file."
        )
    row = []
    for value in values:
        if value == "1":
            row.append(True)
        elif value == "-1":
            row.append(False)
        else:
            raise CelebAError(
                f"{path}, line {line_no}: attribute value {value!r} is not 1 or -1. "
                "Fix or re-download the file."
            )
    return row


def read_attributes(
    path: str | os.PathLike, text: str | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Read ``list_attr_celeba.txt`` or ``.csv``: (image names, attribute names, 0/1 int8 array).

    ``text`` is the file's content when it was read from elsewhere (an archive); ``path`` then
    only names it in messages."""
    path = Path(path)
    lines = _lines(path) if text is None else text.splitlines()
    csv = path.suffix.lower() == ".csv"
    if csv:
        header_no, first_row = 1, 2
        header = [h.strip() for h in (lines[0].split(",") if lines else [])]
        if not header or header[0] != "image_id":
            raise CelebAError(f"{path}, line 1: expected a header starting with 'image_id'.")
        attr_names = header[1:]
    else:
        header_no, first_row = 2, 3
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise CelebAError(
                f"{path}, line 1: expected the image count, then a header line of attribute names."
            )
        attr_names = lines[1].split()
    if not attr_names:
        raise CelebAError(f"{path}, line {header_no}: the header names no attributes.")
    if len(set(attr_names)) != len(attr_names):
        raise CelebAError(f"{path}, line {header_no}: the header repeats an attribute name.")

    names: list[str] = []
    line_numbers: list[int] = []
    rows: list[list[bool]] = []
    for line_no, line in enumerate(lines[first_row - 1 :], start=first_row):
        if not line.strip():
            continue
        parts = line.split(",") if csv else line.split()
        parts = [p.strip() for p in parts]
        names.append(parts[0])
        line_numbers.append(line_no)
        rows.append(_parse_values(path, line_no, parts[1:], len(attr_names)))
    if not csv and int(lines[0]) != len(names):
        raise CelebAError(
            f"{path}, line 1: the count says {int(lines[0])} images but the file lists "
            f"{len(names)}; the file is probably truncated. Re-download it."
        )
    if not names:
        raise CelebAError(f"{path}: lists no images.")
    _refuse_duplicates(path, names, line_numbers)
    attributes = np.array(rows, dtype=np.int8).reshape(len(names), len(attr_names))
    return names, attr_names, attributes


def read_partition(
    path: str | os.PathLike, text: str | None = None
) -> tuple[list[str], np.ndarray]:
    """Read ``list_eval_partition.txt`` or ``.csv``: (image names, partition per image)."""
    path = Path(path)
    lines = _lines(path) if text is None else text.splitlines()
    csv = path.suffix.lower() == ".csv"
    start = 1
    if csv:
        if not lines or not lines[0].startswith("image_id"):
            raise CelebAError(f"{path}, line 1: expected the header 'image_id,partition'.")
        start = 2
    names: list[str] = []
    line_numbers: list[int] = []
    parts_of: list[int] = []
    for line_no, line in enumerate(lines[start - 1 :], start=start):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split(",") if csv else line.split())]
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise CelebAError(
                f"{path}, line {line_no}: expected '<image name> <0|1|2>', got {line.strip()!r}. "
                "Fix or re-download the file."
            )
        names.append(fields[0])
        line_numbers.append(line_no)
        parts_of.append(int(fields[1]))
    if not names:
        raise CelebAError(f"{path}: lists no images.")
    _refuse_duplicates(path, names, line_numbers)
    return names, np.array(parts_of, dtype=np.int8)
