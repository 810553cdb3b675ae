"""How a command run by :func:`lit_celeba.cli.cli_main` ends when it fails: one ``error:`` line
instead of a traceback, the exit status, and what is left behind.

SIGTERM stops training at the next batch and exits with 143 (128 + SIGTERM), Ctrl-C with 1;
either way the last epoch-end checkpoint is intact and ``--ckpt_path last`` resumes from it. A
failed command removes the run folder it claimed; one that ended well (or predicted nothing, whose
run folder holds the CSV that says so) keeps it and leaves its process group.
"""

from __future__ import annotations

import signal
import sys
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from pytorch_lightning.utilities.exceptions import SIGTERMException

from lit_celeba.base import processes
from lit_celeba.base.errors import CelebAError, LitCelebaError, NothingPredicted, SettingError
from lit_celeba.checkpoints.run_folders import release_run_folders
from lit_celeba.cli_messages import argument_message, setting_message, worker_message


@dataclass
class Outcome:
    done: bool = False  # set by the command when it ended well


@contextmanager
def ending_in_one_line(argv: Any) -> Iterator[Outcome]:
    """Runs the ``with`` block's command; ``argv``, its arguments, name the setting at fault."""
    outcome = Outcome()
    try:
        yield outcome
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except NothingPredicted as err:  # valid input that held nothing to predict
        outcome.done = True  # its run folder holds the CSV that says so
        _fail(str(err), status=1)
    except CelebAError as err:
        _fail(worker_message(str(err)))
    except SettingError as err:  # one raised outside instantiate_classes, which converts its own
        _fail(setting_message(err))
    except (LitCelebaError, FileExistsError) as err:
        _fail(str(err))
    except ArgumentError as err:
        _fail(argument_message(err, argv if isinstance(argv, list) else []))
    except RuntimeError as err:  # rank 0's error is the one to read, not a traceback after it
        rank = processes.rank_left_by_its_peers(err)
        if rank is None:
            raise
        _fail(f"rank {rank} stopped: another rank of this run ended first; its message says why "
              "(gloo: connection closed by peer).", status=1)  # fmt: skip
    finally:
        release_run_folders(failed=not outcome.done)
        if outcome.done:  # a failed rank leaves the group to its launcher: destroying it can hang
            processes.leave_process_group()


def _fail(message: str, status: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status) from None
