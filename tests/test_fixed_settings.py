"""What a checkpoint fixes and what the command line may change (lit_celeba/checkpoints/
fixed_settings.py): the evaluation settings typed with ``--ckpt_path`` (flip TTA, temperatures
on or off, the threshold rule) apply over the checkpoint's; a setting that would make another
network, or that acts only in training, is refused with one line; nothing is ignored.

Issue 32, item 1, and the hostile cases on it (docs/bad_input.md, fourth round).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lit_celeba.checkpoints.load import load_checkpoint
from lit_celeba.cli import cli_main
from lit_celeba.methods.calibration import calibration_from_state, evaluated_with
from tests.conftest import CONFIGS, run_expecting_error, tiny_overrides

BASE = str(CONFIGS / "base.yaml")
SMALL = ["--model.net.channels=[8, 16, 16, 16]", "--data.image_size=32", "--data.batch_size=16"]
SHORT = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
         "--trainer.limit_test_batches=2"]  # fmt: skip
# How the checkpoint below was trained: two attributes, flip TTA, temperatures, thresholds for
# balanced accuracy.
TWO = ["Male", "Young"]
TRAINED = ["--data.target_attr=[Male, Young]", "--model.tta_flip=true",
           "--model.thresholds=balanced_accuracy"]  # fmt: skip


@pytest.fixture(scope="module")
def calibrated(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a one-epoch fit with :data:`TRAINED`'s settings."""
    logs = tmp_path_factory.mktemp("calibrated") / "logs"
    cli_main(["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL, *SHORT,
              *TRAINED, "--trainer.max_epochs=1"])  # fmt: skip
    ckpt = logs / "base" / "version_0" / "checkpoints" / "last.ckpt"
    assert not torch.equal(load_checkpoint(ckpt)["calibration"]["temperature"], torch.ones(2))
    return ckpt


def _run(command: str, ckpt: Path | str, root: Path, logs: Path, *flags: str):
    return cli_main([command, "--config", BASE, *tiny_overrides(root, logs), *SHORT,
                     "--data.target_attr=[Male, Young]", f"--ckpt_path={ckpt}",
                     *flags])  # fmt: skip


def test_evaluation_settings_typed_with_a_checkpoint_apply(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    as_trained = _run("test", calibrated, tiny_root, tmp_path / "a")
    assert as_trained.model.tta_flip is True
    metrics = as_trained.trainer.callback_metrics
    assert float(metrics["test/ece"]) != float(metrics["test/ece_uncalibrated"])
    typed = _run("test", calibrated, tiny_root, tmp_path / "b", "--model.tta_flip=false",
                 "--model.temperature_scaling", "false")  # fmt: skip
    err = capsys.readouterr().err
    assert "Using --model.tta_flip false over the true of" in err
    assert "Using --model.temperature_scaling false over the true of" in err
    assert typed.model.tta_flip is False
    assert torch.equal(typed.model.calibration.temperature, torch.ones(2))
    metrics = typed.trainer.callback_metrics
    assert float(metrics["test/ece"]) == pytest.approx(float(metrics["test/ece_uncalibrated"]))


def test_temperatures_off_keep_the_decisions(calibrated: Path) -> None:

    state = load_checkpoint(calibrated)["calibration"]
    calibration = calibration_from_state(state, 2)
    logits = torch.linspace(-6, 6, 242).reshape(-1, 2)
    _, decisions = calibration.apply(logits)
    plain = evaluated_with(calibration, temperature_scaling=False, rule="balanced_accuracy")
    probabilities, same = plain.apply(logits)
    assert torch.equal(plain.temperature, torch.ones(2))
    assert torch.equal(probabilities, torch.sigmoid(logits))
    assert torch.equal(same, decisions)


def test_calibrate_with_a_typed_threshold_rule_uses_it(
    calibrated: Path, tiny_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fixed.ckpt"
    _run("calibrate", calibrated, tiny_root, tmp_path / "logs", "--model.thresholds=fixed",
         f"--out={out}")  # fmt: skip
    written = load_checkpoint(out)
    assert written["calibration"]["rule"] == "fixed"
    assert torch.equal(written["calibration"]["threshold"], torch.full((2,), 0.5))
    assert written["hyper_parameters"]["thresholds"] == "fixed"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--model.net.channels=[16, 16, 16, 16]"], "which makes another network"),
        (["--model.net.batch_norm=true"], "which makes another network"),
        (["--model.net.dropout=0.1"], "acts only in training"),
        (["--model.net", "ResNet"], "holds a RecipeCNN, but --model.net is ResNet"),
        (["--model.thresholds=f1"], "Run calibrate --ckpt_path"),
    ],
    ids=["channels", "batch-norm", "dropout", "other-class", "rule-to-fit"],
)
def test_a_typed_setting_that_cannot_apply_is_one_line(
    flags: list[str], expected: str, calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    logs = tmp_path / "logs"
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, logs), *SHORT,
         "--data.target_attr=[Male, Young]", f"--ckpt_path={calibrated}", *flags], capsys,
    )  # fmt: skip
    assert expected in message
    assert not logs.exists() or not any(logs.rglob("version_*"))  # no run folder


def test_the_checkpoints_own_values_typed_again_are_no_change(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """What compare does: the fit's own options again with test."""
    cli = _run("test", calibrated, tiny_root, tmp_path / "logs", *SMALL, *TRAINED,
               "--model.net.dropout=0.5")  # fmt: skip
    assert cli.model.tta_flip is True and cli.model.thresholds == "balanced_accuracy"
    assert "Using --model" not in capsys.readouterr().err



# -- Our own cases: the overrides with several attributes, last, calibrate, resume, export ----


def test_several_attributes_back_to_fixed_thresholds_and_no_tta(
    calibrated: Path, tiny_root: Path, tmp_path: Path
) -> None:
    cli = _run("test", calibrated, tiny_root, tmp_path / "logs", "--model.thresholds=fixed",
               "--model.tta_flip=false")  # fmt: skip
    assert cli.model.target_attrs == TWO and cli.model.tta_flip is False
    assert torch.equal(cli.model.calibration.threshold, torch.full((2,), 0.5))
    saved = load_checkpoint(calibrated)["calibration"]["temperature"]
    assert torch.equal(cli.model.calibration.temperature, saved)  # the temperatures stay


def test_an_override_with_ckpt_path_last_applies(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(calibrated.parents[3], logs)
    cli = _run("test", "last", tiny_root, logs, "--model.temperature_scaling=false")
    assert cli.config["test"]["ckpt_path"].endswith("version_0/checkpoints/last.ckpt")
    assert torch.equal(cli.model.calibration.temperature, torch.ones(2))
    assert "Using --model.temperature_scaling false" in capsys.readouterr().err


def test_calibrate_with_other_settings_then_test_uses_them(
    calibrated: Path, tiny_root: Path, tmp_path: Path
) -> None:
    """calibrate writes the settings it fitted with into the copy's hyperparameters: a test of
    it needs no override, and none is refused."""
    out = tmp_path / "f1.ckpt"
    _run("calibrate", calibrated, tiny_root, tmp_path / "a", "--model.temperature_scaling=false",
         "--model.thresholds=f1", f"--out={out}")  # fmt: skip
    written = load_checkpoint(out)
    assert written["hyper_parameters"]["thresholds"] == "f1"
    assert written["hyper_parameters"]["temperature_scaling"] is False
    cli = _run("test", out, tiny_root, tmp_path / "b")
    assert cli.model.thresholds == "f1"
    assert torch.equal(cli.model.calibration.temperature, torch.ones(2))
    assert torch.equal(cli.model.calibration.threshold, written["calibration"]["threshold"])


def test_resuming_with_a_training_setting_changed_is_refused(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    message = run_expecting_error(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"), *SMALL, *SHORT,
         *TRAINED, "--trainer.max_epochs=2", f"--ckpt_path={calibrated}",
         "--model.label_smoothing=0.1"], capsys,
    )  # fmt: skip
    assert "model.label_smoothing acts only in training, and `fit` resumes a run with" in message


def test_the_init_args_form_of_a_network_setting_is_checked_as_the_short_form(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
         "--data.target_attr=[Male, Young]", f"--ckpt_path={calibrated}",
         "--model.net.init_args.channels=[16, 16, 16, 16]"], capsys,
    )  # fmt: skip
    assert "but --model.net.channels is [16, 16, 16, 16], which makes another network" in message


def test_all_attributes_against_a_checkpoint_of_two_names_all(
    calibrated: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
         "--data.target_attr=ALL", f"--ckpt_path={calibrated}"], capsys,
    )  # fmt: skip
    assert 'trained to predict 2 attribute(s) "[Male, Young]", but --data.target_attr is all' in (
        message
    )
    assert "5_o_Clock_Shadow" not in message


def test_export_of_a_checkpoint_with_an_older_calibration_says_so(
    calibrated: Path, tmp_path: Path, capfd
) -> None:
    from lit_celeba.commands.export import export

    saved = load_checkpoint(calibrated)
    saved["calibration"]["fitted_at_step"] = saved["global_step"] - 1
    stale = tmp_path / "stale.ckpt"
    torch.save(saved, stale)
    export(stale, tmp_path / "exported")
    assert f"the calibration in {stale} was fitted at step" in capfd.readouterr().err
