"""Building the recipe's decoded cache (16,000 train + 1,000 valid images) from each form of CelebA
on disk, in one run: the unpacked folder, the official zip, and tfds TFRecords.

    python benchmarks/cache_sources.py                 # 17,000 generated images
    python benchmarks/cache_sources.py --images 500    # a quick check that it works

Each form is the same generated set (``python -m lit_celeba.data.synthetic --form ...``). A build
is timed from the data root to the finished cache files: finding and reading the copy
(annotations, or reading every TFRecord with both CRCs into the index kept beside the cache, as
the data module does; each round starts from an empty cache folder, so no round reuses an index),
then decoding the subsets in parallel.
The forms are built in turn, ``--rounds`` times over, each keeping its best round (a shared
machine's noise lowers single rounds, not the ratios). Prints the times, the ratios
zip/unpacked and tfds/unpacked (target: within 1.2), and the disk used beyond the cache files and
the copies themselves while building (target: 0, nothing unpacked anywhere), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from lit_celeba.data.cache import build_cache
from lit_celeba.data.copies import load_copy
from lit_celeba.data.order import subset_rows
from lit_celeba.data.synthetic.forms import write_form
from lit_celeba.data.transforms import columns_read

FORMS = {"unpacked": "unpacked", "zip": "zip", "tfds": "tfds"}


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(
    root: Path, cache_dir: Path, sizes: tuple[int, int], workers: int | None
) -> tuple[float, float]:
    """Seconds to build both subsets' caches from ``root``, and the part of them spent finding
    and reading the copy (annotations, or the tfds index) before decoding."""
    start = time.perf_counter()
    copy = load_copy(root, cache_dir)
    reading = time.perf_counter() - start
    for split, size in zip(("train", "valid"), sizes, strict=True):
        rows = subset_rows(copy.index, split, size, "tfds", copy.source.tfds_order_only)
        names = [copy.index.image_names[r] for r in rows]
        build_cache(copy.source, names, cache_dir, columns_read(64), workers=workers,
                    description=f"{root.name} {split}")  # fmt: skip
    return time.perf_counter() - start, reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=17_000, help="train + valid images")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    args = parser.parse_args()
    valid = max(1, round(args.images / 17))
    sizes = (args.images - valid, valid)
    with tempfile.TemporaryDirectory(prefix="cache_sources-") as tmp:
        base = Path(tmp)
        roots = {
            form: write_form(base / form, kind, sizes[0], sizes[1], 1, seed=0, progress=False)
            for form, kind in FORMS.items()
        }
        copies = {form: _disk_bytes(base / form) for form in FORMS}
        best: dict[str, float] = {}
        reading: dict[str, float] = {}
        extra = 0
        for round_number in range(args.rounds):
            for form, root in roots.items():
                cache_dir = base / f"cache-{form}"
                shutil.rmtree(cache_dir, ignore_errors=True)
                before = _disk_bytes(base)
                seconds, read_seconds = build(root, cache_dir, sizes, args.workers)
                after = _disk_bytes(base)
                # Anything written beyond the cache files themselves (an unpacked copy would be).
                extra = max(extra, after - before - _disk_bytes(cache_dir))
                if seconds < best.get(form, float("inf")):
                    best[form], reading[form] = seconds, read_seconds
                print(f"round {round_number + 1}: {form:8s} {seconds:7.2f} s "
                      f"(reading the copy {read_seconds:.2f} s)")  # fmt: skip
        print(f"{args.images} images ({sizes[0]} train + {sizes[1]} valid), "
              f"best of {args.rounds}:")  # fmt: skip
        for form in FORMS:
            print(f"  {form:8s} {best[form]:7.2f} s (reading the copy {reading[form]:.2f} s)   "
                  f"copy on disk {copies[form] / 1e6:8.1f} MB")  # fmt: skip
        figures = {
            "images": args.images,
            "cpus": len(os.sched_getaffinity(0)),
            **{f"{form}_s": round(best[form], 3) for form in FORMS},
            **{f"{form}_reading_s": round(reading[form], 3) for form in FORMS},
            "zip_vs_unpacked": round(best["zip"] / best["unpacked"], 3),
            "tfds_vs_unpacked": round(best["tfds"] / best["unpacked"], 3),
            "extra_disk_bytes": extra,
        }
        zip_ratio, tfds_ratio = figures["zip_vs_unpacked"], figures["tfds_vs_unpacked"]
        print(f"zip/unpacked = {zip_ratio:.3f}, tfds/unpacked = {tfds_ratio:.3f} (target: <= 1.2)")
        print(f"disk used beyond the cache while building: {extra} bytes (target: 0)")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
