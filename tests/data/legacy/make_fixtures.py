"""How the checkpoints in this folder were made, and the figures they must keep giving.

Step 0 of docs/architecture.md's move plan: checkpoints written by lit_celeba *before* the
redesign of issue 33, so that every later step can check that old checkpoints still load for
``test``, ``predict`` and ``export`` with the same figures (tests/test_legacy_checkpoints.py).
They were made once, with the commit that ``made_with`` in each JSON names, by

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/data/legacy/make_fixtures.py

from the repository root. Running it again on later code would write *that* code's checkpoints
and figures, which is not what this folder keeps: it refuses to overwrite what is here.

Each checkpoint is a few epochs of ``fit`` on the generated faces (no real CelebA), with a tiny
network (channels 4, 8, 8, 16) so that each file stays small:

- ``tuned``: configs/tuned.yaml (batch norm, no dropout, label smoothing, EMA, flip TTA, warm-up
  and cosine, the colour changes, the temperature fitted at each validation), with CelebA's
  framing instead of the detector's (OpenCV is an extra, and the generated faces are framed
  alike anyway);
- ``blond_hair_group_dro``: configs/blond_hair.yaml (Blond_Hair, subgroups [Male], Group DRO);
- ``all_attributes_thresholds``: configs/all_attributes_tuned.yaml (all 40 attributes, each
  one's threshold chosen for balanced accuracy), with ``pos_weight`` on as well, so that this
  state-dict key is among the fixtures too.

Beside each ``NAME.ckpt``, ``NAME.json`` holds what the commands gave with that commit: the
metrics ``test`` printed on the test split of tests/conftest.py's ``tiny_root`` (the generated
set, seed 3), the probabilities ``predict`` wrote for four of its test faces
(:func:`legacy_faces`), and ``export``'s ``model.json`` values with the exported program's
outputs on the same faces (``export_inputs``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lit_celeba.data.celeba import find_files
from lit_celeba.data.synthetic import generate_celeba
from tests.conftest import CONFIGS, REPO, TINY_SIZES, csv_rows, run_cli, tiny_overrides

HERE = Path(__file__).resolve().parent
CHANNELS = "--model.channels=[4, 8, 8, 16]"
# The generated training set: larger than tiny_root's 96 faces so that a few epochs learn
# something and the probabilities spread; seed 11 keeps it apart from the evaluation set's 3.
TRAIN_SET = {"train": 800, "valid": 100, "test": 100, "seed": 11}
FIT = ["--seed_everything=1", "--trainer.max_epochs=3", CHANNELS]
FIXTURES: dict[str, dict[str, list[str]]] = {
    "tuned": {
        "fit": ["--config", str(CONFIGS / "tuned.yaml"), "--data.framing=celeba",
                "--lr_scheduler.init_args.warmup_steps=20"],  # fmt: skip
        "test": [],
    },
    "blond_hair_group_dro": {
        "fit": ["--config", str(CONFIGS / "blond_hair.yaml")],
        "test": ["--model.subgroups=[Male]"],
    },
    "all_attributes_thresholds": {
        "fit": ["--config", str(CONFIGS / "all_attributes_tuned.yaml"), "--model.pos_weight=true",
                "--lr_scheduler.init_args.warmup_steps=20"],  # fmt: skip
        "test": [],
    },
}


def legacy_faces(tiny_root: Path, folder: Path) -> Path:
    """``folder``, holding the four photos that ``predict`` and ``export`` are checked on: the
    last four test faces of tests/conftest.py's generated ``tiny_root`` (seed 3), copied there.
    The ``test`` figures need that same generated set, so these need no copy of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in sorted(find_files(tiny_root).image_dir.glob("*.jpg"))[-4:]:  # test split
        shutil.copy(image, folder / image.name)
    return folder


def export_inputs(faces: Path, image_size: int) -> torch.Tensor:
    """The photos in ``faces`` as the exported program takes them, prepared as ``model.json``
    says (written out here, so that it does not depend on lit_celeba's transforms): rows 20..197,
    scaled to [0, 1], resized to ``image_size`` bilinearly without antialiasing."""
    crops = []
    for path in sorted(faces.glob("*.jpg")):
        with Image.open(path) as photo:
            pixels = torch.from_numpy(np.asarray(photo.convert("RGB")).copy())
        crops.append(pixels.permute(2, 0, 1)[:, 20:198].float() / 255)
    return F.interpolate(torch.stack(crops), size=(image_size, image_size), mode="bilinear",
                         align_corners=False, antialias=False)  # fmt: skip


def printed_metrics(stdout: str) -> dict[str, float]:
    """The test metrics in the table Lightning prints: ``test/acc   0.75`` lines."""
    metrics = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) == 2 and cells[0].startswith("test/"):
            metrics[cells[0]] = float(cells[1])
    if "test/acc" not in metrics:
        raise ValueError(f"test/acc not printed:\n{stdout}")
    return metrics


def predicted_probabilities(csv_path: Path) -> dict[str, dict[str, float]]:
    """``predict``'s CSV on the photos: each photo's (by file name) ``prob_<attribute>``s."""
    return {
        Path(row["path"]).name: {k: float(v) for k, v in row.items() if k.startswith("prob_")}
        for row in csv_rows(csv_path)
    }


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise SystemExit(f"{result.args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def expected_figures(ckpt: Path, test_flags: list[str], tiny_root: Path, work: Path) -> dict:
    """What ``test``, ``predict`` and ``export`` give for ``ckpt``, as the test runs them."""
    flags = tiny_overrides(tiny_root, work / "logs")
    test = checked(run_cli("test", *flags, *test_flags, f"--ckpt_path={ckpt}", cwd=work))
    output, faces = work / "predictions.csv", legacy_faces(tiny_root, work / "faces")
    checked(run_cli("predict", *flags, f"--ckpt_path={ckpt}", f"--data.predict.path={faces}",
                    f"--prediction.output={output}", cwd=work))  # fmt: skip
    out = work / "export"
    checked(run_cli("export", f"--ckpt_path={ckpt}", f"--out={out}", cwd=work))
    info = json.loads((out / "model.json").read_text())
    image_size = info["input"]["shape"][-1]
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        probability, prediction = program(export_inputs(faces, image_size))
    return {
        "test": printed_metrics(test.stdout),
        "predict": predicted_probabilities(output),
        "export": {
            "model_json": {key: info[key] for key in ("target_attrs", "input", "tta_flip",
                                                      "temperature", "threshold",
                                                      "threshold_rule")},  # fmt: skip
            "probability": probability.tolist(),
            "prediction": prediction.tolist(),
        },
    }


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, text=True, capture_output=True,
                          check=True).stdout.strip()  # fmt: skip


def commit() -> str:
    """The commit the fixtures are made with; the code and configs must be as it has them."""
    head = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "lit_celeba", "configs")
    if changed:
        raise SystemExit(f"lit_celeba/ or configs/ differ from {head}; commit first:\n{changed}")
    return head


def main() -> None:
    made_with = commit()
    existing = sorted(p.name for p in HERE.glob("*.ckpt"))
    if existing:
        raise SystemExit(f"{HERE} already holds {', '.join(existing)}: fixtures of older "
                         "code, kept as they are (delete them first to make new ones)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny_root = work / "tiny_celeba"
        generate_celeba(tiny_root, TINY_SIZES["train"], TINY_SIZES["valid"], TINY_SIZES["test"],
                        seed=3, progress=False)  # as tests/conftest.py's tiny_root  # fmt: skip
        train_root = work / "train_set"
        generate_celeba(train_root, TRAIN_SET["train"], TRAIN_SET["valid"], TRAIN_SET["test"],
                        seed=TRAIN_SET["seed"], progress=False)  # fmt: skip
        for name, flags in FIXTURES.items():
            run = work / name
            fit_flags = [*flags["fit"], *tiny_overrides(train_root, run / "logs"), *FIT,
                         f"--data.subsets.train={TRAIN_SET['train']}",
                         f"--data.subsets.val={TRAIN_SET['valid']}",
                         f"--data.subsets.test={TRAIN_SET['test']}"]  # fmt: skip
            run.mkdir()
            checked(run_cli("fit", *fit_flags, cwd=run))
            last = next((run / "logs").rglob("last.ckpt"))
            ckpt = HERE / f"{name}.ckpt"
            shutil.copy(last, ckpt)
            figures = expected_figures(ckpt, flags["test"], tiny_root, run)
            shown = [a.replace(str(REPO) + "/", "").replace(str(work), "TMP") for a in fit_flags]
            record = {
                "made_with": made_with,
                "fit": ["python", "-m", "lit_celeba", "fit", *shown],
                "test_flags": flags["test"],
                **figures,
            }
            (HERE / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
            print(f"{ckpt.name}: {ckpt.stat().st_size / 1024:.0f} KB, test {figures['test']}",
                  file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
