"""Where a generated set goes: never beside or over data that the generator did not write, one
writer at a time per folder, and no half-written set left by a killed run (its build folder,
:func:`~lit_celeba.base.files.building_folder`, is removed by the next run)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from lit_celeba.base.files import building_folder, remove_abandoned_folders
from lit_celeba.base.processes import FolderLock
from lit_celeba.data.copies import tfds_dir

MARKER_NAME = "SYNTHETIC.json"  # what marks a folder as generated (and its settings)

# Files that only a CelebA copy has, in any of the forms lit_celeba reads (data/copies.py).
_COPY_FILES = (
    "list_attr_celeba.txt", "list_eval_partition.txt", "list_attr_celeba.csv",
    "list_eval_partition.csv", "archive.zip", "img_align_celeba.zip", "Anno/list_attr_celeba.txt",
    "Eval/list_eval_partition.txt", "Img/img_align_celeba.zip",
)  # fmt: skip


def refuse_data_of_others(root: Path, target: Path) -> None:
    """Raise FileExistsError where writing ``target`` would touch data that this module did not
    generate: a folder at ``target`` without its marker, or any CelebA copy at ``root`` (a root
    with two copies is refused by every run, and a real copy must never mix with drawn faces)."""
    if root.is_file() or (target.exists() and not (target / MARKER_NAME).is_file()):
        if root.is_file() or not target.is_dir() or any(target.iterdir()):
            raise FileExistsError(
                f"{target} already exists and holds no {MARKER_NAME}, so lit_celeba.data.synthetic "
                "did not generate it (it may be a real CelebA copy); refusing to overwrite data it "
                "did not generate. Choose another root, or move that folder away yourself."
            )
    found = [
        path
        for folder in (root, root / "celeba")
        if folder != target and not (folder / MARKER_NAME).is_file()
        for path in [*(folder / name for name in _COPY_FILES), tfds_dir(folder)]
        if path is not None and path.exists()
    ]
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise FileExistsError(
            f"{root} holds a CelebA copy that lit_celeba.data.synthetic did not generate "
            f"({shown}); generated faces go only into a root without one, so that the two never "
            "mix. Give the generated set another root (--data.root), or train on that copy "
            "without generating (--data.synthetic null)."
        )


@contextlib.contextmanager
def building(target: Path) -> Iterator[None]:
    """Hold the folder that ``target`` goes in while it is checked and written: a second run
    that generates the same set (two fits of the demo at once) waits, then finds it done. Build
    folders that a killed run left there are removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(target.parent)
    if not lock.acquire():
        print(f"Waiting for {', '.join(map(str, lock.holders())) or 'another process'}, which "
              f"generates a data set in {target.parent}.", file=sys.stderr, flush=True)  # fmt: skip
        lock.acquire(wait=True)
    try:
        remove_abandoned_folders(target)
        yield
    finally:
        lock.release()


def move_into_place(build: Path, target: Path) -> None:
    """Rename the finished ``build`` to ``target``: over nothing, an empty folder, or an older
    generated set (swapped out, then deleted); never over a folder without the marker."""
    if not target.exists():
        os.replace(build, target)
    elif (target / MARKER_NAME).is_file():  # an older generated set: swap, then delete it
        old = building_folder(target, "old")
        os.replace(target, old)
        os.replace(build, target)
        shutil.rmtree(old)
    else:
        target.rmdir()  # checked empty before; rmdir refuses if anything appeared since
        os.replace(build, target)
