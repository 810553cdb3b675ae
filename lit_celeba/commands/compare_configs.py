"""What each run of a ``compare`` would run with, read before anything runs: its effective
configuration (:mod:`lit_celeba.effective_config`: what the config files and options say, not
their names), the key for resuming it; the settings compare cannot work with or sets itself,
refused; where a variant's own setting wins over a shared option, said; and the settings in which
the variants differ, for the table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_celeba.base.errors import UsageError
from lit_celeba.checkpoints.runs import differing_keys, flat_settings
from lit_celeba.commands.children import Children, child_environment
from lit_celeba.commands.compare_runs import Run, Variant, shared_arguments

# What compare writes into --out; a folder holding other files only is not a comparison.
OUT_ENTRIES = {"runs", "comparison.csv", "comparison.md", "comparison.png", "runs.csv"}
# Settings compare gives every run itself, and the option of compare that sets them.
OWN_SETTINGS = {
    "seed_everything": "--seeds",
    "trainer.logger.init_args.save_dir": "--out",
    "trainer.logger.init_args.name": "--out",
    "trainer.logger.init_args.version": "--out",
    "ckpt_path": None,
}


def refuse_own_settings(extra: Sequence[str], variants: Sequence[Variant]) -> None:
    """Refuse a setting that compare gives every run itself: it would be overridden silently."""
    given = [("the options for every run", extra)]
    for where, tokens in given + [(f"--variant {v.name}", v.args) for v in variants]:
        for token in tokens:
            key = token[2:].split("=", 1)[0] if token.startswith("--") else None
            if key in OWN_SETTINGS:
                instead = OWN_SETTINGS[key]
                hint = f" (use {instead})" if instead else " (each run trains from the start)"
                raise UsageError(
                    f"{where} set --{key}, which compare sets for each run itself{hint}; leave "
                    "it out."
                )


def configure(
    variants: Sequence[Variant], runs: Sequence[Run], base: list[str], extra: list[str],
    children: Children,
) -> dict[str, str]:  # fmt: skip
    """Each run's effective configuration (``run.config``; a failed result when its settings do
    not parse), read before anything runs; refuses settings compare cannot work with, says where
    a variant's own setting wins over a shared option, and returns, per variant, the settings in
    which the variants differ."""
    shared = shared_arguments(base, extra)
    print("Reading each variant's configuration ...", flush=True)
    found = effective_configs(
        [shared_arguments(base, []), shared, *([*shared, *v.args] for v in variants)], children
    )
    plain, common, own = found[0].get("config"), found[1].get("config"), found[2:]
    configs = {v.name: x["config"] for v, x in zip(variants, own, strict=True) if "config" in x}
    for name, config in configs.items():
        _check_usable(name, config)
    if plain is not None and common is not None:
        shared_keys = differing_keys(plain, common)  # what the shared options set
        for name, config in configs.items():
            for key in set(shared_keys) & set(differing_keys(common, config)):
                mine, theirs = flat_settings(config).get(key), flat_settings(common).get(key)
                print(f"Note: variant {name} sets {key} to {mine!r} itself, over the shared "
                      f"option's {theirs!r}.")  # fmt: skip
    for run in runs:
        got = own[variants.index(run.variant)]
        if "config" in got:
            run.config = {**got["config"], "seed_everything": run.seed}
        else:
            run.result = {"variant": run.variant.name, "seed": run.seed, "status": "failed",
                          "error": f"fit refuses the settings: {got['error']}"}  # fmt: skip
    first = next(iter(configs.values()), {})
    keys = sorted({k for config in configs.values() for k in differing_keys(first, config)})
    return {
        name: "; ".join(f"{k.replace('.init_args.', '.')}={flat_settings(c).get(k)}" for k in keys)
        for name, c in configs.items()
    }


def _check_usable(name: str, config: dict[str, Any]) -> None:
    trainer = config.get("trainer") or {}
    logger = trainer.get("logger")
    kind = str(logger.get("class_path")) if isinstance(logger, dict) else ""
    if not kind.endswith("TensorBoardLogger"):
        shown = str(logger.get("class_path")) if isinstance(logger, dict) else repr(logger).lower()
        raise UsageError(
            f"--variant {name} (with the options for every run) sets trainer.logger to {shown}; "
            "compare reads each run's curves and test accuracy from its TensorBoard logs. Leave "
            "trainer.logger as configs/base.yaml sets it."
        )
    if trainer.get("enable_checkpointing") is False:
        raise UsageError(
            f"--variant {name} (with the options for every run) sets "
            "trainer.enable_checkpointing to false; compare tests each run's last.ckpt. Leave "
            "it on."
        )




def effective_configs(argument_lists: list[list[str]], children: Children) -> list[dict[str, Any]]:
    """``{"config": ...}`` or ``{"error": ...}`` for each list of fit arguments, read by
    :mod:`lit_celeba.effective_config` in one process."""
    command = [sys.executable, "-m", "lit_celeba.effective_config", json.dumps(argument_lists)]
    status, _, output = children.run(command, None, child_environment())
    text = output.decode(errors="replace")
    try:
        if status == 0:
            return json.loads(text[text.index("[{"):])  # after anything a library printed
    except ValueError:
        pass
    raise UsageError(f"Could not read the runs' configurations (status {status}): {text[-500:]}")


def prepare_out(out: Path) -> Path:
    """``--out`` made absolute and created; refused when it is a file, lies under one, or holds
    files other than a comparison's, which compare's own would replace."""
    out = out.expanduser().absolute()
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker == out:
        raise UsageError(f"--out {out} is a file; compare writes a folder (its runs, tables and "
                         "figure). Give a new folder, or an earlier comparison's.")  # fmt: skip
    if blocker is not None:
        raise UsageError(f"--out {out} cannot be created: {blocker} is a file, not a folder. "
                         "Give a folder you can write to.")  # fmt: skip
    if out.is_dir():
        names = sorted(p.name for p in out.iterdir())
        if names and not OUT_ENTRIES & set(names):
            raise UsageError(
                f"--out {out} holds other files ({', '.join(names[:4])}"
                f"{', ...' if len(names) > 4 else ''}) and no comparison; compare writes "
                f"{', '.join(sorted(OUT_ENTRIES))} there. Give a new or empty folder, or an "
                "earlier comparison's."
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"Cannot create --out {out}: {err.strerror or err}. Give a folder you "
                         "can write to.") from None  # fmt: skip
    return out
