"""The whole-data configs and the ResNet backbone: what they say, and one batch of each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lit_celeba.cli import cli_main
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import ResNet, count_parameters
from lit_celeba.speed.precision import supported_precision
from tests.conftest import CONFIGS, cli_in_process, tiny_overrides


def _printed_config(capsys: pytest.CaptureFixture, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_resnet_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_downloads(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_downloads)
    model = AttributeClassifier(ResNet(), channels_last=True).eval()
    assert count_parameters(model.net) == 11_177_025  # torchvision's ResNet-18, one output
    assert model(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    assert dict(model.hparams) == {
        "net": {"class_path": "lit_celeba.models.nets.ResNet",
                "init_args": {"arch": "resnet18", "num_outputs": 1}},
        "target_attrs": ("Male",), "channels_last": True,
        "compile": False, "objective": "erm", "dro_eta": 0.01, "dro_adjust": 0.0,
        "label_smoothing": 0.0, "tta_flip": False, "ema_decay": None,
        "temperature_scaling": True, "thresholds": "fixed", "pos_weight": False,
    }  # fmt: skip
    assert count_parameters(ResNet("resnet34")) > count_parameters(ResNet("resnet18"))
    with pytest.raises(ValueError, match="resnet18"):
        ResNet("resnet99")


def test_full_config_is_the_whole_data_at_speed(capsys: pytest.CaptureFixture) -> None:
    config = _printed_config(capsys, "--config", str(CONFIGS / "full.yaml"))
    data, model = config["data"], config["model"]
    assert data["subsets"] == {"train": None, "val": None, "test": None, "order": "tfds"}
    assert data["cache"] is True and data["image_size"] == 64
    assert model["net"]["class_path"] == "lit_celeba.models.nets.RecipeCNN"
    assert model["channels_last"] is True
    assert config["trainer"]["precision"] == "bf16-mixed"


def test_resnet_config_and_switching_the_model(capsys: pytest.CaptureFixture) -> None:
    config = _printed_config(capsys, "--config", str(CONFIGS / "full_resnet18.yaml"))
    assert config["model"]["net"] == {"class_path": "lit_celeba.models.nets.ResNet",
                                      "init_args": {"arch": "resnet18"}}  # fmt: skip
    assert config["data"]["image_size"] == 128 and config["data"]["subsets"]["train"] is None
    # Any config takes the ResNet by its class name; the recipe network's settings do not carry
    # over to it, the module's do.
    config = _printed_config(capsys, "--config", str(CONFIGS / "base.yaml"),
                             "--model.net", "ResNet", "--data.image_size", "96")  # fmt: skip
    assert config["model"]["net"] == {"class_path": "lit_celeba.models.nets.ResNet",
                                      "init_args": {"arch": "resnet18"}}  # fmt: skip
    assert config["model"]["compile"] is False
    assert config["model"]["channels_last"] is True  # base.yaml's module setting carries over
    assert config["data"]["image_size"] == 96


@pytest.mark.slow
@pytest.mark.parametrize("name", ["full.yaml", "full_resnet18.yaml"])
def test_full_configs_run_one_batch(
    name: str, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # fast_dev_run writes its checkpoint into the working folder
    cli = cli_main(
        [
            "fit",
            "--config",
            str(CONFIGS / name),
            *tiny_overrides(tiny_root, tmp_path / "logs"),
            "--data.batch_size=8",
            "--trainer.fast_dev_run=1",
        ]
    )
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    # The config's bf16-mixed, or 32-true on a CPU that only emulates bfloat16.
    assert cli.trainer.precision == supported_precision("bf16-mixed", "cpu")
    metrics = cli.trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/acc"} <= set(metrics)
    assert torch.isfinite(metrics["val/loss"])
    size = cli.datamodule.image_size
    assert size == (128 if "resnet" in name else 64)
    # The recipe's network takes the data's size (the ResNet takes any).
    assert cli.model.net.settings.get("image_size", size) == size


@pytest.mark.slow
def test_full_config_rewrites_last_ckpt_every_epoch_even_when_val_acc_drops(
    tiny_root: Path, tmp_path: Path
) -> None:
    """``--ckpt_path last`` must resume from the newest epoch: last.ckpt comes from base.yaml's
    unmonitored checkpoint, not from ``save_last`` on the val/acc one (which, since Lightning 2.6,
    rewrites it only when val/acc improves)."""
    logs = tmp_path / "logs"
    fit = cli_in_process(  # in this process: the checkpoints it writes are the test
        "fit",
        "--config",
        str(CONFIGS / "full.yaml"),
        *tiny_overrides(tiny_root, logs),
        "--data.batch_size=32",
        "--trainer.max_epochs=3",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.callbacks+=tests.metric_callbacks.WorseningValAcc",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr
    checkpoints = logs / "full" / "version_0" / "checkpoints"
    assert [p.name for p in checkpoints.glob("epoch*.ckpt")] == ["epoch00-val_acc0.9000.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2  # the third and last epoch, not the best (first) one
