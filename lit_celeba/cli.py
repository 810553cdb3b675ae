"""The command line: ``python -m lit_celeba {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import sys
import warnings

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.callbacks import CSVPredictionWriter
from lit_celeba.celeba import CelebAError
from lit_celeba.data import CelebADataModule
from lit_celeba.module import AttributeClassifier

# An optimizer given in YAML or with --optimizer replaces the model's default one on purpose.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
# Lightning 2.6 with torch >= 2.10 warns about its own internals on every run; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def supported_precision(precision: str | int | None, accelerator: str | None) -> str | int | None:
    """``bf16-mixed`` (the configs' choice) where the GPU has bfloat16, else ``16-mixed``: GPUs
    before Ampere only emulate bfloat16, slowly."""
    wants_gpu = accelerator in ("auto", "gpu", "cuda", None) and torch.cuda.is_available()
    if precision == "bf16-mixed" and wants_gpu:
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            rank_zero_info("This GPU has no native bfloat16: using precision 16-mixed instead.")
            return "16-mixed"
    return precision


class CelebACLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": {"class_path": "lit_celeba.module.RecipeClassifier"}})
        # The network's input size is the data's image size; one setting, not two to keep equal.
        parser.link_arguments("data.image_size", "model.init_args.image_size")

    def before_instantiate_classes(self) -> None:
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        trainer.precision = supported_precision(trainer.precision, trainer.accelerator)

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
        if checkpoint.last_model_path:
            lines.append(f"Last checkpoint: {checkpoint.last_model_path}")
        if log_dir:
            lines.append(f"Logs: {log_dir}  (view with: tensorboard --logdir {log_dir})")
        rank_zero_info("\n".join(lines))


def cli_main(args: ArgsType = None) -> CelebACLI | None:
    """Run the CLI; a bad data set or setting ends with one clear message instead of a traceback."""
    try:
        return CelebACLI(
            AttributeClassifier,
            CelebADataModule,
            subclass_mode_model=True,
            trainer_defaults={"callbacks": [CSVPredictionWriter()]},
            args=args,
        )
    except (CelebAError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
