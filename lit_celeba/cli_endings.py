"""What each command says when it ends, after the progress bar: where the run and its
checkpoints are (``fit``), where its logs are (``validate``, ``test``), what ``predict`` wrote
and whether it predicted anything at all. A mixin of :class:`~lit_celeba.cli.CelebACLI`."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import NothingPredicted
from lit_celeba.callbacks.predictions import PredictionWriter
from lit_celeba.checkpoints.runs import latest_checkpoint
from lit_celeba.cli_messages import run_folder_line


class CommandEndings:
    trainer: Any

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
        """What the writer wrote, on a line of its own once the progress bar is closed; on the
        user's photos the count of unreadable files and of photos without a face, and exit
        status 1 when nothing at all was predicted."""
        writer = next((c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)), None)
        if writer is None or not self.trainer.is_global_zero:
            return
        if writer.summary:
            print(writer.summary)
        if writer.failures is None:
            return  # a CelebA split
        if writer.too_small:
            print(f"{writer.too_small} face(s) smaller than {writer.min_face_size} px "
                  f"(data.predict.min_face_size) were not judged; their rows in {writer.path} "
                  "say so in the error column.")  # fmt: skip
        faceless = f"; {writer.faceless} without a face" if writer.faceless else ""
        if writer.failures == writer.files:
            raise NothingPredicted(
                f"none of the files could be read as an image; their rows in {writer.path} give "
                f"the reason in the error column (the first: {writer.first_failure})."
            )
        if writer.failures:
            print(f"{writer.failures} of {writer.files} files could not be read; their rows in "
                  f"{writer.path} give the reason in the error column{faceless}.")  # fmt: skip
        else:
            print(f"All {writer.files} file(s) were read{faceless}.")
        if writer.predicted == 0 and writer.too_small:
            raise NothingPredicted(
                f"every face found was smaller than {writer.min_face_size} px, so nothing was "
                "predicted. --data.predict.min_face_size 0 judges faces of any size (small faces "
                "are often wrong: see docs/faces.md)."
            )
        if writer.predicted == 0:
            raise NothingPredicted(
                f"no face was found in any of the {writer.files - writer.failures} readable "
                "photo(s), so nothing was predicted. --data.predict.align never predicts on each "
                "photo framed whole."
            )
