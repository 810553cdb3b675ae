"""Output paths given on the command line, one rule for every command: a path that ends with a
slash, or an existing folder, is a folder, and the command's file goes inside it under its own
name; any other path is the file itself. ``predict --data.predict_output`` and ``calibrate
--out`` follow it (``export --out`` and ``report --out`` always name a folder)."""

from __future__ import annotations

import os
from pathlib import Path


def names_a_folder(given: str | os.PathLike) -> bool:
    """Whether ``given`` names a folder: it ends with a slash, or is an existing folder."""
    return str(given).endswith(("/", os.sep)) or Path(given).expanduser().is_dir()


def output_file(given: str | os.PathLike | None, filename: str) -> Path | None:
    """The file ``given`` names: itself, or ``filename`` inside it when it names a folder
    (:func:`names_a_folder`); ``None`` when nothing was given."""
    if not given:
        return None
    path = Path(given).expanduser()
    return path / filename if names_a_folder(given) else path
