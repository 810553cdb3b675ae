"""The command line: ``python -m lit_celeba {fit,validate,test,predict,calibrate} --config FILE``,
and ``compare``, ``report`` and ``export`` (:mod:`lit_celeba.commands`) under the same program.

``configs/base.yaml`` is every Trainer command's default config (jsonargparse's
``default_config_files``): ``--config configs/demo.yaml`` is base.yaml and then the delta, several
``--config`` deltas stack on it in order, and a complete config of one's own overrides all of it.
"""

from __future__ import annotations

import glob
import signal
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentParser
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import (
    ArgsType,
    LightningArgumentParser,
    LightningCLI,
    ReduceLROnPlateau,
)
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from lit_celeba.allocator import retain_freed_memory
from lit_celeba.attributes import attribute_list
from lit_celeba.callbacks.maps import PredictionMaps
from lit_celeba.callbacks.predictions import CSVPredictionWriter, check_output, output_file
from lit_celeba.callbacks.resume import ExactResume, InterruptNotice
from lit_celeba.callbacks.test_tables import TestTables
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.checkpoints.load import check_fits_model, load, model_settings
from lit_celeba.checkpoints.runs import (
    CKPT_KEYWORDS,
    check_checkpoint_choice,
    ckpt_path_help,
    claim_run_folder,
    free_config_name,
    latest_checkpoint,
    release_run_folders,
    resolve_last,
)
from lit_celeba.cli_messages import (
    argument_message,
    check_seed,
    check_writable,
    run_folder_line,
    setting_message,
    worker_message,
)
from lit_celeba.commands import COMMANDS, PROG
from lit_celeba.commands import run as run_command
from lit_celeba.commands.calibrate import CelebATrainer
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.errors import CelebAError, LitCelebaError, SettingError, UsageError
from lit_celeba.groups import needs_train_groups
from lit_celeba.lightning_internals import cli_parser, cli_setting, subcommands_action
from lit_celeba.models import schedules
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.no_logger import free_run_dir, has_no_logger, without_logger_only_callbacks
from lit_celeba.precision import check_precision, supported_precision
from lit_celeba.processes import die_with_starter

# An optimizer given in YAML or with --optimizer replaces the model's default one on purpose.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
# Lightning 2.6 with torch >= 2.10 warns about its own internals on every run; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")

BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"
TRAINER_COMMANDS = ("fit", "validate", "test", "predict", "calibrate")


class CelebACLI(LightningCLI):
    checkpoint: dict[str, Any] | None = None  # the --ckpt_path file, loaded and checked

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's, and ``calibrate`` (:class:`~lit_celeba.commands.calibrate.CelebATrainer`),
        which the CLI gives the model and data module as it gives ``validate``."""
        return {**LightningCLI.subcommands(), "calibrate": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": {"class_path": "lit_celeba.models.module.RecipeClassifier"}})
        # The network's input size is the data's image size; one setting, not two to keep equal.
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        # One output per target attribute, named; and the subgroups the model reports need their
        # columns in the evaluation batches.
        parser.link_arguments(
            "data.target_attr", "model.init_args.target_attrs", compute_fn=attribute_list
        )
        parser.link_arguments("model.init_args.subgroups", "data.subgroups")
        # The objectives that weigh the loss by group need each training image's group.
        parser.link_arguments(
            "model.init_args.objective", "data.train_subgroups", compute_fn=needs_train_groups
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """LightningCLI's, and the commands of :mod:`lit_celeba.commands`, so that ``--help``
        lists every command. Those have parsers of their own: cli_main runs them before this."""
        super()._add_subcommands(parser, **kwargs)
        trainer_commands = parser._subcommands_action._name_parser_map.items()  # jsonargparse's
        for name, subparser in trainer_commands:
            for action in subparser._actions:
                if action.dest == "ckpt_path":  # Lightning's help offers best and hpc
                    action.help = ckpt_path_help(name)
        for name, line in COMMANDS.items():
            command = ArgumentParser(prog=f"{PROG} {name}", description=line)
            subcommands_action(parser).add_subcommand(name, command, help=line)

    def before_instantiate_classes(self) -> None:
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        if has_no_logger(trainer.get("logger")):
            self._without_logger(trainer)

    def _without_logger(self, trainer: Any) -> None:
        """A run folder of its own, and no callbacks that need a logger (see no_logger.py)."""
        trainer.default_root_dir = str(free_run_dir(trainer.get("default_root_dir")))
        check_writable(Path(trainer.default_root_dir).parent, "trainer.default_root_dir")
        trainer.callbacks, dropped = without_logger_only_callbacks(trainer.get("callbacks"))
        left_out = f"; left out, as they need one: {', '.join(dropped)}" if dropped else ""
        rank_zero_info(f"No logger: this run's files go to {trainer.default_root_dir}{left_out}.")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        # Here rather than before instantiation: `--ckpt_path last` compares this config with
        # the saved ones, which hold the precision that ran.
        trainer = config.trainer
        trainer.precision = supported_precision(
            trainer.precision, trainer.accelerator, say=subcommand == "fit"
        )
        check_precision(subcommand, trainer.precision, config.get("optimizer"))
        check_seed(config.get("seed_everything"))
        check_checkpoint_choice(subcommand, config.get("ckpt_path"))
        run_dir = None
        if config.get("ckpt_path") == "last":
            run_dir = resolve_last(subcommand, config, lambda: self._as_saved(config))
            if run_dir is not None:  # fit goes on there: its config is saved beside the first
                self.save_config_kwargs["config_filename"] = free_config_name(run_dir)
        if subcommand == "predict":
            data = config.get("data") or {}
            check_output(output_file(data.get("predict_output")), data.get("predict_overwrite"))
        ckpt_path = config.get("ckpt_path")
        # Checked before LightningCLI reads the model's class path from it (next step) and before
        # anything is written: a bad checkpoint leaves the log folder as it was. The data
        # settings the checkpoint fixes replace the config's, unless typed otherwise.
        if ckpt_path and ckpt_path not in CKPT_KEYWORDS:
            argv = sys.argv[1:] if args is None else args
            typed = argv if isinstance(argv, list) else []
            self.checkpoint = load(ckpt_path, config.get("data"), typed)
        claim_run_folder(subcommand, config, run_dir)  # last: nothing is written if a check fails

    def _as_saved(self, config: Any) -> dict[str, Any]:
        """A command's config as LightningCLI saves it into the run folder (config.yaml)."""
        return yaml.safe_load(cli_parser(self, "fit").dump(config, skip_none=False))

    def _parse_ckpt_path(self) -> None:
        """The model's class and arguments from the checkpoint that ``parse_arguments`` loaded
        and checked. Lightning's own version would ``torch.load`` the file a second time."""
        if self.checkpoint is None:
            return  # no file (a keyword such as "best"): nothing to read
        config = self.config[self.config.subcommand]
        model_class, init_args = model_settings(
            self.checkpoint, config.ckpt_path, default=config.model.class_path
        )
        class_path = f"{model_class.__module__}.{model_class.__qualname__}"
        model = {"class_path": class_path, "dict_kwargs": init_args}
        self.config = self.parser.parse_object(
            {self.config.subcommand: {"model": model}}, self.config
        )

    @staticmethod
    def configure_optimizers(
        lightning_module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
    ) -> Any:
        """LightningCLI's, plus: per-batch schedules (:mod:`lit_celeba.models.schedules`) step
        every batch, and a ReduceLROnPlateau that watches a validation metric steps only
        at the epochs that validate. Lightning steps it at every epoch's end and stops with
        "conditioned on metric val/loss which is not available" at the first epoch that skipped
        validation (``check_val_every_n_epoch`` > 1)."""
        configured = schedules.configure_optimizers(lightning_module, optimizer, lr_scheduler)
        every = getattr(lightning_module.trainer, "check_val_every_n_epoch", None)
        if isinstance(lr_scheduler, ReduceLROnPlateau) and isinstance(configured, dict):
            if str(lr_scheduler.monitor).startswith("val/") and every and every > 1:
                # Epoch e (from 0) validates when (e + 1) % every == 0; Lightning steps the
                # scheduler when (e + 1) % frequency == 0.
                configured["lr_scheduler"]["frequency"] = every
        return configured

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except CelebAError:
            raise
        except (ValueError, MisconfigurationException) as err:
            raise UsageError(setting_message(err)) from err

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if cli_setting(self, "trainer").get("plugins") is None:
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        if self.checkpoint is not None:
            check_fits_model(self.model, self.checkpoint, self.config[self.subcommand].ckpt_path)
            self.checkpoint = None  # Lightning loads it again; do not hold two copies
        for logger in self.trainer.loggers:
            if logger.save_dir is not None:
                check_writable(logger.save_dir, "trainer.logger.init_args.save_dir")

    def after_fit(self) -> None:
        # A broadcast under DDP: every rank must take part, or rank 0 waits for the others forever.
        log_dir = self.trainer.log_dir
        checkpoint = self.trainer.checkpoint_callback
        if not isinstance(checkpoint, ModelCheckpoint) or not self.trainer.is_global_zero:
            return
        val_acc = self.trainer.callback_metrics.get("val/acc")
        lines = []
        if val_acc is not None:
            lines.append(f"Validation accuracy (last epoch): {float(val_acc):.4f}")
        if checkpoint.best_model_path:
            best = checkpoint.best_model_score
            score = f" ({checkpoint.monitor} {float(best):.4f})" if best is not None else ""
            lines.append(f"Best checkpoint: {checkpoint.best_model_path}{score}")
        last = latest_checkpoint(self.trainer)
        if last:
            lines.append(f"Last checkpoint: {last}")
        lines.append(run_folder_line(log_dir, bool(self.trainer.loggers)) or "")
        rank_zero_info("\n".join(lines).strip())

    def after_validate(self) -> None:
        line = run_folder_line(self.trainer.log_dir, bool(self.trainer.loggers))  # every rank
        if line and self.trainer.is_global_zero:
            print(line)

    after_test = after_validate

    def after_predict(self) -> None:
        """On the user's photos: the count of unreadable files; exit status 1 if none was read."""
        writer = next(
            (c for c in self.trainer.callbacks if isinstance(c, CSVPredictionWriter)), None
        )
        if writer is None or writer.failures is None or not self.trainer.is_global_zero:
            return
        if writer.failures == 0:
            print(f"All {writer.files} file(s) were read.")
            return
        print(
            f"{writer.failures} of {writer.files} files could not be read; "
            f"their rows in {writer.path} give the reason in the error column."
        )
        if writer.failures == writer.files:
            print("error: none of the files could be read as an image", file=sys.stderr)
            raise SystemExit(1)


# Parse errors raise instead of printing the whole usage: cli_main prints one message. The
# default config is a glob pattern to jsonargparse: escaped, for a checkout under a path with [.
_PARSER_KWARGS: dict[str, Any] = {
    "prog": PROG,
    "description": "Train, test and serve a CelebA face-attribute CNN with PyTorch Lightning.",
    "exit_on_error": False,
} | {
    subcommand: {"exit_on_error": False, "default_config_files": [glob.escape(str(BASE_CONFIG))]}
    for subcommand in TRAINER_COMMANDS
}


def cli_main(args: ArgsType = None) -> CelebACLI | None:
    """Run the CLI; a bad data set or setting ends with one clear message instead of a traceback.

    SIGTERM stops training at the next batch and exits with 143 (128 + SIGTERM), Ctrl-C with 1;
    either way the last epoch-end checkpoint is intact and ``--ckpt_path last`` resumes from it.
    ``compare``, ``report`` and ``export`` run here, before LightningCLI, whose subcommands run
    the Trainer.
    """
    argv = sys.argv[1:] if args is None else args
    die_with_starter()  # a command that compare started ends with it
    retain_freed_memory()
    try:
        if isinstance(argv, list) and argv[:1] and argv[0] in COMMANDS:
            status = run_command(argv[0], argv[1:])
            if status:
                raise SystemExit(status)
            return None
        return CelebACLI(
            AttributeClassifier,
            CelebADataModule,
            subclass_mode_model=True,
            trainer_defaults={
                "callbacks": [
                    CSVPredictionWriter(), PredictionMaps(), TestTables(), ExactResume(),
                    InterruptNotice(),
                ]
            },
            trainer_class=CelebATrainer,
            parser_kwargs=_PARSER_KWARGS,
            args=args,
        )
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except CelebAError as err:
        _fail(worker_message(str(err)))
    except SettingError as err:  # one raised outside instantiate_classes, which converts its own
        _fail(setting_message(err))
    except (LitCelebaError, FileExistsError) as err:
        _fail(str(err))
    except ArgumentError as err:
        _fail(argument_message(err))
    finally:
        release_run_folders()


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None
