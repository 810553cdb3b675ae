"""docs/architecture.md's rules that a test can hold: what the mission's path imports."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What only an extra needs: OpenCV (the photo detector), Captum (activation maps), the TFRecord
# reader (google_crc32c, and the tf.train.Example parser), and the demo's face generator.
EXTRAS = ("cv2", "captum", "google_crc32c", "lit_celeba.data.tfrecord",
          "lit_celeba.data.tf_example", "lit_celeba.data.tfds_records",
          "lit_celeba.data.tfds_index", "lit_celeba.data.synthetic")  # fmt: skip


def test_fit_help_imports_no_extra(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-X", "importtime", "-m", "lit_celeba", "fit", "--help"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--data.root" in run.stdout
    # "import time: self [us] | cumulative | imported package", one line per module.
    imported = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}  # fmt: skip
    assert "lit_celeba.data.datamodule" in imported, "importtime's output changed form"
    extras = sorted(m for m in imported if re.match(rf"({'|'.join(map(re.escape, EXTRAS))})\b", m))
    assert not extras, f"fit --help imported what only an extra needs: {extras}"


def test_base_imports_nothing_of_lit_celeba_outside_it() -> None:
    """Section 1: ``base/`` is what every other package builds on, so it may not import them
    (function-level imports included: they would hide a circle)."""
    outside = []
    for path in sorted((REPO / "lit_celeba" / "base").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            outside += [f"{path.name}:{node.lineno} imports {name}" for name in names
                        if name.split(".")[0] == "lit_celeba"
                        and not name.startswith("lit_celeba.base")]  # fmt: skip
    assert len(list((REPO / "lit_celeba" / "base").glob("*.py"))) >= 7, "base/ moved?"
    assert not outside, outside


def test_every_module_is_at_most_300_lines() -> None:
    """Section 2's budget for every module of every layer."""
    modules = sorted((REPO / "lit_celeba").rglob("*.py"))
    assert len(modules) > 50, "lit_celeba/ moved?"
    over = [f"{p.relative_to(REPO)}: {n}" for p in modules
            if (n := len(p.read_text().splitlines())) > 300]  # fmt: skip
    assert not over, over


def test_the_data_module_takes_data_settings_only() -> None:
    """Issue 33: about reading, splitting, transforming or sampling CelebA, at most 15 of them;
    predict's output is the writer's (``--prediction.*``)."""
    import inspect

    from lit_celeba.data.datamodule import CelebADataModule

    names = list(inspect.signature(CelebADataModule).parameters)
    assert len(names) <= 15, names
    assert not [name for name in names if name.startswith("predict_")], names


# docs/architecture.md section 2: the mission's path (CLI, data module, CelebA reader, cache,
# transforms, LightningModule, networks, metrics).
CORE_FILES = (
    "__init__.py", "__main__.py", "data/__init__.py", "models/__init__.py", "cli.py",
    "attributes.py", "data/celeba.py", "data/annotations.py", "data/images.py",
    "data/cache.py", "data/datasets.py", "data/order.py", "data/transforms.py",
    "data/datamodule.py", "data/settings.py", "models/nets.py", "models/module.py",
    "models/objectives.py", "models/optimization.py", "models/outputs.py",
    "models/metrics.py", "models/evaluation.py",
)  # fmt: skip
# Issue 33's budget for the core path.
CORE_BUDGET = 2_500


def test_the_core_is_within_its_budget() -> None:
    counts = {name: len((REPO / "lit_celeba" / name).read_text().splitlines())
              for name in CORE_FILES}  # fmt: skip
    assert sum(counts.values()) <= CORE_BUDGET, sorted(counts.items(), key=lambda c: -c[1])
