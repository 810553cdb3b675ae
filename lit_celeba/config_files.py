"""The project's configs: ``configs/base.yaml`` is the complete recipe, every other file there a
delta of it.

A delta cannot include base.yaml itself: jsonargparse (4.53) applies a ``config:`` key inside a
file, but a nested section after it (``trainer:``) then replaces base.yaml's whole section, logger
and callbacks included, and two deltas given together would each apply base.yaml again, undoing
the first. So the CLI puts ``--config configs/base.yaml`` in front of the first delta when the
command line names a delta of this folder without base.yaml: ``--config configs/demo.yaml`` means
``--config configs/base.yaml --config configs/demo.yaml``.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
BASE_CONFIG = CONFIG_DIR / "base.yaml"
_FLAGS = ("--config", "-c")


def _config_paths(argv: list[str]) -> list[tuple[int, Path]]:
    """(index of the flag, path) of each ``--config`` given."""
    found = []
    for i, arg in enumerate(argv):
        if arg in _FLAGS and i + 1 < len(argv):
            found.append((i, Path(argv[i + 1])))
        elif arg.startswith("--config="):
            found.append((i, Path(arg.split("=", 1)[1])))
    return found


def is_delta(path: Path) -> bool:
    """Whether ``path`` is one of this project's configs other than base.yaml."""
    try:
        resolved = path.expanduser().resolve()
    except OSError:
        return False
    return resolved.parent == CONFIG_DIR and resolved != BASE_CONFIG and resolved.is_file()


def with_base_config(argv: list[str]) -> list[str]:
    """``argv`` with ``--config configs/base.yaml`` before the first delta, unless base.yaml is
    given anywhere (the user's order then stands) or no delta is."""
    configs = _config_paths(argv)
    if any(path.expanduser().resolve() == BASE_CONFIG for _, path in configs):
        return argv
    for index, path in configs:
        if is_delta(path):
            return [*argv[:index], "--config", str(BASE_CONFIG), *argv[index:]]
    return argv
