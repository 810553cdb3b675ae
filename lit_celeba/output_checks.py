"""What a Trainer command would write that it may not, refused before anything runs (no run
folder is made): ``predict``'s CSV over a file it did not write, its maps without photos, and
``calibrate``'s checkpoint over an existing file. Where each goes follows one rule for every
command, :mod:`lit_celeba.paths`."""

from __future__ import annotations

from typing import Any

from lit_celeba.base.errors import UsageError
from lit_celeba.callbacks.predictions import FILENAME, check_output
from lit_celeba.commands.calibrate import CALIBRATED_FILE
from lit_celeba.paths import output_file


def check_outputs(subcommand: str, config: Any) -> None:
    """What a command would write that it may not, refused before anything runs: predict's CSV
    over a file it did not write, its maps without photos, calibrate's over an existing file."""
    data, prediction = config.get("data") or {}, config.get("prediction") or {}
    given = [f"--prediction.{k}" for k in ("output", "overwrite", "maps") if prediction.get(k)]
    if subcommand != "predict" and given:
        raise UsageError(f"{', '.join(given)}: predict's setting(s); {subcommand} writes no "
                         "predictions. Leave them out, or run predict.")  # fmt: skip
    if subcommand == "predict":
        check_output(output_file(prediction.get("output"), FILENAME), prediction.get("overwrite"))
        if prediction.get("maps") and not (data.get("predict") or {}).get("path"):
            raise UsageError(
                "--prediction.maps true draws maps on your own photos (--data.predict.path); "
                "without photos predict runs on a CelebA split, whose maps `test` logs "
                "(test/maps in TensorBoard, test_maps.png from report). Give --data.predict.path,"
                " or leave --prediction.maps out."
            )
    out = output_file(config.get("out"), CALIBRATED_FILE) if subcommand == "calibrate" else None
    if out is not None and out.exists():
        raise UsageError(f"--out {out} already exists; choose another path (calibrate never "
                         "overwrites a checkpoint).")  # fmt: skip
