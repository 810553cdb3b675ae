"""Photos as people have them: a checkpoint through ``predict``'s own detect-and-align path.

    python benchmarks/in_the_wild.py --ckpt_path CKPT [--ckpt_path CKPT ...] --root WILD_DEV \\
        [--out DIR] [--limit N] [--only lfw|wider] [PREDICT OPTIONS ...]
    python benchmarks/in_the_wild.py --compare COMPARE_OUT [--compare ...] --root WILD_DEV ...

``WILD_DEV`` is the folder that ``../shared/wild_faces/build.py`` writes (LFW portraits and
WIDER FACE group photos; never part of this repository). Every photo goes through
``python -m lit_celeba predict`` itself (``cli_main`` in this process, the same code a user
runs: reading, face detection, alignment, the network, calibration, thresholds, the CSV
writer); the figures are computed from the CSV it writes. Options this script does not know go
to every predict run (``--data.align never``, ``--data.batch_size 64``, ...).

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
import torch
from torchmetrics.functional.classification import binary_auroc

from lit_celeba.cli import cli_main
from lit_celeba.models.evaluation import calibration_errors

IOU_FOUND = 0.4
MIN_SIDE = 32
BANDS = {"<48": (0, 48), "48-96": (48, 96), ">=96": (96, float("inf"))}


def run_predict(ckpt: Path, photos: list[Path], work: Path, name: str, extra: list[str]) -> tuple:
    """``predict`` on ``photos`` (a .txt list in ``work``); its CSV rows and wall time (s)."""
    listing = work / f"{name}.txt"
    listing.write_text("".join(f"{p}\n" for p in photos))
    output = work / f"{name}_predictions.csv"
    output.unlink(missing_ok=True)
    args = ["predict", "--ckpt_path", str(ckpt), "--data.predict_path", str(listing),
            "--data.predict_output", str(output),
            "--trainer.logger.init_args.save_dir", str(work / "logs"), *extra]  # fmt: skip
    sys.argv = [sys.argv[0]]  # LightningCLI warns when it sees this script's own options
    start = time.perf_counter()
    cli_main(args)
    seconds = time.perf_counter() - start
    with open(output, newline="") as fh:
        return list(csv.DictReader(fh)), seconds


def _box(row: dict) -> tuple[float, float, float, float] | None:
    if not row.get("box_x"):
        return None
    return tuple(float(row[k]) for k in ("box_x", "box_y", "box_width", "box_height"))


def _off_centre(row: dict) -> float:
    """Squared distance of a face's box centre from the centre of a 250x250 LFW photo."""
    x, y, w, h = _box(row) or (0.0, 0.0, 250.0, 250.0)
    return (x + w / 2 - 125.0) ** 2 + (y + h / 2 - 125.0) ** 2


def lfw_figures(rows: list[dict], truth: dict[str, int], seconds: float) -> dict:
    """The LFW figures from predict's rows (see the module docstring)."""
    by_photo: dict[str, list[dict]] = {}
    for row in rows:
        if row["prob_Male"] != "":
            by_photo.setdefault(Path(row["path"]).name, []).append(row)
    # The person's face, predict's probability and its own decision (at the checkpoint's
    # threshold); a photo without a face has none and counts as wrong.
    chosen = [min(by_photo[name], key=_off_centre) if name in by_photo else None
              for name in truth]  # fmt: skip
    p = torch.tensor([float(r["prob_Male"]) if r else float("nan") for r in chosen])
    decisions = torch.tensor([int(r["pred_Male"]) if r else -1 for r in chosen])
    y = torch.tensor(list(truth.values()))
    right = decisions == y
    women, men = y == 0, y == 1
    figures = {
        "photos": len(truth),
        "found": sum(r is not None for r in chosen) / len(truth),
        "accuracy": right.float().mean().item(),
        "recall_women": right[women].float().mean().item(),
        "recall_men": right[men].float().mean().item(),
        "photos_per_s": len(truth) / seconds,
    }
    figures["balanced_accuracy"] = (figures["recall_women"] + figures["recall_men"]) / 2
    decided = ~p.isnan()
    if len(y[decided].unique()) == 2:
        figures["auroc"] = binary_auroc(p[decided], y[decided]).item()
        figures["ece"] = calibration_errors(p[decided, None], y[decided, None])[0].item()
    return figures


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match(detections: list[tuple], truths: list[tuple]) -> dict[int, int]:
    """Greedy one-to-one matching by IoU (>= :data:`IOU_FOUND`): ground truth -> detection."""
    pairs = sorted(((iou(d, t), di, ti) for di, d in enumerate(detections)
                    for ti, t in enumerate(truths)), reverse=True)  # fmt: skip
    used_d, matched = set(), {}
    for overlap, di, ti in pairs:
        if overlap < IOU_FOUND:
            break
        if di not in used_d and ti not in matched:
            used_d.add(di)
            matched[ti] = di
    return matched


def wider_figures(rows: list[dict], faces: list[dict], photos: list[str], seconds: float) -> dict:
    """The WIDER figures from predict's rows (see the module docstring)."""
    detections: dict[str, list[dict]] = {}
    for row in rows:
        if _box(row) is not None:
            detections.setdefault(Path(row["path"]).name, []).append(row)
    truths: dict[str, list[dict]] = {}
    for face in faces:
        truths.setdefault(face["file"], []).append(face)
    valid = found = false = 0
    judged: dict[str, list[int]] = {"all": [], **{band: [] for band in BANDS}}
    not_judged = 0
    for photo in photos:
        dets, gts = detections.get(photo, []), truths.get(photo, [])
        gt_boxes = [tuple(float(g[k]) for k in "xywh") for g in gts]
        matched = match([_box(d) for d in dets], gt_boxes)
        false += len(dets) - len(matched)
        for ti, gt in enumerate(gts):
            side = min(gt_boxes[ti][2], gt_boxes[ti][3])
            if gt["invalid"] != "0" or side < MIN_SIDE:
                continue
            valid += 1
            if ti not in matched:
                continue
            found += 1
            if gt["perceived_gender"] not in ("Male", "Female"):
                continue
            row = dets[matched[ti]]
            if row["prob_Male"] == "":
                not_judged += 1
                continue
            right = int(int(row["pred_Male"]) == (gt["perceived_gender"] == "Male"))
            judged["all"].append(right)
            for band, (lo, hi) in BANDS.items():
                if lo <= side < hi:
                    judged[band].append(right)
    figures = {
        "photos": len(photos),
        "valid_faces_32px": valid,
        "found": found / valid if valid else float("nan"),
        "false_per_photo": false / len(photos),
        "gender_faces": len(judged["all"]),
        "gender_not_judged": not_judged,
        "photos_per_s": len(photos) / seconds,
    }
    for band, rights in judged.items():
        figures[f"gender_accuracy_{band}"] = sum(rights) / len(rights) if rights else float("nan")
        figures[f"gender_faces_{band}"] = len(rights)
    return figures


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
            run = json.loads(record.read_text())
            if run.get("status") != "ok":
                continue
            test = run["test_final"]
            celeba = {"test_acc": test["test/acc"], "test_ece": test.get("test/ece", float("nan"))}
            last = record.parent / "fit" / "checkpoints" / "last.ckpt"
            found.append((run["variant"], last, celeba))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", action="append", type=Path)
    parser.add_argument("--compare", action="append", type=Path,
                        help="a compare --out folder: every finished run, by variant")  # fmt: skip
    parser.add_argument("--root", required=True, type=Path, help="the wild_faces build")
    parser.add_argument("--out", type=Path, help="keep the CSVs and results.json here")
    parser.add_argument("--limit", type=int, help="N photos of each set only (LFW: N/2 each)")
    parser.add_argument("--only", choices=("lfw", "wider"))
    args, extra = parser.parse_known_args(argv)
    runs = checkpoints(args)
    if not runs:
        parser.error("give --ckpt_path or a --compare folder with finished runs")
    work = args.out or Path(tempfile.mkdtemp(prefix="in_the_wild_"))
    work.mkdir(parents=True, exist_ok=True)
    lfw = read_csv(args.root / "lfw" / "balanced.csv")
    if args.limit:  # as many women as men still
        lfw = [r for g in "01" for r in [r for r in lfw if r["male"] == g][: args.limit // 2]]
    truth = {r["file"]: int(r["male"]) for r in lfw}
    wider_photos = [r["file"] for r in read_csv(args.root / "wider" / "groups.csv")][: args.limit]
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
