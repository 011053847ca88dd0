#!/bin/sh
# Install torch into a venv, the CPU build unless a GPU is there or the CUDA build is asked for.
#
# usage: install-torch.sh PYTHON VERSION [auto|cpu|cuda] [CPU_INDEX]
#   auto (the default) means cuda where `nvidia-smi` runs, else cpu.
#
# PyPI's Linux torch wheel is the CUDA build and pulls ~2 GB of nvidia and triton packages, so the
# CPU build comes from the PyTorch CPU index. Where that index is unreachable (no internet, a
# mirror only) the attempt fails within seconds and pip's own configuration decides instead.
set -eu

python=$1
version=$2
build=${3:-auto}
index=${4:-https://download.pytorch.org/whl/cpu}

if [ "$build" = auto ]; then
    if nvidia-smi >/dev/null 2>&1; then build=cuda; else build=cpu; fi
fi

case $build in
cuda)
    "$python" -m pip install -q "torch==$version" ;;
cpu)
    if ! "$python" -m pip install -q --timeout 5 --retries 0 --index-url "$index" "torch==$version" >/dev/null 2>&1; then
        echo "torch $version: $index not reachable or lacks it; using pip's configured index" \
            "(plain PyPI gives the CUDA build on Linux)" >&2
        "$python" -m pip install -q "torch==$version"
    fi ;;
*)
    echo "TORCH=$build: expected auto, cpu or cuda" >&2
    exit 2 ;;
esac
# The local version label names the build that came: +cpu, +cu128, or none (PyPI's CUDA build).
"$python" -m pip show torch | sed -n 's/^Version: /installed torch /p'
