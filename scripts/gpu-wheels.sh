#!/usr/bin/env bash
# Wheels for scripts/gpu-check.sh: what the GPU image's Python 3.12 (torch, numpy, scipy, xarray,
# matplotlib, joblib, tqdm already there) lacks, at the versions this project's .venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 dask==2026.8.0 distributed==2026.8.0 \
  tblib==3.2.2 zict==3.0.0 locket==1.0.0 partd==1.4.2 tornado==6.6.1 mlxtend==0.25.0
du -sh .whl
