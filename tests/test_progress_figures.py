"""Progress marks (landscape.read.progress) on hand-built curves, and landscape info's marks table."""
import numpy as np

from landscape.read.info import describe
from landscape.read.progress import MARKS, first_step, mark_steps, marks_of
from tests.progress_cubes import EXPECTED_MARKS, STEPS, dynamics_cube


def test_marks_on_hand_built_curves_are_the_expected_steps(tmp_path):
    cube = dynamics_cube(tmp_path / "d.zarr")
    assert [m.name for m in marks_of(cube)] == [m.name for m in MARKS]
    steps = mark_steps(cube)
    for name, step in EXPECTED_MARKS.items():
        np.testing.assert_array_equal(steps[name].values, step)


def test_a_mark_never_reached_is_nan_and_nan_evals_never_hit():
    hit = np.array([[False, False], [False, True]])
    np.testing.assert_array_equal(first_step(np.array([0, 10]), hit), [np.nan, 10.0])
    excluded = next(m for m in MARKS if m.name == "excl_rise")
    curves = {"excluded_loss": np.array([1.0, np.nan, 0.0, 0.0, 3.0]), "train_err": np.zeros(5)}
    assert list(excluded.hit(curves)) == [False, False, False, False, True]  # 0 -> 0 is no rise


def test_info_lists_the_marks_only_when_measured(tmp_path):
    text = describe(dynamics_cube(tmp_path / "d.zarr"))
    assert "progress marks" in text and "stablemax" in text
    row = next(line for line in text.splitlines() if "stablemax" in line and "True" in line and line.count("3000") >= 2)
    assert row.split()[-5:] == ["300", "3000", "300", "1000", "3000"]
    assert "progress marks" not in describe(dynamics_cube(tmp_path / "plain.zarr", measured=False))
    assert STEPS[-1] == 10000


def test_collapse_map_renders_one_panel_per_measure(tmp_path):
    from plots.collapse import collapse_figure
    from plots.render import available_kinds, render
    from tests.progress_cubes import landscape_cube

    land = landscape_cube(tmp_path / "l.zarr")
    assert "collapse" in available_kinds(land)
    fig = collapse_figure(land)
    maps = [ax for ax in fig.axes if ax.get_xlabel().startswith("global norm")]
    assert len(maps) == 2
    paths = render(land, tmp_path / "out", kinds=["collapse"])
    assert {p.name for p in paths} == {"collapse.png", "collapse.pdf"}
