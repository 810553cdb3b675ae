"""Faces in a user's photo (lit_celeba.data.faces, data.predict.align) on a real photo that ships
with a test dependency: scikit-image's astronaut (Eileen Collins, NASA, public domain)."""

from __future__ import annotations

import csv
import pickle
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_celeba.data.faces import (
    CELEBA_LANDMARKS,
    DETECTION_SIZE,
    FINEST_SIZE,
    NO_FACE,
    PASS_STEP,
    TILE,
    TILE_OVERLAP,
    TOO_SMALL,
    FaceDetector,
    align,
    face_columns,
    face_size,
    search_scales,
    similarity,
    tiles,
)
from lit_celeba.data.photos import PhotoDataset
from lit_celeba.data.transforms import columns_read
from tests.conftest import (
    CONFIGS,
    astronaut,
    cli_in_process,
    run_cli,
    tiny_overrides,
    write_group_photo,
)
from tests.test_readme_commands import Session, documented_commands


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_the_astronaut_has_one_face_with_her_landmarks(detector: FaceDetector) -> None:
    faces = detector(astronaut())
    assert len(faces) == 1
    (face,) = faces
    x, y, w, h = face.box
    assert 150 < x < 200 and 40 < y < 90 and 70 < w < 110 and 90 < h < 140  # her face
    eyes, nose, mouth = np.array(face.landmarks[:2]), face.landmarks[2], face.landmarks[3:]
    assert eyes[0, 0] < eyes[1, 0]  # CelebA's order: the eye on the image's left first
    assert eyes[:, 1].max() < nose[1] < min(m[1] for m in mouth)
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
    assert face.score > 0.8


def test_alignment_puts_her_landmarks_on_celebas(detector: FaceDetector) -> None:
    photo = astronaut()
    big = photo.resize((1536, 1536)).rotate(-15, Image.Resampling.BILINEAR)  # large and turned
    found = []
    for picture in (photo, big):
        (face,) = detector(picture)
        aligned = align(picture, face.landmarks)
        assert aligned.size == (178, 218)
        (again,) = detector(aligned)
        found.append(np.array(again.landmarks))
    # Found again where CelebA's faces have them, to a few pixels (her face is not the mean
    # face: the least-squares fit leaves her eyes 5 pixels low), whatever the size and angle.
    assert all(np.abs(marks - CELEBA_LANDMARKS).max() < 7 for marks in found)
    assert np.abs(found[0] - found[1]).max() < 5  # the detector's own noise: 3.5 px


def _her_face(size: float) -> Image.Image:
    """The astronaut cut around her face and scaled so that her face's box is about ``size``
    pixels wide (90 of her 512)."""
    crop = astronaut().crop((118, 0, 358, 260))
    scale = size / 90
    return crop.resize((round(crop.width * scale), round(crop.height * scale)))


@pytest.mark.slow
def test_small_and_large_faces_in_a_very_large_photo_are_each_found_once(
    detector: FaceDetector,
) -> None:
    # The photo: 8000x6000. Searched at 640 only, a 90 px face was 7 px: no face found.
    photo = Image.new("RGB", (8000, 6000), (120, 130, 110))
    # 2,550-2,700: where two tiles of the finest pass (at 4096 wide) overlap, so both see it.
    places = {90: (2550, 300), 60: (600, 4000), 1500: (4000, 800)}
    for size, place in places.items():
        photo.paste(_her_face(size), place)
    faces = detector(photo)
    assert len(faces) == 3, faces
    for face, (size, (x, y)) in zip(faces, sorted(places.items(), key=lambda p: p[1]),
                                    strict=True):  # fmt: skip
        assert 0.75 * size < face.box[2] < 1.3 * size
        assert x < face.box[0] < x + 2.67 * size and y < face.box[1] < y + 2.89 * size


def test_search_scales_and_tiles_cover_every_face_size_and_the_whole_photo() -> None:
    assert search_scales((250, 250)) == [1.0]  # a small photo: one pass, as cheap as before
    assert search_scales((DETECTION_SIZE, 480)) == [1.0]
    assert search_scales((1024, 768)) == pytest.approx([1.0, DETECTION_SIZE / 1024])
    for longest in (700, 2049, 4000, 6000, 8000, 30000):
        scales = search_scales((longest, longest // 2))
        assert scales[0] == pytest.approx(min(1.0, FINEST_SIZE / longest))
        assert scales[-1] * longest == pytest.approx(DETECTION_SIZE)
        steps = [a / b for a, b in pairwise(scales)]
        assert all(1.0 < step <= PASS_STEP + 1e-9 for step in steps)
    for length in (100, TILE, TILE + 1, 4096, 8000):
        spans = tiles(length)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(stop - start <= TILE for start, stop in spans)
        assert all(a[1] - b[0] >= TILE_OVERLAP for a, b in pairwise(spans))


def test_a_face_under_the_minimum_size_gets_a_row_that_says_so(tmp_path: Path) -> None:
    group = write_group_photo(tmp_path / "group.jpg")  # her face, about 90 px, and one smaller
    dataset = PhotoDataset([group], columns_read(64), align="auto", min_face_size=80)
    batch = dataset.collate([dataset[0]])
    (_, big), (_, small) = batch.faces
    assert face_size(small) < 80 <= face_size(big)
    assert batch.errors == ["", f"{TOO_SMALL}: {int(face_size(small))} px, under "
                                "data.predict.min_face_size 80"]  # fmt: skip
    assert batch.images.shape == (1, 218, 128, 3)  # only the face large enough is judged
    everyone = PhotoDataset([group], columns_read(64), align="auto", min_face_size=0)
    assert everyone.collate([everyone[0]]).errors == ["", ""]
    nobody = PhotoDataset([group], columns_read(64), align="auto", min_face_size=1000)
    batch = nobody.collate([nobody[0]])
    assert batch.images.shape[0] == 0 and all(e.startswith(TOO_SMALL) for e in batch.errors)


@pytest.mark.slow
def test_predict_says_how_many_faces_were_too_small(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    write_group_photo(tmp_path / "group.jpg")
    out = tmp_path / "out.csv"
    # In this process; the run that ends with exit status 1 (below) in a process of its own.
    predict = cli_in_process(
        "predict", "--config", str(CONFIGS / "base.yaml"),
        *tiny_overrides(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
        f"--data.predict.path={tmp_path / 'group.jpg'}", f"--prediction.output={out}",
        "--data.predict.min_face_size=80", cwd=tmp_path,
    )  # fmt: skip
    output = predict.stdout + predict.stderr
    assert predict.returncode == 0, output
    assert "(1 predicted, 0 unreadable, 0 without a face, 1 face(s) too small to judge)" in output
    assert "1 face(s) smaller than 80 px (data.predict.min_face_size) were not judged" in output
    with open(out, newline="") as fh:
        first, second = csv.DictReader(fh)
    assert first["error"] == "" and 0 <= float(first["prob_Male"]) <= 1
    assert second["error"].startswith(TOO_SMALL) and second["prob_Male"] == ""
    assert float(second["box_width"]) < 80 and second["face"] == "2"
    # Every face too small: nothing was predicted, which is an error (exit 1), with the way out.
    none = run_cli(
        "predict", "--config", str(CONFIGS / "base.yaml"),
        *tiny_overrides(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
        f"--data.predict.path={tmp_path / 'group.jpg'}", f"--prediction.output={out}",
        "--prediction.overwrite=true", "--data.predict.min_face_size=5000", cwd=tmp_path,
    )  # fmt: skip
    assert none.returncode == 1, none.stdout + none.stderr
    assert "every face found was smaller than 5000 px, so nothing was predicted" in none.stderr
    assert "--data.predict.min_face_size 0 judges faces of any size" in none.stderr


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = np.radians(17), 2.5, np.array([40.0, -12.0])
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = CELEBA_LANDMARKS @ turn.T + shift
    matrix = similarity(moved, CELEBA_LANDMARKS)
    back = moved @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(back, CELEBA_LANDMARKS, atol=1e-9)


def test_a_row_per_face_a_row_for_no_face_and_celeba_faces_as_they_are(tmp_path: Path) -> None:
    group = write_group_photo(tmp_path / "group.jpg")
    Image.new("RGB", (300, 200), (90, 140, 60)).save(tmp_path / "lawn.png")
    astronaut().resize((178, 218)).save(tmp_path / "celeba_sized.png")
    paths = [group, tmp_path / "lawn.png", tmp_path / "celeba_sized.png"]
    dataset = PhotoDataset(paths, columns_read(64), align="auto")
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    assert batch.paths == [str(group), str(group), *map(str, paths[1:])]
    assert batch.errors == ["", "", NO_FACE, ""]
    assert [f[0] if f else None for f in batch.faces] == [0, 1, None, None]
    assert batch.faces[0][1].box[0] < 500 < batch.faces[1][1].box[0]  # left to right
    assert batch.images.shape == (3, 218, 128, 3)  # two faces and the framed 178x218 photo
    # "always" looks for faces in a CelebA-sized photo too; "never" frames every photo whole.
    always = PhotoDataset(paths[2:], columns_read(64), align="always")
    assert always[0].faces is not None and len(always[0].faces) == 1
    never = PhotoDataset(paths, columns_read(64), align="never")
    assert never.collate([never[i] for i in range(3)]).faces is None
    # Data loader workers get the dataset pickled: the detector stays behind, made anew there.
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._detector is None and len(copy[0].faces) == 2


def test_predict_on_a_photo_with_two_faces_as_the_readme_shows(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    (command,) = [c for d, c in documented_commands() if "--prediction.maps" in c]
    session = Session(tiny_root, tmp_path)  # writes group.jpg, as for the README's own run
    # What the demo leaves, where the README's --config configs/demo.yaml --ckpt_path last looks.
    trained = tmp_path / "logs" / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    trained.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, trained)
    session.run(command)
    out = tmp_path / "results"
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", *face_columns(), "prob_Male", "pred_Male", "error"]
    assert [(r["face"], r["error"]) for r in rows] == [("1", ""), ("2", "")]
    for row in rows:
        box = [float(row[c]) for c in ("box_x", "box_y", "box_width", "box_height")]
        assert box[2] > 50 and box[3] > 50
        assert 0 <= float(row["prob_Male"]) <= 1
    maps = sorted((out / "predictions_maps").iterdir())
    assert [m.name for m in maps] == ["0000_group.png"]
    picture = Image.open(maps[0])
    assert picture.width >= 720 and picture.height > 560  # the photo, then a row per face
