"""A deterministic fake CelebA in CelebA's own on-disk formats, for the demo and the tests.

The faces come from :mod:`.faces` (drawn shapes whose attributes are visible cues); the labels of
the drawn attributes are flipped with probability ``label_noise`` so that accuracy stays below
100%. This module writes them out as a CelebA folder (official or Kaggle layout) with a marker
file, atomically, never over a folder it did not generate.

    python -m lit_celeba.data.synthetic ROOT --num-train 4000 --num-valid 500 --num-test 500

``--form zip|kaggle-zip|tfds`` writes the same set as CelebA's downloads come instead (see
:mod:`.forms`).

``--correlate Blond_Hair Male 0.05`` plants a spurious correlation for the group-robustness
tests and docs/groups.md: in the train split only 5 % of the faces have ``Male`` equal to
``Blond_Hair`` (blond faces are nearly all women, the others nearly all men), while in the
validation and test splits ``Male`` is a fair coin whatever the hair.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from lit_celeba.base.files import building_folder
from lit_celeba.base.processes import pool_worker_init
from lit_celeba.data.synthetic.faces import ATTRIBUTE_NAMES, draw_face
from lit_celeba.data.synthetic.target import (
    MARKER_NAME,
    building,
    move_into_place,
    refuse_data_of_others,
)
from lit_celeba.data.synthetic.traits import Correlation

__all__ = ["ATTRIBUTE_NAMES", "MARKER_NAME", "generate_celeba", "read_marker"]

GENERATOR_VERSION = 1
LAYOUTS = ("official", "kaggle")
_PARALLEL_MIN = 400  # below this, starting worker processes costs more than it saves
_CHUNK = 100


def _split_correlation(
    correlate: Correlation | None, index: int, num_train: int
) -> Correlation | None:
    """The train split gets the asked share; the others a share of 0.5: no correlation."""
    if correlate is None:
        return None
    target, spurious, share = correlate
    return (target, spurious, share if index < num_train else 0.5)


def _render_chunk(
    image_dir: str,
    seed: int,
    start: int,
    stop: int,
    noise: float,
    correlate: Correlation | None = None,
    num_train: int = 0,
) -> np.ndarray:
    """Draw and save images ``start..stop-1`` (0-based); return their +1/-1 labels."""
    labels = np.empty((stop - start, len(ATTRIBUTE_NAMES)), np.int8)
    for row, index in enumerate(range(start, stop)):
        pair = _split_correlation(correlate, index, num_train)
        picture, labels[row] = draw_face(seed, index, noise, pair)
        picture.save(os.path.join(image_dir, f"{index + 1:06d}.jpg"), quality=90)
    return labels


def _validate_correlation(correlate) -> None:
    if correlate is None:
        return
    try:
        target, spurious, share = correlate
    except (TypeError, ValueError):
        raise ValueError(
            f"correlate must be (target, spurious, share), got {correlate!r}"
        ) from None
    for name in (target, spurious):
        if name not in ATTRIBUTE_NAMES:
            raise ValueError(f"correlate names {name!r}, which is not one of the 40 attributes")
    if target == spurious:
        raise ValueError(f"correlate needs two different attributes, got {target!r} twice")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"correlate's share must be a number from 0 to 1, got {share!r}")


def _validate(num_train, num_valid, num_test, seed, label_noise, layout) -> None:
    for name, value in (("num_train", num_train), ("num_valid", num_valid), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    if num_train + num_valid + num_test > 999_999:
        raise ValueError("At most 999999 images in all: CelebA's file names have 6 digits.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")


def load_marker(path: Path) -> dict | None:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def read_marker(root: str | os.PathLike) -> dict | None:
    """The marker of the generated set at ``root`` (either layout, or its ``celeba`` folder)."""
    root = Path(root).expanduser()
    for folder in (root / "celeba", root):  # find_files' order of preference
        if (folder / MARKER_NAME).is_file():
            return load_marker(folder / MARKER_NAME)
    return None


def _write_annotations(folder: Path, layout: str, labels: np.ndarray, sizes: Sequence[int]):
    names = [f"{i + 1:06d}.jpg" for i in range(len(labels))]
    parts = np.repeat([0, 1, 2], sizes)
    if layout == "official":
        # The real file: a count line, a header with a trailing space, values padded to width 2.
        attr = [str(len(names)), " ".join(ATTRIBUTE_NAMES) + " "]
        rows = [" ".join(f"{v:2d}" for v in row) for row in labels.tolist()]
        attr += [f"{n} {r}" for n, r in zip(names, rows, strict=True)]
        part = [f"{n} {p}" for n, p in zip(names, parts, strict=True)]
        files = {"list_attr_celeba.txt": attr, "list_eval_partition.txt": part}
    else:
        attr = [",".join(("image_id", *ATTRIBUTE_NAMES))]
        rows = [",".join(str(v) for v in row) for row in labels.tolist()]
        attr += [f"{n},{r}" for n, r in zip(names, rows, strict=True)]
        part = ["image_id,partition"] + [f"{n},{p}" for n, p in zip(names, parts, strict=True)]
        files = {"list_attr_celeba.csv": attr, "list_eval_partition.csv": part}
    for name, lines in files.items():
        with open(folder / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines) + "\n")


def _render_all(
    image_dir: Path,
    seed: int,
    total: int,
    noise: float,
    progress: bool,
    correlate: Correlation | None = None,
    num_train: int = 0,
):
    starts = range(0, total, _CHUNK)
    jobs = [
        (str(image_dir), seed, a, min(a + _CHUNK, total), noise, correlate, num_train)
        for a in starts
    ]
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    workers = min(cpus, len(jobs), 8)
    # Fork only: a spawned worker would re-import lit_celeba, hence Lightning (seconds each).
    parallel = workers > 1 and total >= _PARALLEL_MIN and sys.platform.startswith("linux")
    bar = dict(total=total, desc="Generating synthetic CelebA", unit="img", disable=not progress)
    if not parallel:
        chunks = []
        with tqdm(**bar) as progress_bar:
            for job in jobs:
                chunks.append(_render_chunk(*job))
                progress_bar.update(len(chunks[-1]))
        return np.concatenate(chunks)
    done = {}
    with ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                             initializer=pool_worker_init, initargs=(os.getpid(),)) as pool:
        # Submitting forks the workers, before tqdm starts its monitor thread.
        futures = {pool.submit(_render_chunk, *job): job[2] for job in jobs}
        try:
            with tqdm(**bar) as progress_bar:
                for future in as_completed(futures):
                    done[futures[future]] = labels = future.result()
                    progress_bar.update(len(labels))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # let running chunks end before the cleanup
            raise
    return np.concatenate([done[a] for a in sorted(done)])


def generate_celeba(
    root: str | os.PathLike,
    num_train: int,
    num_valid: int,
    num_test: int,
    *,
    seed: int = 0,
    label_noise: float = 0.04,
    layout: Literal["official", "kaggle"] = "official",
    progress: bool = True,
    correlate: Correlation | None = None,
) -> Path:
    """Write a synthetic CelebA at ``root`` (skipped if one with these settings is there).

    Returns the folder that holds the files: ``root/celeba`` (official) or ``root`` (kaggle).
    Raises FileExistsError rather than touch a non-empty folder without our marker.
    ``correlate=(target, spurious, share)``: in the train split, the share of faces whose
    ``spurious`` label equals their ``target`` label (see the module's docstring); None, the
    default, writes the very same files as before the option existed.
    """
    _validate(num_train, num_valid, num_test, seed, label_noise, layout)
    _validate_correlation(correlate)
    if correlate is not None:
        correlate = (str(correlate[0]), str(correlate[1]), float(correlate[2]))
    root = Path(root).expanduser().absolute()
    target = root / "celeba" if layout == "official" else root
    marker = {
        "generator": "lit_celeba.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_valid": num_valid,
        "num_test": num_test,
        "label_noise": float(label_noise),
        "layout": layout,
        "note": "Synthetic drawn faces in CelebA's file formats, not CelebA.",
    }
    if correlate is not None:  # only then: the default marker stays byte-identical
        marker["correlate"] = list(correlate)
    refuse_data_of_others(root, target)
    with building(target):
        if not ((target / MARKER_NAME).is_file() and load_marker(target / MARKER_NAME) == marker):
            _write_set(target, marker, correlate, progress)
    return target


def _write_set(
    target: Path, marker: dict, correlate: Correlation | None, progress: bool
) -> None:
    """Generate the set that ``marker`` describes and move it into place at ``target``."""
    num_train, layout, label_noise = marker["num_train"], marker["layout"], marker["label_noise"]
    # A hidden sibling: renaming within one folder is atomic, and a killed run leaves no set
    # that looks complete at ``target``.
    build = building_folder(target)
    build.mkdir()
    try:
        image_dir = build / "img_align_celeba"
        if layout == "kaggle":
            image_dir = image_dir / "img_align_celeba"
        image_dir.mkdir(parents=True)
        sizes = (num_train, marker["num_valid"], marker["num_test"])
        labels = _render_all(
            image_dir, marker["seed"], sum(sizes), label_noise, progress, correlate, num_train
        )
        _write_annotations(build, layout, labels, sizes)
        (build / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        move_into_place(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
