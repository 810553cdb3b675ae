"""The command line: ``python -m lit_celeba {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import signal
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, NoReturn

import torch
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from lit_celeba.allocator import retain_freed_memory
from lit_celeba.attributes import attribute_list
from lit_celeba.callbacks.predictions import CSVPredictionWriter
from lit_celeba.callbacks.resume import ExactResume, InterruptNotice
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.checkpoints.runs import (
    CKPT_KEYWORDS,
    find_last_checkpoint,
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
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.errors import (
    AttributeMismatchError,
    CelebAError,
    CheckpointError,
    PhotoError,
    ReportError,
    UsageError,
)
from lit_celeba.models import schedules
from lit_celeba.models.module import AttributeClassifier
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
    # Per-batch schedules (lit_celeba.models.schedules) are stepped per batch, others per epoch.
    configure_optimizers = staticmethod(schedules.configure_optimizers)

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

    def before_instantiate_classes(self) -> None:
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        trainer.precision = supported_precision(trainer.precision, trainer.accelerator)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if config.get("ckpt_path") == "last":
            self._resolve_last_checkpoint(subcommand, config)
        ckpt_path = config.get("ckpt_path")
        # Checked before LightningCLI reads the model's class path from it (next step) and before
        # anything is written: a bad checkpoint leaves the log folder as it was.
        if ckpt_path and ckpt_path not in CKPT_KEYWORDS:
            self.checkpoint = load_checkpoint(ckpt_path)
            check_checkpoint(self.checkpoint, ckpt_path, config.get("data", {}).get("target_attr"))

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
        """``--ckpt_path last``: the newest last.ckpt of any earlier run under the logger's folder.

        Lightning itself only looks in the new run's own (empty) checkpoint folder. ``fit`` goes
        on in the same run folder, so checkpoints, best-model tracking and TensorBoard curves
        continue where they stopped; its config is saved next to the first as
        config_resume_N.yaml.
        """
        logger = config.trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        save_dir = getattr(init_args, "save_dir", None)
        if save_dir is None or _checkpoint_dirpath_given(config.trainer.get("callbacks")):
            return  # no versioned log folder: Lightning's own resolution applies
        run_root = Path(save_dir).expanduser() / (getattr(init_args, "name", None) or "")
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
            score = f" (val/acc {float(best):.4f})" if best is not None else ""
            lines.append(f"Best checkpoint: {checkpoint.best_model_path}{score}")
        last = latest_checkpoint(self.trainer)
        if last:
            lines.append(f"Last checkpoint: {last}")
        if log_dir:
            lines.append(f"Logs: {log_dir}  (view with: tensorboard --logdir {log_dir})")
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
                "callbacks": [CSVPredictionWriter(), ExactResume(), InterruptNotice()]
            },
            parser_kwargs=_PARSER_KWARGS,
            args=args,
        )
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except CelebAError as err:
        _fail(worker_message(str(err)))
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
