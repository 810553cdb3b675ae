"""A mixin of :class:`~lit_celeba.cli.CelebACLI`: what a command writes and shows besides its
results. Checkpoints are saved atomically (:class:`~lit_celeba.checkpoints.atomic_io.
AtomicCheckpointIO`); Lightning's progress bar and model summary say less
(:mod:`lit_celeba.quiet_output`); a run without a logger still gets a folder of its own
(:mod:`lit_celeba.no_logger`), and ``predict --prediction.output FILE`` writes that file and
nothing else."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Trainer

from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.no_logger import has_no_logger, without_logger, without_logger_only_callbacks
from lit_celeba.quiet_output import quiet_callbacks


class RunOutputs:
    config: Any
    config_init: Any
    subcommand: str | None
    save_config_callback: Any

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if self.subcommand == "predict" and config.prediction.output:
            trainer.callbacks, _ = without_logger_only_callbacks(trainer.get("callbacks"))
            self.save_config_callback = None
        elif has_no_logger(trainer.get("logger")):
            without_logger(trainer)
        super().before_instantiate_classes()  # type: ignore[misc]

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer") or {}
        if trainer.get("plugins") is None:
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        quiet = quiet_callbacks(trainer)
        if quiet:
            given = trainer.get("callbacks") or []
            kwargs["callbacks"] = [*(given if isinstance(given, list) else [given]), *quiet]
        return super().instantiate_trainer(**kwargs)  # type: ignore[misc]
