"""Figures and ``landscape plot`` on synthetic cubes: scales, labels, contours, files, partial cubes, bad input."""

import matplotlib
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import LogNorm, to_rgb
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from landscape.cli import main
from plots.goldilocks import goldilocks_figure
from plots.grokking import grokking_figure
from plots.lu import lu_figure
from plots.messiness import maps_figure
from plots.render import KINDS
from plots.style import PALETTE
from plots.thumb import thumb_figure
from plots.timescales import times_figure
from tests.synthetic import ALPHA, LOSS_LEVELS, N, dynamics_cube, loss_cube, make_cube, thumb_err, thumb_loss

SHAPE = (len(ALPHA), len(N))


def thumb_cube(**kwargs):
    return make_cube(test_err=thumb_err(), train_err=thumb_err() / 4, **kwargs)


def partial_cube():
    """Some cells pending, one diverged, values NaN there as the grid driver leaves them."""
    status = np.ones(SHAPE)
    status[:3, 1] = 0
    status[6, 2] = 2
    status[:, 3] = 0  # a whole row pending
    err = np.where(status == 1, thumb_err(), np.nan)
    return make_cube(test_err=err, train_err=err / 4, status=status)


def fig_legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def contour_levels(ax) -> list[float]:
    return [lv for c in ax.collections if isinstance(c, ContourSet) for lv in c.levels]


def test_lu_figure_is_log_scaled_and_labelled():
    fig = lu_figure(thumb_cube())
    assert isinstance(fig, Figure)
    loss, err = fig.axes[:2]
    assert loss.get_xscale() == err.get_xscale() == "log"
    assert loss.get_yscale() == "log"
    for ax in (loss, err):
        assert "w" in ax.get_xlabel() and ax.get_ylabel()
    assert "synthetic" in fig.get_suptitle() and "made up" in fig.get_suptitle()
    legend = fig_legend(fig)
    assert legend[:3] == ["$N$ = 10", "$N$ = 1000", "$N$ = 10000"]  # smallest, middle (index 2 of 4), largest


def test_lu_figure_chosen_values():
    fig = lu_figure(thumb_cube(), values=[1000])
    assert fig_legend(fig)[0] == "$N$ = 1000"


def test_thumb_contours_at_requested_levels():
    fig = thumb_figure(thumb_cube(), levels=(0.25, 0.5))
    train, test = fig.axes[:2]
    for ax in (train, test):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert "w" in ax.get_xlabel() and "N" in ax.get_ylabel()
    assert contour_levels(test) == [0.25, 0.5]
    labels = {t.get_text() for t in test.texts}
    assert {"0.25", "0.5"} <= labels


def test_thumb_marks_the_tips_and_alpha_one():
    fig = thumb_figure(thumb_cube(), levels=(0.3,))
    test = fig.axes[1]
    stars = [line for line in test.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1
    np.testing.assert_allclose(stars[0].get_ydata(), 10 ** 2.8)
    assert any(line.get_label() == r"$\alpha = 1$" for line in test.get_lines())


def test_thumb_smoothing_is_named_in_the_title():
    assert "σ = 1.5" in thumb_figure(thumb_cube(), smooth=1.5).get_suptitle()
    assert "σ" not in thumb_figure(thumb_cube()).get_suptitle()


def test_goldilocks_figure():
    fig = goldilocks_figure(thumb_cube(), levels=(0.2, 0.4))
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "N" in ax.get_xlabel() and "w" in ax.get_ylabel()
    legend = fig_legend(fig)
    assert "test err ≤ 0.2" in legend and "test err ≤ 0.4" in legend
    assert r"$w_c$ (argmin test loss)" in legend  # the errorbar's own label, not its line's


def test_figures_use_the_cube_axis_name():
    cube = make_cube(test_err=thumb_err(values=N[:3]), values=N[:3], axis="m")
    assert fig_legend(lu_figure(cube))[0] == "$m$ = 10"
    assert "$m$" in thumb_figure(cube).axes[1].get_ylabel()
    assert "$m$" in goldilocks_figure(cube).axes[0].get_xlabel()


def test_partial_cube_plots_and_marks_missing_cells():
    cube = partial_cube()
    thumb = thumb_figure(cube)
    assert {"pending", "diverged"} <= set(fig_legend(thumb))
    lu = lu_figure(cube, values=[100, 1000])
    assert {"pending", "diverged"} <= set(fig_legend(lu))
    for fig in (thumb, lu, goldilocks_figure(cube)):
        fig.draw_without_rendering()  # layout and ticks: where empty log axes would fail


@pytest.mark.parametrize("cube", [
    make_cube(test_err=thumb_err()[:1], alpha=ALPHA[:1]),
    make_cube(test_err=thumb_err()[:, :1], values=N[:1]),
    make_cube(test_err=thumb_err(), status=np.zeros(SHAPE)),
], ids=["single-w", "single-N", "all-pending"])
def test_degenerate_cubes_do_not_crash(cube):
    for fig in (lu_figure(cube), thumb_figure(cube, smooth=1.0), goldilocks_figure(cube)):
        fig.draw_without_rendering()


def test_no_contours_where_no_level_is_crossed():
    fig = thumb_figure(make_cube(test_err=np.ones(SHAPE), train_err=np.ones(SHAPE)))
    assert contour_levels(fig.axes[0]) == contour_levels(fig.axes[1]) == []


def save_cube(tmp_path, cube=None):
    path = tmp_path / "cube.zarr"
    (cube if cube is not None else thumb_cube()).to_zarr(path, zarr_format=2, consolidated=True)
    return path


def test_cli_plot_writes_png_and_pdf(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(save_cube(tmp_path)), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}.{ext}" for k in KINDS for ext in ("png", "pdf"))
    assert str(out / "thumb.png") in capsys.readouterr().out


def test_cli_plot_options(tmp_path):
    out = tmp_path / "figs"
    args = ["plot", str(save_cube(tmp_path)), "--out", str(out), "--kind", "goldilocks", "--kind", "goldilocks",
            "--levels", "0.2,0.3", "--smooth", "1", "--values", "10,1000"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["goldilocks.pdf", "goldilocks.png"]


@pytest.mark.parametrize("extra,match", [
    (["--levels", "0.2,1.5"], "between 0 and 1"),
    (["--levels", "0.2,x"], "comma-separated numbers"),
    (["--kind", "pie"], "figure kind 'pie' is not available"),
    (["--values", "33"], "N=33 is not on the cube's grid"),
    (["--smooth", "-1"], "must be positive"),
])
def test_cli_plot_bad_options(tmp_path, capsys, extra, match):
    out = tmp_path / "figs"
    assert main(["plot", str(save_cube(tmp_path)), "--out", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines
    assert not out.exists(), "figures were written for bad input"


def test_cli_plot_not_a_cube(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "nope.zarr", tmp_path / "plain"):
        assert main(["plot", str(path), "--out", str(tmp_path / "figs")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_plot_missing_variable(tmp_path, capsys):
    path = save_cube(tmp_path, thumb_cube().drop_vars("test_err"))
    assert main(["plot", str(path), "--out", str(tmp_path / "figs")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no variable 'test_err'" in lines[0]


def test_figures_leave_global_rc_untouched():
    before = dict(matplotlib.rcParams)
    thumb_figure(thumb_cube())
    assert dict(matplotlib.rcParams) == before


def test_several_seeds_show_their_spread():
    log_a = np.log10(ALPHA)[:, None, None]
    loss = (log_a - np.array([0.0, 0.25])) ** 2 + np.zeros((1, len(N), 1)) + 0.01  # minima differ per seed
    cube = make_cube(test_err=np.stack([thumb_err()] * 2, axis=-1), test_loss=loss, seeds=(0, 1))
    lu = lu_figure(cube)
    assert any(type(c).__name__ == "FillBetweenPolyCollection" for c in lu.axes[0].collections)
    _, _, (bars,) = goldilocks_figure(cube).axes[0].containers[0]
    assert np.ptp(bars.get_segments()[0][:, 1]) > 0, "w_c drawn without its seed spread"


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_cli_plot_refuses_a_non_finite_grid(tmp_path, capsys, bad):
    alpha = np.append(ALPHA[:-1], bad)
    path = save_cube(tmp_path, make_cube(alpha=alpha, test_err=thumb_err()))
    out = tmp_path / "figs"
    assert main(["plot", str(path), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"w grid holds {bad}" in lines[0], lines
    assert not out.exists()


def test_cli_plot_refuses_a_repeated_grid_value(tmp_path, capsys):
    values = np.array([10, 10, 100, 1000])
    path = save_cube(tmp_path, make_cube(values=values, test_err=thumb_err(values=values)))
    assert main(["plot", str(path), "--out", str(tmp_path / "figs")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "N grid holds 10 twice" in lines[0], lines


def test_cli_plot_all_diverged_dynamics_cube(tmp_path, capsys):
    """Every run diverged: the figures draw what is finite and say so, instead of failing on NaN limits."""
    dyn = save_cube(tmp_path, dynamics_cube(status=[2, 2], t_gen=[np.nan, np.nan]))
    land = tmp_path / "land.zarr"  # generalizes at alpha = 1 for every N, so every run has a prediction
    make_cube(test_err=np.broadcast_to(np.log10(ALPHA)[:, None] ** 2, SHAPE)).to_zarr(land, zarr_format=2,
                                                                                       consolidated=True)
    out = tmp_path / "figs"
    assert main(["plot", str(dyn), "--out", str(out), "--landscape", str(land)]) == 0
    assert {p.name for p in out.iterdir()} >= {"grokking.png", "times-wd.png", "prediction.png"}
    cube = dynamics_cube(status=[2, 2], t_gen=[np.nan, np.nan])
    assert all(ax.get_title().endswith("(diverged)") for ax in grokking_figure(cube).axes if ax.get_title())
    times = times_figure(cube, "wd")
    assert any(label.endswith(": diverged") for label in fig_legend(times))
    assert "no finished run reached" in " ".join(t.get_text() for t in times.axes[0].texts)


@pytest.mark.parametrize("t_gen,note", [
    ([np.nan, 2000.0], "t_gen reached at 1 of 2, too few for a slope"),
    ([np.nan, np.nan], "t_gen never reached"),
    ([200.0, 20.0], "slope -1.00"),
])
def test_times_legend_says_why_there_is_no_slope(t_gen, note):
    legend = fig_legend(times_figure(dynamics_cube(status=[1, 1], t_gen=t_gen), "wd"))
    assert legend[0].endswith(f": {note}"), legend


def test_lu_shows_w_c_over_the_alpha_one_line():
    """thumb_cube's test loss is smallest at alpha = 1 for every N: each w_c must still show."""
    fig = lu_figure(thumb_cube())
    loss = fig.axes[0]
    alpha_one = next(line for line in loss.get_lines() if line.get_label() == r"$\alpha = 1$")
    w_c_lines = [line for line in loss.get_lines() if line.get_linestyle() == ":"]
    triangles = [line for line in loss.get_lines() if line.get_marker() == "v"]
    assert len(w_c_lines) == len(triangles) == 3
    assert all(line.get_zorder() > alpha_one.get_zorder() for line in w_c_lines + triangles)
    heights = {float(t.get_ydata()[0]) for t in triangles}
    assert len(heights) == 3, "triangles of equal w_c drawn on top of each other"


def legend_swatch_colors(fig) -> list[tuple]:
    return [tuple(np.round(p.get_facecolor()[:3], 3)) for p in fig.legends[0].findobj(Rectangle)
            if p.get_facecolor()[3] < 1]


def test_lu_legend_swatches_are_the_bands_drawn():
    # Curves at N = 10, 100, 10000, best test_err g(N) = 1 - log10 N / 4 = 0.75, 0.5, 0.
    for threshold, banded in ((0.2, PALETTE[2:3]), (0.6, PALETTE[1:3])):
        fig = lu_figure(thumb_cube(), values=[10, 100, 10000], threshold=threshold)
        assert f"Goldilocks: test err ≤ {threshold:g}" in fig_legend(fig)
        assert legend_swatch_colors(fig) == [tuple(np.round(to_rgb(c), 3)) for c in banded]
    nothing = lu_figure(make_cube(test_err=np.ones(SHAPE)))
    assert not any("Goldilocks" in label for label in fig_legend(nothing))


def test_thumb_labels_of_crowded_contours_stay_apart():
    """The error drops from 1 to 0 within one w cell at every N: the four contours run side by side."""
    step = np.where(np.arange(len(ALPHA)) <= 3, 1.0, 0.0)[:, None] * np.ones(SHAPE)
    fig = thumb_figure(make_cube(test_err=step, train_err=step))
    for ax in fig.axes[:2]:
        labels = [t for t in ax.texts if t.get_text() in {"0.1", "0.2", "0.3", "0.4"}]
        assert {t.get_text() for t in labels} == {"0.1", "0.2", "0.3", "0.4"}
        to_axes = ax.transData + ax.transAxes.inverted()
        xy = np.array([to_axes.transform(t.get_position()) for t in labels])
        gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))[np.triu_indices(len(xy), 1)]
        assert gaps.min() >= 0.1, "contour labels on top of each other"


def test_thumb_lists_the_tip_only_where_one_is_drawn():
    values = N[2:]  # the best test error is 0.25 at N = 1000: every tip of 0.3 and 0.4 lies below the grid
    fig = thumb_figure(make_cube(test_err=thumb_err(values=values), values=values), levels=(0.3, 0.4))
    assert not any(line.get_marker() == "*" for ax in fig.axes for line in ax.get_lines())
    assert not any("thumb tip" in label for label in fig_legend(fig))
    assert any("thumb tip" in label for label in fig_legend(thumb_figure(thumb_cube(), levels=(0.3,))))


@pytest.mark.parametrize("train_loss,boundary", [(0.1 / ALPHA[:, None] ** 2, True), (0.5, False)],
                         ids=["crossed", "never-reached"])
def test_maps_list_the_boundary_only_when_drawn_and_say_why_not(train_loss, boundary):
    m = np.linspace(0.0, 0.2, 5)
    grid = np.broadcast_to(train_loss, (len(ALPHA), len(m)))
    fig = maps_figure(make_cube(values=m, axis="m", train_loss=grid, test_loss=grid + 0.1))
    listed = any("region I/II boundary" in label for label in fig_legend(fig))
    note = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert listed == boundary and bool(contour_levels(fig.axes[0])) == boundary
    assert ("no region I/II boundary" in note) != boundary
    if not boundary:
        assert "train loss ≥ 0.5 everywhere" in note


def test_thumb_of_a_loss_cube_maps_its_loss_on_a_log_scale():
    fig = thumb_figure(loss_cube())
    train, test = fig.axes[:2]
    assert (train.get_title(), test.get_title()) == ("train loss", "test loss")
    assert "loss maps" in fig.get_suptitle()
    for ax in (train, test):
        assert isinstance(ax.collections[0].norm, LogNorm)
    assert contour_levels(test) == list(LOSS_LEVELS)
    assert {"3", "10", "30"} <= {t.get_text() for t in test.texts}
    stars = [line for line in test.get_lines() if line.get_marker() == "*"]
    tips = sorted(float(s.get_ydata()[0]) for s in stars)  # 3 and 30 inside; 10 exactly on the N = 100 row
    np.testing.assert_allclose(tips, sorted(10 ** (4 * (1 - np.log10(np.array(LOSS_LEVELS)) / 2))))
    assert contour_levels(thumb_figure(loss_cube(), levels=(5.0,)).axes[1]) == [5.0]  # --levels overrides


def test_err_thumb_keeps_its_linear_scale():
    mesh = thumb_figure(thumb_cube()).axes[0].collections[0]
    assert not isinstance(mesh.norm, LogNorm) and (mesh.norm.vmin, mesh.norm.vmax) == (0, 1)


def test_goldilocks_and_lu_of_a_loss_cube():
    legend = fig_legend(goldilocks_figure(loss_cube()))
    assert {f"test loss ≤ {lv:g}" for lv in LOSS_LEVELS} <= set(legend)
    assert "Goldilocks: test loss ≤ 1.5 × best" in fig_legend(lu_figure(loss_cube()))
    assert "Goldilocks: test loss ≤ 10" in fig_legend(lu_figure(loss_cube(), threshold=10))


def test_grokking_of_a_loss_cube_draws_loss_on_log_log_axes():
    cube = dynamics_cube(status=[1, 1], t_gen=[100.0, 10.0])
    for split in ("train", "test"):
        cube[f"{split}_loss_curve"] = cube[f"{split}_err_curve"] + xr.DataArray([100.0, 10.0, 1.0, 0.1], dims="step")
    cube.attrs.update(figure_metric="loss", figure_levels=[1.0])
    fig = grokking_figure(cube)
    curves = [ax for ax in fig.axes if ax.get_ylabel() == "loss"]
    assert len(curves) == 2 and all(ax.get_yscale() == "log" and ax.get_xscale() == "symlog" for ax in curves)
    assert any("norm" in ax.get_ylabel() for ax in fig.axes)  # the norm twin axis stays
    dashed = [line for line in curves[0].get_lines() if line.get_linestyle() == "--"]
    assert sorted(float(line.get_xdata()[0]) for line in dashed) == [10.0, 100.0]  # t_fit, t_gen
    legend = fig_legend(fig)
    assert legend[:2] == ["train loss", "test loss"] and not any(label.startswith("level") for label in legend)


def test_cli_plot_loss_cube(tmp_path, capsys):
    path = save_cube(tmp_path, loss_cube())
    out = tmp_path / "figs"
    assert main(["plot", str(path), "--out", str(out), "--levels", "2,50"]) == 0  # loss levels need not be < 1
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}.{ext}" for k in KINDS for ext in ("png", "pdf"))
    bare = make_cube(test_loss=thumb_loss())
    bare.attrs["figure_metric"] = "loss"
    assert main(["plot", str(save_cube(tmp_path / "bare", bare)), "--out", str(tmp_path / "f2")]) == 2
    assert "needs figure_levels" in capsys.readouterr().err


@pytest.mark.parametrize("limits,labelled", [((0.25, 4.0), {"0.5", "1", "2"}), ((0.1, 10.0), {"0.1", "1", "10"})])
def test_alpha_axis_labels_do_not_crowd(limits, labelled):
    """A narrow alpha range labels 1, 2 and 5 of each decade, a wide one the decades: matplotlib's
    own minor labels on a short log axis (0.2 0.3 0.4 0.6 ...) ran into each other."""
    from plots.style import add_alpha_axis

    fig = Figure()
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(*limits)
    add_alpha_axis(ax, 1.0)
    fig.canvas.draw()
    alpha = next(child for child in ax.get_children() if type(child).__name__ == "SecondaryAxis")
    texts = {t.get_text() for t in alpha.get_xticklabels(which="both") if t.get_text() and t.get_visible()}
    lo, hi = limits
    shown = {t for t in texts if lo <= float(t) <= hi}
    assert shown == labelled, texts
