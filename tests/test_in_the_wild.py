"""benchmarks/in_the_wild.py on a tiny stand-in for the wild development set (generated here
from scikit-image's astronaut: no downloaded photo), through predict itself."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from lit_celeba.data.faces import FaceDetector
from tests.conftest import astronaut, write_group_photo
from tests.test_benchmarks import run_benchmark

FACES_HEADER = ["file", "face_index", "x", "y", "w", "h", "blur", "expression", "illumination",
                "invalid", "occlusion", "pose", "perceived_gender"]  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def wild_stand_in(root: Path) -> dict:
    """LFW: four 250x250 portraits of the astronaut (two labelled as men, so that both genders
    are there) and one photo without a face; WIDER: the group photo of tests/conftest.py with
    its two faces boxed where the detector finds each face alone, plus one box on the empty
    background (a face not found) and one invalid box."""
    images = root / "lfw" / "images"
    images.mkdir(parents=True)
    face = astronaut().crop((100, 0, 400, 300)).resize((250, 250))
    rows = []
    for i, picture in enumerate([face, face.rotate(8), face.transpose(0), face.rotate(-8)]):
        picture.save(images / f"Person_{i}_0001.jpg", quality=90)
        rows.append([f"Person_{i}_0001.jpg", f"Person_{i}", i % 2])
    Image.new("RGB", (250, 250), (120, 160, 90)).save(images / "Lawn_0001.jpg")
    rows.append(["Lawn_0001.jpg", "Lawn", 1])
    write_csv(root / "lfw" / "balanced.csv", ["file", "person", "male"], rows)

    wider = root / "wider" / "images"
    wider.mkdir(parents=True)
    write_group_photo(wider / "group.jpg")
    detector = FaceDetector()
    (alone,) = detector(astronaut())
    x, y, w, h = alone.box
    boxes = [(x + 20, y + 24, w, h)]  # where write_group_photo pastes her
    (second,) = [f for f in detector(Image.open(wider / "group.jpg")) if f.box[0] > 500]
    boxes.append(second.box)
    faces = [["group.jpg", i, *map(round, box), 0, 0, 0, 0, 0, 0, "Female"]
             for i, box in enumerate(boxes)]  # fmt: skip
    faces.append(["group.jpg", 2, 400, 400, 60, 70, 0, 0, 0, 0, 0, 0, ""])  # nobody there
    faces.append(["group.jpg", 3, 900, 20, 50, 50, 0, 0, 0, 1, 0, 0, ""])  # invalid
    write_csv(root / "wider" / "faces.csv", FACES_HEADER, faces)
    write_csv(root / "wider" / "groups.csv", ["file", "wider_path", "width", "height"],
              [["group.jpg", "0--Parade/group.jpg", 1000, 560]])  # fmt: skip
    return {"lfw_photos": len(rows)}


@pytest.mark.slow
def test_the_benchmark_scores_predicts_own_rows(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = wild_stand_in(tmp_path / "wild")
    # A compare folder with two finished seeds of one variant (the same checkpoint twice) and
    # a failed one, which is left out.
    comparison = tmp_path / "comparison"
    for seed, status in ((1, "ok"), (2, "ok"), (3, "failed")):
        run = comparison / "runs" / "tiny" / f"seed_{seed}"
        (run / "fit" / "checkpoints").mkdir(parents=True)
        (run / "fit" / "checkpoints" / "last.ckpt").symlink_to(tiny_checkpoint)
        test = {"test/acc": 0.25 * seed, "test/ece": 0.1}
        (run / "result.json").write_text(json.dumps({"variant": "tiny", "status": status,
                                                     "test_final": test}))  # fmt: skip
    out = tmp_path / "out"
    done = run_benchmark(
        "in_the_wild.py", "--compare", str(comparison), "--root", str(tmp_path / "wild"),
        "--out", str(out), "--trainer.enable_progress_bar", "false",
        tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    (first, second) = json.loads((out / "results.json").read_text())
    assert first["group"] == second["group"] == "tiny"
    assert [first["celeba"]["test_acc"], second["celeba"]["test_acc"]] == [0.25, 0.5]
    lfw, wider = first["lfw"], first["wider"]
    assert lfw["photos"] == root["lfw_photos"]
    assert lfw["found"] == pytest.approx(4 / 5)  # the lawn has no face
    assert 0 <= lfw["accuracy"] <= 0.8 and 0 <= lfw["auroc"] <= 1 and 0 <= lfw["ece"] <= 1
    assert lfw["balanced_accuracy"] == pytest.approx((lfw["recall_women"] + lfw["recall_men"]) / 2)
    assert lfw["photos_per_s"] > 0
    # Two of the three valid boxes found (nobody stands on the third), no false detection.
    assert wider["valid_faces_32px"] == 3 and wider["found"] == pytest.approx(2 / 3)
    assert wider["false_per_photo"] == 0
    assert wider["gender_faces"] + wider["gender_not_judged"] == 2
    # The same checkpoint twice: the same figures, and a mean with no spread.
    assert second["lfw"]["accuracy"] == lfw["accuracy"]
    assert "tiny: mean ± sd over 2 checkpoints" in done.stdout
    assert "test_acc                     0.3750 ± 0.1768" in done.stdout
    assert f"accuracy                     {lfw['accuracy']:.4f} ± 0.0000" in done.stdout
    # predict's own CSVs are kept, one row per face found.
    with open(out / "wider_0_predictions.csv", newline="") as fh:
        assert [row["face"] for row in csv.DictReader(fh)] == ["1", "2"]


@pytest.mark.slow
def test_the_lfw_halves_split_people_and_the_calibration_half_feeds_calibrate(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """--write_lfw_calibration writes one half of the people as calibrate's labels CSV and
    --lfw_half report scores only the other half (docs/in_the_wild.md, "Calibrating on photos
    like yours")."""
    from benchmarks.wild_figures import lfw_half
    from lit_celeba.data.labelled_photos import read_photo_labels

    wild_stand_in(tmp_path / "wild")
    people = {f"Person_{i}": i % 2 for i in range(4)} | {"Lawn": 1}
    halves = {person: lfw_half(person) for person in people}
    assert lfw_half("Person_0") == lfw_half("Person_0")  # a hash, not chance
    labels = tmp_path / "calibration.csv"
    assert set(halves.values()) == {"calibration", "report"}  # both halves have someone here
    done = run_benchmark("in_the_wild.py", "--root", str(tmp_path / "wild"),
                         "--write_lfw_calibration", str(labels), tmp_path=tmp_path,
                         timeout=120)  # fmt: skip
    listed = read_photo_labels(labels, ["Male"])
    expected = sorted(p for p, h in halves.items() if h == "calibration")
    assert sorted(path.name.rsplit("_", 1)[0] for path, _ in listed) == expected
    assert all(path.is_file() and [people[path.name.rsplit("_", 1)[0]]] == y
               for path, y in listed)  # fmt: skip
    assert f"Wrote {len(expected)} photos" in done.stdout
    again = run_benchmark("in_the_wild.py", "--root", str(tmp_path / "wild"),
                          "--write_lfw_calibration", str(labels), tmp_path=tmp_path,
                          timeout=120, returncode=1)  # fmt: skip
    assert f"{labels} exists; give a new file name" in again.stderr
    out = tmp_path / "out"
    run_benchmark("in_the_wild.py", "--ckpt_path", str(tiny_checkpoint), "--root",
                  str(tmp_path / "wild"), "--only", "lfw", "--lfw_half", "report", "--out",
                  str(out), "--trainer.enable_progress_bar", "false", tmp_path=tmp_path,
                  timeout=300)  # fmt: skip
    (result,) = json.loads((out / "results.json").read_text())
    assert result["lfw"]["photos"] == sum(h == "report" for h in halves.values())
