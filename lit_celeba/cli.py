"""The command line: ``python -m lit_celeba {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import sys
import warnings

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.callbacks import CSVPredictionWriter
from lit_celeba.celeba import CelebAError
from lit_celeba.data import CelebADataModule
from lit_celeba.module import AttributeClassifier
from lit_celeba.report import ReportError
from lit_celeba.report import main as report_main

# An optimizer given in YAML or with --optimizer replaces the model's default one on purpose.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
# Lightning 2.6 with torch >= 2.10 warns about its own internals on every run; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


class CelebACLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"model": {"class_path": "lit_celeba.module.RecipeClassifier"}})
        # The network's input size is the data's image size; one setting, not two to keep equal.
        parser.link_arguments("data.image_size", "model.init_args.image_size")

    def after_fit(self) -> None:
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
        log_dir = self.trainer.log_dir
        if log_dir:
            lines.append(f"Logs: {log_dir}  (view with: tensorboard --logdir {log_dir})")
        rank_zero_info("\n".join(lines))


def cli_main(args: ArgsType = None) -> CelebACLI | None:
    """Run the CLI; a bad data set or setting ends with one clear message instead of a traceback.

    ``report RUN_DIR`` is handled here, before LightningCLI, whose subcommands are fixed."""
    argv = sys.argv[1:] if args is None else args
    try:
        if isinstance(argv, list) and argv[:1] == ["report"]:
            report_main(argv[1:])
            return None
        return CelebACLI(
            AttributeClassifier,
            CelebADataModule,
            subclass_mode_model=True,
            trainer_defaults={"callbacks": [CSVPredictionWriter()]},
            args=args,
        )
    except (CelebAError, FileExistsError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
