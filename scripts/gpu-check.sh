#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py), run from the repository root on a machine with CUDA and a
# torch that sees it. Packages that machine's Python lacks travel as wheels in .whl/ (written here
# by scripts/gpu-wheels.sh); they go to a scratch site, nothing is installed into the system.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 470 "${PYTHON:-python3}" scripts/gpu_check.py "$@"
