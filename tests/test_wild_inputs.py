"""Issue 32, last part: hostile cases aimed at what issue 31 added (wild photos, the detector at
several scales, the photo degradations, detector framing, the configs) and at their combinations.
docs/bad_input.md, "Fourth round, ours", has a row for each."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, astronaut, tiny_overrides

BASE = ["--config", str(CONFIGS / "base.yaml")]
# A small network at 32 px: the checkpoints here only need to exist.
SMALL = ["--model.channels=[8, 8, 8, 8]", "--data.image_size=32", "--data.batch_size=16",
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
         "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1"]  # fmt: skip


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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
    cli_main(["predict", *BASE, *flags, f"--ckpt_path={ckpt}", f"--data.predict_path={photo}",
              f"--data.predict_output={out}"])  # fmt: skip
    assert [row["error"] for row in read_rows(out)] == [""]
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
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.errors import SettingError

    with pytest.raises(SettingError) as refused:
        CelebADataModule(photo=photo)
    assert message in f"{refused.value.setting} {refused.value.problem}"


def test_grayscale_has_its_own_probability_whatever_p() -> None:
    """{grayscale: 0.5}, without p, made no image grey (p defaulted to 0 and turned all off)."""
    import torch

    from lit_celeba.data.degradations import Degrade

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

    from lit_celeba.data.degradations import Degrade

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
    from lit_celeba.checkpoints.fixed_settings import restore_data_settings
    from lit_celeba.errors import CheckpointError

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
    photos = {"framing": "celeba", "predict_path": "me.jpg"}  # photos: the detector's anyway
    assert restore_data_settings(photos, saved, "X.ckpt", [], "predict") == []
    resumed = {"framing": "celeba", "photo": None}
    restore_data_settings(resumed, saved, "X.ckpt", [], "fit")
    assert resumed == {"framing": "detector", "photo": {"p": 0.5, "blur": 1.0}}
    for typed_args in (["--data.framing", "celeba"], ["--data.photo={p: 0}"]):
        with pytest.raises(CheckpointError, match="`fit` resumes a run on the images it was"):
            restore_data_settings({"framing": "celeba", "photo": {"p": 0}}, saved, "X.ckpt",
                                  typed_args, "fit")  # fmt: skip


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
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.errors import CelebAError

    root = write_faceless_root(tmp_path / "faceless")
    module = CelebADataModule(root=str(root), train_size=8, val_size=4, test_size=4,
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

    kwargs = {"root": str(tiny_root), "train_size": 8, "val_size": 4, "test_size": 4,
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
