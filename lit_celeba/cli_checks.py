"""What a Trainer command checks after its arguments are parsed and before anything is built or
written (:meth:`lit_celeba.cli.CelebACLI.parse_arguments`), so that a refused command leaves no
run folder: the setting groups, the precision, the seed, the checkpoint and its settings, the
outputs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import ArgsType

from lit_celeba.checkpoints.load import load
from lit_celeba.checkpoints.runs import CKPT_KEYWORDS, check_checkpoint_choice, resolve_last
from lit_celeba.cli_messages import check_seed
from lit_celeba.output_checks import check_outputs
from lit_celeba.quiet_output import quiet_evaluation
from lit_celeba.setting_groups import check_groups_are_groups
from lit_celeba.speed.precision import check_precision, supported_precision


def checked_command(
    subcommand: str, config: Any, args: ArgsType, as_saved: Callable[[], dict[str, Any]]
) -> tuple[Path | None, dict[str, Any] | None]:
    """Checks the command's ``config`` (made what it runs: the precision chosen, no logger for
    predict's own output file); returns the run folder that ``fit --ckpt_path last`` goes on in
    (None: a new one) and the ``--ckpt_path`` file, loaded and checked (None: none given).
    ``as_saved`` gives the config as the run folder keeps it, to compare with the saved ones."""
    check_groups_are_groups(config.get("data"))
    # Here rather than before instantiation: `--ckpt_path last` compares this config with
    # the saved ones, which hold the precision that ran.
    trainer = config.trainer
    trainer.precision = supported_precision(
        trainer.precision, trainer.accelerator, say=subcommand == "fit"
    )
    check_precision(subcommand, trainer.precision, config.model.get("optimizer"))
    check_seed(config.get("seed_everything"))
    check_checkpoint_choice(subcommand, config.get("ckpt_path"))
    run_dir = None
    if config.get("ckpt_path") == "last":  # made the file it names (None: fit starts a new run)
        run_dir = resolve_last(subcommand, config, as_saved)
    quiet_evaluation(subcommand)
    check_outputs(subcommand, config)
    ckpt_path, checkpoint = config.get("ckpt_path"), None
    # Checked before LightningCLI reads the model's class path from it and before anything is
    # written: a bad checkpoint leaves the log folder as it was. The data settings the
    # checkpoint fixes replace the config's, unless typed otherwise.
    if ckpt_path and ckpt_path not in CKPT_KEYWORDS:
        argv = sys.argv[1:] if args is None else args
        typed = argv if isinstance(argv, list) else []
        checkpoint = load(ckpt_path, config.get("data"), typed, config.get("model"), subcommand)
    if subcommand == "predict" and config.prediction.output:
        trainer.logger = False  # the CSV goes where it says, and no run folder is made
    return run_dir, checkpoint
