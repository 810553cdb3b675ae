"""The command line end to end: every config prints, and fit -> test -> predict in new processes."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import pytorch_lightning
import torch
import yaml

from lit_celeba.cli import cli_main
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.models.module import AttributeClassifier
from tests.conftest import CONFIGS, TINY_SIZES, cli_in_process, run_cli, tiny_overrides

CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIG_FILES}
    assert {"base.yaml", "demo.yaml"} <= names


# The configs whose best checkpoint is chosen by another monitor than val/acc, and how.
BEST_CHECKPOINT = {
    "blond_hair.yaml": ("val/worst_group_acc", "epoch{epoch:02d}-worst{val/worst_group_acc:.4f}")
}
# What each delta of base.yaml intends, as keys of the resolved config.
INTENDED = {
    "blond_hair.yaml": {
        "data.target_attr": "Blond_Hair",
        "model.subgroups": ["Male"],
        "model.objective": "group_dro",
    },
    "base.yaml": {
        "trainer.max_epochs": 30, "data.root": "data/celeba", "data.subsets.train": 16000,
    },
    "tuned.yaml": {
        "model.net.init_args.dropout": 0.0, "model.net.init_args.batch_norm": True,
        "model.tta_flip": True,
        "model.scheduler.class_path": "lit_celeba.models.schedules.WarmupCosineLR",
        "data.colour.brightness": 0.2, "data.colour.contrast": 0.2,
        "data.colour.saturation": 0.2,
    },
    "demo.yaml": {
        "trainer.accelerator": "cpu", "trainer.max_epochs": 4, "trainer.log_every_n_steps": 20,
        "data.root": "data/demo", "data.synthetic.seed": 0, "data.subsets.train": 3000,
        "data.subsets.val": 500, "data.subsets.test": 500, "model.net.init_args.batch_norm": True,
        "model.net.init_args.dropout": 0.0,
    },
    "full.yaml": {
        "trainer.max_epochs": 10, "data.subsets.train": None, "data.subsets.val": None,
        "data.subsets.test": None, "data.batch_size": 256, "data.num_workers": 4,
    },
    "full_resnet18.yaml": {
        "trainer.max_epochs": 10, "model.net.class_path": "lit_celeba.models.nets.ResNet",
        "model.net.init_args.arch": "resnet18", "model.channels_last": True,
        "data.image_size": 128, "data.batch_size": 256, "data.subsets.train": None,
    },
    "all_attributes.yaml": {
        "trainer.max_epochs": 30, "model.subgroups": ["Male", "Young"],
        "data.subsets.train": 16000, "data.num_workers": 0, "data.target_attr": "all",
    },
    "all_attributes_tuned.yaml": {
        "data.target_attr": "all", "model.thresholds": "balanced_accuracy",
        "model.net.init_args.batch_norm": True, "model.tta_flip": True,
        "model.subgroups": ["Male", "Young"],
    },
    "fast.yaml": {
        "data.batch_size": 512, "model.optimizer.init_args.lr": 0.008,
        "model.optimizer.init_args.fused": True, "trainer.max_epochs": 30,
        "model.scheduler.class_path": "lit_celeba.models.schedules.WarmupCosineLR",
        "model.net.init_args.batch_norm": True, "model.net.init_args.dropout": 0.0,
    },
}  # fmt: skip


def _printed(capsys: pytest.CaptureFixture, *configs: Path) -> dict:
    flags = [arg for config in configs for arg in ("--config", str(config))]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *flags, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _key(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("config", CONFIG_FILES, ids=lambda p: p.name)
def test_print_config(config: Path, capsys: pytest.CaptureFixture) -> None:
    """Every config resolves to base.yaml's recipe (the two checkpoints, the dashboards, the lr
    monitor, the HParams tab's own metrics) under its own logger name, plus what it intends."""
    printed = _printed(capsys, config)
    assert printed["model"]["net"]["class_path"].startswith("lit_celeba.models.nets.")
    assert printed["data"]["target_attr"]
    logger = printed["trainer"]["logger"]
    assert logger["class_path"] == "pytorch_lightning.loggers.TensorBoardLogger"
    assert logger["init_args"]["name"] == config.stem and logger["init_args"]["save_dir"] == "logs"
    assert logger["init_args"]["default_hp_metric"] is False
    callbacks = printed["trainer"]["callbacks"]
    checkpoints = [c["init_args"] for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    best = BEST_CHECKPOINT.get(config.name, ("val/acc", "epoch{epoch:02d}-val_acc{val/acc:.4f}"))
    assert [(c["monitor"], c["filename"]) for c in checkpoints] == [best, (None, "last")]
    # save_last on the monitored one would only rewrite last.ckpt when val/acc improves.
    assert all(not c["save_last"] for c in checkpoints)
    assert {c["class_path"] for c in callbacks} >= {
        "lit_celeba.callbacks.lr_monitor.LearningRateMonitor",
        "lit_celeba.callbacks.dashboards.TensorBoardDashboards",
    }
    assert printed["trainer"]["precision"] == "bf16-mixed"
    for key, value in INTENDED[config.name].items():
        assert _key(printed, key) == value, key


@pytest.mark.parametrize(
    "delta", [p for p in CONFIG_FILES if p.name != "base.yaml"], ids=lambda p: p.name
)
def test_a_delta_alone_means_base_then_the_delta(delta: Path, capsys) -> None:
    assert _printed(capsys, delta) == _printed(capsys, CONFIGS / "base.yaml", delta)


def test_a_delta_changes_one_colour_change_and_keeps_the_others(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """data.colour is a group (a dataclass), not a mapping: a later config file or option sets
    its keys one by one (a mapping would be replaced whole, dropping tuned.yaml's others)."""
    delta = tmp_path / "more_contrast.yaml"
    delta.write_text("data:\n  colour:\n    contrast: 0.5\n")
    printed = _printed(capsys, CONFIGS / "tuned.yaml", delta)
    assert printed["data"]["colour"] == {"brightness": 0.2, "contrast": 0.5, "saturation": 0.2}
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "tuned.yaml"), "--data.colour.saturation=0",
                  "--print_config"])  # fmt: skip
    colour = yaml.safe_load(capsys.readouterr().out)["data"]["colour"]
    assert colour == {"brightness": 0.2, "contrast": 0.2, "saturation": 0.0}


def test_deltas_stack_on_one_base(capsys: pytest.CaptureFixture) -> None:
    printed = _printed(capsys, CONFIGS / "all_attributes.yaml", CONFIGS / "demo.yaml")
    assert printed["data"]["target_attr"] == "all"  # all_attributes' 40 survive demo
    assert printed["data"]["root"] == "data/demo" and printed["trainer"]["max_epochs"] == 4
    assert printed["trainer"]["logger"]["init_args"]["name"] == "demo"


def test_base_config_is_the_recipe(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "base.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    data, optimizer = config["data"], config["model"]["optimizer"]
    model = config["model"]["net"]["init_args"]
    assert data["subsets"] == {"train": 16000, "val": 1000, "test": None, "order": "tfds"}
    assert (data["image_size"], data["batch_size"], data["target_attr"]) == (64, 32, "Male")
    assert config["trainer"]["max_epochs"] == 30
    assert model["channels"] == [32, 64, 128, 256] and model["dropout"] == 0.5
    assert model["pooling"] == "gap" and model["init"] == "keras"
    assert optimizer["class_path"] == "torch.optim.Adam"
    assert optimizer["init_args"]["lr"] == 0.001 and optimizer["init_args"]["eps"] == 1e-7
    best, last = (c["init_args"] for c in config["trainer"]["callbacks"][:2])
    assert best["monitor"] == "val/acc" and best["mode"] == "max"
    # last.ckpt comes from a checkpoint without a monitor, so it is rewritten at every epoch end.
    assert last["monitor"] is None and last["filename"] == "last"


def _metric(stdout: str, name: str) -> float:
    match = re.search(rf"{re.escape(name)}\s+([0-9.]+)", stdout)
    assert match, f"{name} not printed:\n{stdout}"
    return float(match.group(1))


def _independent_test_accuracy(ckpt: Path, root: Path) -> tuple[float, list[float]]:
    model = AttributeClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    # The temperature fitted after training, read from the file itself rather than through the
    # module, so that a module that forgot to apply it fails the comparison below.
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)["calibration"]
    temperature, threshold = stored["temperature"], stored["threshold"]
    # JPEGs decoded on access, independent of the decoded cache that the CLI run used.
    data = CelebADataModule(
        root=str(root), subsets=Subsets(test=TINY_SIZES["test"]), num_workers=0, cache=False
    )
    data.setup("test")
    probs, correct = [], []
    with torch.no_grad():
        for batch in data.test_dataloader():
            images, targets = data.on_after_batch_transfer(batch, 0)  # the eval transform
            p = torch.sigmoid(model(images) / temperature)
            probs += p.reshape(-1).tolist()
            correct += ((p > threshold).float() == targets).reshape(-1).tolist()
    return sum(correct) / len(correct), probs


@pytest.mark.slow
def test_fit_then_test_then_predict_in_new_processes(tiny_root: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # File order: the independent recount below reads the split in file order.
    flags = [*tiny_overrides(tiny_root, logs), "--data.subsets.order=file"]
    fit = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "base.yaml"),
        *flags,
        "--trainer.max_epochs=2",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr
    run_dir = logs / "base" / "version_0"
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    printed = re.search(r"Validation accuracy \(last epoch\): ([0-9.]+)", fit.stdout + fit.stderr)
    assert printed, fit.stdout + fit.stderr
    assert 0.0 <= float(printed.group(1)) <= 1.0

    best = next(p for p in checkpoints if p.name != "last.ckpt")
    test = run_cli(
        "test", "--config", str(CONFIGS / "base.yaml"), *flags, f"--ckpt_path={best}", cwd=tmp_path
    )
    assert test.returncode == 0, test.stderr
    expected_acc, expected_probs = _independent_test_accuracy(best, tiny_root)
    assert _metric(test.stdout, "test/acc") == pytest.approx(expected_acc, abs=1e-6)
    assert 0.0 < _metric(test.stdout, "test/loss")

    predict = run_cli(
        "predict",
        "--config",
        str(CONFIGS / "base.yaml"),
        *flags,
        f"--ckpt_path={best}",
        cwd=tmp_path,
    )
    assert predict.returncode == 0, predict.stderr
    written = sorted(logs.glob("base/version_*/predictions.csv"))
    assert len(written) == 1
    assert str(written[0]) in predict.stdout + predict.stderr
    with open(written[0]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == TINY_SIZES["test"]
    assert rows[0]["image"] == f"{TINY_SIZES['train'] + TINY_SIZES['valid'] + 1:06d}.jpg"
    probs = [float(r["prob_Male"]) for r in rows]
    assert probs == pytest.approx(expected_probs, abs=1e-5)
    assert all(int(r["pred_Male"]) == int(p > 0.5) for r, p in zip(rows, probs, strict=True))


@pytest.mark.slow
def test_hyperparameters_restored_from_checkpoint_in_new_process(
    tiny_root: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    flags = tiny_overrides(tiny_root, logs) + [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
    ]
    variant = [
        "--model.net.channels=[8, 16, 16, 24]",
        "--model.net.dropout=0.25",
        "--model.net.pooling=flatten",
    ]
    # The fits in this process; the test that restores the settings in a new one (below).
    for _ in range(2):  # the same command twice: two runs side by side, nothing overwritten
        fit = cli_in_process("fit", "--config", str(CONFIGS / "base.yaml"), *flags, *variant,
                             cwd=tmp_path)  # fmt: skip
        assert fit.returncode == 0, fit.stderr
    runs = sorted((logs / "base").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1"]
    assert all(
        (r / "config.yaml").is_file() and (r / "checkpoints" / "last.ckpt").is_file() for r in runs
    )

    # base.yaml says channels [32, 64, 128, 256] and gap; the checkpoint's own settings must win,
    # or its weights would not fit the network.
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    test = run_cli(
        "test",
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(tiny_root, logs),
        f"--ckpt_path={ckpt}",
        cwd=tmp_path,
    )
    assert test.returncode == 0, test.stderr
    saved = yaml.safe_load((logs / "base" / "version_2" / "config.yaml").read_text())
    model = saved["model"]["net"]["init_args"]
    assert model["channels"] == [8, 16, 16, 24]
    assert model["dropout"] == 0.25 and model["pooling"] == "flatten"


def test_missing_data_set_is_one_clear_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                "--config",
                str(CONFIGS / "base.yaml"),
                f"--data.root={tmp_path / 'nowhere'}",
                "--trainer.accelerator=cpu",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "celeba/list_attr_celeba.txt" in err
    assert "mmlab.ie.cuhk.edu.hk" in err and "configs/demo.yaml" in err
    assert "Traceback" not in err


def test_unknown_attribute_lists_valid_names(tiny_root: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                "--config",
                str(CONFIGS / "base.yaml"),
                *tiny_overrides(tiny_root, tmp_path),
                "--data.target_attr=Gender",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Unknown attribute 'Gender'" in err and "Male" in err and "Young" in err


def test_subset_larger_than_split(tiny_root: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                "--config",
                str(CONFIGS / "base.yaml"),
                *tiny_overrides(tiny_root, tmp_path),
                "--data.subsets.train=5000",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Requested 5000 images of the 'train' split (data.subsets.train), but" in err


def test_base_yaml_is_the_default_under_any_config(tmp_path: Path, capsys) -> None:
    """base.yaml is every command's default config: a copy of a delta kept elsewhere works
    alone, no --config at all is base.yaml, and a complete config of one's own overrides it."""
    copy = tmp_path / "my_demo.yaml"
    copy.write_text((CONFIGS / "demo.yaml").read_text())
    assert _printed(capsys, copy) == _printed(capsys, CONFIGS / "demo.yaml")
    assert _printed(capsys) == _printed(capsys, CONFIGS / "base.yaml")
    complete = yaml.safe_load((CONFIGS / "base.yaml").read_text())
    complete["trainer"]["callbacks"] = complete["trainer"]["callbacks"][1:2]  # last.ckpt only
    complete["trainer"]["logger"]["init_args"]["name"] = "mine"
    complete["data"]["image_size"] = 96
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(complete))
    printed = _printed(capsys, tmp_path / "mine.yaml")
    assert [c["init_args"]["filename"] for c in printed["trainer"]["callbacks"]] == ["last"]
    assert printed["trainer"]["logger"]["init_args"]["name"] == "mine"
    assert printed["data"]["image_size"] == 96


def test_help_lists_every_command_under_the_program_name(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m lit_celeba ")
    listed = re.findall(r"^    (\w+)\s", out, flags=re.M)
    assert listed == [
        "fit", "validate", "test", "predict", "calibrate", "compare", "report", "export"
    ]  # fmt: skip


# -- Issue 32: the command line, fourth round ------------------------------------------------


@pytest.mark.parametrize("flag", [["--trainer.logger", "false"], ["--trainer.logger=false"]],
                         ids=["space", "equals"])  # fmt: skip
def test_logger_false_before_a_config_that_sets_the_logger(
    flag: list[str], tmp_path: Path, capsys
) -> None:
    """Item 12: was jsonargparse's "Not a valid subclass of Logger ... Expected a <class
    'bool'>"."""
    from tests.conftest import run_expecting_error

    message = run_expecting_error(
        ["fit", *flag, "--config", str(CONFIGS / "fast.yaml"), "--data.root", str(tmp_path)],
        capsys,
    )
    assert f"--trainer.logger false comes before --config {CONFIGS / 'fast.yaml'}" in message
    assert "Put --trainer.logger false after the --config files." in message
    assert "Expected a <class" not in message


@pytest.mark.parametrize("value", ["ALL", ["all"], "All"], ids=["ALL", "[all]", "All"])
def test_all_attributes_in_any_case_or_as_a_list(value: str | list[str], tiny_root) -> None:
    """Item 13: was "Unknown attribute 'all'" (the data module and the model's link both read
    it with attribute_list)."""
    from lit_celeba.attributes import attribute_list

    assert attribute_list(value) == attribute_list("all") and len(attribute_list(value)) == 40
    data = CelebADataModule(root=str(tiny_root), target_attr=value)
    assert data.target_attrs[20] == "Male" and len(data.target_attrs) == 40


def test_an_unknown_attribute_hints_and_leaves_no_run_folder(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """Item 13: the case-insensitive match and the all keyword named, and no empty version_N
    left behind by a failure found in the Trainer's setup."""
    from tests.conftest import run_expecting_error

    logs = tmp_path / "logs"
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, logs),
         "--data.target_attr=male"], capsys,
    )  # fmt: skip
    assert "Unknown attribute 'male'" in message and "Did you mean Male?" in message
    assert "; or all, for all 40." in message
    assert not logs.exists(), sorted(logs.rglob("*"))


def test_a_failure_after_the_run_started_keeps_its_folder(tiny_root: Path, tmp_path: Path):
    """The other side of the rule: what a run wrote once it started is kept."""
    from lit_celeba.checkpoints import run_folders

    logs = tmp_path / "logs"

    run_folders._STARTED[0] = False
    with pytest.raises(RuntimeError, match="on purpose"):
        cli_main(["fit", "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, logs),
                  "--model.net.channels=[8, 8, 8, 8]", "--trainer.limit_train_batches=1",
                  "--trainer.limit_val_batches=1", "--trainer.max_epochs=1",
                  "--trainer.callbacks+=tests.test_cli.StopAtEpochEnd"])  # fmt: skip
    assert (logs / "base" / "version_0" / "config.yaml").is_file()


class StopAtEpochEnd(pytorch_lightning.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise RuntimeError("stopped on purpose")


def test_fit_prints_nothing_a_user_cannot_act_on(
    tiny_root: Path, tmp_path: Path, capfd, caplog
) -> None:
    """Item 19: no litlogger tip, no v_num in the progress bar, no FLOPs nobody counted; the
    summary and the bar themselves stay."""
    caplog.set_level("INFO")
    flags = [f for f in tiny_overrides(tiny_root, tmp_path / "logs") if "progress_bar" not in f]
    cli_main(["fit", "--config", str(CONFIGS / "base.yaml"), *flags,
              "--model.net.channels=[8, 8, 8, 8]", "--trainer.limit_train_batches=2",
              "--trainer.limit_val_batches=1", "--trainer.max_epochs=1"])  # fmt: skip
    captured = capfd.readouterr()
    said = captured.out + captured.err + caplog.text
    assert "Trainable params" in said and "Epoch 0" in said
    for noise in ("💡 Tip", "litlogger", "v_num", "Total Flops", "FLOPs", "already configured"):
        assert noise not in said, noise


def test_the_help_gives_each_command_a_whole_sentence(capsys) -> None:
    """Item 20: was "It's separated from fit to make sure you never run on your"."""
    from lit_celeba.commands import TRAINER_HELP

    with pytest.raises(SystemExit):
        cli_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for command in ("fit", "validate", "test", "predict", "calibrate"):
        line = TRAINER_HELP[command]
        assert line.endswith(".") and f"{command} {line}" in shown, command
