"""landscape.read.analysis on synthetic cubes whose answers are known in closed form."""
import numpy as np
import pytest

from landscape.read.analysis import (ABOVE_GRID, BELOW_GRID, INSIDE, NO_DATA, average_seeds, critical_data_size, critical_norm,
                                goldilocks_zone, levels_of, lu_mismatch, metric_of)
from landscape.cube.schema import DEFAULT_LEVELS, checked_levels
from landscape.errors import UserError
from landscape.read.info import describe
from tests.synthetic import ALPHA, LOSS_LEVELS, N, W0, loss_cube, make_cube, thumb_err

LOG_A = np.log10(ALPHA)


def u_loss(shift: np.ndarray) -> np.ndarray:
    """A U in log w per column, its minimum at log10 alpha = shift."""
    return (LOG_A[:, None] - np.asarray(shift)[None, :]) ** 2 + 0.01


def test_critical_norm_is_the_argmin_over_w():
    shift = np.array([-0.5, -0.25, 0.0, 0.5])
    result = critical_norm(make_cube(test_loss=u_loss(shift)))
    np.testing.assert_allclose(result["w_c"].sel(seed=0), W0 * 10.0 ** shift)
    np.testing.assert_allclose(result["alpha_c"].sel(seed=0), 10.0 ** shift)
    np.testing.assert_allclose(result["best"].sel(seed=0), 0.01)


def test_critical_norm_uses_the_named_axis_not_N():
    cube = make_cube(test_loss=u_loss(np.zeros(3)), values=np.array([0.0, 0.1, 0.2]), axis="m")
    result = critical_norm(cube)
    assert result["w_c"].dims == ("m", "seed")
    np.testing.assert_allclose(result["w_c"], W0)


def test_only_finished_cells_count():
    loss = u_loss(np.zeros(4))
    status = np.ones(loss.shape)
    status[4, 0] = 0  # pending at the true minimum (alpha = 1)
    status[4, 1] = 2  # diverged there
    status[:, 3] = 0  # a whole row pending
    result = critical_norm(make_cube(test_loss=loss, status=status))
    w_c = result["w_c"].sel(seed=0).values
    assert w_c[0] != W0 and w_c[1] != W0  # moved off the unfinished cell, to a neighbour
    assert np.isclose(w_c[2], W0)
    assert np.isnan(w_c[3])


def test_seed_mean_and_spread():
    per_seed = np.stack([u_loss(np.zeros(4)), u_loss(np.full(4, 0.25))], axis=-1)
    result = critical_norm(make_cube(test_loss=per_seed, seeds=(0, 1)))
    w = np.array([W0, W0 * 10 ** 0.25])
    np.testing.assert_allclose(result["w_c_mean"], w.mean())
    np.testing.assert_allclose(result["w_c_std"], w.std(ddof=1))


def test_single_seed_has_no_spread():
    assert np.isnan(critical_norm(make_cube(test_loss=u_loss(np.zeros(4))))["w_c_std"]).all()


def test_goldilocks_absolute_threshold_on_grid_points():
    zone = goldilocks_zone(make_cube(test_err=thumb_err()), threshold=0.5).sel(seed=0)
    # At N=1000, g=0.25: the band (log alpha)^2 <= 0.25 ends exactly on grid points log alpha = +-0.5.
    at = zone.sel(N=1000)
    np.testing.assert_allclose([at["alpha_lo"], at["alpha_hi"]], 10.0 ** np.array([-0.5, 0.5]))
    # At N=10, g=0.75 > 0.5: nothing generalizes.
    assert np.isnan(zone["w_lo"].sel(N=10)) and np.isnan(zone["w_hi"].sel(N=10))
    # The band widens with data.
    assert zone["w_hi"].sel(N=10000) / zone["w_lo"].sel(N=10000) > zone["w_hi"].sel(N=1000) / zone["w_lo"].sel(N=1000)


def test_goldilocks_edges_interpolate_in_log_w():
    zone = goldilocks_zone(make_cube(test_err=thumb_err()), threshold=0.6).sel(seed=0, N=1000)
    # Between log alpha -0.75 (err 0.8125) and -0.5 (err 0.5) the cutoff 0.6 is crossed at -0.58.
    assert np.log10(float(zone["alpha_lo"])) == pytest.approx(-0.58)
    assert np.log10(float(zone["alpha_hi"])) == pytest.approx(0.58)


def test_goldilocks_relative_threshold():
    zone = goldilocks_zone(make_cube(test_err=thumb_err()), relative=1.5).sel(seed=0, N=100)
    # best 0.5 at N=100, so cutoff 0.75 and (log alpha)^2 <= 0.25.
    assert float(zone["cutoff"]) == pytest.approx(0.75)
    np.testing.assert_allclose([zone["alpha_lo"], zone["alpha_hi"]], 10.0 ** np.array([-0.5, 0.5]))


def test_goldilocks_band_reaching_the_grid_end_stops_there():
    zone = goldilocks_zone(make_cube(test_err=np.zeros((len(ALPHA), len(N)))), threshold=0.1).sel(seed=0)
    np.testing.assert_allclose(zone["alpha_lo"], ALPHA[0])
    np.testing.assert_allclose(zone["alpha_hi"], ALPHA[-1])


@pytest.mark.parametrize("kwargs,match", [
    ({"threshold": 0.2, "relative": 1.5}, "at most one"),
    ({"threshold": 1.5}, "between 0 and 1"),
    ({"relative": 0.5}, "at least 1"),
    ({"threshold": 0.2, "var": "nonesuch"}, "no variable 'nonesuch'"),
])
def test_goldilocks_bad_arguments(kwargs, match):
    with pytest.raises(UserError, match=match):
        goldilocks_zone(make_cube(test_err=thumb_err()), **kwargs)


def test_critical_data_size_interpolates_in_log_n():
    tips = critical_data_size(make_cube(test_err=thumb_err()), [0.3, 0.5, 0.9]).sel(seed=0)
    np.testing.assert_allclose(tips["N_c"].sel(level=0.3), 10 ** 2.8)  # log10 N_c = 4 (1 - 0.3)
    np.testing.assert_allclose(tips["w_tip"].sel(level=0.3), W0)
    assert str(tips["position"].sel(level=0.3).values) == INSIDE
    np.testing.assert_allclose(tips["N_c"].sel(level=0.5), 100)  # exactly on a grid row
    assert str(tips["position"].sel(level=0.9).values) == BELOW_GRID  # g(10) = 0.75 already reaches it
    assert np.isnan(tips["N_c"].sel(level=0.9))


def test_critical_data_size_above_grid_and_no_data():
    small = make_cube(test_err=thumb_err(values=N[:2]), values=N[:2])
    tip = critical_data_size(small, 0.3).sel(seed=0)
    assert tip["level"].ndim == 0 and str(tip["position"].values) == ABOVE_GRID and np.isnan(tip["N_c"])
    pending = make_cube(test_err=thumb_err(), status=np.zeros((len(ALPHA), len(N))))
    assert str(critical_data_size(pending, 0.3)["position"].sel(seed=0).values) == NO_DATA


def test_critical_data_size_skips_unfinished_rows():
    status = np.ones((len(ALPHA), len(N)))
    status[:, 2] = 0  # the N=1000 row is pending: the crossing is now between N=100 and N=10000
    tip = critical_data_size(make_cube(test_err=thumb_err(), status=status), 0.3).sel(seed=0)
    # g(100) = 0.5, g(10000) = 0: log N_c = 2 + (0.2 / 0.5) * 2.
    np.testing.assert_allclose(tip["N_c"], 10 ** 2.8)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1])
def test_error_levels_must_lie_in_the_unit_interval(level):
    with pytest.raises(UserError, match="between 0 and 1"):
        critical_data_size(make_cube(test_err=thumb_err()), level)


def test_lu_mismatch_is_the_gap_above_w_c():
    test_err = np.where(LOG_A[:, None] > 0, 1.0, 0.0) * np.array([1.0, 0.5, 0.0, 0.0])
    cube = make_cube(test_err=test_err, test_loss=u_loss(np.zeros(4)))
    np.testing.assert_allclose(lu_mismatch(cube)["lu_mismatch"].sel(seed=0), [1.0, 0.5, 0.0, 0.0])


def test_lu_mismatch_nan_without_cells_above_w_c():
    cube = make_cube(test_loss=u_loss(np.full(4, 1.0)))  # minimum at the largest w
    assert np.isnan(lu_mismatch(cube)["lu_mismatch"]).all()


def test_average_seeds_status():
    status = np.ones((len(ALPHA), len(N), 2))
    status[0, 0, :] = [0, 2]  # pending and diverged: diverged
    status[1, 0, :] = [0, 0]  # all pending
    status[2, 0, :] = [2, 1]  # one done
    err = np.stack([thumb_err(), thumb_err() + 0.1], axis=-1)
    mean = average_seeds(make_cube(test_err=err, status=status, seeds=(0, 1)))
    assert "seed" not in mean.dims
    np.testing.assert_array_equal(mean["status"].isel(N=0).values[:4], [2, 0, 1, 1])
    assert float(mean["test_err"].isel(w=2, N=0)) == pytest.approx(float(err[2, 0, 1]))  # the done seed only


def test_info_appends_the_tables():
    text = describe(make_cube(test_err=thumb_err(), test_loss=u_loss(np.zeros(4))))
    for heading in ("reduced test error at the best w", "critical norm w_c", "Goldilocks zone",
                    "critical data size N_c", "LU mismatch", "inside"):
        assert heading in text, heading
    assert f"{10 ** 2.8:.4g}" in text


def test_info_shows_the_seed_spread():
    per_seed = np.stack([u_loss(np.zeros(4)), u_loss(np.full(4, 0.25))], axis=-1)
    assert "±" in describe(make_cube(test_loss=per_seed, seeds=(0, 1)))



def test_cubes_without_figure_attrs_read_as_error():
    cube = make_cube(test_err=thumb_err())
    assert metric_of(cube) == "err" and levels_of(cube) == DEFAULT_LEVELS
    assert metric_of(loss_cube()) == "loss" and levels_of(loss_cube()) == LOSS_LEVELS


@pytest.mark.parametrize("metric,levels,match", [
    ("loss", None, "needs figure_levels"),
    ("accuracy", None, "must be one of err, loss"),
    ("err", (0.2, 1.5), "between 0 and 1"),
    ("loss", (3.0, -1.0), "must be positive"),
    ("loss", (), "empty"),
])
def test_checked_levels_refuses(metric, levels, match):
    with pytest.raises(UserError, match=match):
        checked_levels(metric, levels)


def test_checked_levels_defaults_and_loss_levels_above_one():
    assert checked_levels("err", None) == list(DEFAULT_LEVELS)
    assert checked_levels("loss", (1, 30)) == [1.0, 30.0]


def test_loss_cube_tips_on_test_loss_at_its_levels_in_log_loss():
    tips = critical_data_size(loss_cube()).sel(seed=0)
    assert tips.attrs["var"] == "test_loss"
    np.testing.assert_allclose(tips["level"], LOSS_LEVELS)
    # Interpolated in log10 loss, the tip of 3 lies at log10 N = 4 (1 - log10(3) / 2) = 3.046; linearly
    # in the loss it would lie at 3.075.
    np.testing.assert_allclose(tips["N_c"].sel(level=3.0), 10 ** (4 * (1 - np.log10(3.0) / 2)))
    np.testing.assert_allclose(tips["N_c"].sel(level=10.0), 100)  # exactly on a grid row
    assert str(tips["position"].sel(level=30.0).values) == INSIDE  # 31.6 at N = 10, just above
    # An explicit var and level still override the cube's.
    assert critical_data_size(loss_cube(), 0.5, var="test_err").attrs["var"] == "test_err"


def test_loss_goldilocks_defaults_to_relative_in_log_loss():
    zone = goldilocks_zone(loss_cube()).sel(seed=0, N=100)
    assert zone.attrs["criterion"] == "test_loss <= 1.5 x best" and zone.attrs["relative"] == 1.5
    assert float(zone["cutoff"]) == pytest.approx(15.0)  # best 10 at alpha = 1
    # log10 loss is 1.125 at log alpha 0.25 and 1.5 at 0.5: the edge where it crosses log10 15.
    edge = 0.25 + (np.log10(15) - 1.125) / (1.5 - 1.125) * 0.25
    np.testing.assert_allclose(np.log10([float(zone["alpha_lo"]), float(zone["alpha_hi"])]), [-edge, edge])
    absolute = goldilocks_zone(loss_cube(), 10.0).sel(seed=0)
    assert absolute.attrs["criterion"] == "test_loss <= 10"
    np.testing.assert_allclose([absolute["alpha_lo"].sel(N=100), absolute["alpha_hi"].sel(N=100)], 1.0)


def test_error_goldilocks_default_is_the_threshold():
    cube = make_cube(test_err=thumb_err())
    default, explicit = goldilocks_zone(cube), goldilocks_zone(cube, threshold=0.2)
    assert default.attrs["criterion"] == "test_err <= 0.2"
    np.testing.assert_array_equal(default["w_hi"].values, explicit["w_hi"].values)


def test_lu_mismatch_of_a_loss_is_relative():
    test = u_loss(np.zeros(4))  # w_c at alpha = 1
    train = test * np.array([0.0, 0.5, 1.0, 1.0])
    cube = make_cube(test_loss=test, train_loss=train, figure_levels=(1.0,))
    result = lu_mismatch(cube)
    np.testing.assert_allclose(result["lu_mismatch"].sel(seed=0), [1.0, 0.5, 0.0, 0.0])
    assert result.attrs["gap"] == "1 - train_loss / test_loss"
    assert lu_mismatch(cube, "err").attrs["gap"] == "test_err - train_err"


def test_info_reads_a_loss_cube_on_its_loss():
    text = describe(loss_cube())
    for heading in ("reduced test loss at the best w", "test_loss  train_loss",
                    "Goldilocks zone [w_lo, w_hi] where test_loss <= 1.5 x best",
                    "mean of 1 - train_loss / test_loss", "reaches test_loss <= level"):
        assert heading in text, heading
    assert f"{10 ** (4 * (1 - np.log10(3.0) / 2)):.4g}" in text
    assert "test_err" not in text
