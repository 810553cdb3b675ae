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
