"""The user's own photos: finding them, reading every format and mode, the 178x218 framing, and
``predict --data.predict.path`` end to end with a corrupt file among them."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from lit_celeba.base.errors import PhotoError
from lit_celeba.data.celeba import find_files
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.photos import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    PhotoBatch,
    PhotoDataset,
    find_photos,
    frame,
    load_frame,
    photo_loader,
    read_rgb,
)
from lit_celeba.data.transforms import columns_read, keep_columns
from lit_celeba.models.module import AttributeClassifier
from tests.conftest import (
    CONFIGS,
    THREE_ATTRIBUTES,
    cli_in_process,
    csv_rows,
    recipe_model,
    run_cli,
    tiny_overrides,
)

READABLE = [
    "a_rgb.jpg",
    "b_gray.png",
    "c_rgba.png",
    "d_palette.png",
    "h_wide.webp",
    "i_tall.bmp",
    "j_upper.JPG",
    "sub/e_cmyk.jpg",
    "sub/deeper/f_gray16.png",
    "sub/deeper/g_rgb16.png",
]
BROKEN = ["broken.jpg", "truncated.png"]


def _png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand: Pillow cannot write one."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def make_photo_folder(folder: Path, face: Image.Image) -> None:
    """READABLE and BROKEN files in every supported format and mode, plus files to be skipped."""
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    face.save(folder / "a_rgb.jpg", quality=95)
    face.convert("L").save(folder / "b_gray.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(face.size))
    rgba.save(folder / "c_rgba.png")
    face.quantize(64).save(folder / "d_palette.png")
    face.convert("CMYK").save(folder / "sub" / "e_cmyk.jpg")
    gray16 = (np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "sub" / "deeper" / "f_gray16.png")
    _png_rgb16(folder / "sub" / "deeper" / "g_rgb16.png", np.asarray(face, np.uint16) * 257)
    face.resize((400, 200)).save(folder / "h_wide.webp", quality=90)
    face.resize((100, 300)).save(folder / "i_tall.bmp")
    face.save(folder / "j_upper.JPG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    png = io.BytesIO()
    face.save(png, "PNG")
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "notes.md").write_text("not an image, and not named like one: skipped\n")
    face.save(folder / ".hidden" / "thumb.jpg")


@pytest.fixture(scope="module")
def face(tiny_root: Path) -> Image.Image:
    with Image.open(find_files(tiny_root).image_dir / "000150.jpg") as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def photos(face: Image.Image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    make_photo_folder(folder, face)
    return folder


def test_folder_is_searched_recursively_in_sorted_order(photos: Path) -> None:
    found = [p.relative_to(photos).as_posix() for p in find_photos(photos)]
    assert found == sorted(READABLE + BROKEN)  # notes.md and .hidden/ left out


def test_list_file_paths_are_relative_to_it(photos: Path, tmp_path: Path) -> None:
    listing = photos / "sub" / "list.txt"
    listing.write_text(f"# my photos\ne_cmyk.jpg\n\n{photos / 'a_rgb.jpg'}\nmissing.png\n")
    found = find_photos(listing)
    assert found == [
        photos / "sub" / "e_cmyk.jpg",
        photos / "a_rgb.jpg",
        photos / "sub/missing.png",
    ]
    assert find_photos(photos / "a_rgb.jpg") == [photos / "a_rgb.jpg"]


def test_nothing_to_predict_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PhotoError, match="does not exist"):
        find_photos(tmp_path / "nowhere")
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(PhotoError, match="holds no .jpg/.jpeg/.png/.webp/.bmp files"):
        find_photos(tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(PhotoError, match="lists no image paths"):
        find_photos(tmp_path / "empty.txt")


@pytest.mark.parametrize("name", READABLE)
def test_every_format_and_mode_becomes_the_aligned_frame(
    photos: Path, face: Image.Image, name: str
) -> None:
    image = load_frame(photos / name)
    assert image.dtype == torch.uint8 and image.shape == (3, FRAME_HEIGHT, FRAME_WIDTH)
    if name in ("a_rgb.jpg", "j_upper.JPG", "sub/e_cmyk.jpg", "d_palette.png"):
        # Same framing as the original face: only compression and colour conversion differ.
        original = torch.from_numpy(np.array(face)).permute(2, 0, 1).float()
        assert (image.float() - original).abs().mean() < 8
    if name in ("b_gray.png", "sub/deeper/f_gray16.png"):
        gray = torch.from_numpy(np.array(face.convert("L"))).float()
        assert (image.float() - gray).abs().max() <= 1  # 16 bits scaled, not clipped at 255
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_16_bit_rgb_is_scaled(photos: Path, face: Image.Image) -> None:
    image = load_frame(photos / "sub" / "deeper" / "g_rgb16.png")
    assert torch.equal(image, torch.from_numpy(np.array(face)).permute(2, 0, 1))


def test_an_aligned_celeba_jpeg_reads_exactly_as_the_celeba_loader(tiny_root: Path) -> None:
    for path in sorted(find_files(tiny_root).image_dir.glob("*.jpg"))[:10]:
        assert torch.equal(load_frame(path), decode_image(str(path), mode=ImageReadMode.RGB))


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (10, 10), (200, 0, 0, 0))
    rgba.paste((0, 0, 200, 255), (0, 0, 10, 5))
    rgba.save(tmp_path / "t.png")
    pixels = np.asarray(read_rgb(tmp_path / "t.png"))
    assert pixels[0, 0].tolist() == [0, 0, 200] and pixels[9, 9].tolist() == [255, 255, 255]


def _bands(width: int, height: int) -> Image.Image:
    """Red in the top quarter, green in the middle half, blue in the bottom quarter."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 4, :, 0] = 255
    pixels[height // 4 : 3 * height // 4, :, 1] = 255
    pixels[3 * height // 4 :, :, 2] = 255
    return Image.fromarray(pixels)


def test_framing_rule_resize_to_width_178_then_pad_or_crop() -> None:
    aligned = _bands(178, 218)
    assert np.array_equal(np.asarray(frame(aligned)), np.asarray(aligned))  # CelebA: unchanged

    wide = np.asarray(frame(_bands(712, 200)))  # -> 178x50, 84 rows of black above and below
    assert wide.shape == (218, 178, 3)
    assert (wide[:84] == 0).all() and (wide[134:] == 0).all()
    assert wide[86, 89].tolist() == [255, 0, 0] and wide[131, 89].tolist() == [0, 0, 255]

    tall = np.asarray(frame(_bands(89, 436)))  # -> 178x872, the middle 218 rows kept: all green
    assert tall.shape == (218, 178, 3) and (tall == [0, 255, 0]).all()

    square = np.asarray(frame(_bands(356, 356)))  # -> 178x178 in rows 20..197: the eval crop
    assert (square[:20] == 0).all() and (square[198:] == 0).all()
    assert square[20, 0].tolist() == [255, 0, 0] and square[197, 0].tolist() == [0, 0, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = _bands(178, 218)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways saves it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    stored.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    pixels = np.asarray(frame(read_rgb(tmp_path / "sideways.jpg")))
    assert pixels[5, 89, 0] > 200 and pixels[109, 89, 1] > 200 and pixels[212, 89, 2] > 200


def test_bad_files_get_an_error_and_leave_the_batch_intact(photos: Path, tmp_path: Path) -> None:
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (20, 20)).save(gif)
    text = tmp_path / "text.png"
    text.write_text("a text file named like an image")
    paths = [photos / "a_rgb.jpg", photos / "broken.jpg", gif, tmp_path / "gone.png"]
    paths += [photos / "truncated.png", text, photos / "b_gray.png"]
    dataset = PhotoDataset(paths, columns_read(64))
    loaded = next(iter(photo_loader(dataset, batch_size=8, num_workers=0)))
    # Framed, in the decoded cache's layout: the columns the resize reads.
    assert loaded.images.shape == (2, 218, 128, 3) and loaded.images.dtype == torch.uint8
    assert torch.equal(loaded.images[0], keep_columns(load_frame(paths[0]), columns_read(64)))
    batch = transformed(loaded)
    assert batch.paths == [str(p) for p in paths]
    assert batch.images.shape == (2, 3, 64, 64) and batch.images.dtype == torch.float32
    errors = dict(zip([p.name for p in paths], batch.errors, strict=True))
    assert errors["a_rgb.jpg"] == "" and errors["b_gray.png"] == ""
    assert errors["broken.jpg"].startswith("OSError")
    assert "UnidentifiedImageError: cannot identify image file" in errors["text.png"]
    assert "unsupported image format GIF (supported: JPEG, PNG, WebP, BMP)" in errors["anim.gif"]
    assert errors["gone.png"] == "file not found"
    assert "truncated" in errors["truncated.png"]

    nothing = PhotoDataset([photos / "broken.jpg"], columns_read(64))
    empty = transformed(nothing.collate([nothing[0]]))
    assert empty.images.shape == (0, 3, 64, 64) and empty.errors[0]
    outputs = recipe_model().predict_step(empty, 0)
    assert outputs["probabilities"].shape == (0, 1) and outputs["predictions"].shape == (0, 1)


def transformed(batch: PhotoBatch) -> PhotoBatch:
    """A batch of photos as ``predict_step`` gets it: after the data module's transfer hook (its
    batched eval transform), still a ``PhotoBatch`` with every path and error."""
    out = CelebADataModule().on_after_batch_transfer(batch, 0)
    assert isinstance(out, PhotoBatch) and out.paths == batch.paths and out.errors == batch.errors
    return out


@pytest.mark.slow
def test_predict_on_a_folder_writes_rows_that_match_predict_step(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    # No CelebA at --data.root: predicting on photos must not need it.
    flags = tiny_overrides(tmp_path / "no_celeba_here", logs) + ["--data.batch_size=4"]
    predict = cli_in_process(  # in this process: the rows it writes are the test
        "predict",
        "--config",
        str(CONFIGS / "base.yaml"),
        *flags,
        f"--ckpt_path={tiny_checkpoint}",
        f"--data.predict.path={photos}",
        "--data.predict.align=never",  # the framing rule on every photo (test_faces.py: faces)
        cwd=tmp_path,
    )
    output = predict.stdout + predict.stderr
    assert predict.returncode == 0, output
    written = logs / "base" / "version_0" / "predictions.csv"
    assert str(written) in output
    assert "2 of 12 files could not be read" in output

    rows = csv_rows(written)
    assert list(rows[0]) == ["path", "prob_Male", "pred_Male", "error"]
    assert [r["path"] for r in rows] == [str(p) for p in find_photos(photos)]

    # The same photos through the checkpoint's predict_step, in this process.
    model = AttributeClassifier.load_from_checkpoint(tiny_checkpoint, map_location="cpu").eval()
    dataset = PhotoDataset.from_path(photos, columns_read(64))
    expected: dict[str, float] = {}
    with torch.no_grad():
        for i, loaded in enumerate(photo_loader(dataset, batch_size=5, num_workers=0)):
            batch = transformed(loaded)
            readable = [p for p, e in zip(batch.paths, batch.errors, strict=True) if not e]
            probs = model.predict_step(batch, i)["probabilities"].reshape(-1).tolist()
            expected.update(zip(readable, probs, strict=True))
    for row in rows:
        name = Path(row["path"]).relative_to(photos).as_posix()
        if name in BROKEN:
            assert row["prob_Male"] == "" and row["pred_Male"] == "" and row["error"]
        else:
            assert row["error"] == ""
            assert float(row["prob_Male"]) == pytest.approx(expected[row["path"]], abs=1e-6)
            assert int(row["pred_Male"]) == int(expected[row["path"]] > 0.5)
    assert len(expected) == len(READABLE)


@pytest.mark.slow
def test_predict_exits_non_zero_only_when_nothing_was_read(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'broken.jpg'}\nnot_there.jpg\n")
    out = tmp_path / "out" / "mine.csv"
    predict = run_cli(
        "predict",
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(tmp_path, tmp_path / "logs"),
        f"--ckpt_path={tiny_checkpoint}",
        f"--data.predict.path={listing}",
        "--data.predict.align=never",
        f"--prediction.output={out}",
        cwd=tmp_path,
    )
    assert predict.returncode == 1, predict.stdout + predict.stderr
    assert "error: none of the files could be read" in predict.stderr
    assert "Traceback" not in predict.stderr
    rows = csv_rows(out)
    assert [r["error"] for r in rows][1] == "file not found"
    assert all(r["prob_Male"] == "" and r["error"] for r in rows)


@pytest.mark.slow
def test_predict_with_three_attributes_writes_one_row_per_photo(
    photos: Path, three_attribute_run: dict[str, Any], tmp_path: Path
) -> None:
    # Before: one column prob_['Male', 'Young', 'Smiling'] and each photo over three rows; and
    # --prediction.output results/ (a new folder) wrote a file named `results`.
    ckpt = three_attribute_run["checkpoint"]
    out = tmp_path / "results"
    predict = cli_in_process(  # in this process: the rows it writes are the test
        "predict",
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(tmp_path / "no_celeba_here", tmp_path / "logs"),
        f"--data.target_attr=[{', '.join(THREE_ATTRIBUTES)}]",
        "--data.batch_size=4",
        f"--ckpt_path={ckpt}",
        f"--data.predict.path={photos}",
        "--data.predict.align=never",  # the framing rule on every photo (test_faces.py: faces)
        f"--prediction.output={out}/",
        cwd=tmp_path,
    )
    assert predict.returncode == 0, predict.stdout + predict.stderr
    assert out.is_dir()
    rows = csv_rows(out / "predictions.csv")
    columns = ["path"] + [f"{k}_{a}" for a in THREE_ATTRIBUTES for k in ("prob", "pred")]
    assert list(rows[0]) == columns + ["error"]
    assert [r["path"] for r in rows] == [str(p) for p in find_photos(photos)]

    model = AttributeClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dataset = PhotoDataset.from_path(photos, columns_read(64))
    expected: dict[str, list[float]] = {}
    with torch.no_grad():
        for i, loaded in enumerate(photo_loader(dataset, batch_size=3, num_workers=0)):
            batch = transformed(loaded)
            readable = [p for p, e in zip(batch.paths, batch.errors, strict=True) if not e]
            probs = model.predict_step(batch, i)["probabilities"].tolist()
            expected.update(zip(readable, probs, strict=True))
    for row in rows:
        if Path(row["path"]).name in {Path(b).name for b in BROKEN}:
            assert row["error"] and all(row[c] == "" for c in columns[1:])
            continue
        assert row["error"] == ""
        for k, attr in enumerate(THREE_ATTRIBUTES):
            probability = expected[row["path"]][k]
            assert float(row[f"prob_{attr}"]) == pytest.approx(probability, abs=1e-6)
            assert int(row[f"pred_{attr}"]) == int(probability > 0.5)
    assert len(expected) == len(READABLE)
