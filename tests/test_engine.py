"""The one training loop and its two backends (landscape.train): the cubes are the ones the two
trainers it replaced wrote, the measurement hook gives the same values in both backends, and the
device is a run setting that the cube records.

The reference digests (tests/reference/digests.json) were recorded from the code before the loop
was unified; ``python tests/test_engine.py --record`` records them again from the current code.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from landscape.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference" / "digests.json"
#: Per-run variables that are not results: wall time and the write checksums.
SKIPPED = ("seconds", "checksum")
#: Reduced versions of shipped specs, each a few seconds on one core. Batches form (--jobs 1: up to
#: half the cells in one cell batch), so both backends run; cells stop early in teacher-student.
CASES: dict[str, list[str]] = {
    "teacher-student": ["grids/teacher-student.toml", "--set", "axes.alpha={ logspace = [-1, 1, 3] }",
                        "--set", "axes.N=[25, 50]", "--set", "train.steps=300", "--set", "eval.every=50",
                        "--set", "train.stop_window=2", "--set", "train.stop_rtol=0.5"],
    "toy-addition": ["grids/toy-addition.toml", "--set", "axes.alpha=[0.5, 2.0, 8.0]", "--set", "axes.m=[0.0, 0.1]",
                     "--set", "train.steps=200", "--set", "train.lr_decay_every=80", "--set", "eval.every=50"],
    "modular-addition": ["grids/modular-addition.toml", "--set", "task_options.p=7", "--set", "task_options.d_model=16",
                         "--set", "task_options.n_heads=2", "--set", "task_options.d_head=8",
                         "--set", "task_options.d_mlp=32", "--set", "axes.alpha=[0.63, 1.6]",
                         "--set", "axes.N=[20, 35]", "--set", "train.steps=40", "--set", "eval.every=10"],
    "digits-cnn": ["examples/digits_cnn/digits_cnn.toml", "--set", "axes.alpha=[0.3, 1.0, 3.0]",
                   "--set", "axes.N=[50, 200]", "--set", "train.steps=60", "--set", "eval.every=20",
                   "--set", "task_options.channels=4"],
    "modular-mlp-per-cell": ["grids/modular-mlp.toml", "--set", "task_options.p=7", "--set", "task_options.width=32",
                             "--set", "axes.N=[39]", "--set", "train.steps=300", "--set", "eval.points=12",
                             "--set", "train.max_batch_cells=1"],
}
RUN = ["--jobs", "1", "--threads", "1", "--quiet"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every variable and coordinate but SKIPPED; strings as fixed-width unicode, whatever zarr gave."""
    with xr.open_zarr(path) as ds:
        out = {}
        for name in sorted(n for n in [*ds.data_vars, *ds.coords] if n not in SKIPPED):
            values = np.ascontiguousarray(ds[name].values)
            out[name] = np.array([str(v) for v in values.ravel()]).reshape(values.shape) if values.dtype.kind in "OUST" else values
        return out


def digest(path: Path) -> dict[str, str]:
    """sha256 of each variable's and coordinate's raw array bytes, with its dtype and shape."""
    return {name: f"{v.dtype.str}{v.shape}:{hashlib.sha256(v.tobytes()).hexdigest()}" for name, v in arrays(path).items()}


def run(case: str, out: Path, extra: list[str] = ()) -> int:
    return main(["grid", *CASES[case], "--out", str(out), *RUN, *extra])


def record(where: Path) -> None:
    """Run every case and write the digests (and the arrays, for the tolerance fallback)."""
    cases = {}
    for case in CASES:
        out = where / f"{case}.zarr"
        assert run(case, out, ["--overwrite"]) == 0
        np.savez_compressed(REFERENCE.parent / f"{case}.npz", **arrays(out))
        cases[case] = {"command": shlex.join(["landscape", "grid", *CASES[case], "--out", f"{case}.zarr", *RUN]),
                       "digests": digest(out)}
    REFERENCE.write_text(json.dumps({
        "note": "Recorded on CPU from the code before the training loop was unified (commit "
                "cb5bdbd); --device cpu did not exist then and was not passed. The test compares these bits "
                "only where cpu_model and torch match this machine's (CPU kernels differ between processors "
                "and torch versions); elsewhere it compares the arrays in <case>.npz with rtol 1e-6.",
        "cpu_model": cpu_model(), "torch": torch.__version__, "python": platform.python_version(),
        "skipped_variables": list(SKIPPED), "cases": cases}, indent=1) + "\n")


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_cubes_are_the_ones_the_two_old_trainers_wrote(case, tmp_path):
    ref = reference()
    out = tmp_path / f"{case}.zarr"
    assert run(case, out) == 0
    if ref["cpu_model"] == cpu_model() and ref["torch"] == torch.__version__:
        assert digest(out) == ref["cases"][case]["digests"]
    else:  # another processor or torch: its CPU kernels may round differently
        expected = np.load(REFERENCE.parent / f"{case}.npz")
        got = arrays(out)
        assert sorted(got) == sorted(expected.files)
        for name in expected.files:
            if got[name].dtype.kind == "f":
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import os
    import tempfile

    os.environ.setdefault("LANDSCAPE_THREADS", "1")
    REFERENCE.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
