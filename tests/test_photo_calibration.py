"""``calibrate --photo_labels CSV``: a calibration fitted on labelled photos, each photo's largest
face cut exactly as ``predict`` cuts it (lit_celeba/data/labelled_photos.py), with a bias beside
the temperature (``--bias true``, Platt scaling) as docs/in_the_wild.md recommends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lit_celeba.base.errors import PhotoError
from lit_celeba.data.labelled_photos import read_photo_labels
from lit_celeba.methods.calibration import fit_calibration
from tests.conftest import (
    CONFIGS,
    astronaut,
    cli_in_process,
    csv_rows,
    tiny_overrides,
    write_group_photo,
)


def _photos(folder: Path) -> list[tuple[str, int]]:
    """Six photos with one face or two, the astronaut at several sizes, places and brightnesses,
    then a photo without a face and a file that is no image; labels of both classes (the test
    is of the mechanics, not of her gender)."""
    folder.mkdir()
    face = astronaut()
    names = []
    for k, (size, shift, light) in enumerate([(512, 0, 1.0), (400, 60, 0.8), (300, 150, 1.2),
                                              (460, 30, 0.6), (350, 90, 1.0)]):  # fmt: skip
        canvas = Image.new("RGB", (700, 600), (180, 190, 200))
        scaled = face.resize((size, size)).point(lambda v, light=light: min(255, int(v * light)))
        canvas.paste(scaled, (shift, 600 - size))
        canvas.save(folder / f"photo_{k}.jpg", quality=90)
        names.append(f"photo_{k}.jpg")
    write_group_photo(folder / "group.jpg")  # her face and a smaller one: the larger is labelled
    Image.new("RGB", (300, 200), (90, 140, 60)).save(folder / "lawn.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    return list(zip([*names, "group.jpg", "lawn.png", "broken.jpg"], labels, strict=True))


def _write_labels(path: Path, rows: list[tuple[str, int]], header: str = "file,Male") -> Path:
    path.write_text(header + "\n" + "".join(f"photos/{name},{label}\n" for name, label in rows))
    return path


@pytest.mark.slow
def test_calibrate_on_labelled_photos_fits_on_the_faces_predict_sees(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    rows = _photos(tmp_path / "photos")
    labels = _write_labels(tmp_path / "labels.csv", rows)
    flags = ["--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, tmp_path / "logs")]
    before = tiny_checkpoint.read_bytes()
    out = tmp_path / "photo_calibrated.ckpt"
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}", f"--out={out}",
                   f"--photo_labels={labels}", "--thresholds=balanced_accuracy", "--bias=true",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert f"Calibrated on 6 faces of the photos in {labels} (2 of its 8 photos left out" in said
    assert tiny_checkpoint.read_bytes() == before

    # The same photos through predict with the original checkpoint: its probabilities give back
    # the uncalibrated logits of every face; the calibration must be the one fitted on the
    # largest face of each photo with a face, against that photo's label.
    original = torch.load(tiny_checkpoint, weights_only=True)["calibration"]
    predicted = cli_in_process("predict", *flags, f"--ckpt_path={tiny_checkpoint}",
                        f"--data.predict.path={tmp_path / 'photos'}",
                        f"--prediction.output={tmp_path / 'before.csv'}",
                        cwd=tmp_path)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    faces: dict[str, list[dict]] = {}
    for row in csv_rows(tmp_path / "before.csv"):
        if row["prob_Male"]:
            faces.setdefault(Path(row["path"]).name, []).append(row)
    assert len(faces["group.jpg"]) == 2 and "lawn.png" not in faces

    def area(row: dict) -> float:
        return float(row["box_width"]) * float(row["box_height"])

    largest = {name: max(found, key=area) for name, found in faces.items()}
    p = torch.tensor([float(largest[n]["prob_Male"]) for n, _ in rows if n in largest]).double()
    logits = (torch.logit(p) * float(original["temperature"][0])).float()[:, None]
    targets = torch.tensor([[label] for n, label in rows if n in largest]).float()
    expected = fit_calibration(logits, targets, True, "balanced_accuracy", bias=True)
    fitted = torch.load(out, weights_only=True)["calibration"]
    # predict's CSV keeps six decimals of the probability, and the tiny network gives these six
    # faces logits 0.10-0.19 apart, where a fit of two unknowns is steep: 1 % (0.3 % seen).
    assert float(fitted["temperature"][0]) == pytest.approx(float(expected.temperature[0]),
                                                           rel=1e-2)  # fmt: skip
    assert float(fitted["bias"][0]) == pytest.approx(float(expected.bias[0]), rel=1e-2)
    assert float(fitted["bias"][0]) != 0
    assert fitted["rule"] == "balanced_accuracy"
    assert not torch.equal(fitted["temperature"], original["temperature"])

    # predict with the calibrated checkpoint applies it to the same faces.
    again = cli_in_process("predict", *flags, f"--ckpt_path={out}",
                    f"--data.predict.path={tmp_path / 'photos'}",
                    f"--prediction.output={tmp_path / 'after.csv'}", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    after = [r for r in csv_rows(tmp_path / "after.csv") if r["prob_Male"]]
    before_rows = [r for r in csv_rows(tmp_path / "before.csv") if r["prob_Male"]]
    p_before = torch.tensor([float(r["prob_Male"]) for r in before_rows]).double()
    z = torch.logit(p_before) * float(original["temperature"][0])
    temperature, shift = float(fitted["temperature"][0]), float(fitted["bias"][0])
    got = torch.tensor([float(r["prob_Male"]) for r in after]).double()
    # The CSV's six decimals (5e-7 on a probability) come back as an error on the uncalibrated
    # logit, which the fitted 1 / temperature magnifies: the calibrated logits to twice that.
    rounding = 5e-7 / float((p_before * (1 - p_before)).min()) * float(original["temperature"][0])
    torch.testing.assert_close(torch.logit(got), z / temperature + shift, rtol=0,
                               atol=2 * rounding / temperature + 1e-4)  # fmt: skip
    threshold = float(fitted["threshold"][0])
    assert [int(r["pred_Male"]) for r in after] == [int(v > threshold) for v in got.tolist()]

    # Calibrated again for another rule, it keeps its bias (as it keeps the temperature scaling);
    # --bias false drops it, and says so.
    kept, dropped = tmp_path / "kept.ckpt", tmp_path / "dropped.ckpt"
    for path, extra in ((kept, []), (dropped, ["--bias=false"])):
        redone = cli_in_process("calibrate", *flags, f"--ckpt_path={out}", f"--out={path}",
                                f"--photo_labels={labels}", "--thresholds=fixed", *extra,
                                cwd=tmp_path)  # fmt: skip
        assert redone.returncode == 0, redone.stderr
        said = redone.stdout + redone.stderr
        assert ("The checkpoint's biases were dropped" in said) == (path == dropped), said
    assert float(torch.load(kept, weights_only=True)["calibration"]["bias"][0]) == pytest.approx(
        float(fitted["bias"][0]), rel=1e-6)  # fmt: skip
    assert torch.load(dropped, weights_only=True)["calibration"]["bias"].tolist() == [0.0]


@pytest.mark.slow
def test_calibrate_on_photos_without_any_face_is_one_clear_error(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (300, 200), (90, 140, 60)).save(tmp_path / "photos" / "lawn.png")
    labels = _write_labels(tmp_path / "labels.csv", [("lawn.png", 1)])
    flags = ["--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, tmp_path / "logs")]
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}",
                   f"--photo_labels={labels}", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"calibrate found no face to judge in the photos of --photo_labels {labels}: none "
            "was found, or none of at least data.predict.min_face_size") in done.stderr
    assert not list((tmp_path / "logs").rglob("calibrated.ckpt"))
    assert not list((tmp_path / "logs").rglob("version_*")), "a refused calibrate made a run"


@pytest.mark.slow
def test_photos_of_one_class_keep_the_checkpoints_calibration(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    rows = [(name, 1) for name, _ in _photos(tmp_path / "photos")]
    labels = _write_labels(tmp_path / "labels.csv", rows)
    flags = ["--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, tmp_path / "logs")]
    out = tmp_path / "one_class.ckpt"
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}", f"--out={out}",
                          f"--photo_labels={labels}", "--bias=true", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "The labelled faces hold one class only of Male (all 1): their calibration is the " \
        "checkpoint's, unchanged" in done.stdout + done.stderr  # fmt: skip
    original = torch.load(tiny_checkpoint, weights_only=True)["calibration"]
    fitted = torch.load(out, weights_only=True)["calibration"]
    assert torch.equal(fitted["temperature"], original["temperature"])
    assert torch.equal(fitted["threshold"], original["threshold"])
    assert fitted["bias"].tolist() == [0.0]


@pytest.mark.slow
def test_a_bias_without_the_temperature_is_refused_before_anything_is_read(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    labels = _write_labels(tmp_path / "labels.csv", [("missing.jpg", 1)])
    flags = ["--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, tmp_path / "logs")]
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}",
                          f"--photo_labels={labels}", "--bias=true",
                          "--temperature_scaling=false", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "calibrate --bias true needs the temperature scaling on" in done.stderr
    assert "drop one of the two" in done.stderr
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("name,Male\na.jpg,1\n", "the first column must name the photo (file or path or image)"),
        ("file,Young\na.jpg,1\n", "has no column for Male (the checkpoint's attributes and "
                                  "subgroups); its columns: file, Young"),
        ("file,Male\na.jpg,yes\n", "line 2, column Male: 'yes' is not a label (1, or 0 / -1)"),
        ("file,Male,Young\na.jpg,1\n", "line 2: 2 cells, the header has 3"),
        ("file,Male\n\n", "lists no photo"),
    ],
)  # fmt: skip
def test_a_bad_labels_file_is_refused_naming_the_line_and_column(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(PhotoError, match="--photo_labels") as refused:
        read_photo_labels(path, ["Male"])
    assert message in str(refused.value)


def test_labels_read_any_case_celeba_minus_one_and_paths_beside_the_csv(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "labels.csv"
    path.parent.mkdir()
    path.write_text(f"Path,male,smiling,note\na.jpg,-1,1,x\n{tmp_path / 'b.png'},1,0,\n")
    assert read_photo_labels(path, ["Male", "Smiling"]) == [
        (tmp_path / "sub" / "a.jpg", [0, 1]),
        (tmp_path / "b.png", [1, 0]),
    ]
    with pytest.raises(PhotoError, match="absent.csv does not exist; give a CSV of photos"):
        read_photo_labels(tmp_path / "absent.csv", ["Male"])
    with pytest.raises(PhotoError, match="sub is a folder; give a CSV of photos and labels"):
        read_photo_labels(tmp_path / "sub", ["Male"])


@pytest.mark.slow
def test_a_checkpoint_with_subgroups_calibrates_on_photos_that_label_them_too(
    tmp_path: Path,
) -> None:
    """blond_hair.yaml's group_dro checkpoint evaluates Blond_Hair per Male subgroup: the CSV
    must label Male too, and is refused naming it when it does not."""
    checkpoint = Path(__file__).parent / "data" / "legacy" / "blond_hair_group_dro.ckpt"
    rows = _photos(tmp_path / "photos")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,Blond_Hair,Male\n" + "".join(
        f"photos/{name},{label},{1 - label}\n" for name, label in rows))  # fmt: skip
    flags = ["--config", str(CONFIGS / "blond_hair.yaml"), "--trainer.accelerator=cpu",
             "--trainer.enable_progress_bar=false", "--data.num_workers=0",
             f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}"]  # fmt: skip
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={checkpoint}",
                          f"--photo_labels={labels}", f"--out={tmp_path / 'out.ckpt'}",
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Calibrated on 6 faces of the photos" in done.stdout + done.stderr
    assert (tmp_path / "out.ckpt").is_file()
    only_targets = _write_labels(tmp_path / "targets.csv", rows, header="file,Blond_Hair")
    refused = cli_in_process("calibrate", *flags, f"--ckpt_path={checkpoint}",
                      f"--photo_labels={only_targets}", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2
    assert "has no column for Male (the checkpoint's attributes and subgroups)" in refused.stderr
