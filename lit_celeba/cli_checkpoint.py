"""A mixin of :class:`~lit_celeba.cli.CelebACLI`: the model settings of the ``--ckpt_path`` file,
which :func:`~lit_celeba.cli_checks.checked_command` loaded and checked once, read from it rather
than loaded again, and checked against the model the CLI built."""

from __future__ import annotations

from typing import Any

from lit_celeba.checkpoints.load import check_fits_model, model_settings
from lit_celeba.checkpoints.training_data import resumed_subgroups


class CheckpointSettings:
    checkpoint: dict[str, Any] | None = None  # the --ckpt_path file, loaded and checked
    config: Any
    parser: Any
    model: Any
    subcommand: str | None

    def _parse_ckpt_path(self) -> None:
        """The model's class and arguments from the checkpoint. Lightning's own version would
        ``torch.load`` the file a second time; no hook between parsing and instantiation may
        rewrite the model's settings."""
        if self.checkpoint is None:
            return  # no file (a keyword such as "best"): nothing to read
        config = self.config[self.config.subcommand]
        model = model_settings(self.checkpoint, config.ckpt_path)
        model.update(resumed_subgroups(self.checkpoint, config, self.config.subcommand))
        self.config = self.parser.parse_object(
            {self.config.subcommand: {"model": model}}, self.config
        )

    def after_instantiate_classes(self) -> None:
        if self.checkpoint is not None:
            check_fits_model(self.model, self.checkpoint, self.config[self.subcommand].ckpt_path)
            self.checkpoint = None  # Lightning loads it again; do not hold two copies
        super().after_instantiate_classes()  # type: ignore[misc]
