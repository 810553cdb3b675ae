"""The suite's own guard (tests/conftest.py): a test that writes into its working folder fails
the session, and a user's files in the checkout, made before or while the suite runs, are never
blamed on the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

INNER_TESTS = '''
from pathlib import Path

from tests.conftest import REPO


def test_the_user_tries_the_readme_beside_the_suite():
    # The user, in another terminal while the suite runs: the README's predict and export.
    (REPO / "my_photos").mkdir()
    (REPO / "group.jpg").write_bytes(b"a photo")
    (REPO / "exported").mkdir()


def test_a_run_that_forgot_its_folder():
    Path("predictions.csv").write_text("path,prob_Male\\n")
'''


def test_a_users_files_are_theirs_and_a_tests_are_caught(tmp_path: Path) -> None:
    # A checkout of the natural name, with this suite's conftest and the two tests above.
    checkout = tmp_path / "lit_celeba"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", checkout / "tests" / "conftest.py")
    (checkout / "tests" / "__init__.py").write_text("")
    (checkout / "tests" / "test_inner.py").write_text(INNER_TESTS)
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_inner.py"],
        cwd=checkout, env={**env, "PYTHONPATH": pythonpath}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    blamed = next(line for line in output.splitlines() if "tests wrote into" in line)
    assert "predictions.csv" in blamed
    for users in ("my_photos", "group.jpg", "exported"):
        assert users not in blamed, blamed
    assert not (checkout / "predictions.csv").exists()  # it went to the working folder
