#!/usr/bin/env bash
# The wheels that benchmarks/gpu.py needs on a GPU machine that has PyTorch, Lightning,
# torchmetrics and TensorBoard but no jsonargparse and no network (this workplace's 'cuda' image):
# downloaded here into .whl/ (ignored by git), installed there with pip --no-index.
# See benchmarks/README.md ("gpu.py") for the command that runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform any -d .whl \
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
ls .whl
