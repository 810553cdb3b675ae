"""The synthetic CelebA: file formats of both layouts, determinism, safety, and visible cues."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, read_file

from lit_celeba.data.synthetic import (
    ATTRIBUTE_NAMES,
    MARKER_NAME,
    generate_celeba,
    read_marker,
    traits,
)
from lit_celeba.data.synthetic import generate as synthetic
from lit_celeba.data.synthetic.command import main
from tests.conftest import (
    CONFIGS,
    REPO,
    child_processes,
    run_expecting_error,
    survivors,
    tree_digest,
)

# Spelled out again, in the order of the real list_attr_celeba.txt.
CELEBA_NAMES = """5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips
Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses
Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes
No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling
Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace
Wearing_Necktie Young""".split()
SIZES = (40, 10, 10)  # where the files' contents are checked
TINY = (8, 2, 2)  # where only the behaviour is
NAMES = [f"{i:06d}.jpg" for i in range(1, sum(SIZES) + 1)]
# The project decodes with torchvision.io too (data.py), so the cue tests use the same decoder.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)
PARTITIONS = [0] * SIZES[0] + [1] * SIZES[1] + [2] * SIZES[2]


def _generate(root: Path, sizes=SIZES, **kwargs) -> Path:
    return generate_celeba(root, *sizes, progress=False, **kwargs)


def _tree(folder: Path) -> dict[str, bytes]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def _labels(folder: Path) -> tuple[list[str], np.ndarray]:
    """Image names and +1/-1 values from either layout's attribute file."""
    if (folder / "list_attr_celeba.txt").is_file():
        lines = (folder / "list_attr_celeba.txt").read_text().splitlines()[2:]
        rows = [line.split() for line in lines]
    else:
        lines = (folder / "list_attr_celeba.csv").read_text().splitlines()[1:]
        rows = [line.split(",") for line in lines]
    return [r[0] for r in rows], np.array([r[1:] for r in rows], dtype=np.int8)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("official"), seed=3)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kaggle")  # exists and is empty: that is allowed
    assert _generate(root, seed=3, layout="kaggle") == root
    return root


def test_attribute_names_are_celebas_in_file_order():
    assert ATTRIBUTE_NAMES == tuple(CELEBA_NAMES)
    assert len(ATTRIBUTE_NAMES) == 40


def test_official_layout_tree_and_images(official):
    assert official.name == "celeba"
    assert sorted(p.name for p in official.iterdir()) == sorted(
        ["img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt", MARKER_NAME]
    )
    assert sorted(os.listdir(official / "img_align_celeba")) == NAMES
    with Image.open(official / "img_align_celeba" / "000042.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (178, 218))


def test_attribute_txt_has_the_real_files_quirks(official):
    raw = (official / "list_attr_celeba.txt").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    lines = raw.decode().split("\n")[:-1]
    assert lines[0] == str(len(NAMES))
    assert lines[1] == " ".join(CELEBA_NAMES) + " "  # trailing space, as in the real header
    rows = lines[2:]
    assert [r.split()[0] for r in rows] == NAMES
    for row in rows:  # one space after the name, then values of width 2: " 1" or "-1"
        assert re.fullmatch(r"\d{6}\.jpg( -1|  1){40}", row), row
    values = np.array([r.split()[1:] for r in rows], dtype=np.int8)
    male = values[:, CELEBA_NAMES.index("Male")]
    assert {1, -1} == set(male.tolist())


def test_partition_txt(official):
    lines = (official / "list_eval_partition.txt").read_text().split("\n")
    assert lines[-1] == ""
    assert lines[:-1] == [f"{n} {p}" for n, p in zip(NAMES, PARTITIONS, strict=True)]


def test_marker_records_the_parameters(official, tmp_path):
    marker = json.loads((official / MARKER_NAME).read_text())
    assert read_marker(official.parent) == marker == read_marker(official)
    expected = {"seed": 3, "num_train": 40, "num_valid": 10, "num_test": 10, "label_noise": 0.04}
    assert {k: marker[k] for k in expected} == expected
    assert marker["layout"] == "official" and marker["version"] == synthetic.GENERATOR_VERSION
    assert read_marker(tmp_path) is None


def test_kaggle_layout(kaggle, official):
    assert sorted(os.listdir(kaggle / "img_align_celeba" / "img_align_celeba")) == NAMES
    attr = (kaggle / "list_attr_celeba.csv").read_text().split("\n")
    assert attr[0] == "image_id," + ",".join(CELEBA_NAMES)
    assert attr[-1] == "" and len(attr) == len(NAMES) + 2
    for row in attr[1:-1]:
        assert re.fullmatch(r"\d{6}\.jpg(,-1|,1){40}", row), row
    partition = (kaggle / "list_eval_partition.csv").read_text().split("\n")
    assert partition[0] == "image_id,partition"
    assert partition[1:-1] == [f"{n},{p}" for n, p in zip(NAMES, PARTITIONS, strict=True)]
    assert read_marker(kaggle)["layout"] == "kaggle"
    # Same seed, same set: only the containers differ.
    assert np.array_equal(_labels(kaggle)[1], _labels(official)[1])
    image = "img_align_celeba/img_align_celeba/000017.jpg"
    assert (kaggle / image).read_bytes() == (official / "img_align_celeba/000017.jpg").read_bytes()


def test_the_projects_reader_accepts_both_layouts(official, kaggle):
    from lit_celeba.data.celeba import load_index

    for root, layout in ((official.parent, "official"), (kaggle, "kaggle")):
        index = load_index(root)
        assert index.files.layout == layout
        assert index.attr_names == CELEBA_NAMES and index.image_names == NAMES
        assert np.bincount(index.partition).tolist() == list(SIZES)
        assert np.array_equal(index.attributes, (_labels(official)[1] + 1) // 2)


def test_same_seed_gives_byte_identical_files(official, tmp_path):
    assert _tree(_generate(tmp_path, seed=3)) == _tree(official)


def test_another_seed_gives_other_files(official, tmp_path):
    other = _generate(tmp_path, seed=4)
    assert (other / "list_attr_celeba.txt").read_bytes() != (
        official / "list_attr_celeba.txt"
    ).read_bytes()
    for name in NAMES[:5]:
        image = f"img_align_celeba/{name}"
        assert (other / image).read_bytes() != (official / image).read_bytes()


def test_worker_processes_give_the_same_files(official, tmp_path, monkeypatch):
    pools = []

    class RecordingPool(synthetic.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(synthetic, "ProcessPoolExecutor", RecordingPool)
    monkeypatch.setattr(synthetic, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(synthetic, "_CHUNK", 7)  # several chunks, finishing in any order
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert _tree(_generate(tmp_path, seed=3)) == _tree(official)
    if synthetic.sys.platform.startswith("linux"):
        assert pools, "the parallel path did not run"


def test_existing_set_with_the_same_parameters_is_reused(tmp_path):
    folder = _generate(tmp_path, TINY, seed=1)
    (folder / "sentinel").write_text("still here")
    assert _generate(tmp_path, TINY, seed=1) == folder
    assert (folder / "sentinel").read_text() == "still here"


def test_existing_generated_set_with_other_parameters_is_replaced(tmp_path):
    folder = _generate(tmp_path, TINY, seed=1)
    (folder / "sentinel").write_text("old")
    assert _generate(tmp_path, TINY, seed=2) == folder
    assert not (folder / "sentinel").exists()
    assert read_marker(tmp_path)["seed"] == 2
    assert os.listdir(tmp_path) == ["celeba"]  # no temporary folders left behind


@pytest.mark.parametrize("layout", ["official", "kaggle"])
def test_refuses_to_touch_a_folder_it_did_not_generate(tmp_path, layout):
    target = tmp_path / "celeba" if layout == "official" else tmp_path
    target.mkdir(exist_ok=True)
    real = target / ("list_attr_celeba.txt" if layout == "official" else "list_attr_celeba.csv")
    real.write_text("202599\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite") as error:
        _generate(tmp_path, TINY, layout=layout)
    assert str(target) in str(error.value)
    assert real.read_text() == "202599\n"
    assert os.listdir(target) == [real.name]
    assert not [p for p in os.listdir(target.parent) if ".partial-" in p]


def test_an_interrupted_run_leaves_the_previous_state(tmp_path, monkeypatch):
    folder = _generate(tmp_path, TINY, seed=1)
    real_render = synthetic._render_chunk
    calls = []

    def render_then_fail(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return real_render(*args)

    monkeypatch.setattr(synthetic, "_CHUNK", 4)
    monkeypatch.setattr(synthetic, "_render_chunk", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path, TINY, seed=2)
    assert calls, "no image was written before the interruption"
    assert read_marker(tmp_path)["seed"] == 1  # the old set, untouched
    assert len(os.listdir(folder / "img_align_celeba")) == sum(TINY)
    assert os.listdir(tmp_path) == ["celeba"]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "fresh", TINY)
    assert os.listdir(tmp_path / "fresh") == []  # nothing that could pass for a data set


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_valid": -1}, "num_valid"),
        ({"num_test": 2.5}, "num_test"),
        ({"label_noise": 0.5}, "label_noise"),
        ({"label_noise": -0.01}, "label_noise"),
        ({"seed": -1}, "seed"),
        ({"layout": "torchvision"}, "official, kaggle"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, message):
    arguments = {"num_train": 5, "num_valid": 2, "num_test": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_celeba(tmp_path / "data", progress=False, **arguments)
    assert not (tmp_path / "data").exists()


def test_command_line(tmp_path, capsys):
    root = tmp_path / "cli"
    args = [str(root), "--num-train", "6", "--num-valid", "2", "--num-test", "3", "--seed", "9"]
    assert main([*args, "--layout", "kaggle"]) == 0
    out, err = capsys.readouterr()
    assert str(root) in out
    assert "Generating synthetic CelebA" in err and "11/11" in err  # the progress bar
    marker = read_marker(root)
    assert (marker["layout"], marker["seed"], marker["num_test"]) == ("kaggle", 9, 3)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "bad"), "--num-train", "0", "--quiet"])
    assert exit_info.value.code == 2
    assert "num_train" in capsys.readouterr().err


def test_progress_false_is_silent(tmp_path, capsys):
    _generate(tmp_path, TINY)
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def cue_set(tmp_path_factory):
    """300 images without label noise, decoded: (names, +1/-1 labels, uint8 N x 3 x 218 x 178)."""
    root = tmp_path_factory.mktemp("cues")
    folder = generate_celeba(root, 240, 30, 30, seed=11, label_noise=0.0, progress=False)
    names, labels = _labels(folder)
    image_dir = folder / "img_align_celeba"
    images = torch.stack([decode_jpeg(read_file(str(image_dir / name))) for name in names])
    return folder, labels, images


def _column(labels: np.ndarray, name: str) -> np.ndarray:
    return labels[:, CELEBA_NAMES.index(name)] == 1


def test_base_rates_are_celeba_like(cue_set):
    _, labels, _ = cue_set
    rates = {name: _column(labels, name).mean() for name in CELEBA_NAMES}
    assert 0.32 < rates["Male"] < 0.52
    assert 0.38 < rates["Smiling"] < 0.58
    assert 0.03 < rates["Eyeglasses"] < 0.11
    assert 0.67 < rates["Young"] < 0.87
    assert all(0 < rate < 1 for name, rate in rates.items() if name != "Bald"), rates


def test_long_hair_below_the_ears_separates_male(cue_set):
    _, labels, images = cue_set
    male = _column(labels, "Male")
    pixels = images.float() / 255
    # Beside the neck, below the ears: long hair for women, background for men.
    region = torch.cat([pixels[:, :, 145:175, 26:40], pixels[:, :, 145:175, 138:152]], 3)
    corners = torch.cat([pixels[:, :, 2:20, 2:20], pixels[:, :, 2:20, 158:176]], 3)
    region, corners = region.mean((2, 3)), corners.mean((2, 3))
    brightness = region.mean(1).numpy()
    assert abs(brightness[male].mean() - brightness[~male].mean()) > 0.08
    unlike_background = (region - corners).norm(dim=1).numpy()
    assert unlike_background[~male].mean() > unlike_background[male].mean() + 0.2


def test_eyeglass_frames_darken_the_eye_band(cue_set):
    _, labels, images = cue_set
    glasses = _column(labels, "Eyeglasses")
    assert glasses.sum() >= 5
    luma = images.float().mean(1) / 255
    band = luma[:, 96:124, 44:134].mean((1, 2))  # both frames and the bridge, with jitter
    cheeks = torch.cat([luma[:, 124:132, 48:60], luma[:, 124:132, 118:130]], 2).mean((1, 2))
    ratio = (band / cheeks).numpy()  # relative to the face's own skin tone
    assert ratio[glasses].mean() < ratio[~glasses].mean() - 0.1


def test_label_noise_flips_drawn_labels_only(cue_set, tmp_path):
    folder, clean, _ = cue_set
    noisy_folder = generate_celeba(tmp_path, 240, 30, 30, seed=11, label_noise=0.3, progress=False)
    noisy = _labels(noisy_folder)[1]
    drawn = np.array([n not in traits._INVISIBLE for n in CELEBA_NAMES])
    assert np.array_equal(noisy[:, ~drawn], clean[:, ~drawn])
    flipped = (noisy[:, drawn] != clean[:, drawn]).mean()
    assert 0.25 < flipped < 0.35
    for name in NAMES[:20]:  # the pictures do not depend on label_noise
        image = f"img_align_celeba/{name}"
        assert (noisy_folder / image).read_bytes() == (folder / image).read_bytes()


# -- the generation killed: no worker left, its partial folder removed -----------------------------
# The generator in a process of its own, its pool forced on (the tests run on one core) and slow.
_SLOW_GENERATION = """
import os, sys, time
from lit_celeba.data.synthetic import generate as synthetic
os.sched_getaffinity = lambda pid: {0, 1, 2, 3}
render = synthetic._render_chunk
def slow(*args, **kwargs):
    time.sleep(2)
    return render(*args, **kwargs)
synthetic._render_chunk = slow
synthetic.generate_celeba(sys.argv[1], 800, 8, 8, progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists the workers in /proc")
def test_killed_generation_leaves_no_worker_and_is_cleaned_next_time(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    generator = subprocess.Popen([sys.executable, "-c", _SLOW_GENERATION, str(tmp_path)],
                                 env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(child_processes(generator.pid)) < 2 or not list(tmp_path.glob(".celeba.partial-*")):
        assert generator.poll() is None and time.monotonic() < deadline, "no pool started"
        time.sleep(0.1)
    workers = child_processes(generator.pid)
    generator.send_signal(signal.SIGKILL)
    generator.wait()
    assert not survivors(workers), "pool workers outlived the killed generation"
    assert list(tmp_path.glob(".celeba.partial-*"))  # what a kill leaves ...
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    assert os.listdir(tmp_path) == ["celeba"]  # ... is removed by the next generation


def test_a_set_left_half_swapped_is_cleaned_next_time(tmp_path: Path) -> None:
    # A generation killed while it swapped an older set out left .celeba.old-PID-*: never removed.
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    leftover = tmp_path / ".celeba.old-999999999-0123abcd"
    shutil.copytree(tmp_path / "celeba", leftover)
    generate_celeba(tmp_path, 8, 4, 4, seed=1, progress=False)
    assert os.listdir(tmp_path) == ["celeba"]


def test_two_generations_at_once_make_the_set_once(tmp_path: Path, monkeypatch) -> None:
    # Two fits of the demo started together (compare --jobs 2 on a fresh root): the second
    # generated the set again and swapped it in while the first was reading it.
    calls, started = [], threading.Event()
    render = synthetic._render_all

    def slow_render(*args, **kwargs):
        calls.append(1)
        started.set()
        time.sleep(0.5)
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_render_all", slow_render)
    first = threading.Thread(target=generate_celeba, args=(tmp_path, 8, 4, 4),
                             kwargs={"progress": False})  # fmt: skip
    first.start()
    started.wait(10)
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    first.join()
    assert len(calls) == 1
    assert os.listdir(tmp_path) == ["celeba"]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_generating_is_one_clear_error(tmp_path: Path, monkeypatch, capsys):
    # At module level: with two or more CPUs the generator's pool pickles the function by name
    # (a local one cannot be, and the pool then waited forever, 2026-12-05).
    monkeypatch.setattr(synthetic, "_render_chunk", _full_disk)
    root = tmp_path / "demo"
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "demo.yaml"), f"--data.root={root}",
         "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
         f"--data.cache_dir={tmp_path / 'cache'}"], capsys,
    )  # fmt: skip
    assert f"cannot be written into {root}: No space left on device" in message
    assert os.listdir(root) == []  # no partial folder


# -- the generator never writes beside a real copy -------------------------------------------------


def _kaggle_copy(root: Path) -> None:
    generate_celeba(root, 8, 4, 4, layout="kaggle", progress=False)
    (root / synthetic.MARKER_NAME).unlink()  # as a real copy is: no marker of ours


@pytest.mark.parametrize(
    "copy", ["kaggle-unpacked", "official-at-root", "kaggle-archive", "official-zip", "drive",
             "tfds"],
)  # fmt: skip
def test_generation_refuses_a_root_that_holds_a_celeba_copy(copy: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    if copy == "kaggle-unpacked":
        _kaggle_copy(root)
    elif copy == "tfds":
        (root / "celeb_a" / "2.1.0").mkdir(parents=True)
        (root / "celeb_a" / "2.1.0" / "dataset_info.json").write_text("{}")
        (root / "celeb_a" / "2.1.0" / "celeb_a-train.tfrecord-00000-of-00001").write_bytes(b"")
    else:
        name = {"official-at-root": "list_attr_celeba.txt", "kaggle-archive": "archive.zip",
                "official-zip": "img_align_celeba.zip", "drive": "Anno/list_attr_celeba.txt"}[copy]
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("a real file")  # fmt: skip
    before = tree_digest(root)
    with pytest.raises(FileExistsError, match=rf"{root} holds a CelebA copy that .* did not"):
        generate_celeba(root, 8, 4, 4, progress=False)
    assert tree_digest(root) == before and not (root / "celeba").exists()


def test_the_demo_on_a_root_with_a_real_copy_is_one_error_line(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    _kaggle_copy(root)
    before = tree_digest(root)
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "demo.yaml"), f"--data.root={root}",
         "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'l'}"],
        capsys,
    )  # fmt: skip
    assert message.startswith(f"error: data.synthetic is set but {root} holds a CelebA copy")
    assert "--data.synthetic null" in message and message.count("\n") == 1
    assert tree_digest(root) == before
