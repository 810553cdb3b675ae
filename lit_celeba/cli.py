"""The command line: ``python -m lit_celeba {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import signal
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
import yaml
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
from lit_celeba.callbacks.predictions import CSVPredictionWriter
from lit_celeba.callbacks.resume import ExactResume, InterruptNotice
from lit_celeba.callbacks.test_tables import TestTables
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.checkpoints.fixed_settings import restore_data_settings
from lit_celeba.checkpoints.runs import (
    CKPT_KEYWORDS,
    find_last_checkpoint,
    find_matching_run,
    free_config_name,
    latest_checkpoint,
)
from lit_celeba.checkpoints.safe_load import check_checkpoint, check_fits_model, load_checkpoint
from lit_celeba.cli_messages import (
    argument_message,
    check_writable,
    setting_message,
    worker_message,
)
from lit_celeba.config_files import with_base_config
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.errors import (
    AttributeMismatchError,
    CelebAError,
    CheckpointError,
    PhotoError,
    ReportError,
    SettingError,
    UsageError,
)
from lit_celeba.groups import needs_train_groups
from lit_celeba.models import schedules
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.no_logger import free_run_dir, has_no_logger, without_logger_only_callbacks
from lit_celeba.report import main as report_main

# An optimizer given in YAML or with --optimizer replaces the model's default one on purpose.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
# Lightning 2.6 with torch >= 2.10 warns about its own internals on every run; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere oneDNN
    emulates it, at less than half the float32 speed (measured: 129 vs 297 img/s)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def supported_precision(precision: str | int | None, accelerator: str | None) -> str | int | None:
    """The configs ask for ``bf16-mixed``; where the hardware only emulates bfloat16 this picks
    the fastest precision that keeps accuracy instead: ``16-mixed`` on GPUs before Ampere,
    ``32-true`` on CPUs without AVX-512 BF16 or AMX."""
    if precision != "bf16-mixed":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda", None) and torch.cuda.is_available()
    if on_gpu and not torch.cuda.is_bf16_supported(including_emulation=False):
        rank_zero_info("This GPU has no native bfloat16: using precision 16-mixed instead.")
        return "16-mixed"
    if not on_gpu and not native_cpu_bf16():
        rank_zero_info("This CPU has no native bfloat16: using precision 32-true instead.")
        return "32-true"
    return precision


class CelebACLI(LightningCLI):
    checkpoint: dict[str, Any] | None = None  # the --ckpt_path file, loaded and checked
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

    def before_instantiate_classes(self) -> None:
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        if has_no_logger(trainer.get("logger")):
            self._without_logger(trainer)

    def _without_logger(self, trainer: Any) -> None:
        """A run folder of its own, and no callbacks that need a logger (see no_logger.py)."""
        trainer.default_root_dir = str(free_run_dir(trainer.get("default_root_dir")))
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
        trainer.precision = supported_precision(trainer.precision, trainer.accelerator)
        _check_checkpoint_choice(subcommand, config.get("ckpt_path"))
        if config.get("ckpt_path") == "last":
            self._resolve_last_checkpoint(subcommand, config)
        ckpt_path = config.get("ckpt_path")
        # Checked before LightningCLI reads the model's class path from it (next step) and before
        # anything is written: a bad checkpoint leaves the log folder as it was.
        if ckpt_path and ckpt_path not in CKPT_KEYWORDS:
            self.checkpoint = load_checkpoint(ckpt_path)
            self._restore_data_settings(config, ckpt_path, args)
            check_checkpoint(self.checkpoint, ckpt_path, config.get("data", {}).get("target_attr"))

    def _restore_data_settings(self, config: Any, ckpt_path: str, args: ArgsType) -> None:
        """The image size and targets the checkpoint was trained with, over the config's."""
        argv = sys.argv[1:] if args is None else args
        if "data" not in config or not isinstance(argv, list):
            return
        for note in restore_data_settings(config.data, self.checkpoint, ckpt_path, argv):
            print(note, file=sys.stderr)

    def _parse_ckpt_path(self) -> None:
        """The model's hyperparameters from the checkpoint that ``parse_arguments`` loaded and
        checked. Lightning's own version would ``torch.load`` the file a second time."""
        if self.checkpoint is None:
            return  # no file (a keyword such as "best"): nothing to read
        hparams = dict(self.checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object(
            {self.config.subcommand: {"model": hparams}}, self.config
        )

    def _resolve_last_checkpoint(self, subcommand: str, config: Any) -> None:
        """``--ckpt_path last``: for ``fit``, the newest last.ckpt of an earlier run under the
        logger's folder that was started with the same settings; for the other subcommands
        (which write nothing into that run), the newest last.ckpt of any run.

        Lightning itself only looks in the new run's own (empty) checkpoint folder. ``fit`` goes
        on in the same run folder, so checkpoints, best-model tracking and TensorBoard curves
        continue where they stopped; its config is saved next to the first as
        config_resume_N.yaml. A run with other settings is never resumed (nor written into).
        """
        logger = config.trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        save_dir = getattr(init_args, "save_dir", None)
        if save_dir is None or _checkpoint_dirpath_given(config.trainer.get("callbacks")):
            return  # no versioned log folder: Lightning's own resolution applies
        run_root = Path(save_dir).expanduser() / (getattr(init_args, "name", None) or "")
        if subcommand == "fit":
            last = self._matching_last_checkpoint(run_root, config)
            if last is None:
                config.ckpt_path = None
                return
        else:
            last = find_last_checkpoint(run_root)
        if last is None:
            if subcommand != "fit":
                raise CheckpointError(
                    f"--ckpt_path last: no last.ckpt under {run_root}. Train with `fit` first, "
                    "or give the path of a checkpoint."
                )
            print(f"No last.ckpt under {run_root} yet: training from the start.", file=sys.stderr)
            config.ckpt_path = None
            return
        config.ckpt_path = str(last)
        if subcommand == "fit":
            run_dir = last.parent.parent
            init_args.version = run_dir.name
            self.save_config_kwargs["config_filename"] = free_config_name(run_dir)
            # Going on in a run folder that has checkpoints is the point of resuming.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
            print(f"Resuming from {last}", file=sys.stderr)

    def _matching_last_checkpoint(self, run_root: Path, config: Any) -> Path | None:
        """The last.ckpt of the newest run under ``run_root`` with this command's settings; says
        which runs were passed over, and that training starts afresh when none matches."""
        current = yaml.safe_load(self._parser("fit").dump(config, skip_none=False))
        last, skipped = find_matching_run(run_root, current)
        for reason in skipped:
            print(f"Not resuming {reason}.", file=sys.stderr)
        if last is None:
            where = "with these settings " if skipped else ""
            print(
                f"No last.ckpt under {run_root} {where}yet: training from the start.",
                file=sys.stderr,
            )
        return last

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
        if self._get(self.config_init, "trainer", default={}).get("plugins") is None:
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        if self.checkpoint is not None:
            ckpt_path = self.config[self.subcommand].ckpt_path
            check_fits_model(self.model, self.checkpoint, ckpt_path)
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
        if log_dir and self.trainer.loggers:
            lines.append(f"Logs: {log_dir}  (view with: tensorboard --logdir {log_dir})")
        elif log_dir:
            lines.append(f"Run folder (no logger): {log_dir}")
        rank_zero_info("\n".join(lines))

    def after_predict(self) -> None:
        """On the user's photos: the count of unreadable files; exit status 1 if none was read."""
        writer = next(
            (c for c in self.trainer.callbacks if isinstance(c, CSVPredictionWriter)), None
        )
        if writer is None or writer.failures is None or not self.trainer.is_global_zero:
            return
        if writer.failures == 0:
            print(f"All {writer.rows} file(s) were read.")
            return
        print(
            f"{writer.failures} of {writer.rows} files could not be read; "
            f"their rows in {writer.path} give the reason in the error column."
        )
        if writer.failures == writer.rows:
            print("error: none of the files could be read as an image", file=sys.stderr)
            raise SystemExit(1)


def _check_checkpoint_choice(subcommand: str, ckpt_path: str | None) -> None:
    """Refuse evaluating an untrained network, and ``best`` outside the ``fit`` that found it."""
    if ckpt_path is None and subcommand != "fit":
        raise UsageError(
            f"`{subcommand}` needs a trained network: without --ckpt_path it would "
            f"{'write the predictions' if subcommand == 'predict' else 'report the accuracy'} "
            "of a randomly initialised one. Pass --ckpt_path last (the newest run's last "
            "checkpoint) or the path of a checkpoint (logs/<name>/version_N/checkpoints/*.ckpt)."
        )
    if ckpt_path == "best":
        raise CheckpointError(
            "--ckpt_path best only exists inside the `fit` process that tracked the best epoch. "
            "Give that checkpoint's path (the epochNN-val_acc....ckpt file in "
            "logs/<name>/version_N/checkpoints/), or --ckpt_path last."
        )


def _checkpoint_dirpath_given(callbacks: Any) -> bool:
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    return any(
        str(getattr(c, "class_path", "")).endswith("ModelCheckpoint")
        and getattr(c.init_args, "dirpath", None) is not None
        for c in callbacks
    )


# Parse errors raise instead of printing the whole usage: cli_main prints one message.
_PARSER_KWARGS: dict[str, Any] = {"exit_on_error": False} | {
    subcommand: {"exit_on_error": False} for subcommand in ("fit", "validate", "test", "predict")
}


def cli_main(args: ArgsType = None) -> CelebACLI | None:
    """Run the CLI; a bad data set or setting ends with one clear message instead of a traceback.

    SIGTERM stops training at the next batch and exits with 143 (128 + SIGTERM), Ctrl-C with 1;
    either way the last epoch-end checkpoint is intact and ``--ckpt_path last`` resumes from it.
    ``report RUN_DIR`` is handled here, before LightningCLI, whose subcommands are fixed.
    """
    if args is None:
        # In sys.argv, not in args: LightningCLI warns when given both, and DDP's re-launched
        # ranks read sys.argv.
        sys.argv[1:] = with_base_config(sys.argv[1:])
    elif isinstance(args, list):
        args = with_base_config(args)
    argv = sys.argv[1:] if args is None else args
    retain_freed_memory()
    try:
        if isinstance(argv, list) and argv[:1] == ["report"]:
            report_main(argv[1:])
            return None
        if isinstance(argv, list) and argv[:1] == ["compare"]:
            from lit_celeba.compare import main as compare_main  # only this command needs it

            compare_main(argv[1:])
            return None
        return CelebACLI(
            AttributeClassifier,
            CelebADataModule,
            subclass_mode_model=True,
            trainer_defaults={
                "callbacks": [
                    CSVPredictionWriter(), TestTables(), ExactResume(), InterruptNotice()
                ]
            },
            parser_kwargs=_PARSER_KWARGS,
            args=args,
        )
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except CelebAError as err:
        _fail(worker_message(str(err)))
    except SettingError as err:  # one raised outside instantiate_classes, which converts its own
        _fail(setting_message(err))
    except (
        CheckpointError,
        UsageError,
        FileExistsError,
        PhotoError,
        ReportError,
        AttributeMismatchError,
    ) as err:
        _fail(str(err))
    except ArgumentError as err:
        _fail(argument_message(err))


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None
