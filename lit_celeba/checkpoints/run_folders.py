"""Each command's run folder: created (``mkdir``, atomic) and held (an flock) while the command
runs (:func:`claim_run_folder`), so that no two processes ever write into one; let go at the
end (:func:`release_run_folders`), and removed again where the command failed before its run
started (a bad data set found in setup, say), so that no failure leaves an empty or
half-begun ``version_N`` behind.
"""

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lit_celeba.base.errors import UsageError
from lit_celeba.base.processes import FolderLock, describe_holders
from lit_celeba.cli_messages import check_writable

# Ranks that Lightning starts itself (DDP) take rank 0's run folder, which rank 0 holds.
RUN_VERSION_ENV = "LIT_CELEBA_RUN_VERSION"
RUN_DIR_ENV = "LIT_CELEBA_RUN_DIR"  # the same, for a run without a logger
# lock, and the folders this process created for it (the run's, its logger's): removed again
# if nothing was written into them, or if the command failed before its run started
_CLAIMED: list[tuple[FolderLock, list[Path]]] = []
_STARTED = [False]  # whether a Trainer of this process got past its setup (RunStarted)


class RunStarted(pl.Callback):
    """Notes that the run got past the Trainer's setup (where the data set is read and checked):
    from then on its folder holds what the run wrote, and is kept whatever happens."""

    def _started(self, *args: Any) -> None:
        _STARTED[0] = True

    on_fit_start = on_validation_start = on_test_start = on_predict_start = _started


def run_came_to_nothing() -> None:
    """The run that started is refused after all, having measured nothing that it keeps
    (``calibrate`` on photos where no face was found): its folder goes as if it never started."""
    _STARTED[0] = False


def claim_run_folder(subcommand: str, config: Any, resumed: Path | None) -> None:
    """Choose and lock the run folder that this command's logger writes (``save_dir/name/
    version_N``), before anything is instantiated; :func:`release_run_folders` lets it go.

    A new run takes the next version by creating its folder (``mkdir`` is atomic: two runs
    started at once never share one, as Lightning's listing of the folder lets them). The folder
    of a run that goes on (``resumed``) or is named (``--trainer.logger.init_args.version``) is
    refused while another process holds it: two ``fit --ckpt_path last`` at once, or one while
    the run's own fit still trains. A named version that holds an earlier run is refused too.
    """
    logger = config.trainer.get("logger")
    init_args = getattr(logger, "init_args", None)
    save_dir = getattr(init_args, "save_dir", None)
    if save_dir is None or not hasattr(init_args, "version"):
        return  # no logger with versioned folders (a logger of its own, or none: no_logger.py)
    if os.environ.get("LOCAL_RANK", "0") != "0":
        init_args.version = os.environ.get(RUN_VERSION_ENV, init_args.version)
        return
    run_root = Path(save_dir).expanduser() / (getattr(init_args, "name", None) or "")
    created = _missing_folders(run_root)
    check_writable(run_root, "trainer.logger.init_args.save_dir")
    version = init_args.version
    if resumed is not None:
        folder = resumed
    elif version is None:
        folder = new_run_folder(run_root)
        created.insert(0, folder)
    else:
        folder = run_root / (version if isinstance(version, str) else f"version_{version}")
        if (folder / "config.yaml").exists():
            raise UsageError(
                f"--trainer.logger.init_args.version {version} names the earlier run {folder}; "
                f"a new `{subcommand}` there would overwrite its files. Leave the version out (a "
                "new version_N), or resume that run with `fit --ckpt_path last`."
            )
        created = ([folder] if not folder.exists() else []) + created
        folder.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(folder)
    if not lock.acquire():
        _remove_empty(created)
        holders = describe_holders(lock)
        if resumed is not None:
            raise UsageError(
                f"--ckpt_path last would go on in the run {folder}, which {holders} is writing "
                "(a fit of that run still trains). Wait for it to end and run this again, or "
                "leave out --ckpt_path last to start a new run."
            )
        raise UsageError(
            f"The run folder {folder} is in use by {holders}, which writes into it. Wait for it "
            "to end, or leave the version out to start a new run."
        )
    _CLAIMED.append((lock, created))
    init_args.version = folder.name
    os.environ[RUN_VERSION_ENV] = folder.name


def new_run_folder(run_root: Path) -> Path:
    """Create the next ``version_N`` under ``run_root`` (N after the highest, as Lightning
    counts) and return it: the one allocator of run folders, with a logger or without."""
    run_root.mkdir(parents=True, exist_ok=True)
    taken = [
        int(p.name[len("version_"):])
        for p in run_root.iterdir()
        if p.name.startswith("version_") and p.name[len("version_"):].isdigit() and p.is_dir()
    ]
    number = max(taken, default=-1) + 1
    while True:
        folder = run_root / f"version_{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def claim_folder_without_logger(root: str | os.PathLike | None, default: str) -> Path:
    """The run folder of a command without a logger (``version_N`` under ``root``, ``default``
    when ``None``): created and held as :func:`claim_run_folder` does a logger's, so that two
    runs started at once never share one, and removed again by :func:`release_run_folders`
    when the command fails before its run starts."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        inherited = os.environ.get(RUN_DIR_ENV)
        if inherited:
            return Path(inherited)
    run_root = Path(root if root is not None else default).expanduser()
    created = _missing_folders(run_root)
    check_writable(run_root, "trainer.default_root_dir")
    folder = new_run_folder(run_root)
    lock = FolderLock(folder)
    lock.acquire()  # a folder this process just made: no other process can hold it yet
    _CLAIMED.append((lock, [folder, *created]))
    os.environ[RUN_DIR_ENV] = str(folder)
    return folder


def release_run_folders(failed: bool = False) -> None:
    """Let go of the folders :func:`claim_run_folder` took; remove those it created that are
    still empty (the command stopped before writing anything), and, when the command
    ``failed`` before its run started (:class:`RunStarted`), the run folder it created with what
    the start of a run writes there (the logger's event file, config.yaml)."""
    while _CLAIMED:
        lock, created = _CLAIMED.pop()
        if failed and not _STARTED[0] and created and created[0] == lock.folder:
            shutil.rmtree(lock.folder, ignore_errors=True)  # created by this command
        _remove_empty(created)
        lock.release()
    _STARTED[0] = False


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and each of its parents that does not exist yet, innermost first: what making
    it creates, and what a command that fails before its run starts removes again."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
