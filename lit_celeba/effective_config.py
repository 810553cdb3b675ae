"""The configuration a ``fit`` with given arguments would run with, for ``compare``: its key for
resuming a run, and the settings its table says differ between variants.

    python -m lit_celeba.effective_config '[["--config", "configs/base.yaml"], ...]'

takes a JSON list of argument lists (what follows ``fit`` on the command line) and writes a JSON
list of ``{"config": {...}}`` (the config as ``fit --print_config`` prints it, with the precision
:func:`~lit_celeba.speed.precision.supported_precision` picks, as the run saves it in its
``config.yaml``) or ``{"error": "..."}`` (the ``error:`` line that ``fit`` would end with), one
per list. A module above cli.py, as ``__main__`` is: ``compare`` runs it as a process of its own,
one for all of its variants.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import yaml

from lit_celeba.base.errors import SettingError
from lit_celeba.cli import cli_main
from lit_celeba.methods.degradations import check as check_photo
from lit_celeba.speed.precision import supported_precision


def effective_config(args: list[str]) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            cli_main(["fit", *args, "--print_config"])
            status = 0
        except SystemExit as stop:
            status = stop.code or 0
        if status == 0:
            config = yaml.safe_load(out.getvalue())
            trainer = config["trainer"]
            trainer["precision"] = supported_precision(trainer["precision"], trainer["accelerator"])
    if status != 0:
        errors = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
        return {"error": errors[-1] if errors else f"exit status {status}: {err.getvalue()[-300:]}"}
    try:  # what the parser does not check and fit would refuse at once, each seed again
        check_photo((config.get("data") or {}).get("photo"))
    except SettingError as refused:
        return {"error": f"error: Invalid setting: data.{refused.setting} {refused.problem}"}
    return {"config": config}


def main() -> int:
    lists = json.loads(sys.argv[1])
    json.dump([effective_config(list(args)) for args in lists], sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
