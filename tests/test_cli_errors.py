"""Every bad input: exit code 2, one line on stderr, no traceback, no store created."""
from pathlib import Path

import pytest

from landscape.cli import main
from tests.conftest import TINY_TS
from tests.mnist_files import write_fake_mnist


def expect_bad_input(capsys, args, match: str, out: Path | None = None) -> str:
    """Returns the one line of stderr."""
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and match in lines[0], lines[0]
    if out is not None:
        assert not out.exists(), "a store was created for bad input"
    return lines[0]


@pytest.mark.parametrize("override,match", [
    ("task=nosuchtask", "unknown task 'nosuchtask'"),
    ("axes.alpha=[1.0, -0.5]", "axes.alpha: -0.5 is not positive"),
    ("axes.alpha=[0.0]", "axes.alpha: 0.0 is not positive"),
    ("axes.w=[2.0, 0]", "axes.w: 0.0 is not positive"),
    ("axes.N=[0, 10]", "axes.N: 0 is not a positive integer"),
    ("axes.N=[]", "axes.N is empty"),
    ("axes.seed=[]", "axes.seed is empty"),
    ("axes.alpha={logspace = [-1, 1, 0]}", "axes.alpha is empty"),
    ("train.lr=-1e-3", "train.lr = -0.001 must be positive"),
    ("train.steps=-5", "train.steps = -5 must be at least 1"),
    ("axes.wd=[0.1, -0.01]", "axes.wd: -0.01 must be >= 0"),
    ("axes.lr=[0.0]", "axes.lr: 0.0 must be positive"),
    ("eval.every=sometimes", "eval.every = 'sometimes'"),
    ("train.optimizer=lbfgs", "train.optimizer = 'lbfgs'"),
    ("train.nosuchkey=1", "unknown key train.nosuchkey"),
    ("task_options.nosuchkey=1", "unknown key task_options.nosuchkey"),
    ("task_options.threshold=[1]", "task_options.threshold = [1] should be a float"),
    ("task_options.n_test=1.5", "task_options.n_test = 1.5 should be an int"),
    ("axes.nosuchaxis=[1]", "unknown axis 'nosuchaxis'"),
    ("nosuchsection.x=1", "unknown key 'nosuchsection'"),
    ("noequalsign", "expected key=value"),
    ("measure.hessian_top=-1", "measure.hessian_top = -1 must be >= 0"),
    ("measure.hessian_top=100000", "measure.hessian_top = 100,000 is more than the model's"),
    ("measure.trace_probes=0", "measure.trace_probes = 0 must be at least 1"),
    ("measure.samples=-3", "measure.samples = -3 must be >= 0"),
    ("measure.every=sometimes", "measure.every = 'sometimes'"),
    ("measure.slice={ points = 0 }", "measure.slice.points = 0 must be at least 2"),
    ("measure.slice={ span = -1.0 }", "measure.slice.span = -1.0 must be positive"),
    ("measure.slice={ dims = 3 }", "measure.slice.dims = 3 must be 1 or 2"),
])
def test_bad_spec_values(capsys, tiny_spec, tmp_path, override, match):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--quiet", "--set", override], match, out)


def test_missing_spec_file(capsys, tmp_path):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tmp_path / "nope.toml", "--out", out], "does not exist", out)


def test_malformed_spec_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("task = \n[axes\n")
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", bad, "--out", out], "is not valid TOML", out)


def test_unknown_key_in_spec_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_TS.replace("steps = 60", "stepz = 60"))
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", bad, "--out", out], "unknown key train.stepz", out)


def test_n_larger_than_pool(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)
    spec = tmp_path / "m.toml"
    spec.write_text('task = "mnist"\n[axes]\nalpha = [1.0]\nN = [100, 4001]\n')
    out = tmp_path / "out.zarr"
    line = expect_bad_input(capsys, ["grid", spec, "--out", out], "4001 is larger than the training pool of 4000", out)
    assert "full MNIST is needed: --data-dir DIR or LANDSCAPE_DATA=DIR" in line


def test_n_larger_than_the_given_files_has_no_full_mnist_hint(capsys, tmp_path):
    spec = tmp_path / "m.toml"
    spec.write_text('task = "mnist"\n[axes]\nalpha = [1.0]\nN = [61]\n')
    out = tmp_path / "out.zarr"
    args = ["grid", spec, "--out", out, "--data-dir", write_fake_mnist(tmp_path / "data")]
    line = expect_bad_input(capsys, args, "61 is larger than the training pool of 60", out)
    assert "full MNIST" not in line


def test_unwritable_out(capsys, tiny_spec, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", blocker / "cube.zarr"], "is not writable")
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", "/proc/landscape-test.zarr"], "is not writable")
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", blocker], "is not a zarr directory")


def test_existing_non_cube_out(capsys, tiny_spec, tmp_path):
    out = tmp_path / "notacube"
    out.mkdir()
    (out / "hello.txt").write_text("mine")
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--quiet"], "not a zarr cube")
    assert (out / "hello.txt").read_text() == "mine"


def _mnist_spec(tmp_path):
    spec = tmp_path / "m.toml"
    spec.write_text('task = "mnist"\n[axes]\nalpha = [1.0]\nN = [10]\n[train]\nsteps = 2\n')
    return spec


def test_data_dir_missing(capsys, tmp_path):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", _mnist_spec(tmp_path), "--out", out, "--data-dir", tmp_path / "nodir"],
                     "is not a directory", out)
    (tmp_path / "empty").mkdir()
    expect_bad_input(capsys, ["grid", _mnist_spec(tmp_path), "--out", out, "--data-dir", tmp_path / "empty"],
                     "MNIST IDX files missing", out)


def test_data_dir_corrupt(capsys, tmp_path):
    data = write_fake_mnist(tmp_path / "data")
    path = data / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", _mnist_spec(tmp_path), "--out", out, "--data-dir", data], "corrupt", out)


def test_unreachable_scheduler(capsys, tiny_spec, tmp_path):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"],
                     "cannot reach a dask scheduler", out)


def test_bad_backend_and_jobs(capsys, tiny_spec, tmp_path):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--backend", "spark"], "--backend 'spark'", out)
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--jobs", "-1"], "--jobs -1", out)


def test_info_on_non_cube(capsys, tmp_path):
    expect_bad_input(capsys, ["info", tmp_path / "missing.zarr"], "does not exist")


def test_bare_command_lists_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: landscape") and "Traceback" not in err
    for command in ("grid", "info", "plot", "trajectory", "boundaries", "export"):
        assert f"\n    {command} " in err or f"\n    {command}\n" in err, command


@pytest.mark.parametrize("override,match", [
    # not finite, anywhere
    ("train.weight_decay=nan", "train.weight_decay = nan is not a finite number"),
    ("train.weight_decay=inf", "train.weight_decay = inf is not a finite number"),
    ("train.lr=inf", "train.lr = inf is not a finite number"),
    ("eval.level=nan", "eval.level = nan is not a finite number"),
    ("axes.alpha=inf", "axes.alpha = inf is not a finite number"),
    ("axes.alpha={logspace = [0, 400, 3]}", "axes.alpha = inf is not a finite number"),
    ("axes.wd=[0.0, nan]", "axes.wd = nan is not a finite number"),
    ("task_options.threshold=nan", "task_options.threshold = nan is not a finite number"),
    # out of range
    ("axes.alpha=1e308", "axes.alpha = 1e+308 gives w = inf, which is beyond the largest float32"),
    ("axes.alpha=1e38", "is beyond the largest float32"),
    ("axes.w=[1e39]", "axes.w = 1e+39 is beyond the largest float32"),
    ("task_options.threshold=-1", "task_options.threshold = -1 must be > 0"),
    ("task_options.n_test=0", "task_options.n_test = 0 must be in [1, 10,000,000]"),
    ("task_options.n_test=-1", "task_options.n_test = -1 must be in [1, 10,000,000]"),
    ("task_options.data_seed=-1", "task_options.data_seed = -1 must be in [0, 2**32)"),
    ("axes.seed=[4294967296]", "axes.seed: 4294967296 is not an integer in [0, 2**32)"),
    # the same value twice, once as an int
    ("axes.alpha=[1.0, 1]", "axes.alpha repeats a value: [1.0, 1]"),
    ("axes.w=[8.0, 8]", "axes.w repeats a value: [8.0, 8]"),
    # too big to run
    ("train.steps=1e12", "train.steps = 1000000000000.0 should be an int"),
    ("eval.points=1e12", "eval.points = 1000000000000.0 should be an int"),
    ("train.steps=1000000000000", "gives 50,000,000,002 evals per cell, more than the limit of 100,000"),
    ("eval.points=1000000000000", "eval.points = 1,000,000,000,000 is more than the limit of 100,000"),
    ('train.epochs="1000000000000/N"', "evals per cell at N = 20, more than the limit of 100,000"),
    ("axes.N=[1000000000]", "axes.N = 1000000000: one cell needs at least"),
    ("axes.alpha={logspace = [-1, 1, 60000]}",
     "the grid has 120,000 cells (60,000 alpha x 2 N x 1 seed), more than the limit of 100,000"),
    ("axes.alpha={linspace = [1, 2, 1000000000]}", "axes.alpha.linspace: 1,000,000,000 values, more than a grid's 100,000 cells"),
])
def test_nonsense_is_refused_before_a_store(capsys, tiny_spec, tmp_path, override, match):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--quiet", "--set", override], match, out)


@pytest.mark.parametrize("override,match", [
    ("axes.m=[0.0, 0]", "axes.m repeats a value: [0.0, 0]"),
    ("task_options.data_seed=-1", "task_options.data_seed = -1 must be in [0, 2**32)"),
])
def test_toy_addition_nonsense(capsys, tmp_path, override, match):
    spec = tmp_path / "toy.toml"
    spec.write_text('task = "toy-addition"\n[axes]\nalpha = [1.0]\nm = [0.0, 0.1]\n')
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", spec, "--out", out, "--quiet", "--set", override], match, out)
