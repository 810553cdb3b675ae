"""Issue 32, last part: hostile cases aimed at what issue 31 added (wild photos, the detector at
several scales, the photo degradations, detector framing, the configs) and at their combinations.
docs/bad_input.md, "Fourth round, ours", has a row for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CONFIGS, astronaut, csv_rows, tiny_overrides

BASE = ["--config", str(CONFIGS / "base.yaml")]
# A small network at 32 px: the checkpoints here only need to exist.
SMALL = ["--model.net.channels=[8, 8, 8, 8]", "--data.image_size=32", "--data.batch_size=16",
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
         "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1"]  # fmt: skip


@pytest.fixture(scope="module")
def reweight_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``fit --model.objective reweight --model.subgroups [Young]``, in this process."""
    from lit_celeba.cli import cli_main

    work = tmp_path_factory.mktemp("reweight")
    flags = [*tiny_overrides(tiny_root, work / "logs"), *SMALL]
    cli_main(["fit", *BASE, *flags, "--model.objective=reweight", "--model.subgroups=[Young]"])
    ckpt = work / "logs" / "base" / "version_0" / "checkpoints" / "last.ckpt"
    return {"work": work, "flags": flags, "ckpt": ckpt}


@pytest.mark.slow
def test_predict_and_test_from_a_reweight_checkpoint_need_no_subgroups(
    reweight_run: dict, capsys: pytest.CaptureFixture
) -> None:
    """The known bug: predict and test from a checkpoint trained with an objective that weighs
    groups failed with "data.train_subgroups needs ... subgroups none" unless the user typed
    --model.objective and --model.subgroups again."""
    from lit_celeba.cli import cli_main

    work, flags, ckpt = reweight_run["work"], reweight_run["flags"], reweight_run["ckpt"]
    photo = work / "astronaut.jpg"
    astronaut().save(photo)
    out = work / "predictions.csv"
    cli_main(["predict", *BASE, *flags, f"--ckpt_path={ckpt}", f"--data.predict.path={photo}",
              f"--prediction.output={out}"])  # fmt: skip
    assert [row["error"] for row in csv_rows(out)] == [""]
    cli_main(["test", *BASE, *flags, f"--ckpt_path={ckpt}"])
    err = capsys.readouterr().err
    assert "train_subgroups" not in err and "for other groups" not in err


@pytest.mark.slow
def test_resuming_a_reweight_run_takes_its_subgroups_from_the_checkpoint(
    reweight_run: dict, capsys: pytest.CaptureFixture
) -> None:
    from lit_celeba.checkpoints.load import load_checkpoint
    from lit_celeba.cli import cli_main

    flags, ckpt = reweight_run["flags"], reweight_run["ckpt"]
    capsys.readouterr()
    cli_main(["fit", *BASE, *flags, f"--ckpt_path={ckpt}", "--trainer.max_epochs=2"])
    err = capsys.readouterr().err
    assert f"Using model.subgroups [Young] from {ckpt}: its model.objective reweight" in err
    resumed = sorted(ckpt.parents[2].glob("version_*/checkpoints/last.ckpt"))[-1]
    saved = load_checkpoint(resumed)
    assert saved["datamodule_hyper_parameters"]["subgroups"] == ["Young"]
    assert saved["epoch"] == 1


# --- data.photo -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("photo", "message"),
    [
        ({"p": -0.1}, "photo.p must be from 0 to 1"),
        ({"p": 1.0, "low_res": [1.2, 0.5]}, "photo.low_res must be [a, b], 0 < a <= b <= 1"),
        ({"p": 1.0, "jpeg": [0, 200]}, "photo.jpeg must be [q1, q2]"),
        ({"p": 1.0, "erase": [0.5, 1.5]}, "photo.erase must be [a, b], 0 <= a <= b <= 1"),
        ({"p": 1.0, "noise": float("nan")}, "photo.noise must be 0 (off) or more; got nan"),
        ({"p": 1.0, "shift": float("inf")}, "photo.shift must be 0 (off) or more, in pixels"),
        ({"p": 1.0, "scale": 1.0}, "photo.scale must be from 0 to under 1; got 1.0"),
        ({"p": "often"}, "photo.p must be from 0 to 1; got 'often'"),
        ({"p": 1.0, "low_res": [0.5]}, "photo.low_res must be [a, b]"),
        ({"p": 1.0, "jpeg": [1.5, 50]}, "photo.jpeg must be [q1, q2], whole numbers"),
        ("blur", "photo must be a mapping such as {p: 0.5, blur: 1.0}, got 'blur'"),
        ({"blur": 2.0}, "photo.p is not given, so blur would never apply"),
    ],
    ids=["p-negative", "low_res-reversed", "jpeg-0-200", "erase-over-1", "noise-nan",
         "shift-inf", "scale-1", "p-string", "low_res-one-number", "jpeg-fraction", "a-string",
         "no-p"],  # fmt: skip
)
def test_a_bad_photo_setting_names_the_key_and_its_range(photo: object, message: str) -> None:
    """In Python as on the command line: the data module refuses it when built, before any
    training (was: NaN images or a traceback in training, or, without p, nothing at all)."""
    from lit_celeba.base.errors import SettingError
    from lit_celeba.data.datamodule import CelebADataModule

    with pytest.raises(SettingError) as refused:
        CelebADataModule(photo=photo)
    assert message in f"{refused.value.setting} {refused.value.problem}"


def test_grayscale_has_its_own_probability_whatever_p() -> None:
    """{grayscale: 0.5}, without p, made no image grey (p defaulted to 0 and turned all off)."""
    import torch

    from lit_celeba.methods.degradations import Degrade

    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16)
    for photo in ({"grayscale": 1.0}, {"p": 0.0, "grayscale": 1.0}):
        grey = Degrade(photo)(images)
        assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


@pytest.mark.parametrize("image_size", [8, 64])
def test_a_blur_wider_than_the_image_and_a_tiny_low_res_train(image_size: int) -> None:
    """blur 30 at 64 px stopped training with "Padding size should be less than the
    corresponding input dimension"; low_res [0.001, 0.01] with "output (H: 0, W: 0)"."""
    import torch

    from lit_celeba.methods.degradations import Degrade

    images = torch.rand(8, 3, image_size, image_size)
    for photo in ({"p": 1.0, "blur": 30.0}, {"p": 1.0, "low_res": [0.001, 0.01]}):
        out = Degrade(photo)(images)
        assert out.shape == images.shape and torch.isfinite(out).all()
        assert out.std(dim=(2, 3)).mean() < images.std(dim=(2, 3)).mean() / 2  # near flat


@pytest.mark.parametrize(
    ("value", "shown"),
    [("{p: 1, blurr: 1}", "Unexpected keys: {'blurr'}"), ("blur", "Expected a <class 'dict'>"),
     ("{p: 1, jpeg: [1.5, 50]}", "Got value: 1.5")],
    ids=["unknown-key", "a-string", "jpeg-fraction"],
)  # fmt: skip
def test_a_photo_setting_the_parser_refuses_lists_every_key(
    value: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """jsonargparse's own "Parser key "data.photo": Expected a <class 'int'>. Got value: 1.5"
    named neither the key nor what it takes; nothing runs, no run folder."""
    from tests.conftest import run_expecting_error

    logs = tmp_path / "logs"
    message = run_expecting_error(
        ["fit", *BASE, *tiny_overrides(tmp_path / "nowhere", logs), f"--data.photo={value}"],
        capsys,
    )
    assert shown in message
    assert "data.photo takes a mapping such as --data.photo '{p: 0.5, blur: 1.0}'" in message
    assert "jpeg [q1, q2], whole numbers, 1 <= q1 <= q2 <= 100" in message
    assert not logs.exists()


# --- data.framing ------------------------------------------------------------------------------


def test_framing_comes_from_the_checkpoint_and_resuming_with_another_is_refused() -> None:
    """test/validate/predict on a CelebA split took the config's framing whatever the network
    was trained on, and fit --ckpt_path resumed on faces framed otherwise, both silently."""
    from lit_celeba.base.errors import CheckpointError
    from lit_celeba.checkpoints.fixed_settings import restore_data_settings

    saved = {"datamodule_hyper_parameters": {"framing": "detector", "photo": {"p": 0.5,
                                                                              "blur": 1.0}}}
    data = {"framing": "celeba", "photo": None}
    notes = restore_data_settings(data, saved, "X.ckpt", [], "test")
    assert data == {"framing": "detector", "photo": None}  # photo: only training uses it
    assert notes == ["Using data.framing detector from X.ckpt (the config says celeba): a "
                     "network is evaluated on the images it was trained on."]  # fmt: skip
    typed = {"framing": "celeba"}
    notes = restore_data_settings(typed, saved, "X.ckpt", ["--data.framing=celeba"], "test")
    assert typed["framing"] == "celeba"
    assert "Using --data.framing celeba over the detector of X.ckpt" in notes[0]
    photos = {"framing": "celeba", "predict": {"path": "me.jpg"}}  # photos: the detector's anyway
    assert restore_data_settings(photos, saved, "X.ckpt", [], "predict") == []
    resumed = {"framing": "celeba", "photo": None}
    restore_data_settings(resumed, saved, "X.ckpt", [], "fit")
    assert resumed == {"framing": "detector", "photo": {"p": 0.5, "blur": 1.0}}
    for typed_args in (["--data.framing", "celeba"], ["--data.photo={p: 0}"]):
        with pytest.raises(CheckpointError, match="`fit` resumes a run on the images it was"):
            restore_data_settings({"framing": "celeba", "photo": {"p": 0}}, saved, "X.ckpt",
                                  typed_args, "fit")  # fmt: skip


def test_fit_ckpt_path_last_with_another_framing_or_photo_starts_a_new_run(tmp_path: Path) -> None:
    """(passed on main) `last` resumes only a run of the same settings: one framed otherwise,
    or degraded otherwise, is named and skipped."""
    import yaml

    from lit_celeba.checkpoints.runs import find_matching_run

    saved = {"data": {"framing": "celeba", "photo": None}}
    (tmp_path / "version_0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "version_0" / "config.yaml").write_text(yaml.safe_dump(saved))
    assert find_matching_run(tmp_path, saved)[0] is not None
    for data in ({"framing": "detector", "photo": None},
                 {"framing": "celeba", "photo": {"p": 0.5, "blur": 1.0}}):  # fmt: skip
        last, skipped = find_matching_run(tmp_path, {"data": data})
        assert last is None and "other settings (data." in skipped[0]


def write_faceless_root(root: Path) -> Path:
    from PIL import Image

    from lit_celeba.data.synthetic import generate_celeba

    generate_celeba(root, 8, 4, 4, seed=5, progress=False)
    for image in (root / "celeba" / "img_align_celeba").glob("*.jpg"):
        Image.new("RGB", (178, 218), (90, 120, 150)).save(image)
    return root


def test_detector_framing_of_images_without_any_face_is_an_error(tmp_path: Path) -> None:
    """Was a line ("found no face in 8 of the 8 images"), then a cache framed by CelebA under
    the detector's key, which later runs used without a word."""
    from lit_celeba.base.errors import CelebAError
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets

    root = write_faceless_root(tmp_path / "faceless")
    module = CelebADataModule(root=str(root), subsets=Subsets(train=8, val=4, test=4),
                              num_workers=0, cache_dir=str(tmp_path / "cache"),
                              framing="detector")  # fmt: skip
    with pytest.raises(CelebAError, match=r"found no face in any of the 8 images of the train "
                                          r"subset.*--data.framing celeba"):  # fmt: skip
        module.setup("fit")
    assert not list((tmp_path / "cache").glob("celeba-*.npy*"))


@pytest.mark.parametrize("image_size", [8, 100])
def test_detector_framing_at_other_image_sizes(
    image_size: int, tiny_root: Path, tmp_path: Path
) -> None:
    """(passed on main) Every column from 90 px, the taps only below: both framed alike."""
    import torch

    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets

    kwargs = {"root": str(tiny_root), "subsets": Subsets(train=8, val=4, test=4),
              "num_workers": 0, "cache_dir": str(tmp_path), "image_size": image_size}  # fmt: skip
    framed, plain = CelebADataModule(**kwargs, framing="detector"), CelebADataModule(**kwargs)
    for module in (framed, plain):
        module.setup("test")
    images = [m.batch_transform.eval(m.datasets["test"][0][0][None]) for m in (framed, plain)]
    assert images[0].shape == (1, 3, image_size, image_size)
    assert not torch.equal(*images)


def test_variants_that_differ_in_framing_share_a_cache_folder_apart(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(passed on main) compare's runs share data.cache_dir: each framing its own file, each
    built once."""
    import lit_celeba.data.cache as cache
    from lit_celeba.data.transforms import columns_read

    image_dir, names = tiny_root / "celeba" / "img_align_celeba", ["000001.jpg", "000002.jpg"]
    paths = {f: cache.build_cache(image_dir, names, tmp_path, columns_read(64), workers=1,
                                  framing=f) for f in ("celeba", "detector")}  # fmt: skip
    assert paths["celeba"] != paths["detector"] and len(list(tmp_path.glob("*.npy"))) == 2
    monkeypatch.setattr(cache, "_decode_all", lambda *a: pytest.fail("built again"))
    for framing, path in paths.items():
        assert cache.build_cache(image_dir, names, tmp_path, columns_read(64),
                                 framing=framing) == path  # fmt: skip


# --- the detector and odd photos ---------------------------------------------------------------


def test_a_long_panorama_is_searched_finely_enough_for_its_faces() -> None:
    """A 12000x400 panorama was searched at 4096 wide at most: her 34 px face became 12 px and
    was lost. Photos up to 2:1 keep their passes."""
    from PIL import Image

    from lit_celeba.data.faces import FaceDetector, search_scales

    assert search_scales((8000, 6000))[0] == pytest.approx(4096 / 8000)
    assert search_scales((6000, 3000))[0] == pytest.approx(4096 / 6000)
    assert search_scales((20000, 600))[0] * 20000 > 16000
    panorama = Image.new("RGB", (12000, 400), (128, 128, 128))
    panorama.paste(astronaut().resize((200, 200)), (7000, 100))
    (face,) = FaceDetector()(panorama)
    assert 7000 < face.box[0] < 7200 and 25 < face.box[2] < 45


def test_odd_photos_get_a_row_each(tmp_path: Path) -> None:
    """(passed on main) A 1x1 image, a 20000x100 noise strip, a grey PNG with alpha, a 16-bit
    grey PNG, a CMYK JPEG; with align never and any min_face_size, each photo framed whole."""
    import numpy as np
    from PIL import Image

    from lit_celeba.data.faces import NO_FACE
    from lit_celeba.data.photos import PhotoDataset
    from lit_celeba.data.transforms import columns_read

    her = astronaut()
    noise = np.random.default_rng(0).integers(0, 256, (100, 20000, 3), dtype=np.uint8)
    grey16 = np.asarray(her.convert("L"), dtype=np.uint16) * 257
    photos = {"one.png": Image.new("RGB", (1, 1), (200, 90, 40)),
              "strip.jpg": Image.fromarray(noise), "grey_alpha.png": her.convert("LA"),
              "grey16.png": Image.fromarray(grey16), "cmyk.jpg": her.convert("CMYK")}  # fmt: skip
    for name, image in photos.items():
        image.save(tmp_path / name)
    paths = [tmp_path / name for name in photos]
    found = PhotoDataset(paths, columns_read(64), align="auto")
    items = {p.name: item for p, item in zip(paths, found, strict=True)}
    assert items["one.png"].error == items["strip.jpg"].error == NO_FACE
    for name in ("grey_alpha.png", "grey16.png", "cmyk.jpg"):
        assert items[name].error == "" and len(items[name].faces) == 1, name
    whole = PhotoDataset(paths, columns_read(64), align="never", min_face_size=10**6)
    assert all(item.error == "" and item.image.shape == (218, 128, 3) for item in whole)


def test_min_face_size_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """(passed on main) Negative: refused; not a whole number: the parser names it; huge: every
    face's row says it is too small and by how much."""
    from lit_celeba.base.errors import SettingError
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.photos import PhotoDataset, PredictPhotos
    from lit_celeba.data.transforms import columns_read
    from tests.conftest import run_expecting_error

    with pytest.raises(SettingError, match="must be 0 .judge every face. or more pixels"):
        CelebADataModule(predict=PredictPhotos(min_face_size=-3))
    message = run_expecting_error(["predict", *BASE, "--data.predict.min_face_size=12.5"], capsys)
    assert 'data.predict.min_face_size": Expected a <class \'int\'>. Got value: 12.5' in message
    astronaut().save(tmp_path / "her.jpg")
    photos = PhotoDataset([tmp_path / "her.jpg"], columns_read(64), "auto", min_face_size=10**9)
    batch = photos.collate([photos[0]])
    assert batch.images.shape[0] == 0
    too_small = "face too small to judge: 90 px, under data.predict.min_face_size 1000000000"
    assert batch.errors == [too_small]


@pytest.mark.slow
def test_a_folder_with_gifs_and_a_gif_alone(
    reweight_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A folder's GIF and TIFF were passed over without a word ("All 1 file(s) were read");
    a GIF alone ended with "none of the files could be read as an image", not saying why."""
    from PIL import Image

    from lit_celeba.cli import cli_main

    flags, ckpt = reweight_run["flags"], reweight_run["ckpt"]
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut().save(folder / "her.jpg")
    Image.new("RGB", (40, 40)).save(folder / "anim.gif")
    Image.new("RGB", (40, 40)).save(folder / "scan.tif")
    capsys.readouterr()
    cli_main(["predict", *BASE, *flags, f"--ckpt_path={ckpt}", f"--data.predict.path={folder}",
              f"--prediction.output={tmp_path / 'folder.csv'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert ("predicting on its 1 .jpg/.jpeg/.png/.webp/.bmp file(s) only; skipped 2 image(s) of "
            "a format it does not read (anim.gif, scan.tif): convert them to JPEG or PNG") in err
    assert [row["path"] for row in csv_rows(tmp_path / "folder.csv")] == [str(folder / "her.jpg")]
    with pytest.raises(SystemExit):
        cli_main(["predict", *BASE, *flags, f"--ckpt_path={ckpt}",
                  f"--data.predict.path={folder / 'anim.gif'}",
                  f"--prediction.output={tmp_path / 'gif.csv'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert ("the first: " + str(folder / "anim.gif") + ": ValueError: unsupported image format "
            "GIF (supported: JPEG, PNG, WebP, BMP)") in err


# --- benchmarks/in_the_wild.py -----------------------------------------------------------------


def fake_build(root: Path, parts: tuple[str, ...] = ("lfw", "wider")) -> Path:
    """The files of a wild_faces build, without photos (the checks run before any predict)."""
    for part in parts:
        (root / part / "images").mkdir(parents=True)
    if "lfw" in parts:
        (root / "lfw" / "balanced.csv").write_text("file,person,male\n")
    if "wider" in parts:
        (root / "wider" / "groups.csv").write_text("file,wider_path,width,height\n")
        (root / "wider" / "faces.csv").write_text("file,face_index,x,y,w,h\n")
    return root


WILD_REFUSALS = {
    "celeba-root": "is not a wild_faces build (../shared/wild_faces/build.py writes one): it has "
                   "no lfw/balanced.csv, lfw/images, wider/groups.csv",
    "lfw-only-build": "it has no wider/groups.csv, wider/faces.csv, wider/images",
    "limit-0": "--limit 0: give 2 photo(s) or more (LFW takes half of them from each gender)",
    "limit-negative": "--limit -4: give 1 photo(s) or more, or leave it out for every photo",
    "no-checkpoint": "no checkpoint file at ",
    "empty-compare": "has no finished run: none of its runs/NAME/seed_S/result.json says status ok",
    "compare-of-a-broken-run": "has no finished run",
}  # fmt: skip


@pytest.mark.parametrize("case", WILD_REFUSALS)
def test_in_the_wild_refuses_what_it_cannot_run_in_one_line(
    case: str, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before any predict (was: a FileNotFoundError traceback for a root that is not a build,
    --limit 0 ran every photo and a negative one all but the last few, a --compare folder
    without finished runs beside --ckpt_path was passed over, a broken result.json was a
    JSONDecodeError)."""
    from benchmarks.in_the_wild import main

    build, ckpt = fake_build(tmp_path / "wild"), tmp_path / "some.ckpt"
    ckpt.write_bytes(b"")
    compare = tmp_path / "comparison"
    (compare / "runs" / "a" / "seed_1").mkdir(parents=True)
    args = {"celeba-root": ["--root", str(tiny_root)],
            "lfw-only-build": ["--root", str(fake_build(tmp_path / "lfw_only", ("lfw",)))],
            "limit-0": ["--limit", "0"], "limit-negative": ["--limit", "-4", "--only", "wider"],
            "no-checkpoint": ["--ckpt_path", str(tmp_path / "gone.ckpt")],
            "empty-compare": ["--compare", str(compare)],
            "compare-of-a-broken-run": ["--compare", str(compare)]}[case]  # fmt: skip
    if case == "compare-of-a-broken-run":
        (compare / "runs" / "a" / "seed_1" / "result.json").write_text('{"status": "o')
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(build), "--ckpt_path", str(ckpt), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert WILD_REFUSALS[case] in err and "Traceback" not in err


EVERY_DEGRADATION = {"p": 1.0, "shift": 4.0, "scale": 0.1, "angle": 10.0, "low_res": [0.3, 0.6],
                     "blur": 1.0, "noise": 0.05, "grayscale": 0.3, "erase": [0.05, 0.2],
                     "jpeg": [30, 90]}  # fmt: skip


@pytest.mark.parametrize("where", ["decoded-on-access", "device-resident"])
def test_every_degradation_on_detector_framed_faces_either_way(
    where: str, tiny_root: Path, tmp_path: Path
) -> None:
    """(passed on main) data.photo with data.framing detector, JPEGs decoded on access (cache
    false: each face framed when read) or the cache held on the device (its own batches)."""
    import torch

    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets
    from lit_celeba.speed.device_batches import DeviceBatches

    cached = where == "device-resident"
    module = CelebADataModule(
        root=str(tiny_root), subsets=Subsets(train=16, val=4, test=4), image_size=32,
        batch_size=16, num_workers=0, cache_dir=str(tmp_path),
        cache="device" if cached else False, framing="detector", photo=EVERY_DEGRADATION,
    )  # fmt: skip
    module.setup("fit")
    loader = module.train_dataloader()
    assert isinstance(loader, DeviceBatches) == cached
    images, targets = next(iter(loader))
    torch.manual_seed(0)
    degraded = module.batch_transform.train(images)
    assert degraded.shape == (16, 3, 32, 32) and torch.isfinite(degraded).all()
    torch.manual_seed(0)
    plain = CelebADataModule(image_size=32).batch_transform.train(images)
    assert (degraded - plain).abs().amax() > 0.1


def test_compare_refuses_a_variant_with_a_bad_photo_setting_before_its_runs() -> None:
    """compare parses each variant with fit --print_config, which does not build the data
    module: a variant's {blur: 1} (no p) started a fit for every seed, each ending in the same
    error; now the variant's runs are failed from the start, with the message."""
    from lit_celeba.effective_config import effective_config

    refused = effective_config([*BASE, "--data.photo={blur: 1}"])
    assert refused == {"error": "error: Invalid setting: data.photo.p is not given, so blur would "
                                "never apply: each training image gets each degradation with "
                                "probability p. Add it, e.g. {p: 0.5, blur: 1.0} (p: 0 turns "
                                "them off)."}  # fmt: skip
    fine = effective_config([*BASE, "--config", str(CONFIGS / "fast.yaml"),
                             "--data.photo={p: 0.5, blur: 1.0}", "--data.framing=detector"])
    assert fine["config"]["data"]["photo"] == {"p": 0.5, "blur": 1.0}
    assert fine["config"]["data"]["framing"] == "detector"
