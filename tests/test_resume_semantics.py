"""What a checkpoint means to each command: ``--ckpt_path last`` resumes this run and no other,
the newest epoch is on disk whatever the validation cadence, evaluation needs a trained network,
and the settings a checkpoint fixes (image size, targets) come from it.

Issue 13, cases 2, 3, 4, 5, 13 and 18; docs/bad_input.md and docs/resume.md point here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lit_celeba.checkpoints.legacy import upgrade_saved_config
from lit_celeba.checkpoints.runs import changed_settings, find_matching_run
from lit_celeba.cli import cli_main
from tests.conftest import (
    BASE,
    CONFIGS,
    SMALL,
    cli_in_process,
    last_ckpt,
    private_copy,
    run_expecting_error,
    tiny_overrides,
    tree_digest,
)
from tests.conftest import SHORTER as SHORT  # the name these tests use

ONE_EPOCH = [*SMALL, *SHORT, "--trainer.max_epochs=1"]








@pytest.fixture(scope="module")
def finished_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs of one finished one-epoch ``fit`` (small network at 32 px, flatten pooling, target
    Young) in logs/base/version_0."""
    logs = tmp_path_factory.mktemp("finished") / "logs"
    cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *ONE_EPOCH]
        + ["--model.net.pooling=flatten", "--data.target_attr=Young"]
    )
    assert last_ckpt(logs).is_file()
    return logs


@pytest.fixture
def logs(finished_run: Path, tmp_path: Path) -> Path:
    return private_copy(finished_run, tmp_path)


FINISHED_RUN_FLAGS = [*ONE_EPOCH, "--model.net.pooling=flatten", "--data.target_attr=Young"]


# ---------------------------------------------------------------------------------------------
# 2. `fit --ckpt_path last` resumes this run: the newest run with the same settings.


def test_fit_last_never_resumes_a_run_with_other_settings(tiny_root: Path, logs: Path) -> None:
    before = tree_digest(logs / "base" / "version_0")
    # Another recipe (another learning rate), started with --ckpt_path last as a job script does.
    fit = cli_in_process(
        "fit",
        "--config",
        BASE,
        *tiny_overrides(tiny_root, logs),
        *FINISHED_RUN_FLAGS,
        "--model.optimizer.init_args.lr=0.01",
        "--ckpt_path=last",
        cwd=logs.parent,
    )
    assert fit.returncode == 0, fit.stderr
    assert "Not resuming" in fit.stderr and "version_0: other settings" in fit.stderr
    assert "model.optimizer.init_args.lr: 0.001 -> 0.01" in fit.stderr
    assert "training from the start" in fit.stderr
    assert tree_digest(logs / "base" / "version_0") == before  # the earlier run untouched
    fresh = yaml.safe_load((logs / "base" / "version_1" / "config.yaml").read_text())
    assert fresh["ckpt_path"] is None and fresh["model"]["optimizer"]["init_args"]["lr"] == 0.01
    assert last_ckpt(logs, 1).is_file()


def test_a_longer_fit_names_the_checkpoint_that_trains_the_run_on(
    logs: Path, tiny_root: Path
) -> None:
    """A run that differs only in how long it trains is not resumed (a resumed run equals an
    uninterrupted one); the message names the checkpoint that trains its weights on, and that
    command does, into a new run folder."""
    saved = yaml.safe_load((logs / "base" / "version_0" / "config.yaml").read_text())
    longer = copy.deepcopy(saved)
    longer["trainer"]["max_epochs"] = 2
    last, skipped = find_matching_run(logs / "base", longer)
    assert last is None
    assert skipped == [f"{logs / 'base' / 'version_0'}: other settings (trainer.max_epochs: 1 -> "
                       f"2); to train that run's weights on for longer, give its checkpoint "
                       f"itself: --ckpt_path {last_ckpt(logs, 0)}"]  # fmt: skip
    other = copy.deepcopy(longer)
    other["seed_everything"] = 7  # not only the length: no such line
    assert "train that run's weights on" not in find_matching_run(logs / "base", other)[1][0]

    flags = [*tiny_overrides(tiny_root, logs), *FINISHED_RUN_FLAGS, "--trainer.max_epochs=2"]
    cli_main(["fit", "--config", BASE, *flags, f"--ckpt_path={last_ckpt(logs, 0)}"])
    before = torch.load(last_ckpt(logs, 0), map_location="cpu", weights_only=True)
    after = torch.load(last_ckpt(logs, 1), map_location="cpu", weights_only=True)
    assert (before["epoch"], after["epoch"]) == (0, 1)
    assert after["global_step"] == 2 * before["global_step"]


def test_fit_last_resumes_the_newest_run_with_the_same_settings(
    tiny_root: Path, logs: Path, capsys
) -> None:
    flags = [*tiny_overrides(tiny_root, logs), *FINISHED_RUN_FLAGS]
    # A newer run with another seed: the newest last.ckpt, but not this command's run.
    cli_main(["fit", "--config", BASE, *flags, "--seed_everything=7"])
    assert last_ckpt(logs, 1).is_file()
    capsys.readouterr()
    cli = cli_main(["fit", "--config", BASE, *flags, "--ckpt_path=last"])
    err = capsys.readouterr().err
    assert cli.config["fit"]["ckpt_path"] == str(last_ckpt(logs, 0)), err
    assert "version_1: other settings (seed_everything: 7 -> 1)" in err
    assert f"Resuming from {last_ckpt(logs, 0)}" in err
    assert (logs / "base" / "version_0" / "config_resume_1.yaml").is_file()
    assert not (logs / "base" / "version_1" / "config_resume_1.yaml").exists()
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0", "version_1"]


def test_settings_that_cannot_change_results_do_not_block_resuming(
    tiny_root: Path, logs: Path, capsys
) -> None:
    cli = cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *FINISHED_RUN_FLAGS]
        + ["--trainer.enable_model_summary=false", "--ckpt_path=last"]
    )
    assert cli.config["fit"]["ckpt_path"] == str(last_ckpt(logs, 0))


def _as_before_issue_33(config: dict[str, Any], **net_changes: Any) -> dict[str, Any]:
    """A run's config.yaml as it was saved before issue 33's moves: data.predict_output/
    overwrite/maps, predict_split, device_resident and train_subgroups, predict_path, align and
    min_face_size, the subsets, the colour changes and the demo set as flat keys, no prediction
    section, the model as RecipeClassifier with the network's arguments beside its own, and the
    optimizer and scheduler as LightningCLI's top-level optimizer and lr_scheduler."""
    config = {**config, "data": dict(config["data"]), "model": dict(config["model"])}
    config.pop("prediction")
    config["optimizer"] = config["model"].pop("optimizer")
    config["lr_scheduler"] = config["model"].pop("scheduler")
    config["data"] |= {"predict_output": None, "predict_overwrite": False, "predict_maps": False,
                       "predict_split": "test", "device_resident": None,
                       "train_subgroups": False, **config["data"].pop("colour")}  # fmt: skip
    subsets = config["data"].pop("subsets")
    config["data"] |= {"train_size": subsets["train"], "val_size": subsets["val"],
                       "test_size": subsets["test"], "subset_order": subsets["order"]}  # fmt: skip
    photos = config["data"].pop("predict")
    config["data"] |= {"predict_path": photos["path"], "align": photos["align"],
                       "min_face_size": photos["min_face_size"]}  # fmt: skip
    demo = config["data"].pop("synthetic")
    config["data"] |= {"synthetic": demo is not None, "synthetic_seed": (demo or {}).get("seed", 0),
                       "synthetic_correlate": (demo or {}).get("correlate")}  # fmt: skip
    net = config["model"].pop("net")
    assert net["class_path"] == "lit_celeba.models.nets.RecipeCNN"
    net_args = {k: v for k, v in net["init_args"].items() if k != "in_channels"} | net_changes
    config["model"] = {"class_path": "lit_celeba.models.module.RecipeClassifier",
                       "init_args": {**net_args, **config["model"]}}  # fmt: skip
    return config


def test_a_run_saved_before_issue_33s_moves_still_resumes(tiny_root: Path, logs: Path) -> None:
    """None of the old keys changed what fit computes, and the old model section says what
    today's does: the run goes on. The same old section with another dropout is another run."""
    saved = logs / "base" / "version_0" / "config.yaml"
    today = yaml.safe_load(saved.read_text())
    assert changed_settings(upgrade_saved_config(_as_before_issue_33(today)), today) == []
    other = upgrade_saved_config(_as_before_issue_33(today, dropout=0.1))
    assert changed_settings(other, today) == ["model.net.init_args.dropout: 0.1 -> 0.5"]
    demo = upgrade_saved_config(_as_before_issue_33({**today, "data": {
        **today["data"], "synthetic": {"seed": 2, "correlate": None}}}))  # fmt: skip
    assert changed_settings(demo, today) == ["data.synthetic.seed: 2 -> None"]  # a demo run
    photos = _as_before_issue_33(today)
    photos["data"] |= {"predict_path": "my_photos/", "align": "never"}  # predict's only
    assert upgrade_saved_config(photos)["data"]["predict"]["align"] == "never"
    assert changed_settings(upgrade_saved_config(photos), today) == []
    fewer = _as_before_issue_33(today)
    fewer["data"]["train_size"] = 8
    assert changed_settings(upgrade_saved_config(fewer), today) == [
        f"data.subsets.train: 8 -> {today['data']['subsets']['train']}"
    ]
    slower = _as_before_issue_33(copy.deepcopy(today))
    slower["optimizer"]["init_args"]["lr"] = 1e-4
    assert changed_settings(upgrade_saved_config(slower), today) == [
        "model.optimizer.init_args.lr: 0.0001 -> 0.001"
    ]
    saved.write_text(yaml.safe_dump(_as_before_issue_33(today)))
    cli = cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *FINISHED_RUN_FLAGS]
        + ["--ckpt_path=last"]
    )
    assert cli.config["fit"]["ckpt_path"] == str(last_ckpt(logs, 0))


@pytest.mark.parametrize("group_balanced", [False, True])
def test_a_run_saved_with_group_balanced_resumes_only_with_that_sampler(
    tiny_root: Path, logs: Path, capsys, group_balanced: bool
) -> None:
    """Issue 33 made data.group_balanced data.sampler; unlike the other old keys it changes what
    fit computes, so a saved group_balanced true must not resume as sampler random."""
    saved = logs / "base" / "version_0" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    config["data"].pop("sampler")
    config["data"]["group_balanced"] = group_balanced
    saved.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    cli = cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *FINISHED_RUN_FLAGS]
        + ["--ckpt_path=last"]
    )
    err = capsys.readouterr().err
    if not group_balanced:
        assert cli.config["fit"]["ckpt_path"] == str(last_ckpt(logs, 0)), err
        return
    assert cli.config["fit"]["ckpt_path"] is None
    assert "version_0: other settings (data.sampler: 'group_balanced' -> 'random')" in err


def test_old_colour_changes_compare_as_the_colour_group() -> None:
    def changes(saved: float, now: float) -> list[str]:
        saved_config = {"data": {"brightness": saved, "contrast": 0.2}}
        return changed_settings(saved_config, {"data": {"colour": {"brightness": now,
                                                                   "contrast": 0.2}}})  # fmt: skip

    assert changes(0.2, 0.2) == changes(0.0, 0.0) == []
    assert changes(0.2, 0.0) == ["data.colour.brightness: 0.2 -> 0.0"]


def test_an_old_group_balanced_compares_as_the_sampler_it_became() -> None:
    def changes(group_balanced: bool, sampler: str) -> list[str]:
        return changed_settings({"data": {"group_balanced": group_balanced}},
                                {"data": {"sampler": sampler}})  # fmt: skip

    assert changes(True, "group_balanced") == changes(False, "random") == []
    assert changes(True, "random") == ["data.sampler: 'group_balanced' -> 'random'"]
    assert changes(False, "group_balanced") == ["data.sampler: 'random' -> 'group_balanced'"]


# ---------------------------------------------------------------------------------------------
# 3. The newest epoch is on disk when fit returns, whatever the validation cadence.


def test_last_checkpoint_holds_the_last_epoch_when_validation_skips_it(
    tiny_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")  # the summary is Lightning's rank_zero_info
    logs = tmp_path / "logs"
    cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL, *SHORT]
        + ["--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=2"]
    )
    checkpoint = torch.load(last_ckpt(logs), weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 6  # 3 epochs of 2 batches
    assert f"Last checkpoint: {last_ckpt(logs)}" in caplog.text


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_configs_save_last_at_every_epoch_end(config: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    callbacks = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
    unmonitored = [
        c["init_args"]
        for c in callbacks
        if c["class_path"].endswith("ModelCheckpoint") and c["init_args"].get("monitor") is None
    ]
    assert unmonitored and all(c.get("save_on_train_epoch_end") is True for c in unmonitored)


# ---------------------------------------------------------------------------------------------
# 4. No evaluation of an untrained network.


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_evaluating_without_a_checkpoint_is_refused(
    subcommand: str, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    logs = tmp_path / "logs"
    message = run_expecting_error(
        [subcommand, "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL], capsys
    )
    assert f"`{subcommand}` needs a trained network" in message
    assert "randomly initialised" in message and "--ckpt_path last" in message
    assert not logs.exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------
# 5. The image size and targets come from the checkpoint.


def test_test_takes_image_size_and_targets_from_the_checkpoint(
    tiny_root: Path, logs: Path, capsys
) -> None:
    # base.yaml says 64 px and Male; the checkpoint was trained at 32 px (flatten) for Young.
    cli = cli_main(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, logs)]
        + [f"--ckpt_path={last_ckpt(logs)}"]
    )
    err = capsys.readouterr().err
    assert "Using data.image_size 32 from" in err and "the config says 64" in err
    assert "Using data.target_attr Young from" in err
    assert cli.datamodule.hparams["image_size"] == 32
    assert cli.datamodule.hparams["target_attr"] == "Young"
    assert cli.model.hparams["net"]["init_args"]["image_size"] == 32
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


def test_an_image_size_on_the_command_line_that_the_checkpoint_disagrees_with(
    tiny_root: Path, logs: Path, capsys
) -> None:
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, logs), "--data.image_size=64"]
        + [f"--ckpt_path={last_ckpt(logs)}"],
        capsys,
    )
    assert "was trained with data.image_size 32, but --data.image_size is 64" in message
    assert "--data.image_size 32" in message


# ---------------------------------------------------------------------------------------------
# 13. `best` outside the fit that found it.


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_ckpt_path_best_in_a_new_process(
    subcommand: str, tiny_root: Path, logs: Path, capsys
) -> None:
    message = run_expecting_error(
        [subcommand, "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL]
        + ["--ckpt_path=best"],
        capsys,
    )
    assert "--ckpt_path best only exists inside the `fit` process" in message
    assert "--ckpt_path last" in message
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]


# ---------------------------------------------------------------------------------------------
# 18. ReduceLROnPlateau.


NEEDS_MONITOR = (
    "Invalid setting: model.scheduler is a ReduceLROnPlateau, which needs the metric it watches: "
    "use --model.scheduler pytorch_lightning.cli.ReduceLROnPlateau --model.scheduler.monitor "
    "val/loss"
)
TWO_CLASSES = (
    "Invalid setting: model.scheduler ReduceLROnPlateau names two classes, torch's and "
    "Lightning's; use --model.scheduler pytorch_lightning.cli.ReduceLROnPlateau, which takes the "
    "metric it watches: --model.scheduler.monitor val/loss"
)


@pytest.mark.parametrize(
    "scheduler, expected",
    [(["ReduceLROnPlateau"], TWO_CLASSES),
     (["ReduceLROnPlateau", "--model.scheduler.monitor=val/loss"], TWO_CLASSES),
     (["pytorch_lightning.cli.ReduceLROnPlateau"], NEEDS_MONITOR),
     (["torch.optim.lr_scheduler.ReduceLROnPlateau", "--model.scheduler.patience=1"],
      NEEDS_MONITOR),
     (["torch.optim.lr_scheduler.ReduceLROnPlateau", "--model.scheduler.monitor=val/loss"],
      NEEDS_MONITOR)],
    ids=["short-name", "short-name-with-monitor", "lightnings-without-monitor", "torchs-own",
         "torchs-own-given-a-monitor"],
)  # fmt: skip
def test_reduce_lr_on_plateau_without_a_monitor(
    tiny_root: Path, tmp_path: Path, capsys, scheduler: list[str], expected: str
) -> None:
    """The short name is two classes to jsonargparse (torch's and Lightning's, which takes the
    monitor); Lightning's needs a monitor, and torch's own has none to give."""
    message = run_expecting_error(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"), *ONE_EPOCH]
        + [f"--model.scheduler={scheduler[0]}", *scheduler[1:]],
        capsys,
    )
    assert expected in message
    assert "Unknown" not in message


def test_reduce_lr_on_plateau_steps_at_the_epochs_that_validate(
    tiny_root: Path, tmp_path: Path
) -> None:
    cli = cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"), *SMALL, *SHORT]
        + ["--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=2"]
        + ["--model.scheduler=pytorch_lightning.cli.ReduceLROnPlateau"]
        + ["--model.scheduler.monitor=val/loss"]
    )
    (config,) = cli.trainer.lr_scheduler_configs
    assert config.frequency == 2 and config.monitor == "val/loss"
    assert cli.trainer.current_epoch == 3  # all three epochs ran
