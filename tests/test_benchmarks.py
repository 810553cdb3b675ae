"""The benchmark scripts run from a clean checkout and print what their README promises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(
    script: str, *args: str, tmp_path: Path, timeout: int, returncode: int = 0
) -> subprocess.CompletedProcess:
    """``python benchmarks/SCRIPT ARGS`` from a clean folder with a bare environment, one thread;
    fails the test on an exit status other than ``returncode``."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                           "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == returncode, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_throughput_prints_the_three_ways_and_the_ratios(tmp_path: Path) -> None:
    done = run_benchmark(
        "throughput.py",
        "--images", "128", "--rounds", "2", "--warmup", "1", "--accelerator", "cpu",
        tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert sum(line.startswith("round ") for line in lines) == 2
    figures = json.loads(lines[-1])
    assert {"model_only_img_s", "fit_img_s", "naive_img_s", "fit_vs_model_only", "fit_vs_naive",
            "device", "precision", "batch_size"} <= set(figures)  # fmt: skip
    assert min(figures["model_only_img_s"], figures["fit_img_s"], figures["naive_img_s"]) > 0
    assert figures["fit_vs_model_only"] == pytest.approx(
        figures["fit_img_s"] / figures["model_only_img_s"], abs=2e-3
    )
    assert figures["fit_vs_naive"] == pytest.approx(
        figures["fit_img_s"] / figures["naive_img_s"], abs=2e-3
    )
    assert figures["precision"] in ("32-true", "bf16-mixed") and figures["batch_size"] == 32
    assert f"b/a = {figures['fit_vs_model_only']:.3f}" in done.stdout


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end_on_a_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu.py, as small as it goes, on the CPU: every figure it promises is there, and
    a stage that fails (a compile mode that does not exist) is named while the others still run."""
    done = run_benchmark(
        "gpu.py", "--train", "64", "--val", "32",
        # One timed step after one warm-up: a step of the network alone at batch 512 takes some
        # 4 s of CPU; the fit keeps its 2 epochs (the figures leave the first out).
        "--epochs", "1", "--fit-epochs", "2", "--steps", "1", "--warmup", "1",
        "--compile-modes", "none,bogus",
        "--accelerator", "cpu", "--out", str(tmp_path / "gpu.json"),
        tmp_path=tmp_path, timeout=600, returncode=1,
    )  # fmt: skip
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures == json.loads((tmp_path / "gpu.json").read_text())
    assert figures["complete"] is True and figures["failed"] == ["b32_bogus", "b512_bogus"]
    assert "stage b32_bogus failed" in done.stderr and "'bogus'" in done.stderr
    assert "stages that failed: b32_bogus, b512_bogus" in done.stderr
    for batch in (32, 512):
        key = f"b{batch}_none"
        assert figures[f"{key}_model_img_s"] > 0 and figures[f"{key}_fit_img_s"] > 0
        assert figures[f"{key}_fit_vs_model"] == pytest.approx(
            figures[f"{key}_fit_img_s"] / figures[f"{key}_model_img_s"], rel=1e-3
        )
    for run in ("recipe", "fast"):
        assert figures[f"{run}_wall_s"] > 0 and 0.0 <= figures[f"{run}_val_acc"] <= 1.0
    assert figures["device"].startswith("CPU") and figures["torch"] == torch_version()


def test_the_gpu_machine_gets_every_dependency() -> None:
    """gpu_wheels.sh carries, as wheels, each dependency the GPU image lacks: the image's list and
    the wheels together cover pyproject.toml's dependencies, so the one device call cannot die on
    an import (as it would have when google-crc32c joined them)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    script = (REPO / "benchmarks" / "gpu_wheels.sh").read_text()
    image_has = re.search(r"#\s+image_has:(.*)", script).group(1).split()
    wheels = re.search(r"wheels=\((.*)\)", script).group(1).split()
    carried = [wheel.split("==")[0] for wheel in wheels]

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {name(r) for r in project["dependencies"]}
    assert needed - set(image_has) - set(carried) == set()
    assert all("==" in wheel for wheel in wheels)  # pinned: the device has no index to resolve


def torch_version() -> str:
    import torch

    return torch.__version__


@pytest.mark.slow
def test_groups_over_seeds_prints_the_table_and_the_gains(tmp_path: Path) -> None:
    done = run_benchmark(
        "groups_over_seeds.py", "--seeds", "3",
        "--objectives", "erm", "balanced", "--train-size", "96", "--test-size", "48",
        "--epochs", "1",
        tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert sum(line.startswith("seed 3 ") for line in lines) == 2  # a row per objective
    figures = json.loads(lines[-1])
    assert figures["setting"]["train_size"] == 96 and set(figures["results"]) == {"erm", "balanced"}
    runs = figures["results"]
    gain = runs["balanced"]["3"]["worst"] - runs["erm"]["3"]["worst"]
    assert figures["aggregates"]["balanced"]["min_gain"] == pytest.approx(gain)
    assert sum(runs["erm"]["3"]["test_sizes"].values()) == 48
    assert sum(runs["erm"]["3"]["train_sizes"].values()) == 96
    assert f"{'balanced gain':17s}" in done.stdout


@pytest.mark.slow
def test_face_alignment_prints_each_detectors_figures(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    done = run_benchmark(
        "face_alignment.py", "--root", str(tiny_root), "--ckpt_path", str(tiny_checkpoint),
        "--limit", "3", "--detectors", "yunet", tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 test faces, attributes ['Male']")
    assert any(line.startswith("YuNet on the aligned faces: ") for line in lines)
    (yunet,) = [line for line in lines if line.startswith("yunet: found ")]
    assert re.search(r"found \d+ of 3 .* ms a photo .* lost -?\d+\.\d\d points$", yunet)


@pytest.mark.slow
def test_maps_overhead_prints_the_share_of_the_epochs(tmp_path: Path) -> None:
    done = run_benchmark(
        "maps_overhead.py", "--root", str(tmp_path / "demo"), "--epochs", "1",
        "--train_size", "32", "--val_size", "16", tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    assert re.search(r"^epoch 1: \d+\.\d\d s, maps \d+\.\d{3} s \(\d+\.\d\d%\)$", done.stdout, re.M)
    assert "recipe, 1 attribute(s), 32 training and 16 validation faces: maps " in done.stdout


def _predictions_csv(path: Path, probabilities, truth, names) -> None:
    header = ["image", *[f"{kind}_{n}" for n in names for kind in ("prob", "pred", "true")]]
    lines = [",".join(header)]
    for i, (row_p, row_t) in enumerate(zip(probabilities.tolist(), truth.tolist(), strict=True)):
        cells = [f"{i:06d}.jpg"]
        for p, t in zip(row_p, row_t, strict=True):
            cells += [f"{p:.6f}", str(int(p > 0.5)), str(t)]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_ece_floor_tells_calibrated_from_miscalibrated(tmp_path: Path) -> None:
    import torch

    # Not seed 0, the script's own: its first draw would then repeat these very numbers.
    generator = torch.Generator().manual_seed(7)
    probabilities = torch.rand(2000, 3, generator=generator)
    truth = (torch.rand(2000, 3, generator=generator) < probabilities).long()
    names = ["Male", "Young", "Bald"]

    def ratio(csv_name: str, shown) -> float:
        _predictions_csv(tmp_path / csv_name, shown, truth, names)
        done = run_benchmark("ece_floor.py", csv_name, "--draws", "40", tmp_path=tmp_path,
                             timeout=120)  # fmt: skip
        assert "2000 images, 3 attribute(s), 15 bins" in done.stdout
        floor = re.search(r"perfectly calibrated, same probabilities: (0\.\d{4}) \(5-95 %: "
                          r"(0\.\d{4})-(0\.\d{4})\)", done.stdout)  # fmt: skip
        assert floor and float(floor.group(2)) <= float(floor.group(1)) <= float(floor.group(3))
        return float(re.search(r"measured / perfectly calibrated: (\d+\.\d\d)", done.stdout)[1])

    # Labels drawn from the probabilities: measured as the floor. Squeezed towards 0.5: far above.
    assert 0.6 < ratio("calibrated.csv", probabilities) < 1.6
    assert ratio("squeezed.csv", 0.5 + (probabilities - 0.5) * 0.3) > 3
    (tmp_path / "photos.csv").write_text("path,prob_Male,pred_Male,error\na.jpg,0.9,1,\n")
    done = run_benchmark("ece_floor.py", "photos.csv", tmp_path=tmp_path, timeout=60, returncode=1)
    assert "no prob_<attribute> and true_<attribute> columns" in done.stderr


@pytest.mark.slow
def test_face_search_prints_the_limits_of_each_photo_size(tmp_path: Path) -> None:
    done = run_benchmark(
        "face_search.py", "--sizes", "250x250", "1024x768", "--repeat", "1",
        tmp_path=tmp_path, timeout=300,
    )  # fmt: skip
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["250x250", "1024x768"]
    assert rows[0][1:3] == ["1", "12"]  # one pass; her face found down to 12 px
    assert rows[1][1:4] == ["1", "0.625", "12"] and "yes" in rows[1]


@pytest.mark.slow
def test_startup_prints_what_lit_celeba_adds_to_lightning(tmp_path: Path) -> None:
    done = run_benchmark("startup.py", "--trees", str(REPO), str(REPO), "--rounds", "1",
                         "--warmup", "0", tmp_path=tmp_path, timeout=300)  # fmt: skip
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["minimal_cpu_s"] > 0 and figures["rounds"] == 1
    tree = figures["trees"][str(REPO)]
    assert tree["added_cpu_s"] == pytest.approx(tree["cpu_s"] - figures["minimal_cpu_s"])
    assert "lit_celeba adds" in done.stdout and "cut" in done.stdout
    refused = run_benchmark("startup.py", "--trees", str(tmp_path), tmp_path=tmp_path, timeout=60,
                            returncode=1)  # fmt: skip
    assert "is not a checkout of lit_celeba" in refused.stderr
