"""What a data root without one usable CelebA copy is told: the forms that are found
(:data:`EXPECTED_TREES`), and which file of a partial copy is missing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_celeba.base.errors import CelebAError

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"

EXPECTED_TREES = f"""\
Expected one of these forms (unpacked, only the two annotation files are needed to detect it):
  official / torchvision:                kaggle:
    ROOT/celeba/img_align_celeba/*.jpg       ROOT/img_align_celeba/img_align_celeba/*.jpg
    ROOT/celeba/list_attr_celeba.txt         ROOT/list_attr_celeba.csv
    ROOT/celeba/list_eval_partition.txt      ROOT/list_eval_partition.csv
  official download, not unpacked:       kaggle download, not unpacked:
    ROOT/img_align_celeba.zip                ROOT/archive.zip (or ROOT is that file)
    ROOT/list_attr_celeba.txt
    ROOT/list_eval_partition.txt           tensorflow datasets (tfds) data dir:
    (or ROOT/Img/img_align_celeba.zip,       ROOT/celeb_a/<version>/dataset_info.json
     ROOT/Anno/list_attr_celeba.txt,         ROOT/celeb_a/<version>/celeb_a-train.tfrecord-*
     ROOT/Eval/list_eval_partition.txt)      (and the validation and test files)
CelebA can be obtained from {CELEBA_URL} (or Kaggle's "CelebFaces Attributes (CelebA)
Dataset"). To try the project without it, `configs/demo.yaml` generates its own data."""



def no_copy_error(root: Path, candidates: Sequence[Any]) -> CelebAError:
    """The error for ``root``, where none of the ``candidates`` (``CelebAFiles`` of each layout)
    has both annotation files."""
    # A partial copy: say exactly which annotation file is missing.
    for files in candidates:
        present = [p for p in (files.attr_file, files.partition_file) if p.is_file()]
        if present:
            missing = files.partition_file if present[0] == files.attr_file else files.attr_file
            return CelebAError(
                f"Found {present[0]} but not {missing}: the {files.layout} layout needs both "
                f"annotation files.\n{EXPECTED_TREES}"
            )
    if any(root.glob("*.jpg")):  # the image folder itself, a level or two too deep
        names = ("list_attr_celeba.txt", "list_attr_celeba.csv", "celeba/list_attr_celeba.txt")
        parents = (root.parent, root.parent.parent)
        above = (p for p in parents if any((p / n).is_file() for n in names))
        return CelebAError(
            f"No CelebA annotation files under {root}, which holds .jpg images: it looks like "
            "CelebA's image folder. data.root is the folder above it that holds the annotation "
            f"files: --data.root {next(above, root.parent)}\n{EXPECTED_TREES}"
        )
    return CelebAError(f"No CelebA annotation files under {root}.\n{EXPECTED_TREES}")
