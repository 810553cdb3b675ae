"""Whether a process still runs, and the temporary files named after the process that writes
them (a checkpoint's, the tfds index's), which a killed writer leaves behind."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place:
    ``.NAME.PID.RANDOM.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(path: Path) -> None:
    """The :func:`temporary_path` files of ``path`` whose writer no longer runs."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.match(leftover.name)
        if match and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                leftover.unlink()
