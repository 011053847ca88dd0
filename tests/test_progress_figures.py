"""Figures and ``landscape info`` of the progress measures (issue 23) on synthetic cubes written through
the store (tests/measure_cubes.py): the grokking figure gains a panel per measure present and is
unchanged without them; the info marks fall on the steps built into the curves; the collapse map draws
the seed-averaged values with missing cells masked."""
import numpy as np
import pytest

from landscape.read.info import describe
from landscape.read.progress import (excluded_rise_step, final_value, first_step_above, keys_settled_step,
                                     progress_marks)
from plots.collapse import collapse_figure
from plots.grokking import grokking_figure
from plots.progress_panels import PANELS
from plots.render import available_kinds, render
from tests.measure_cubes import (ALPHA, N, PROGRESS, PROGRESS_MARKS, STEPS, W0, collapse_at, margin_at,
                                 progress_dynamics_cube, progress_landscape_cube)
from tests.synthetic import make_cube, thumb_err

PROGRESS_VARS = [v for name in (*PROGRESS, "fourier_power", "key_frequencies") for v in (name, f"{name}_curve")]


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress-cubes")
    return progress_dynamics_cube(d / "dyn.zarr"), progress_landscape_cube(d / "land.zarr")


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_grokking_gains_a_panel_per_measure(cubes):
    dyn, _ = cubes
    fig = grokking_figure(dyn)
    plain = grokking_figure(dyn.drop_vars(PROGRESS_VARS))
    # 6 line panels, the power map and its colour bar.
    assert len(fig.axes) == len(plain.axes) + len(PANELS) + 2
    titles = _titles(fig)
    assert {p.title for p in PANELS} <= set(titles)
    assert any(t.startswith("Fourier power of the embedding, ") and "$\\gamma$=0" in t for t in titles)
    first = fig.axes[0]
    collapse = next(ax for ax in fig.axes if ax.get_title() == "softmax collapse")
    assert collapse.get_shared_x_axes().joined(first, collapse) and collapse.get_xscale() == "symlog"
    # Two runs x (collapse, zero loss), and run 0's t_gen.
    curves = [line for line in collapse.get_lines() if len(line.get_xdata()) == len(STEPS)]
    assert len(curves) == 4
    np.testing.assert_allclose(curves[0].get_ydata(), PROGRESS["softmax_collapse"][0])
    verticals = [line for line in collapse.get_lines() if len(line.get_xdata()) == 2]
    assert [line.get_xdata()[0] for line in verticals] == [100.0]
    losses = next(ax for ax in fig.axes if ax.get_title() == "restricted and excluded loss")
    assert losses.get_yscale() == "log" and len([ln for ln in losses.get_lines() if len(ln.get_xdata()) > 2]) == 6
    assert [t.get_text() for t in fig.subfigs[1].legends[0].get_texts()][:2] == ["$\\alpha$=2, $\\gamma$=0, N=100",
                                                                       "$\\alpha$=2, $\\gamma$=1, N=100"]


def test_grokking_without_progress_variables_is_unchanged(cubes):
    dyn, _ = cubes
    plain = grokking_figure(dyn.drop_vars(PROGRESS_VARS))
    assert not plain.subfigs and len(plain.axes) == 2 * 3  # two runs: panel, norm twin, layer panel
    assert all(ax.get_title().count("=") == 3 for ax in plain.axes if ax.get_title())
    # Only some measures: only their panels.
    some = grokking_figure(dyn.drop_vars([v for v in PROGRESS_VARS if not v.startswith("softmax")]))
    assert "softmax collapse" in _titles(some) and "margin" not in _titles(some)


def test_marks_on_hand_built_curves():
    steps = np.array([0, 10, 100, 1000])
    np.testing.assert_array_equal(first_step_above(steps, [[0, 0.02, np.nan, 0.9], [0, 0, 0, 0.01]], 0.01),
                                  [10.0, np.nan])
    # The running minimum 0.5 is set at step 10; 1.2 > 2 x 0.5 only counts where train error is 0.
    excluded = [3.0, 0.5, 0.9, 1.2]
    assert excluded_rise_step(steps, excluded, [1, 0, 0, 0]) == 1000
    assert np.isnan(excluded_rise_step(steps, excluded, [1, 0, 0, 0.1]))
    assert excluded_rise_step(steps, [3.0, np.nan, 0.5, 1.1], [0, 0, 0, 0]) == 1000  # unmeasured steps skipped
    keys = np.array([[1, 3, 3, np.nan], [2, 1, 1, np.nan]])  # {1, 2} then {1, 3}, last eval unmeasured
    assert keys_settled_step(steps, keys) == 10
    assert np.isnan(keys_settled_step(steps, np.full((2, 4), np.nan)))


def test_info_reports_the_marks_per_run(cubes):
    dyn, land = cubes
    marks = progress_marks(dyn).squeeze()
    for name, expected in PROGRESS_MARKS.items():
        np.testing.assert_array_equal(marks[name].values, expected)
    text = describe(dyn)
    assert "progress marks per run" in text and "excluded_loss > 2 x its running minimum while train_err = 0" in text
    rows = text.split("progress marks per run")[1].splitlines()[-2:]
    assert rows[0].split()[-6:] == ["1", "100", "10", "100", "1000", "100"]
    assert rows[1].split()[-6:] == ["1", "-", "1000", "-", "-", "0"]
    assert "progress marks" not in describe(dyn.drop_vars(PROGRESS_VARS))
    assert "progress marks" not in describe(land)


def test_collapse_map(cubes, tmp_path):
    _, land = cubes
    assert "collapse" in available_kinds(land)
    assert "collapse" not in available_kinds(make_cube(test_err=thumb_err(), train_err=thumb_err() / 4))
    paths = render(land, tmp_path, kinds=["collapse"])
    assert {p.name for p in paths} == {"collapse.png", "collapse.pdf"}
    fig = collapse_figure(land)
    collapse, margin = [ax for ax in fig.axes if ax.get_title()][:2]
    assert "normalized margin" in margin.get_title()
    values = collapse.collections[0].get_array().reshape(len(N), len(ALPHA))
    assert np.ma.getmaskarray(values)[2, 0] and np.ma.getmaskarray(values)[0, 4]  # pending and diverged
    assert values[1, 3] == pytest.approx(collapse_at(W0 * ALPHA[3]))
    assert margin.collections[0].get_array().reshape(len(N), len(ALPHA))[2, 4] == pytest.approx(
        margin_at(W0 * ALPHA[4], N[2]))
    assert [t.get_text() for t in collapse.texts if t.get_text() in ("0.3", "0.4")]  # the thumb's contour labels


def test_collapse_map_falls_back_to_the_min_margin_curve(cubes, tmp_path):
    """modular-mlp records min_margin as its extra curve only: the map takes the curve's last point."""
    dyn, land = cubes
    np.testing.assert_array_equal(final_value(dyn.drop_vars("min_margin"), "min_margin").squeeze().values,
                                  [5.0, 1.0])
    only_curve = land.drop_vars(["normalized_margin", "min_margin"]).assign(
        min_margin_curve=land["min_margin"].expand_dims(step=land["step"].values, axis=-1))
    fig = collapse_figure(only_curve)
    assert "minimum margin" in [ax.get_title() for ax in fig.axes if ax.get_title()][1]
    assert final_value(land, "nothing") is None
