"""The decoded-image cache: content, keys, and the bad cases (interrupted build, changed subset,
two processes at once, a full disk)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import ImageReadMode, decode_image

from lit_celeba.base.errors import CelebAError
from lit_celeba.data import cache
from lit_celeba.data.transforms import columns_read
from tests.conftest import REPO, recipe_model

COLUMNS = columns_read(64)


def image_dir(root: Path) -> Path:
    return root / "celeba" / "img_align_celeba"


def names(count: int, start: int = 1) -> list[str]:
    return [f"{i:06d}.jpg" for i in range(start, start + count)]


def test_cache_holds_the_decoded_columns(tiny_root: Path, tmp_path: Path) -> None:
    path = cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS)
    array = cache.open_cache(path, 20, COLUMNS)
    assert array.shape == (20, 218, 128, 3) and array.dtype == np.uint8
    for i in (0, 7, 19):
        decoded = decode_image(str(image_dir(tiny_root) / names(20)[i]), mode=ImageReadMode.RGB)
        assert np.array_equal(array[i], decoded.permute(1, 2, 0)[:, COLUMNS].numpy())


def test_second_build_reuses_the_file(tiny_root: Path, tmp_path: Path) -> None:
    path = cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS)
    stamp = path.stat().st_mtime_ns
    assert cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS) == path
    assert path.stat().st_mtime_ns == stamp


def test_changed_subset_size_or_data_never_reuse_a_stale_cache(
    tiny_root: Path, tmp_path: Path
) -> None:
    base = cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS)
    other_subset = cache.build_cache(image_dir(tiny_root), names(20, start=2), tmp_path, COLUMNS)
    other_size = cache.build_cache(image_dir(tiny_root), names(20), tmp_path, columns_read(32))
    assert len({base, other_subset, other_size}) == 3

    # The same names with one image replaced: a new key, and the new pixels.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in names(20):
        (copy / name).write_bytes((image_dir(tiny_root) / name).read_bytes())
    before = cache.build_cache(copy, names(20), tmp_path, COLUMNS)
    (copy / "000005.jpg").write_bytes((image_dir(tiny_root) / "000030.jpg").read_bytes())
    after = cache.build_cache(copy, names(20), tmp_path, COLUMNS)
    assert after != before
    new = cache.open_cache(after, 20, COLUMNS)[4]
    assert not np.array_equal(new, cache.open_cache(before, 20, COLUMNS)[4])


def _builder_script(cache_dir: Path, root: Path, count: int, slow: bool) -> str:
    slow_down = (
        "orig = cache._decode_chunk\n"
        "def slow(*a):\n"
        "    time.sleep(0.05 * len(a[2]))\n"
        "    return orig(*a)\n"
        "cache._decode_chunk = slow\n"
        "cache._CHUNK = 4\n"
    )
    return (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from lit_celeba.data import cache\n"
        "from lit_celeba.data.transforms import columns_read\n"
        + (slow_down if slow else "")
        + f"names = [f'{{i:06d}}.jpg' for i in range(1, {count + 1})]\n"
        f"p = cache.build_cache(Path({str(image_dir(root))!r}), names, Path({str(cache_dir)!r}),"
        " columns_read(64), workers=1)\n"
        "print('BUILT', p)\n"
    )


def _start(script: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.slow
def test_build_killed_midway_leaves_nothing_that_looks_complete(
    tiny_root: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    builder = _start(_builder_script(cache_dir, tiny_root, 40, slow=True))
    deadline = time.time() + 60
    while not list(cache_dir.glob("*.npy.tmp-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # some chunks written, not all
    builder.send_signal(signal.SIGKILL)
    builder.wait()
    assert list(cache_dir.glob("*.npy.tmp-*")), "the killed build left its temporary file"
    assert not list(cache_dir.glob("*.npy")), "no cache file may look complete"

    path = cache.build_cache(image_dir(tiny_root), names(40), cache_dir, COLUMNS)
    assert not list(cache_dir.glob("*.npy.tmp-*"))  # the stale temporary file is gone
    decoded = decode_image(str(image_dir(tiny_root) / "000040.jpg"), mode=ImageReadMode.RGB)
    last = cache.open_cache(path, 40, COLUMNS)[39]
    assert np.array_equal(last, decoded.permute(1, 2, 0)[:, COLUMNS].numpy())


@pytest.mark.slow
def test_two_processes_at_once_build_once_and_agree(tiny_root: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    script = _builder_script(cache_dir, tiny_root, 40, slow=True)
    first, second = _start(script), _start(script)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    paths = {line.split()[1] for out, _ in outputs for line in out.splitlines() if "BUILT" in line}
    assert len(paths) == 1
    builds = sum("Decoding" in err for _, err in outputs)
    assert builds == 1, "the second process must wait for the first and reuse its file"
    assert len(list(cache_dir.glob("*.npy"))) == 1


def test_full_cache_directory_is_a_clear_error_and_loses_nothing(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = cache.build_cache(image_dir(tiny_root), names(10), tmp_path, COLUMNS)
    content = existing.read_bytes()

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(CelebAError, match=r"cache folder .* is full.*data.cache_dir.*cache false"):
        cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS)
    assert not list(tmp_path.glob("*.npy.tmp-*"))
    assert existing.read_bytes() == content


def test_wrong_cache_content_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    path = cache.build_cache(image_dir(tiny_root), names(10), tmp_path, COLUMNS)
    with pytest.raises(CelebAError, match="delete it and it will be rebuilt"):
        cache.open_cache(path, 11, COLUMNS)


def test_cached_training_is_reproducible_under_seed(tiny_root: Path, tmp_path: Path) -> None:
    from pytorch_lightning import Trainer, seed_everything

    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets

    def run() -> torch.Tensor:
        seed_everything(5)
        data = CelebADataModule(root=str(tiny_root), subsets=Subsets(train=64, val=16),
                                batch_size=16, num_workers=0, cache_dir=str(tmp_path))  # fmt: skip
        model = recipe_model()
        # Without a logger a run's files go to default_root_dir, the working folder by default.
        trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, deterministic=True,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
        trainer.fit(model, data)
        return model.net.classifier.weight.detach().clone()

    assert torch.equal(run(), run())


@pytest.mark.parametrize("workers", [1, 2])
def test_building_leaves_the_trainers_threads_alone(
    tiny_root: Path, tmp_path: Path, workers: int
) -> None:
    # A small subset is decoded in this process (no pool); training afterwards needs its threads.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cache.build_cache(image_dir(tiny_root), names(20), tmp_path, COLUMNS, workers=workers)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
