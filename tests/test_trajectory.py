"""The reduced trajectory of Eq. 6 on analytic landscapes with known answers, and its command line."""
import numpy as np
import pytest

from landscape.cli import main
from landscape.errors import UserError
from landscape.read.trajectory import ReducedLandscape, gamma_sweep, integrate
from tests.synthetic import W0, make_cube

ALPHA = np.logspace(-1, 1, 9)
M = np.linspace(0.0, 0.5, 6)
W = W0 * ALPHA


def flat_cube(**metrics):
    """Zero train loss everywhere (so only weight decay moves w); test loss = w unless given."""
    grid = (len(ALPHA), len(M))
    metrics.setdefault("train_loss", np.zeros(grid))
    metrics.setdefault("test_loss", np.broadcast_to(W[:, None], grid))
    return make_cube(alpha=ALPHA, values=M, axis="m", **metrics)


def write_cube(tmp_path):
    path = tmp_path / "flat.zarr"
    flat_cube().to_zarr(path, zarr_format=2, consolidated=True)
    return path


def test_zero_loss_gives_exponential_decay_of_w():
    eta_d, gamma, start = 2.0, 0.05, (15.0, 0.3)
    path = integrate(ReducedLandscape.from_cube(flat_cube()), start, gamma, eta_d=eta_d, eta_r=3.0, level=1.0)
    t = path["t"].values
    np.testing.assert_allclose(path["w"].values, start[0] * np.exp(-eta_d * gamma * t), rtol=1e-6)
    np.testing.assert_allclose(path["m"].values, start[1])  # no train-loss gradient along m
    # test loss = w: it reaches 1 when w does, at ln(15) / (eta_D gamma)
    assert path.attrs["t_gen"] == pytest.approx(np.log(15.0) / (eta_d * gamma), rel=1e-6)
    assert path.attrs["stop"] == "left the grid at small w"
    np.testing.assert_allclose(path["test_loss"].values, path["w"].values, rtol=1e-3)  # a spline of log(w + floor)


def test_time_to_generalize_scales_as_one_over_gamma():
    sweep, paths = gamma_sweep(ReducedLandscape.from_cube(flat_cube()), (15.0, 0.3), [0.003, 0.01, 0.03, 0.1, 0.3],
                               level=1.0)
    assert sweep.attrs["slope"] == pytest.approx(-1.0, abs=1e-6)
    np.testing.assert_allclose(sweep["t_gen"].values * sweep["gamma"].values, np.log(15.0), rtol=1e-6)
    assert len(paths) == 5


def test_gradient_along_m_moves_m_until_the_grid_edge():
    """l = a m + c: dm/dt = -eta_R a until m reaches the grid's smallest m, where the flow is held."""
    a, eta_r = 0.1, 2.0
    cube = flat_cube(train_loss=np.broadcast_to(a * M[None, :] + 0.05, (len(ALPHA), len(M))))
    path = integrate(ReducedLandscape.from_cube(cube), (15.0, 0.4), gamma=0.01, eta_r=eta_r, level=1e-3)
    t, m = path["t"].values, path["m"].values
    moving = t < 0.4 / (eta_r * a)
    np.testing.assert_allclose(m[moving], 0.4 - eta_r * a * t[moving], atol=1e-4)
    np.testing.assert_allclose(m[~moving], 0.0, atol=1e-4)
    assert np.isnan(path.attrs["t_gen"])  # test loss = w never falls to 1e-3 inside the grid


@pytest.mark.parametrize("kwargs,message", [
    ({"start": (1000.0, 0.2)}, "outside the landscape grid"),
    ({"start": (15.0, 0.9)}, "outside the landscape grid"),
    ({"gamma": 0.0}, "gamma = 0 must be a positive number"),
    ({"eta_d": -1.0}, "eta_D = -1 must be a positive number"),
    ({"eta_r": 0.0}, "eta_R = 0 must be a positive number"),
])
def test_bad_trajectory_input(kwargs, message):
    args = {"start": (15.0, 0.2), "gamma": 0.1, **kwargs}
    with pytest.raises(UserError, match=message):
        integrate(ReducedLandscape.from_cube(flat_cube()), **args)


def test_cube_without_m_axis_or_too_small_is_refused():
    with pytest.raises(UserError, match="messiness axis"):
        ReducedLandscape.from_cube(make_cube())
    with pytest.raises(UserError, match="at least 3 values"):
        ReducedLandscape.from_cube(make_cube(alpha=ALPHA, values=M[:2], axis="m"))


def test_trajectory_cli_prints_slope_and_writes_figures(tmp_path, capsys):
    cube = write_cube(tmp_path)
    out = tmp_path / "figs"
    assert main(["trajectory", str(cube), "--start", "15,0.3", "--gamma", "0.01,0.1", "--level", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "slope -1.0000" in printed
    for name in ("trajectory", "path", "gamma"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert main(["boundaries", str(cube), str(cube), "--out", str(out)]) == 0
    assert (out / "boundaries.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--start", "1000,0.2", "--gamma", "0.1"], "outside the landscape grid"),
    (["--start", "15,0.2", "--gamma", "-0.1"], "gamma = -0.1 must be a positive number"),
    (["--start", "15,0.2", "--gamma", "0.1", "--eta-d", "0"], "eta_D = 0 must be a positive number"),
    (["--start", "15", "--gamma", "0.1"], "--start expects W,M"),
    (["--start", "a,b", "--gamma", "0.1"], "expected comma-separated numbers"),
])
def test_trajectory_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    cube = write_cube(tmp_path)
    assert main(["trajectory", str(cube), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
