"""Photos as people have them: a checkpoint through ``predict``'s own detect-and-align path.

    python benchmarks/in_the_wild.py --ckpt_path CKPT [--ckpt_path CKPT ...] --root WILD_DEV \\
        [--out DIR] [--limit N] [--only lfw|wider] [PREDICT OPTIONS ...]
    python benchmarks/in_the_wild.py --compare COMPARE_OUT [--compare ...] --root WILD_DEV ...

``WILD_DEV`` is the folder that ``../shared/wild_faces/build.py`` writes (LFW portraits and
WIDER FACE group photos; never part of this repository). Every photo goes through
``python -m lit_celeba predict`` itself (``cli_main`` in this process, the same code a user
runs: reading, face detection, alignment, the network, calibration, thresholds, the CSV
writer); the figures are computed from the CSV it writes. Options this script does not know go
to every predict run (``--data.predict.align never``, ``--data.batch_size 64``, ...).

LFW (``lfw/balanced.csv``: one photo per person, as many women as men): a deep-funneled LFW
photo is centred on its person, so of the faces found the one whose box centre lies nearest the
photo's centre is the person's; a photo without a face counts as wrong. Printed: the share of
photos with a face, accuracy, the recall of each gender, balanced accuracy, AUROC, ECE (the
project's own: 15 bins, :func:`lit_celeba.models.evaluation.calibration_errors`) and photos a
second (the whole predict command, start-up included).

WIDER (``wider/faces.csv``, ``wider/groups.csv``): each photo's detections are matched one to one
with its annotated boxes, greedily by IoU, a pair counting at IoU >= 0.4. Printed: the share of
valid faces (not marked invalid) at least 32 px on their shorter side that were found; false
detections a photo (detections that match no annotated box, of whatever size or validity);
gender accuracy on the found faces with a perceived gender (Male or Female; "Not Sure" and
unannotated faces are left out), for faces of at least 32 px and in three bands of the shorter
side (< 48, 48-96, >= 96 px). A found face that predict judged too small (no probability, its
``error`` says so) is counted apart, as "not judged".

With several checkpoints (the seeds of one config), each is printed, then the mean and sample
standard deviation of every figure. ``--compare`` takes the folder of a ``compare`` run instead:
the ``last.ckpt`` of every finished run, grouped by variant, beside its CelebA test accuracy and
ECE (``result.json``), so that a comparison is read on CelebA and in the wild together.
``--out`` keeps each run's predictions CSV and a ``results.json`` with every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_celeba.cli import cli_main

try:  # run as a script: this folder is on the path; imported (the tests): the repository is
    from wild_figures import lfw_figures, lfw_half, wider_figures
except ImportError:
    from benchmarks.wild_figures import lfw_figures, lfw_half, wider_figures

# What a wild_faces build holds, for each set.
BUILD_FILES = {"lfw": ("lfw/balanced.csv", "lfw/images"),
               "wider": ("wider/groups.csv", "wider/faces.csv", "wider/images")}  # fmt: skip


def run_predict(ckpt: Path, photos: list[Path], work: Path, name: str, extra: list[str]) -> tuple:
    """``predict`` on ``photos`` (a .txt list in ``work``); its CSV rows and wall time (s)."""
    listing = work / f"{name}.txt"
    listing.write_text("".join(f"{p}\n" for p in photos))
    output = work / f"{name}_predictions.csv"
    output.unlink(missing_ok=True)
    args = ["predict", "--ckpt_path", str(ckpt), "--data.predict.path", str(listing),
            "--prediction.output", str(output),
            "--trainer.logger.init_args.save_dir", str(work / "logs"), *extra]  # fmt: skip
    sys.argv = [sys.argv[0]]  # LightningCLI warns when it sees this script's own options
    start = time.perf_counter()
    cli_main(args)
    seconds = time.perf_counter() - start
    with open(output, newline="") as fh:
        return list(csv.DictReader(fh)), seconds


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def summary(results: list[dict]) -> dict:
    """Mean and sample sd (over checkpoints) of every figure."""
    keys = [k for k, v in results[0].items() if isinstance(v, float | int)]
    out = {}
    for key in keys:
        values = [r[key] for r in results if key in r and not np.isnan(r[key])]
        if values:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key] = (statistics.fmean(values), sd)
    return out


def show(title: str, figures: dict) -> None:
    print(f"  {title}")
    for key, value in figures.items():
        if isinstance(value, tuple):
            print(f"    {key:28s} {value[0]:.4f} ± {value[1]:.4f}")
        elif isinstance(value, float):
            print(f"    {key:28s} {value:.4f}")
        else:
            print(f"    {key:28s} {value}")


def checkpoints(args: argparse.Namespace) -> list[tuple[str, Path, dict]]:
    """(group, checkpoint, CelebA test figures) of every ``--ckpt_path`` (group
    "checkpoints") and of every finished run of every ``--compare`` folder (group: its variant;
    the checkpoint: the fit's ``last.ckpt``, the one compare calls "final")."""
    found = [("checkpoints", path, {}) for path in args.ckpt_path or []]
    for folder in args.compare or []:
        for record in sorted(folder.glob("runs/*/seed_*/result.json")):
            try:
                run = json.loads(record.read_text())
            except (OSError, ValueError) as err:  # a run stopped while writing it
                print(f"Note: {record} cannot be read ({err}); its run is left out.",
                      file=sys.stderr)  # fmt: skip
                continue
            if run.get("status") != "ok":
                continue
            test = run["test_final"]
            celeba = {"test_acc": test["test/acc"], "test_ece": test.get("test/ece", float("nan"))}
            last = record.parent / "fit" / "checkpoints" / "last.ckpt"
            found.append((run["variant"], last, celeba))
    return found


def checked_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple]:
    """:func:`checkpoints`, once the arguments are checked: each wrong one is ``parser.error``
    (status 2, one line), before any predict runs."""
    least = 1 if args.only == "wider" else 2  # LFW takes half of them from each gender
    if args.limit is not None and args.limit < least:
        why = "" if least == 1 else " (LFW takes half of them from each gender)"
        parser.error(f"--limit {args.limit}: give {least} photo(s) or more{why}, or leave it out "
                     "for every photo")  # fmt: skip
    wanted = [args.only] if args.only else list(BUILD_FILES)
    missing = [name for part in wanted for name in BUILD_FILES[part]
               if not (args.root / name).exists()]  # fmt: skip
    if missing:
        where = "" if args.root.is_dir() else " (no such folder)"
        parser.error(f"--root {args.root}{where} is not a wild_faces build (../shared/"
                     "wild_faces/build.py writes one): it has no "
                     f"{', '.join(missing)}")  # fmt: skip
    for folder in args.compare or []:
        if not checkpoints(argparse.Namespace(ckpt_path=None, compare=[folder])):
            where = "" if folder.is_dir() else " (no such folder)"
            parser.error(f"--compare {folder}{where} has no finished run: none of its "
                         "runs/NAME/seed_S/result.json says status ok")  # fmt: skip
    runs = checkpoints(args)
    if not runs:
        parser.error("give --ckpt_path or a --compare folder with finished runs")
    absent = [str(ckpt) for _, ckpt, _ in runs if not ckpt.is_file()]
    if absent:
        parser.error(f"no checkpoint file at {', '.join(absent)}")
    return runs


def write_lfw_calibration(root: Path, out: Path) -> None:
    """The calibration half of LFW's balanced photos as ``file,Male`` (absolute paths)."""
    rows = [r for r in read_csv(root / "lfw" / "balanced.csv")
            if lfw_half(r["person"]) == "calibration"]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out, "x", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "Male"])
            writer.writerows([str((root / "lfw" / "images" / r["file"]).resolve()), r["male"]]
                             for r in rows)  # fmt: skip
    except FileExistsError:
        sys.exit(f"{out} exists; give a new file name")
    women = sum(r["male"] == "0" for r in rows)
    print(f"Wrote {len(rows)} photos ({women} women, {len(rows) - women} men) to {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", action="append", type=Path)
    parser.add_argument("--compare", action="append", type=Path,
                        help="a compare --out folder: every finished run, by variant")  # fmt: skip
    parser.add_argument("--root", required=True, type=Path, help="the wild_faces build")
    parser.add_argument("--out", type=Path, help="keep the CSVs and results.json here")
    parser.add_argument("--limit", type=int, help="N photos of each set only (LFW: N/2 each)")
    parser.add_argument("--only", choices=("lfw", "wider"))
    parser.add_argument("--lfw_half", choices=("calibration", "report"),
                        help="LFW: only the people of this half (wild_figures.lfw_half)")
    parser.add_argument("--write_lfw_calibration", type=Path, metavar="CSV",
                        help="write the calibration half's photos and labels for "
                             "`calibrate --photo_labels CSV`, then stop")  # fmt: skip
    args, extra = parser.parse_known_args(argv)
    if args.write_lfw_calibration:
        write_lfw_calibration(args.root, args.write_lfw_calibration)
        return
    runs = checked_runs(parser, args)
    work = args.out or Path(tempfile.mkdtemp(prefix="in_the_wild_"))
    work.mkdir(parents=True, exist_ok=True)
    truth, wider_photos, wider_faces = {}, [], []
    if args.only in (None, "lfw"):
        lfw = read_csv(args.root / "lfw" / "balanced.csv")
        if args.lfw_half:
            lfw = [r for r in lfw if lfw_half(r["person"]) == args.lfw_half]
        if args.limit:  # as many women as men still
            lfw = [r for g in "01" for r in [r for r in lfw if r["male"] == g][: args.limit // 2]]
        truth = {r["file"]: int(r["male"]) for r in lfw}
    if args.only in (None, "wider"):
        wider_photos = [r["file"] for r in read_csv(args.root / "wider" / "groups.csv")]
        wider_photos = wider_photos[: args.limit]
        wider_faces = read_csv(args.root / "wider" / "faces.csv")
    results = []
    for index, (group, ckpt, celeba) in enumerate(runs):
        result: dict = {"group": group, "ckpt_path": str(ckpt), "predict_options": extra}
        if celeba:
            result["celeba"] = celeba
        if args.only in (None, "lfw"):
            photos = [args.root / "lfw" / "images" / name for name in truth]
            rows, seconds = run_predict(ckpt, photos, work, f"lfw_{index}", extra)
            result["lfw"] = lfw_figures(rows, truth, seconds)
        if args.only in (None, "wider"):
            photos = [args.root / "wider" / "images" / name for name in wider_photos]
            rows, seconds = run_predict(ckpt, photos, work, f"wider_{index}", extra)
            result["wider"] = wider_figures(rows, wider_faces, wider_photos, seconds)
        results.append(result)
    print(f"\nIn the wild ({args.root}), predict options: {' '.join(extra) or 'none'}")
    for result in results:
        print(f"{result['group']}: {result['ckpt_path']}")
        for part in ("celeba", "lfw", "wider"):
            if part in result:
                show(part, result[part])
    for group in dict.fromkeys(r["group"] for r in results):
        members = [r for r in results if r["group"] == group]
        if len(members) > 1:
            print(f"{group}: mean ± sd over {len(members)} checkpoints")
            for part in ("celeba", "lfw", "wider"):
                if part in members[0]:
                    show(part, summary([r[part] for r in members]))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"CSVs and results.json in {work}")


if __name__ == "__main__":
    sys.exit(main())
