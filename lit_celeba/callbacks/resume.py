"""Exact resume: the random generators in every checkpoint, logs flushed per epoch, and a
notice on SIGTERM or Ctrl-C that says which checkpoint ``--ckpt_path last`` resumes from."""


import random
import sys
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

# ckpt_path values that name no file: Lightning resolves them itself.
from lit_celeba.checkpoints.runs import latest_checkpoint


class ExactResume(Callback):
    """Makes a run resumed from an epoch-end checkpoint equal one that never stopped.

    - Saves the random generators (torch, CUDA, numpy, Python) with every checkpoint and restores
      them on resume. Lightning saves the model, optimizer and loop state but not these, so
      without this a resumed run would draw other shuffles, crops, flips and dropout masks.
      Lightning restores callback state before it builds the train loader, and runs its sanity
      check in an isolated generator state, so nothing draws between this restore and the first
      batch.
    - Flushes the loggers when an epoch starts, so the curves of every finished epoch are on disk
      before the next one begins: a SIGKILL loses nothing that the checkpoint covers.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # numpy's key array as a tensor: a checkpoint must load with weights_only=True.
            "numpy": (
                numpy_state[0],
                torch.from_numpy(numpy_state[1].astype(np.int64)),
                *[v.item() if hasattr(v, "item") else v for v in numpy_state[2:]],
            ),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch.cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        name, keys, *rest = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "torch.cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["torch.cuda"])


class InterruptNotice(Callback):
    """On SIGTERM or Ctrl-C during ``fit``, says which checkpoint ``--ckpt_path last`` resumes.

    Lightning already stops at the next batch boundary and closes the loggers; the resume point is
    the last epoch-end checkpoint, so that the resumed run equals one that never stopped.
    """

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            cause = "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            cause = "Ctrl-C"
        else:
            return
        if trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        last = latest_checkpoint(trainer)
        if last:
            hint = (
                f"Run the same command with --ckpt_path last to resume from {last} "
                "(the end of the last finished epoch)."
            )
        else:
            hint = "No epoch had finished, so there is no checkpoint yet: run the command again."
        epoch = trainer.current_epoch
        print(f"Training stopped by {cause} in epoch {epoch}. {hint}", file=sys.stderr)
