"""Compare variants of a config over seeds: ``python -m lit_celeba compare``.

    python -m lit_celeba compare --config configs/base.yaml \\
        --variant recipe= --variant dropout0=configs/variants/dropout0.yaml \\
        --variant nodrop_bn="--model.net.dropout 0 --model.net.batch_norm true" \\
        --seeds 2 --out comparisons/dropout [--jobs 2] [--devices 0,1] [--data.root PATH ...]

Each variant is ``NAME=`` followed by YAML deltas and/or ``--key value`` overrides (empty: the base
config as it is). Options this command does not know go to every run; a variant's own settings
win over them where both set a key (compare says so), and the table lists the settings in which
the variants differ. For every variant and seed
it runs ``python -m lit_celeba fit`` and then ``test`` on the fit's ``last.ckpt`` ("final") and on
its best-validation checkpoint ("best"; when that is ``last.ckpt``'s epoch, the final test is
reused), each in its own process, so a failing run cannot take the others down. Runs go one after
another, or ``--jobs N`` at a time, each job on its own GPU with ``--devices``.

Everything goes into ``--out``: ``runs/NAME/seed_S/`` (the fit and test run folders, their logs and
``result.json``), ``runs.csv`` (one row per run), ``comparison.csv`` and ``comparison.md`` (one row
per variant) and ``comparison.png`` (validation curves). A run is finished once its
``result.json`` records its test results; the same command again skips finished runs and redoes
the others from the start. What decides whether a run is the same is its effective configuration
(what the config files and options say, read as ``fit`` reads them), not the names of the files.
The numbers are read from the runs' own TensorBoard event files. One compare at a time writes
into an ``--out``, and its runs stop when it stops, however it stops. The exit status is 1 when
every run failed. Running them is :mod:`lit_celeba.commands.compare_runs`, the table and the
figure :mod:`lit_celeba.commands.compare_results`; the arguments are here.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_celeba.base.errors import UsageError
from lit_celeba.base.processes import FolderLock, describe_holders
from lit_celeba.cli_messages import check_seed
from lit_celeba.commands import PROG
from lit_celeba.commands.children import (
    Children,
    Stopped,
    cpu_cores,
    stopping_children_on_signals,
    threads_per_job,
)
from lit_celeba.commands.compare_configs import configure, prepare_out, refuse_own_settings
from lit_celeba.commands.compare_results import summarise, write_results
from lit_celeba.commands.compare_runs import Variant, plan_runs, run_all

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def parse_variant(spec: str) -> Variant:
    """``NAME=deltas.yaml --key value ...`` as a :class:`Variant`; a token naming a YAML file
    becomes ``--config FILE``."""
    name, sep, value = spec.partition("=")
    if not sep or not NAME_PATTERN.match(name):
        raise UsageError(
            f"--variant {spec!r}: expected NAME=VALUE with a NAME of letters, digits, '_', '-', "
            "'.' or '+' and VALUE a YAML delta and/or --key value overrides, e.g. "
            "dropout0=configs/variants/dropout0.yaml or nodrop=\"--model.net.dropout 0\""
        )
    try:
        tokens = shlex.split(value)
    except ValueError as err:
        raise UsageError(f"--variant {name}: cannot split {value!r}: {err}") from None
    args: list[str] = []
    for i, token in enumerate(tokens):
        after_flag = i > 0 and tokens[i - 1].startswith("--") and "=" not in tokens[i - 1]
        if token.endswith((".yaml", ".yml")) and not token.startswith("-"):
            if not Path(token).expanduser().is_file():
                raise UsageError(f"--variant {name}: the YAML file {token} does not exist")
            if not after_flag:
                args.append("--config")
        args.append(token)
    return Variant(name, tuple(args))


def parse_seeds(text: str) -> list[int]:
    """``N`` for the seeds 1..N (seed 1 is the configs' own), or a list such as ``1,5,9``."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(1, int(text) + 1))
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(
            f"--seeds {text!r}: give a count (2 runs seeds 1 and 2) or distinct seeds (1,5,9)"
        )
    for seed in seeds:
        check_seed(seed, f"--seeds {text}: the seed")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Train and test several variants of a config over several seeds and "
        "compare them in one table and one figure. Unknown options go to every run.",
        allow_abbrev=False,  # --seed_everything and the like belong to the runs
    )
    parser.add_argument(
        "--config", action="append", required=True, help="the base config (repeatable)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=DELTA",
        help='a named variant: YAML files and/or overrides, e.g. nodrop="--model.net.dropout 0"; '
        "NAME= alone is the base config",
    )
    parser.add_argument("--seeds", default="1", help="a count N (seeds 1..N) or a list 1,5,9")
    parser.add_argument("--out", type=Path, required=True, help="the comparison's folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument(
        "--devices",
        default=None,
        help="GPU ids to spread the jobs over, e.g. 0,1 (each job sees one GPU)",
    )
    return parser


def compare(argv: Sequence[str]) -> list[dict[str, Any]]:
    """Runs the comparison that ``argv`` describes; returns its rows (as in comparison.csv)."""
    args, extra = build_parser().parse_known_args(argv)
    for config in args.config:
        if not Path(config).expanduser().is_file():
            raise UsageError(f"--config {config} does not exist")
    variants = [parse_variant(spec) for spec in args.variant]
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--variant names must differ; given twice: {', '.join(duplicates)}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    seeds = parse_seeds(args.seeds)
    refuse_own_settings(extra, variants)
    out = prepare_out(args.out)
    lock = FolderLock(out)
    if not lock.acquire():
        raise UsageError(
            f"--out {out} is in use by {describe_holders(lock)}: another compare, or a run that "
            "one started, still writes there. Wait for it to end (or stop it), or choose "
            "another --out."
        )
    try:
        # Absolute: the runs' checkpoint paths are recorded and must not depend on the folder.
        base = [str(Path(c).expanduser().resolve()) for c in args.config]
        runs = plan_runs(variants, seeds, out)
        print(f"{len(variants)} variant(s) x {len(seeds)} seed(s) = {len(runs)} runs into {out}")
        if not devices and (threads := threads_per_job(args.jobs)) is not None:
            print(f"--jobs {args.jobs} on {cpu_cores()} CPU core(s): each run uses {threads} "
                  "thread(s) (OMP_NUM_THREADS; set it yourself to choose another "
                  "number).")  # fmt: skip
        children = Children(keep_fds=[lock.fd])  # the runs hold --out's lock while they run
        with stopping_children_on_signals(children):
            differing = configure(variants, runs, base, extra, children)
            run_all(runs, base, extra, args.jobs, devices, children)
        rows = summarise(variants, runs, differing)
        table = write_results(rows, variants, runs, len(seeds), out)
    finally:
        lock.release()
    print()
    print(table)
    print(f"Wrote {out / 'comparison.csv'}, {out / 'comparison.md'}, {out / 'comparison.png'}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``compare ...``; raises :class:`UsageError` for arguments it cannot use. Exit status 1
    when every run failed; 128 + the signal when stopped by one."""
    try:
        rows = compare(sys.argv[1:] if argv is None else list(argv))
    except Stopped as stop:
        print(f"compare stopped by {stop}: its runs were stopped too. The same command goes on "
              "(finished runs are kept).", file=sys.stderr)  # fmt: skip
        return 128 + stop.signum
    if not any(row["runs_ok"] for row in rows):
        print(f"error: every run failed ({sum(row['runs'] for row in rows)}); their errors are "
              "in the table above.", file=sys.stderr)  # fmt: skip
        return 1
    return 0
