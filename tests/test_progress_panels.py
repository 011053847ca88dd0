"""The grokking figure's progress-measure panels (issue 23) on the synthetic progress cube of
tests/progress_cubes.py (four runs over a string and a bool train-setting axis): a panel per measure
the cube has, one line per run on the runs' step axis, and the figure unchanged without them."""
import numpy as np
import pytest

from landscape.read.progress import COLLAPSE_LEVELS, NLM_ALIGNED
from plots.grokking import grokking_figure
from plots.progress_panels import PANELS
from tests.progress_cubes import COLLAPSE, SCALARS, STEPS, dynamics_cube


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress-panels")
    return dynamics_cube(d / "measured.zarr"), dynamics_cube(d / "plain.zarr", measured=False)


def _panel(fig, title):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def _curves(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) == len(STEPS)]


def test_a_panel_per_measure_one_line_per_run(cubes):
    measured, plain = cubes
    fig, before = grokking_figure(measured), grokking_figure(plain)
    # Six line panels, the Fourier power map and its colour bar under the same run panels.
    assert len(fig.axes) == len(before.axes) + len(PANELS) + 2
    titles = [ax.get_title() for ax in fig.axes]
    assert {p.title for p in PANELS} <= set(titles)
    (power,) = [t for t in titles if t.startswith("Fourier power of the embedding, ")]
    assert "loss=task" in power and "orthograd=False" in power  # the first run that generalized
    collapse = _panel(fig, "softmax collapse")
    assert collapse.get_shared_x_axes().joined(fig.axes[0], collapse) and collapse.get_xscale() == "symlog"
    assert len(_curves(collapse)) == 4 * 2  # four runs x (collapse, zero loss)
    np.testing.assert_allclose(_curves(collapse)[0].get_ydata(), COLLAPSE)
    # The marks of landscape info as dotted levels; each run's t_gen (3000 or 10000) dashed.
    flat = [line.get_ydata()[0] for line in collapse.get_lines() if line.get_linestyle() == ":" and len(line.get_ydata()) == 2]
    assert flat == list(COLLAPSE_LEVELS)
    assert NLM_ALIGNED in [line.get_ydata()[0] for line in _panel(fig, "naive loss minimization").get_lines()]
    t_gen = sorted(line.get_xdata()[0] for line in collapse.get_lines() if line.get_linestyle() == "--")
    assert t_gen == [3000, 3000, 10000, 10000]
    losses = _panel(fig, "restricted and excluded loss")
    assert losses.get_yscale() == "log" and len(_curves(losses)) == 4 * 3
    legend = [t.get_text() for t in fig.subfigs[1].legends[0].get_texts()]
    assert legend[0] == "$\\alpha$=2, N=100, loss=task, orthograd=False" and len(legend) == 5  # + the t_gen entry


def test_without_progress_measures_the_figure_is_unchanged(cubes):
    measured, plain = cubes
    fig = grokking_figure(plain)
    assert not fig.subfigs and len(fig.axes) == 2 * 3 * 2 + 4  # 2 x 3 (accuracy, layer norms) slots, 4 norm twins
    assert fig.get_size_inches()[1] == pytest.approx((3.4 + 2.2) * 2 + 1.4)
    # Some measures: only their panels.
    some = grokking_figure(measured.drop_vars([f"{v}_curve" for v in SCALARS if v != "nlm_cosine"] + ["fourier_power_curve"]))
    titles = [ax.get_title() for ax in some.axes]
    assert "naive loss minimization" in titles and "softmax collapse" not in titles
    assert not any(t.startswith("Fourier power") for t in titles)
