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
