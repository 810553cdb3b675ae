"""The records a ``compare`` keeps in each run folder (``fit.json``, ``result.json``): written
whole or not at all, read back (a damaged one is said and its run done again), and the
configuration a recorded run ran with, to compare with the one a run would run with now.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lit_celeba.base.files import atomic_write
from lit_celeba.checkpoints.runs import changed_settings

# compare sets the logger's name to "" for every run; a run folder's config.yaml says so.
_SAME_FOR_EVERY_RUN = ("trainer.logger.init_args.name:",)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Whole or not at all: a compare stopped while it writes leaves no half file."""
    with atomic_write(path) as fh:
        fh.write(json.dumps(content, indent=2) + "\n")


def read_json(path: Path, say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The record at ``path``; ``None`` when there is none, or when it is damaged (written by a
    compare before records were written whole, and stopped), which it says."""
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        content = err
    if isinstance(content, dict):
        return content
    reason = content if isinstance(content, BaseException) else "not a record"
    say(f"{path} is damaged ({reason}): its run is done again.")
    return None


def settings_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """:func:`changed_settings` between two configurations of one run."""
    changes = changed_settings(saved, current)
    return [c for c in changes if not c.startswith(_SAME_FOR_EVERY_RUN)]


def saved_configuration(record: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """The configuration a run's fit ran with: as recorded, or (a run recorded by an earlier
    version) as the fit saved it in ``fit/config.yaml``."""
    if isinstance(record.get("config"), dict):
        return record["config"]
    with contextlib.suppress(OSError, yaml.YAMLError):
        saved = yaml.safe_load((folder / "fit" / "config.yaml").read_text())
        return saved if isinstance(saved, dict) else None
    return None
