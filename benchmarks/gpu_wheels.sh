#!/usr/bin/env bash
# The wheels that benchmarks/gpu.py needs on a GPU machine without network (this workplace's
# 'cuda' image): downloaded here into .whl/ (ignored by git), installed there with pip --no-index.
# See benchmarks/README.md ("gpu.py") for the command that runs there.
# The image has these of the project's dependencies (pyproject.toml); every other one travels as
# a wheel below (tests/test_benchmarks.py checks that the two lists cover pyproject's):
#   image_has: torch torchvision pytorch-lightning torchmetrics tensorboard numpy tqdm matplotlib pillow
# filelock is in the image too (torch needs it), but perhaps older than the cache lock's 3.30.1.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
wheels=(jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 google-crc32c==1.9.0 filelock==4.3.2 captum==0.9.0 opencv-python-headless==5.0.0.93)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform any -d .whl "${wheels[@]}"
ls .whl
