"""Faults in the data, the cache and the checkpoint files (issue 13): no hang, no silent wrong
answer, one clear message naming the file.

Each test here failed on the code before its fix; the bad-input table (docs/bad_input.md) points
at them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_celeba.base import locks
from lit_celeba.base.errors import CelebAError, UsageError
from lit_celeba.data import cache
from lit_celeba.data.celeba import load_index
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.data.transforms import columns_read
from tests.conftest import CONFIGS, REPO, cli_in_process, survivors, tiny_overrides
from tests.conftest import child_processes as _children

COLUMNS = columns_read(64)


def _official(root: Path) -> Path:
    return root / "celeba"


def _copy_set(tiny_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny set, to damage."""
    copy = tmp_path / "set"
    shutil.copytree(tiny_root, copy)
    return copy


def _cli(root: Path, work: Path, *extra: str, command: str = "fit", whole: bool = False) -> str:
    """The one ``error:`` line (``whole``: and the lines after it) that ``command`` ends with,
    run in this process as cli_main runs it (exit status 2, no other exception): 12 s less each
    than a process of its own."""
    from lit_celeba.cli import cli_main  # here: Lightning only loads once the threads are set

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        cli_main([
            command, "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(root, work / "logs"),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",  # "1" would read as 1.0, the whole epoch
            "--trainer.limit_val_batches=1", *extra,
        ])  # fmt: skip
    text = err.getvalue()
    assert stop.value.code == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text[-3000:]
    return text[text.index("error: "):] if whole else errors[0]


# -- 1. a cache build that is killed blocks nothing ------------------------------------------------

# The real CLI, each image's decoding slowed down so that a kill lands mid-build on any machine.
_SLOW_CLI = """
import runpy, sys, time
from lit_celeba.base import locks
from lit_celeba.data import cache
cache._CHUNK = 8
decode = cache._decode_chunk
def slow_decode_chunk(*args):
    time.sleep(0.03 * len(args[2]))
    return decode(*args)
cache._decode_chunk = slow_decode_chunk
sys.argv = ["lit_celeba", *sys.argv[1:]]
runpy.run_module("lit_celeba", run_name="__main__")
"""


@pytest.fixture(scope="module")
def larger_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("larger_celeba")
    generate_celeba(root, 400, 16, 16, seed=4, progress=False)
    return root


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists the decoder processes in /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_cache_build_blocks_no_later_run(
    larger_root: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    work = tmp_path
    cache_dir = work / "cache"
    flags = [
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(larger_root, work / "logs"),
        "--data.subsets.train=400",
        "--data.subsets.val=16",
        "--data.subsets.test=16",
        "--data.image_size=16",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",  # "1" would read as 1.0, the whole epoch
        "--trainer.limit_val_batches=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    with open(work / "first.err", "w") as err:
        first = subprocess.Popen([sys.executable, "-c", _SLOW_CLI, "fit", *flags], cwd=work,
                                 env=env, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        decoding = "Decoding the train subset" in (work / "first.err").read_text()
        if decoding and list(cache_dir.glob("*.npy.tmp-*")) and _children(first.pid):
            break
        assert first.poll() is None, (work / "first.err").read_text()
        time.sleep(0.1)
    else:
        pytest.fail("the build never started: " + (work / "first.err").read_text())
    time.sleep(1.0)  # a few chunks decoded, most still to do
    decoders = _children(first.pid)
    first.send_signal(stop)
    first.wait(timeout=60)
    assert not survivors(decoders, within_s=20), "decoder processes outlived their parent"

    start = time.monotonic()
    second = cli_in_process("fit", *flags, cwd=work, timeout=120)  # the later run: here
    assert second.returncode == 0, second.stderr[-3000:]
    assert time.monotonic() - start < 120
    assert not list(cache_dir.glob("*.npy.tmp-*")), "a temporary file was left behind"
    assert len(list(cache_dir.glob("*.npy"))) >= 1


def _hold_lock(lock_path: Path) -> subprocess.Popen:
    """Another process that holds ``lock_path`` (as a build of the same cache would)."""
    script = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock_path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('HELD', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "HELD"
    return holder


def test_waiting_for_another_build_says_for_whom_and_gives_up(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_dir = _official(tiny_root) / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 11)]
    key = cache.cache_key(image_dir, names, [int(c) for c in COLUMNS])
    tmp_path.mkdir(exist_ok=True)
    lock_path = tmp_path / f"celeba-{key}.lock"
    holder = _hold_lock(lock_path)
    monkeypatch.setattr(locks, "WAIT_REPORT_EVERY_S", 0.5)
    try:
        start = time.monotonic()
        with pytest.raises(CelebAError, match=rf"Gave up after .* {lock_path}.*{holder.pid}"):
            cache.build_cache(image_dir, names, tmp_path, COLUMNS, wait_limit_s=1.5)
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()
    waiting = [line for line in capsys.readouterr().err.splitlines() if "Waiting" in line]
    assert len(waiting) >= 2, "a waiting run keeps saying how long it has waited"
    assert str(lock_path) in waiting[0] and f"process {holder.pid}" in waiting[0]
    # The holder is gone: the lock is free, and the build goes through.
    assert cache.build_cache(image_dir, names, tmp_path, COLUMNS, wait_limit_s=5).is_file()


def _descriptors_of(path: str) -> list[str]:
    """This process's open descriptors of ``path``."""
    fds = Path("/proc/self/fd")
    return [fd.name for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(path)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists descriptors in /proc")
def test_a_process_forked_under_the_cache_lock_holds_no_copy_of_it(tmp_path: Path) -> None:
    # The decoders are forked while the lock is held; a copy of its descriptor in one that
    # outlived a killed builder would keep the flock, and block every later run. filelock closes
    # it in the child (an os.register_at_fork hook); the builder's own copy stays.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    lock_path = tmp_path / "celeba-0123456789abcdef01234567.lock"
    with locks.held(lock_path, 1.0, "", "", lambda folder, err: CelebAError(str(err))):
        assert lock_path.read_text() == f"{os.getpid()}\n"  # who holds it, for a waiting run
        assert len(_descriptors_of(str(lock_path))) == 1
        with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
            assert pool.submit(_descriptors_of, str(lock_path)).result() == []


def test_abandoned_temporaries_of_other_caches_are_removed(tiny_root: Path, tmp_path: Path) -> None:
    image_dir = _official(tiny_root) / "img_align_celeba"
    abandoned = tmp_path / "celeba-0123456789abcdef01234567.npy.tmp-999999"
    abandoned.write_bytes(b"x" * 1000)
    (tmp_path / "celeba-0123456789abcdef01234567.lock").write_text("999999\n")
    busy = tmp_path / "celeba-76543210fedcba9876543210.npy.tmp-1"
    busy.write_bytes(b"x")
    holder = _hold_lock(tmp_path / "celeba-76543210fedcba9876543210.lock")
    try:
        cache.build_cache(image_dir, [f"{i:06d}.jpg" for i in range(1, 5)], tmp_path, COLUMNS)
    finally:
        holder.kill()
        holder.wait()
    assert not abandoned.exists()
    assert busy.exists(), "a temporary whose build still runs must stay"


# -- 6. faces of another size: one message, cached or not ------------------------------------------


def _replace_with_small_image(root: Path, name: str) -> Path:
    path = _official(root) / "img_align_celeba" / name
    Image.new("RGB", (100, 120), (90, 60, 30)).save(path, quality=90)
    return path


@pytest.mark.parametrize(
    ("command", "image", "cache_on"),
    # A validation image fails in fit's sanity check: validate alone would want a checkpoint.
    [("fit", "000003.jpg", False), ("fit", "000100.jpg", False), ("fit", "000003.jpg", True)],
    ids=["train-decoded-on-access", "eval-decoded-on-access", "train-cached"],
)
def test_face_of_another_size_is_one_clear_message(
    tiny_root: Path, tmp_path: Path, command: str, image: str, cache_on: bool
) -> None:
    root = _copy_set(tiny_root, tmp_path)
    path = _replace_with_small_image(root, image)
    cache = f"--data.cache={str(cache_on).lower()}"
    # Both validation batches, whatever the subset order puts first.
    message = _cli(root, tmp_path, cache, "--trainer.limit_val_batches=2", command=command)
    assert f"Image {path} is 100x120 pixels, not CelebA's aligned 178x218" in message


# -- 7. the same image twice, or two layouts in one root -------------------------------------------


def _rewrite_line(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("file_name", ["list_attr_celeba.txt", "list_eval_partition.txt"])
def test_an_image_listed_twice_is_refused(tiny_root: Path, tmp_path: Path, file_name: str) -> None:
    root = _copy_set(tiny_root, tmp_path)
    annotations = _official(root) / file_name
    _rewrite_line(annotations, "000010.jpg", "000005.jpg")
    # Image k is on line k+2 of the attribute file (count and header first), k of the partitions.
    lines = (7, 12) if file_name.startswith("list_attr") else (5, 10)
    with pytest.raises(CelebAError) as caught:
        load_index(root)
    assert str(caught.value) == (
        f"{annotations}: the image '000005.jpg' is listed twice, on lines {lines[0]} and "
        f"{lines[1]}; each image must appear once. Fix or re-download the file."
    )


def test_a_root_with_both_layouts_is_refused_naming_both(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy_set(tiny_root, tmp_path)
    kaggle = tmp_path / "kaggle"
    generate_celeba(kaggle, 8, 4, 4, seed=1, progress=False, layout="kaggle")
    for name in ("list_attr_celeba.csv", "list_eval_partition.csv"):
        shutil.copy(kaggle / name, root / name)
    message = _cli(root, tmp_path, whole=True)
    assert f"The data root {root} holds more than one copy" in message
    assert "Point data.root at the folder of the one to use" in message
    assert str(_official(root) / "list_attr_celeba.txt") in message
    assert str(root / "list_attr_celeba.csv") in message


# -- 8. a byte-order mark -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["official", "kaggle"])
def test_annotation_files_with_a_byte_order_mark_read_as_without(
    tmp_path: Path, layout: str
) -> None:
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    generate_celeba(plain, 8, 4, 4, seed=2, progress=False, layout=layout)
    shutil.copytree(plain, marked)
    for path in marked.rglob("list_*"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    want, got = load_index(plain), load_index(marked)
    assert got.image_names == want.image_names and got.attr_names == want.attr_names
    assert np.array_equal(got.attributes, want.attributes)
    assert np.array_equal(got.partition, want.partition)


# -- 9. a split with no images --------------------------------------------------------------------


def _without_valid_partition(tiny_root: Path, tmp_path: Path) -> Path:
    root = _copy_set(tiny_root, tmp_path)
    partitions = _official(root) / "list_eval_partition.txt"
    partitions.write_text(partitions.read_text().replace(" 1\n", " 2\n"))
    return root


@pytest.mark.parametrize("size", ["null", "16"])
def test_a_split_without_images_is_named(tiny_root: Path, tmp_path: Path, size: str) -> None:
    root = _without_valid_partition(tiny_root, tmp_path)
    message = _cli(root, tmp_path, f"--data.subsets.val={size}")
    partitions = _official(root) / "list_eval_partition.txt"
    assert message == (
        f"error: The 'valid' split has no images in {partitions} (no line gives partition 1). "
        "Use a copy of CelebA with a valid partition, or run a stage that reads another split."
    )


# -- 10. a damaged cache file ---------------------------------------------------------------------


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 1000)


def _change_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = data.index(b"'shape': (") + len(b"'shape': (")
    data[start : start + 2] = b"99"  # the image count, e.g. 10 -> 99
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _change_header], ids=["truncated", "header-changed"])
def test_a_damaged_cache_is_named_and_rebuilt(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage
) -> None:
    image_dir = _official(tiny_root) / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(10, 20)]
    path = cache.build_cache(image_dir, names, tmp_path, COLUMNS)
    good = path.read_bytes()
    damage(path)
    with pytest.raises(CelebAError, match=rf"The cache file {path} is damaged .*delete it"):
        cache.open_cache(path, len(names), COLUMNS)
    capsys.readouterr()
    assert cache.build_cache(image_dir, names, tmp_path, COLUMNS) == path
    assert f"The cache file {path} is damaged" in capsys.readouterr().err
    assert path.read_bytes() == good
    assert cache.open_cache(path, len(names), COLUMNS).shape[0] == len(names)


# -- 11. a cache folder that cannot be written ----------------------------------------------------


def test_cache_folder_that_cannot_be_written_is_one_clear_message(
    tiny_root: Path, tmp_path: Path
) -> None:
    # Tests run as root, who may write anywhere: a folder under a regular file stands in for a
    # read-only file system.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = _cli(tiny_root, tmp_path, f"--data.cache_dir={blocker / 'cache'}")
    assert message == (
        f"error: Cannot write the decoded-image cache in {blocker / 'cache'}: Not a directory. "
        "Choose a writable folder with --data.cache_dir, or set --data.cache false to decode "
        "the JPEGs on the fly."
    )


def test_read_only_cache_folder_is_a_clear_error(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def read_only(path: Path, shape: tuple[int, ...]) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "allocate", read_only)
    image_dir = _official(tiny_root) / "img_align_celeba"
    with pytest.raises(UsageError, match=rf"in {tmp_path}: Read-only file system.*data.cache_dir"):
        cache.build_cache(image_dir, ["000001.jpg"], tmp_path, COLUMNS)
    assert not list(tmp_path.glob("*.npy*"))


# -- 12. a full disk while saving a checkpoint ----------------------------------------------------


def _to_dev_full(path: Path) -> int:
    return os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC, as on a full disk


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("failure", ["ENOSPC", "torch-writer"])
def test_full_disk_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    import torch

    from lit_celeba.base import files
    from lit_celeba.base.errors import CheckpointError
    from lit_celeba.checkpoints import atomic_io

    io = atomic_io.AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    before = path.read_bytes()
    if failure == "ENOSPC":
        monkeypatch.setattr(files, "create_exclusive", _to_dev_full)
    else:
        # What torch.save says when it writes the file itself and the disk fills up.
        def writer_fails(*args, **kwargs) -> None:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing "
                "file data/0: file write failed"
            )

        monkeypatch.setattr(atomic_io.torch, "save", writer_fails)
    with pytest.raises(CheckpointError) as caught:
        io.save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, path)
    message = str(caught.value)
    assert message.startswith(f"Cannot save the checkpoint {path} in {path.parent}: ")
    assert "disk is full" in message and "The previous last.ckpt there is intact." in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_while_saving_is_one_error_line_from_the_cli(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lit_celeba.base import files

    monkeypatch.setattr(files, "create_exclusive", _to_dev_full)
    message = _cli(tiny_root, tmp_path)
    assert "error: Cannot save the checkpoint " in message and "the disk is full" in message
    assert "No earlier" in message or "intact" in message


# -- 16. a checkpoint that would call os.system ---------------------------------------------------


class _RunsACommand:
    """Unpickling this runs a shell command (``os.system``) that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_checkpoint_that_would_call_os_system_is_refused_as_unsafe(
    tiny_root: Path, tmp_path: Path
) -> None:
    import torch

    marker = tmp_path / "command_ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsACommand(marker)}, path)
    message = _cli(tiny_root, tmp_path, f"--ckpt_path={path}", command="validate")
    assert message.startswith(f"error: Refused to load {path}: ")
    assert f"(GLOBAL {os.system.__module__}.system)" in message and "could run code" in message
    assert "weights_only" not in message and "truncated" not in message
    assert not marker.exists(), "the command in the file ran"


def test_a_file_with_a_long_name_is_written_whole(tmp_path: Path) -> None:
    """A 249-character name: the temporary beside it must still be a valid name (it failed with
    'File name too long'), and a killed writer's temporary of it is still cleaned up."""
    from lit_celeba.base.files import atomic_write, temporary_path

    target = tmp_path / ("p" * 245 + ".csv")
    stale = temporary_path(target).with_name(f".{'p' * 200}.999999999.0badf00d.tmp")
    stale.write_text("left by a killed writer")
    with atomic_write(target, newline="") as fh:
        fh.write("a,b\n")
    assert target.read_text() == "a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
