"""Everything a user can get wrong raises a :class:`LitCelebaError`.

Each class raises in its own terms (its own argument names, the file it read); ``cli_main``
catches the base class, adds the command-line key where a setting is at fault, and prints one
``error: ...`` line with exit status 2. Nothing here imports Lightning or torch.
"""

from __future__ import annotations


class LitCelebaError(Exception):
    """The base of every error that is the user's to fix; the message says what and how."""


class SettingError(LitCelebaError, ValueError):
    """A constructor argument the class refuses. ``setting`` is the argument's own name (e.g.
    ``batch_size``); the CLI turns it into its key (``data.batch_size``)."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting} {problem}")


class UsageError(LitCelebaError, ValueError):
    """A setting, folder or combination of settings the run cannot use."""


class CelebAError(LitCelebaError, ValueError):
    """A problem with the CelebA files on disk; the message names the file and the fix."""


class CheckpointError(LitCelebaError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class AttributeMismatchError(LitCelebaError, ValueError):
    """The model and the data disagree on the attributes; the message says which to change."""


class PhotoError(LitCelebaError, ValueError):
    """A ``data.predict.path`` that gives no photos at all; the message names the path."""


class NothingPredicted(PhotoError):
    """``predict`` on photos of which none gave a prediction: exit status 1, not 2 (the input
    was valid; it held nothing to predict)."""


class ReportError(LitCelebaError):
    """A run folder that cannot be turned into a report; the message says why and what to pass."""


class ExportError(LitCelebaError, ValueError):
    """A bad checkpoint, output folder or missing package for an export."""
