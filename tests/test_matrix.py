"""Features together: every config with every command, one and several attributes, with and
without subgroups, with the decoded cache and without, and predict on a folder of photos.

Each case runs, in one working folder and in-process (``cli_main``, as the CLI entry point does):
fit -> validate -> test -> predict (a CelebA split) -> predict (photos) -> report -> export ->
calibrate, and checks what each one wrote. Cases are spread so that each config, each target
count, subgroups on and off, and the cache on and off all meet every command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from lit_celeba.attributes import attribute_list
from lit_celeba.cli import cli_main
from lit_celeba.data.faces import face_columns
from tests.conftest import CONFIGS, TINY_SIZES, csv_rows, tiny_overrides

THREE = ["Male", "Young", "Smiling"]
ALL_40 = None  # all_attributes.yaml's own list
CASES = {
    # id: (config, target attributes, subgroups, cache)
    "base-one": ("base", ["Male"], None, True),
    "base-three-subgroups-nocache": ("base", THREE, ["Young"], False),
    "demo-three": ("demo", THREE, None, True),
    "demo-one-subgroups-nocache": ("demo", ["Smiling"], ["Male"], False),
    "full-three-subgroups": ("full", THREE, ["Eyeglasses"], True),
    "full_resnet18-one-nocache": ("full_resnet18", ["Male"], None, False),
    "all_attributes-subgroups": ("all_attributes", ALL_40, ["Male", "Young"], True),
    "blond_hair-group_dro": ("blond_hair", None, None, True),  # its own target and subgroup
    "tuned-three-nocache": ("tuned", THREE, ["Young"], False),
    "fast-three-subgroups-resident": ("fast", THREE, ["Young"], True),
    "all_attributes_tuned-one": ("all_attributes_tuned", ["Smiling"], None, True),
}
# Settings beyond the config for some cases: the device-resident batches on the CPU.
EXTRA = {"fast-three-subgroups-resident": ["--data.cache=device"]}
TINY_RUN = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.limit_predict_batches=2",  # "1" would read as 1.0: all
    "--data.batch_size=8",
]


def test_every_config_is_in_the_matrix() -> None:
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == {config for config, *_ in CASES.values()}


def config_args(name: str) -> list[str]:
    """The configs are base.yaml plus a delta: ``--config base.yaml --config NAME.yaml``."""
    base = str(CONFIGS / "base.yaml")
    return (
        ["--config", base]
        if name == "base"
        else ["--config", base, "--config", str(CONFIGS / f"{name}.yaml")]
    )


def run(*args: str) -> None:
    """``python -m lit_celeba ARGS`` in-process; a clean exit or the CLI object, nothing else."""
    try:
        cli_main(list(args))
    except SystemExit as exit_info:  # pragma: no cover - only reached on a failure
        assert exit_info.code in (0, None), f"{args[0]} exited with {exit_info.code}"


def photo_folder(tiny_root: Path, folder: Path) -> Path:
    """Three CelebA faces as JPEG, one as PNG, and one file that is no image."""
    folder.mkdir()
    images = sorted((tiny_root / "celeba" / "img_align_celeba").glob("*.jpg"))[:4]
    for image in images[:3]:
        shutil.copy(image, folder / image.name)
    Image.open(images[3]).save(folder / "face.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_command(case: str, tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    config, targets, subgroups, cache = CASES[case]
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    common = [*config_args(config), *tiny_overrides(tiny_root, logs), *TINY_RUN]
    common.append(f"--data.cache={str(cache).lower()}")
    common += EXTRA.get(case, [])
    if targets is not None:
        common.append(f"--data.target_attr=[{', '.join(targets)}]")
    if subgroups is not None:
        common.append(f"--model.subgroups=[{', '.join(subgroups)}]")

    run("fit", *common)
    runs = logs / config
    fit_dir = runs / "version_0"
    last = fit_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and (fit_dir / "config.yaml").is_file()

    run("validate", *common, f"--ckpt_path={last}")
    run("test", *common, f"--ckpt_path={last}")
    test_dir = runs / "version_2"
    assert list(test_dir.glob("events.out.tfevents.*"))
    names = targets or json.loads(json.dumps(_trained_attributes(fit_dir)))
    if len(names) > 1 or subgroups:
        table = csv_rows(test_dir / "test_attributes.csv")
        assert [row["attribute"] for row in table] == names

    run("predict", *common, f"--ckpt_path={last}")
    rows = csv_rows(runs / "version_3" / "predictions.csv")
    assert len(rows) == min(16, TINY_SIZES["test"])  # two batches of 8
    assert list(rows[0]) == ["image"] + [
        f"{k}_{a}" for a in names for k in ("prob", "pred", "true")
    ]

    photos = photo_folder(tiny_root, tmp_path / "photos")
    run("predict", *common, f"--ckpt_path={last}", f"--data.predict.path={photos}")
    photo_rows = csv_rows(runs / "version_4" / "predictions.csv")
    assert [Path(r["path"]).name for r in photo_rows] == sorted(p.name for p in photos.iterdir())
    # CelebA's own 178x218 faces: taken as aligned (data.predict.align auto): face columns blank.
    assert list(photo_rows[0]) == ["path", *face_columns()] + [
        f"{k}_{a}" for a in names for k in ("prob", "pred")
    ] + ["error"]
    assert all(r["face"] == "" for r in photo_rows)
    readable = [r for r in photo_rows if not r["error"]]
    assert len(readable) == 4 and all(0 <= float(r[f"prob_{names[-1]}"]) <= 1 for r in readable)

    run("report", str(fit_dir))
    assert (fit_dir / "curves.png").stat().st_size > 10_000
    run("report", str(test_dir), "--out", str(tmp_path / "test_report"))
    assert list((tmp_path / "test_report").glob("test_*.png"))

    run("export", "--ckpt_path", str(last), "--out", str(tmp_path / "exported"))
    info = json.loads((tmp_path / "exported" / "model.json").read_text())
    assert info["outputs"]["probability"]["shape"] == ["N", len(names)]

    run("calibrate", *common, f"--ckpt_path={last}")
    calibrated = torch.load(runs / "version_5" / "calibrated.ckpt", weights_only=True)
    assert len(calibrated["calibration"]["temperature"]) == len(names)


def _trained_attributes(run_dir: Path) -> list[str]:
    import yaml

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    return attribute_list(saved["data"]["target_attr"])  # "all": CelebA's 40
