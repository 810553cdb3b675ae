"""Shared fixtures: one tiny generated CelebA-format data set per test session."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import skimage.data
from PIL import Image

from lit_celeba.attributes import count_attributes
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes on two cores: one thread each, or their OpenMP threads spin against
    # each other (five to ten times slower). Set before torch starts its thread pool, and
    # inherited by the CLI processes the tests start.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TINY_SIZES = {"train": 96, "valid": 48, "test": 48}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set in the official layout: 96 train, 48 valid, 48 test images."""
    root = tmp_path_factory.mktemp("tiny_celeba")
    generate_celeba(
        root, TINY_SIZES["train"], TINY_SIZES["valid"], TINY_SIZES["test"], seed=3, progress=False
    )
    return root


# Tool caches that may appear in a working folder during a session; nothing a test writes.
_TOOL_FILES = {".pytest_cache", ".ruff_cache", ".mypy_cache", "__pycache__", ".coverage"}


@pytest.fixture(scope="session", autouse=True)
def _tests_run_in_a_folder_of_their_own(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Every test runs in a working folder of the session's (one per xdist worker), never in
    the checkout, and the session fails if that folder is not left empty: a run without a
    logger writes its tables, predictions and checkpoints to the working folder, and a run of
    the suite from the repository root once committed test_groups.csv. The checkout itself is
    not compared before and after: what a user makes there, before or while the suite runs (the
    README's predict and export, their photos), is theirs, and a test never writes there."""
    work = tmp_path_factory.mktemp("working_folder")
    previous = Path.cwd()
    os.chdir(work)
    try:
        yield
    finally:
        os.chdir(previous)
    left = sorted(p.name for p in work.iterdir() if p.name not in _TOOL_FILES)
    if left:
        pytest.fail(f"tests wrote into their working folder {work}: {', '.join(left)}; give "
                    "their runs a folder under tmp_path (default_root_dir, a logger's save_dir, "
                    "cwd=)", pytrace=False)  # fmt: skip


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process cli_main(args) calls must not see pytest's own command line.
    monkeypatch.setattr(sys, "argv", ["lit_celeba"])


def astronaut() -> Image.Image:
    """A real face photo that ships with a test dependency: scikit-image's astronaut (Eileen
    Collins, NASA, public domain), 512x512."""
    return Image.fromarray(skimage.data.astronaut())


def write_group_photo(path: Path, background: tuple[int, int, int] = (200, 210, 225)) -> Path:
    """A 1000x560 photo with two faces: the astronaut, and her mirror image smaller and turned
    by 12 degrees."""
    face = astronaut()
    canvas = Image.new("RGB", (1000, 560), background)
    canvas.paste(face, (20, 24))
    turned = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((340, 340))
    turned = turned.rotate(12, Image.Resampling.BILINEAR, expand=True, fillcolor=background)
    canvas.paste(turned, (580, 60))
    canvas.save(path, quality=92)
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file the commands wrote (predictions, tables), as dicts by header."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


NET_SETTINGS = ("channels", "dropout", "pooling", "image_size", "init", "batch_norm")


def recipe_model(**settings: Any) -> AttributeClassifier:
    """The LightningModule with the recipe's network: ``settings`` of both, as one call (the
    network's from :data:`NET_SETTINGS`, its outputs one per ``target_attrs``)."""
    net = {k: settings.pop(k) for k in NET_SETTINGS if k in settings}
    outputs = count_attributes(settings.get("target_attrs", ("Male",)))
    return AttributeClassifier(RecipeCNN(**net, num_outputs=outputs), **settings)


def tiny_overrides(root: Path, log_dir: Path) -> list[str]:
    """CLI flags that make any config fast on tiny data: CPU, no workers, logs under tmp."""
    return [
        f"--data.root={root}",
        "--data.synthetic=null",
        f"--data.subsets.train={TINY_SIZES['train']}",
        f"--data.subsets.val={TINY_SIZES['valid']}",
        f"--data.subsets.test={TINY_SIZES['test']}",
        "--data.num_workers=0",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={log_dir}",
        f"--data.cache_dir={log_dir.parent / 'cache'}",
    ]


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m lit_celeba ARGS`` in a fresh process, as a user runs it."""
    # This checkout's package first, whatever copy of lit_celeba is installed.
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-m", "lit_celeba", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class _Said(logging.Handler):
    """Lightning's rank_zero_info notes (where a CLI run's messages go), as the text a
    StreamHandler on stderr would have written."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError("the command ran past its time limit")


def cli_in_process(
    *args: str, cwd: Path, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """``python -m lit_celeba ARGS`` as :func:`run_cli` gives it (exit status, stdout, stderr),
    but ``cli_main(ARGS)`` in this process: for a test about what a command does, not about a
    process of its own (that costs some 7 s of imports). stderr also holds the Lightning log
    records a process would have printed there; an exception other than SystemExit fails the
    test with its own traceback, and so does running past ``timeout`` seconds (SIGALRM)."""
    from lit_celeba.cli import cli_main  # here: Lightning only loads once the threads are set

    out, err = io.StringIO(), io.StringIO()
    handler = _Said(err)
    # Lightning's logger propagates to the root logger where that has handlers (pytest's own),
    # and writes with a handler of its own otherwise.
    loggers = [logging.getLogger()]
    lightning = logging.getLogger("pytorch_lightning")
    if not lightning.propagate:
        loggers.append(lightning)
    previous, environment, argv = Path.cwd(), dict(os.environ), sys.argv
    os.chdir(cwd)
    sys.argv = ["lit_celeba"]  # a session fixture's run comes before _plain_argv
    # The processes a command starts (compare's runs) import this checkout, as run_cli's do.
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    for logger in loggers:
        logger.addHandler(handler)
    if timeout is not None:
        alarm = signal.signal(signal.SIGALRM, _out_of_time)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli_main(list(args))
                status = 0
            except SystemExit as stop:  # as the interpreter turns it into an exit status
                status = 0 if stop.code is None else stop.code
                if not isinstance(status, int):
                    print(status, file=sys.stderr)
                    status = 1
    finally:
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, alarm)
        for logger in loggers:
            logger.removeHandler(handler)
        os.chdir(previous)
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = argv
    return subprocess.CompletedProcess(["lit_celeba", *args], status, out.getvalue(),
                                       err.getvalue())  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint from ``fit`` (one batch, the CLI in this process), for predict and export."""
    work = tmp_path_factory.mktemp("tiny_checkpoint")
    fit = cli_in_process(
        "fit",
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(tiny_root, work / "logs"),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        cwd=work,
    )
    assert fit.returncode == 0, fit.stderr
    return work / "logs" / "base" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def dashboard_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny ``fit`` (2 epochs, every step logged) and a ``test`` of its last checkpoint with
    configs/demo.yaml, the CLI in this process: ``logs``, the ``fit_dir`` and ``test_dir`` run
    folders, the ``test`` command's stdout, and the ``cwd`` both ran in."""
    work = tmp_path_factory.mktemp("dashboard_run")
    logs = work / "logs"
    flags = tiny_overrides(tiny_root, logs)
    config = ["--config", str(CONFIGS / "demo.yaml")]
    fit = cli_in_process(
        "fit", *config, *flags, "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1", cwd=work
    )
    assert fit.returncode == 0, fit.stderr
    fit_dir = logs / "demo" / "version_0"
    ckpt = fit_dir / "checkpoints" / "last.ckpt"
    test = cli_in_process("test", *config, *flags, f"--ckpt_path={ckpt}", cwd=work)
    assert test.returncode == 0, test.stderr
    return {
        "logs": logs,
        "fit_dir": fit_dir,
        "test_dir": logs / "demo" / "version_1",
        "test_stdout": test.stdout,
        "cwd": work,
    }


THREE_ATTRIBUTES = ["Male", "Young", "Smiling"]


@pytest.fixture(scope="session")
def three_attribute_run(
    tiny_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """``fit --config configs/base.yaml --data.target_attr "[Male, Young, Smiling]"
    --model.subgroups "[Young]"`` (the dashboards on, one epoch, the CLI in this process):
    its ``run_dir`` and ``checkpoint``, for the dashboards, predict and export tests."""
    work = tmp_path_factory.mktemp("three_attributes")
    fit = cli_in_process(
        "fit",
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(tiny_root, work / "logs"),
        f"--data.target_attr=[{', '.join(THREE_ATTRIBUTES)}]",
        "--model.subgroups=[Young]",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=1",
        cwd=work,
    )
    assert fit.returncode == 0, fit.stderr
    run_dir = work / "logs" / "base" / "version_0"
    return {"run_dir": run_dir, "checkpoint": run_dir / "checkpoints" / "last.ckpt", "cwd": work}


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def last_ckpt(logs: Path, version: int = 0) -> Path:
    return logs / "base" / f"version_{version}" / "checkpoints" / "last.ckpt"


def run_expecting_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """``cli_main(args)`` must end with status 2 and one ``error:`` message; returns it."""
    from lit_celeba.cli import cli_main  # here: Lightning only loads once the threads are set

    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    messages = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(messages) == 1, err
    return err[err.index("error: ") :]


# ---- Short fits of a small network, for what a run folder, a checkpoint or a message holds ------
# One of each a test process: the tests only read them (``logs`` hands out a private copy).

BASE = str(CONFIGS / "base.yaml")
# A small network on small images: the runs that use it test bookkeeping, not learning.
SMALL = ["--model.net.channels=[8, 16, 16, 16]", "--data.image_size=32", "--data.batch_size=16"]
SHORT = ["--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2"]
SHORTER = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def small_flags(root: Path, logs: Path) -> list[str]:
    """``--config base.yaml``, the tiny data set, the small network and the SHORTER limits."""
    return ["--config", BASE, *tiny_overrides(root, logs), *SMALL, *SHORTER]


def base_flags(root: Path, logs: Path) -> list[str]:
    """``--config base.yaml`` and the tiny data set, at the configs' own image size (for
    tiny_checkpoint, trained at that size)."""
    return ["--config", BASE, *tiny_overrides(root, logs)]


def assert_untouched(before: dict[str, str], folder: Path) -> None:
    after = tree_digest(folder)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files lost or changed: {changed}"


@pytest.fixture(scope="session")
def trained_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs of one short in-process ``fit`` (small network, SHORT, target Male) in
    logs/base/version_0."""
    from lit_celeba.cli import cli_main  # here: Lightning only loads once the threads are set

    logs = tmp_path_factory.mktemp("trained") / "logs"
    cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL, *SHORT]
        + ["--trainer.max_epochs=1"]
    )
    assert (logs / "base" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    return logs


def private_copy(run_logs: Path, tmp_path: Path) -> Path:
    """A copy of a shared run's log folder that one test may change: ``tmp_path / "logs"``."""
    copy = tmp_path / "logs"
    shutil.copytree(run_logs, copy)
    return copy


@pytest.fixture
def logs(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run's log folder (a module may define its own ``logs``)."""
    return private_copy(trained_run, tmp_path)


@pytest.fixture(scope="session")
def small_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The logs of one short in-process ``fit`` (small network, SHORTER): logs/base/version_0."""
    from lit_celeba.cli import cli_main  # here: Lightning only loads once the threads are set

    logs = tmp_path_factory.mktemp("small_run") / "logs"
    cli_main(["fit", *small_flags(tiny_root, logs), "--trainer.max_epochs=1"])
    return logs


def _parents() -> dict[int, int]:
    """Each running process's parent, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    return parents


def child_processes(pid: int, all_levels: bool = False) -> list[int]:
    """The processes ``pid`` started (and, with ``all_levels``, the ones those started...)."""
    parents = _parents()
    found, frontier = [], {pid}
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = set(children) if all_levels else set()
    return found


def process_running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def survivors(pids: list[int], within_s: float = 10.0) -> list[int]:
    """Those of ``pids`` still running after ``within_s``; killed then, not to disturb others."""
    deadline = time.monotonic() + within_s
    while any(map(process_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if process_running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left
