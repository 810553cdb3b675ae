"""Output paths given on the command line, one rule for every command: a path that ends with a
slash, or an existing folder, is a folder, and the command's file goes inside it under its own
name; any other path is the file itself. ``predict --prediction.output`` and ``calibrate
--out`` follow it (``export --out`` and ``report --out`` always name a folder, and
:func:`writing_into` says what kept them from writing there)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def writing_into(
    folder: Path, what: str, advice: str, error: Callable[[str], Exception]
) -> Iterator[None]:
    """Turns an ``OSError`` met while writing into ``folder`` into ``error``'s one message:
    "Cannot write ``what`` ``folder`` (the file it concerned: why). ``advice``"."""
    try:
        yield
    except OSError as err:
        where = Path(err.filename) if err.filename else folder
        reason = err.strerror or err
        raise error(f"Cannot write {what} {folder} ({where}: {reason}). {advice}") from None
