"""The command line: ``python -m lit_celeba {fit,validate,test,predict,calibrate} --config FILE``,
and ``compare``, ``report`` and ``export`` (:mod:`lit_celeba.commands`) under the same program.

``configs/base.yaml`` is every Trainer command's default config (jsonargparse's
``default_config_files``): ``--config configs/demo.yaml`` is base.yaml and then the delta, several
``--config`` deltas stack on it in order, and a complete config of one's own overrides all of it.
"""

from __future__ import annotations

import glob
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lit_celeba.attributes import attribute_list, count_attributes
from lit_celeba.base import processes
from lit_celeba.base.allocator import retain_freed_memory
from lit_celeba.base.errors import CelebAError, UsageError
from lit_celeba.base.lightning_internals import subcommands_action
from lit_celeba.callbacks.maps import PredictionMaps
from lit_celeba.callbacks.predictions import PredictionWriter
from lit_celeba.callbacks.resume import ExactResume, InterruptNotice
from lit_celeba.callbacks.test_tables import TestTables
from lit_celeba.checkpoints.run_folders import RunStarted, claim_run_folder
from lit_celeba.checkpoints.runs import free_config_name
from lit_celeba.cli_checkpoint import CheckpointSettings
from lit_celeba.cli_checks import checked_command
from lit_celeba.cli_endings import CommandEndings
from lit_celeba.cli_failures import ending_in_one_line
from lit_celeba.cli_messages import check_writable, group_given_a_file, setting_message
from lit_celeba.cli_outputs import RunOutputs
from lit_celeba.commands import COMMANDS, PROG
from lit_celeba.commands import run as run_command
from lit_celeba.commands.calibrate import CelebATrainer
from lit_celeba.commands.help import list_in_help
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.methods.groups import check_group_objective
from lit_celeba.models.module import AttributeClassifier

# Lightning 2.6 with torch >= 2.10 warns about its own internals on every run; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")

BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"
TRAINER_COMMANDS = ("fit", "validate", "test", "predict", "calibrate")


class CelebACLI(CheckpointSettings, RunOutputs, CommandEndings, LightningCLI):
    """LightningCLI with the checks, messages and outputs of lit_celeba; the mixins hold what a
    command does with its checkpoint (:mod:`.cli_checkpoint`) and what it writes and shows
    (:mod:`.cli_outputs`)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's, and ``calibrate`` (:class:`~lit_celeba.commands.calibrate.CelebATrainer`),
        which the CLI gives the model and data module as it gives ``validate``."""
        return {**LightningCLI.subcommands(), "calibrate": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # predict's output settings (--prediction.*) belong to the writer, not the data module;
        # LightningCLI adds it to the trainer's callbacks. Every command has it; predict writes.
        parser.add_lightning_class_args(PredictionWriter, "prediction")
        parser.set_defaults({"model.net": {"class_path": "lit_celeba.models.nets.RecipeCNN"}})
        # The network's input size is the data's image size; one setting, not two to keep equal
        # (a network without an image_size, the ResNet, takes any: jsonargparse skips the link).
        parser.link_arguments("data.image_size", "model.net.init_args.image_size")
        # One output per target attribute, named; and the subgroups the model reports need their
        # columns in the evaluation batches.
        parser.link_arguments("data.target_attr", "model.target_attrs", compute_fn=attribute_list)
        parser.link_arguments(
            "data.target_attr", "model.net.init_args.num_outputs", compute_fn=count_attributes
        )
        parser.link_arguments("model.subgroups", "data.subgroups")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """LightningCLI's, and the commands of :mod:`lit_celeba.commands`, so that ``--help``
        lists every command. Those have parsers of their own: cli_main runs them before this."""
        super()._add_subcommands(parser, **kwargs)
        list_in_help(subcommands_action(parser))

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit":  # only fit weighs by group: test and predict need none
            config = self.config.fit
            check_group_objective(config.model, config.get("data") or {})
        super().before_instantiate_classes()

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        try:
            super().parse_arguments(parser, args)
        except UnicodeDecodeError:  # a group's one value is read as a config file: a photo?
            said = group_given_a_file(list(args or sys.argv[1:]))
            if said is None:
                raise
            raise UsageError(said) from None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        run_dir, self.checkpoint = checked_command(subcommand, config, args, self._as_saved)
        if run_dir is not None:  # fit goes on there: its config is saved beside the first
            self.save_config_kwargs["config_filename"] = free_config_name(run_dir)
        claim_run_folder(subcommand, config, run_dir)  # last: nothing is written if a check fails

    def _as_saved(self) -> dict[str, Any]:
        """The command's config as LightningCLI saves it into the run folder (config.yaml), with
        the public parser's dump, as Lightning's own ``_dump_config`` does."""
        saved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        return saved[self.config.subcommand]

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except CelebAError:
            raise
        except (ValueError, MisconfigurationException) as err:
            raise UsageError(setting_message(err)) from err

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        for logger in self.trainer.loggers:
            if logger.save_dir is not None:
                check_writable(logger.save_dir, "trainer.logger.init_args.save_dir")


# Parse errors raise instead of printing the whole usage: cli_main prints one message. No
# abbreviations: an old --model.channels would otherwise set model.channels_last. The default
# config is a glob pattern to jsonargparse: escaped, for a checkout under a path with [.
_EVERY_PARSER = {"exit_on_error": False, "allow_abbrev": False}
_PARSER_KWARGS: dict[str, Any] = {
    "prog": PROG,
    "description": "Train, test and serve a CelebA face-attribute CNN with PyTorch Lightning.",
    **_EVERY_PARSER,
} | {
    subcommand: {**_EVERY_PARSER, "default_config_files": [glob.escape(str(BASE_CONFIG))]}
    for subcommand in TRAINER_COMMANDS
}


def cli_main(args: ArgsType = None) -> CelebACLI | None:
    """Run the CLI; a bad data set or setting ends with one clear message instead of a traceback
    (:func:`~lit_celeba.cli_failures.ending_in_one_line`, which also says how SIGTERM and Ctrl-C
    end a run). ``compare``, ``report`` and ``export`` run here, before LightningCLI, whose
    subcommands run the Trainer.
    """
    argv = sys.argv[1:] if args is None else args
    processes.die_with_starter()  # a command that compare started ends with it
    retain_freed_memory()
    with ending_in_one_line(argv) as outcome:
        if isinstance(argv, list) and argv[:1] and argv[0] in COMMANDS:
            status = run_command(argv[0], argv[1:])
            if status:
                raise SystemExit(status)
            return None
        cli = CelebACLI(
            AttributeClassifier,
            CelebADataModule,
            trainer_defaults={
                "callbacks": [
                    PredictionMaps(), TestTables(), ExactResume(), InterruptNotice(),
                    RunStarted(),
                ]
            },
            trainer_class=CelebATrainer,
            parser_kwargs=_PARSER_KWARGS,
            auto_configure_optimizers=False,  # the model's own --model.optimizer and scheduler
            args=args,
        )
        outcome.done = True
        return cli
