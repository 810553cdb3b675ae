"""Every command that README.md and docs/*.md show, run on generated data, in the order shown.

The commands are read from the documents' ``bash`` blocks, so an example that is changed or added
there is what runs here. Each is run as written, in one working folder (as a user would type them
one after another), with only these changes: ``PATH`` (and the cluster paths) becomes a small
generated data set, ``...`` after ``--ckpt_path`` becomes the newest ``last.ckpt``, training is cut
to a few batches, and device counts shrink to what a 2-core CPU has. A command that no rule knows
fails the first test, so nothing in the documents goes unrun.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lit_celeba.cli import cli_main
from lit_celeba.commands.compare import build_parser, parse_variant
from tests.conftest import REPO, TINY_SIZES, write_group_photo
from tests.test_dashboards import tensorboard_server

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# What the CLI runs quickly here: a few batches of the tiny set, on the CPU, without workers.
TINY = [
    f"--data.subsets.train={TINY_SIZES['train']}",
    f"--data.subsets.val={TINY_SIZES['valid']}",
    f"--data.subsets.test={TINY_SIZES['test']}",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=2",
    "--trainer.limit_predict_batches=2",
    "--trainer.accelerator=cpu",
    "--trainer.enable_progress_bar=false",
    "--data.num_workers=0",
]
# The documents that show no command, each with the reason; every other one must show some, so
# that a page whose bash blocks were lost (or never written) fails here instead of passing 0 == 0.
NO_COMMANDS = {
    "bad_input.md": "a table; its rows name the tests that run each case",
    "architecture.md": "the design note: layers and the move plan, no commands to run",
}
SUBCOMMANDS = ("fit", "validate", "test", "predict", "calibrate")
DATA_PLACEHOLDERS = {"PATH", "PATH_TO_CELEBA", "/shared/celeba"}


def commands_in(text: str) -> list[str]:
    """Every command line in the ``bash`` blocks of ``text``, in order; continuation lines
    joined, comments dropped, ``&&`` chains split."""
    commands = []
    for body in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0].startswith("#SBATCH"):
                continue
            part: list[str] = []
            for word in [*words, "&&"]:
                if word == "&&":
                    commands.append(shlex.join(part))
                    part = []
                else:
                    part.append(word)
    return commands


def documented_commands() -> list[tuple[str, str]]:
    """(document, command) for every command line in a ``bash`` block, in document order."""
    return [(document.name, command) for document in DOCUMENTS
            for command in commands_in(document.read_text(encoding="utf-8"))]  # fmt: skip


def readme_section(title: str) -> str:
    """The README's text from the heading ``## title`` to the next ``## `` heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def kind(command: list[str]) -> str:
    if command[:2] == ["pip", "install"] or command[:3] == ["python", "-m", "venv"]:
        return "install"
    if command[0] in (".", "source"):  # activating the virtual environment
        return "install"
    if command[:2] == ["ruff", "check"] or command[:3] == ["python", "-m", "pytest"]:
        return "ci"
    if command[0] == "srun":
        return kind(command[1:])
    if command[0] == "torchrun":
        return "torchrun"
    if command[:4] == ["python", "-m", "lit_celeba", "compare"]:
        return "compare"
    if command[:3] == ["python", "-m", "lit_celeba.data.synthetic"]:
        return "synthetic"
    if command[:3] == ["python", "-m", "lit_celeba"] or command[0] == "lit-celeba":
        return "cli"
    if command[0] == "tensorboard":
        return "tensorboard"
    if command[0] == "python" and command[1].startswith("benchmarks/"):
        return "benchmark"
    return "unknown"


def test_every_documented_command_has_a_rule() -> None:
    commands = documented_commands()
    assert len(commands) > 15
    unknown = [c for c in commands if kind(shlex.split(c[1])) == "unknown"]
    assert not unknown, f"commands in the documents that no rule here runs: {unknown}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme_tests = [c for d, c in documented_commands() if d == "README.md" and "pytest" in c]
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run installs the test extra and runs the README's line word for word.
    assert "pip install -e '.[test]' && ruff check . && python -m pytest" in ci
    assert readme_tests and all(kind(shlex.split(c)) in ("install", "ci") for c in readme_tests)


class Session:
    """One working folder in which the documented commands run one after another."""

    def __init__(self, tiny_root: Path, work: Path) -> None:
        self.root = tiny_root
        self.work = work
        self.cache = work.parent / "cache"
        self.ran: list[str] = []
        # The documents' commands run from the repository root: configs/ is there.
        (work / "configs").symlink_to(REPO / "configs")
        photos = work / "my_photos"
        photos.mkdir()
        faces = sorted((tiny_root / "celeba" / "img_align_celeba").glob("*.jpg"))[:3]
        for face in faces:
            shutil.copy(face, photos / face.name)
        (work / "photos.txt").write_text("".join(f"my_photos/{f.name}\n" for f in faces))
        write_group_photo(work / "group.jpg")  # two real faces (tests/test_faces.py)
        # calibrate --photo_labels: the photos above with labels of both classes (any will do).
        labelled = [f"my_photos/{f.name},{k % 2}\n" for k, f in enumerate(faces)]
        (work / "my_labels.csv").write_text("file,Male\n" + "".join(labelled) + "group.jpg,0\n")

    def newest_checkpoint(self) -> str:
        found = sorted(
            self.work.glob("logs/*/version_*/checkpoints/last.ckpt"), key=os.path.getmtime
        )
        assert found, "a command needs a checkpoint, but no fit shown before it wrote one"
        return str(found[-1])

    def substitute(self, words: list[str]) -> list[str]:
        out = []
        for i, word in enumerate(words):
            previous = words[i - 1] if i else ""
            if word in DATA_PLACEHOLDERS:
                word = str(self.root)
            elif word == "..." and previous == "--ckpt_path":
                word = self.newest_checkpoint()
            elif previous == "--trainer.devices":
                word = "1"
            elif previous == "--trainer.num_nodes":
                word = "1"
            elif previous == "--data.cache_dir" or word.startswith("--data.cache_dir="):
                word = str(self.cache)
            out.append(word)
        return out

    def cli_flags(self, words: list[str]) -> list[str]:
        if not words or words[0] not in SUBCOMMANDS:
            return []  # report, compare, ...: no data settings
        flags = [] if "--data.cache_dir" in words else [f"--data.cache_dir={self.cache}"]
        return flags + TINY

    def run(self, command: str) -> None:
        words = self.substitute(shlex.split(command))
        what = kind(words)
        if what in ("install", "ci"):
            return  # .ci/run itself installs and runs these (test above)
        if words[0] == "srun":
            words = words[1:]
        if what == "cli":
            args = words[3:] if words[0] == "python" else words[1:]
            if "--trainer.strategy" in args:
                # Lightning's DDP launcher starts the script again: a real process, not pytest.
                self._subprocess([sys.executable, "-m", "lit_celeba", *args, *self.cli_flags(args)])
            else:
                self._in_process(args)
        elif what == "compare":
            self._compare(words[4:])
        elif what == "synthetic":
            sizes = ["--num-train", "96", "--num-valid", "48", "--num-test", "48", "--quiet"]
            self._subprocess([sys.executable, *words[1:], *sizes])
        elif what == "torchrun":
            self._torchrun(words)
        elif what == "tensorboard":
            with tensorboard_server(self.work / words[words.index("--logdir") + 1], set()) as api:
                assert api.get("/data/runs"), "tensorboard lists no run"
        elif what == "benchmark":
            # Each benchmark has a smoke test of its own, which also checks what it prints.
            tests = (REPO / "tests" / "test_benchmarks.py").read_text()
            assert Path(words[1]).name in tests, f"{words[1]} is shown but no test runs it"
        self.ran.append(command)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """In the working folder, as a user's shell is."""
        cwd = Path.cwd()
        os.chdir(self.work)
        try:
            yield
        finally:
            os.chdir(cwd)

    def _in_process(self, args: list[str]) -> None:
        with self.inside():
            try:
                cli_main(args + self.cli_flags(args))
            except SystemExit as exit_info:
                assert exit_info.code in (0, None), f"{shlex.join(args)} exited {exit_info.code}"

    def _compare(self, args: list[str]) -> None:
        """A comparison trains every variant and seed: tests/test_compare.py runs one on tiny
        data. Here each variant the command shows must parse, and resolve to a config, on top
        of its base config."""
        parser = build_parser()
        options, overrides = parser.parse_known_args(args)
        base = [word for config in options.config for word in ("--config", config)]
        with self.inside():
            for spec in options.variant:
                variant = parse_variant(spec)
                command = ["fit", *base, *variant.args, *overrides, "--print_config"]
                printed = io.StringIO()
                with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(printed):
                    cli_main(command)
                assert exit_info.value.code in (0, None), f"variant {spec!r} does not resolve"
        assert "compare" in (REPO / "tests" / "test_compare.py").read_text()

    def _torchrun(self, words: list[str]) -> None:
        module = words.index("-m")
        args = words[module + 2 :]
        launcher = ["--nnodes", "1", "--nproc-per-node", "1", "--standalone"]
        command = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "lit_celeba"]
        self._subprocess(command + args + self.cli_flags(args))

    def _subprocess(self, command: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            command, cwd=self.work, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("document", [d.name for d in DOCUMENTS])
def test_every_documented_command_runs(document: str, tiny_root: Path, tmp_path: Path) -> None:
    """Each document's commands in order, in a working folder of their own."""
    commands = [c for d, c in documented_commands() if d == document]
    work = tmp_path / "work"
    work.mkdir()
    session = Session(tiny_root, work)
    for command in commands:
        session.run(command)
    assert len(session.ran) == len(
        [c for c in commands if kind(shlex.split(c)) not in ("install", "ci")]
    )
    if document in NO_COMMANDS:
        assert not commands, f"{document} shows commands now: take it out of NO_COMMANDS"
    else:
        assert session.ran, f"{document} shows no command that runs here"


@pytest.mark.slow
def test_the_predict_and_export_examples_work_after_the_demo_alone(
    tiny_root: Path, tmp_path: Path
) -> None:
    """Issue 32, item 18: a user who ran the demo, and nothing else, then the README's predict
    and export examples as written (they named logs/base/version_0, which the demo does not
    make). A predict with --prediction.output makes no run folder."""
    demo = [c for c in commands_in(readme_section("Two commands")) if "configs/demo.yaml" in c]
    examples = commands_in(readme_section("Predict on your own photos and export"))
    assert len(demo) == 1 and any(" predict " in c for c in examples)
    assert not any("..." in c for c in examples), "every example runs as written"
    work = tmp_path / "work"
    work.mkdir()
    session = Session(tiny_root, work)
    for command in [*demo, *examples]:
        session.run(command)
    # The demo's fit, the one predict that has no --prediction.output, and calibrate on the
    # labelled photos, which writes its checkpoint into a run folder of its own.
    folders = sorted(p.name for p in (work / "logs" / "demo").iterdir())
    assert folders == ["version_0", "version_1", "version_2"]
    assert (work / "logs" / "demo" / "version_2" / "calibrated.ckpt").is_file()
    assert (work / "results" / "photos.csv").is_file()
    assert (work / "exported" / "model.pt2").is_file()


def test_the_readme_says_how_to_install_and_how_long_the_tests_take() -> None:
    """Issue 32, item 22: a virtual environment first, the CPU wheels before the install, and
    the suite's measured time."""
    text = readme_section("Two commands")
    venv, cpu = text.index("python -m venv .venv"), text.index("download.pytorch.org/whl/cpu")
    install = text.index("pip install -e . && python -m lit_celeba fit")
    assert venv < cpu < install
    said = re.search(r"about (\d+) minutes on a 2-core\s+CPU \(([\d,]+) tests in (\d+) s", text)
    assert said, "the README gives the suite's measured time: about N minutes (T tests in S s)"
    assert int(said.group(1)) == round(int(said.group(3)) / 60), "its minutes are its seconds"


def test_every_test_the_documents_name_exists() -> None:
    """``test_x.py::test_y`` in README.md or docs/*.md names a test that is there: a renamed or
    merged test is renamed in the documents too."""
    missing = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for file, name in re.findall(r"(test_\w+\.py)::(test_\w+)", text):
            path = REPO / "tests" / file
            if not path.is_file() or not re.search(rf"def {name}\(", path.read_text("utf-8")):
                missing.append(f"{document.name}: {file}::{name}")
    assert not missing, "\n".join(sorted(set(missing)))
