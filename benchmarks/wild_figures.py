"""The figures of ``benchmarks/in_the_wild.py`` (its docstring says what each one is), from the
rows of predict's CSV and the annotations of a wild_faces build."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_auroc

from lit_celeba.models.evaluation import calibration_errors

IOU_FOUND = 0.4
MIN_SIDE = 32
BANDS = {"<48": (0, 48), "48-96": (48, 96), ">=96": (96, float("inf"))}


def lfw_half(person: str) -> str:
    """``"calibration"`` or ``"report"``: LFW's people cut in two halves by a hash of the name,
    so that a calibration fitted on one half's labels is measured on the other's people only."""
    return ("report", "calibration")[hashlib.sha256(person.encode()).digest()[0] % 2]


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
