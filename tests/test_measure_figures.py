"""Figures and ``landscape info`` of the measurements (issue 25) on synthetic cubes written through
the store: each kind renders, is offered only when the cube has its variables, masks missing cells;
``--cells`` picks the right cell or refuses in one line; info's curvature table has the right numbers."""
import numpy as np
import pytest

from landscape.cli import main
from landscape.errors import UserError
from landscape.read.cells import default_cells, parse_cells
from landscape.read.info import describe
from plots.render import available_kinds, render
from plots.sharpness import sharpness_figure
from plots.stability import stability_figure
from tests.measure_cubes import ALPHA, N, W0, dynamics_cube, lambda_reduced, landscape_cube
from tests.synthetic import make_cube, thumb_err

MEASURED = ("sharpness", "slice", "density", "interpolation")


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("measure-cubes")
    return {"2d": (d / "l.zarr", landscape_cube(d / "l.zarr")),
            "1d": (d / "l1.zarr", landscape_cube(d / "l1.zarr", slice_dims=1, directions="sphere")),
            "sgd": (d / "sgd.zarr", dynamics_cube(d / "sgd.zarr")),
            "adam": (d / "adam.zarr", dynamics_cube(d / "adam.zarr", "adam"))}


@pytest.mark.parametrize("name, kinds", [*(("2d", (k,)) for k in MEASURED), ("1d", ("slice",)),
                                         ("sgd", ("edge-of-stability",)), ("adam", ("edge-of-stability",))])
def test_each_kind_renders(cubes, tmp_path, name, kinds):
    _, ds = cubes[name]
    paths = render(ds, tmp_path, kinds=list(kinds), cells=["alpha=1,N=100"] if name == "2d" else None)
    assert {p.name for p in paths} == {f"{k}.{fmt}" for k in kinds for fmt in ("png", "pdf")}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_kinds_need_their_variables(cubes):
    assert set(MEASURED) <= set(available_kinds(cubes["2d"][1]))
    assert "edge-of-stability" in available_kinds(cubes["sgd"][1])
    plain = make_cube(test_err=thumb_err(), train_err=thumb_err() / 4)
    assert not set(MEASURED) & set(available_kinds(plain))
    with pytest.raises(UserError, match="'sharpness' is not available"):
        render(plain, "unused", kinds=["sharpness"])
    # Dropping one variable of a figure takes away that figure alone.
    assert "slice" not in available_kinds(cubes["2d"][1].drop_vars("slice_test_err"))
    assert "density" in available_kinds(cubes["2d"][1].drop_vars("hessian_density_ambient"))


def test_sharpness_map_masks_missing_cells_and_draws_the_thumb(cubes):
    fig = sharpness_figure(cubes["2d"][1])
    reduced, ambient = fig.axes[:2]
    assert "red" in reduced.get_title() and "ambient" in ambient.get_title()
    mesh = reduced.collections[0]
    shown = np.ma.getmaskarray(mesh.get_array()).reshape(len(N), len(ALPHA))
    assert shown[2, 0] and shown[0, 4]  # pending (w0, N2) and diverged (w4, N0): masked
    assert not shown[1, 2]
    np.testing.assert_allclose(mesh.get_array().reshape(len(N), len(ALPHA))[1, 2], lambda_reduced(W0, 100))
    assert mesh.norm.__class__.__name__ == "LogNorm"
    assert [t.get_text() for t in reduced.texts if t.get_text() in ("0.3", "0.4")]  # the thumb's contour labels


def test_edge_of_stability_threshold_line(cubes):
    fig = stability_figure(cubes["sgd"][1])
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_yscale() == "log"
    levels = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert levels == [pytest.approx(2 / 0.01)]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("2/\\eta" in label for label in labels)
    adam = [t.get_text() for t in stability_figure(cubes["adam"][1]).legends[0].get_texts()]
    assert any("P^{-1}H" in label for label in adam) and any("38/\\eta" in label for label in adam)


def test_cells_pick_the_nearest_stored_value(cubes):
    ds = cubes["2d"][1]
    w = ds["w"].values
    (cell,) = parse_cells(ds, [f"w={w[3]:.4g},N=100"])
    assert cell == {"w": w[3], "N": 100, "seed": 0}
    two = parse_cells(ds, ["alpha=1,N=10; w=0.64,N=1000"])
    assert [(c["w"], c["N"]) for c in two] == [(w[2], 10), (w[1], 1000)]
    with pytest.raises(UserError, match=r"w=5 is not in the cube \(w: 0.2, 0.6325"):
        parse_cells(ds, ["w=5,N=100"])
    with pytest.raises(UserError, match="give N too"):
        parse_cells(ds, ["w=2"])
    with pytest.raises(UserError, match="'x=1' is not KEY=VALUE"):
        parse_cells(ds, ["x=1"])


def test_default_cells_are_the_best_and_the_extreme_w(cubes):
    ds = cubes["2d"][1]
    cells = default_cells(ds, "slice_train_loss")
    w = ds["w"].values
    # Best test error at alpha = 1, N = 1000; w index 0 is pending there, so the smallest is index 1.
    assert [(c["w"], c["N"]) for c in cells] == [(w[1], 1000), (w[2], 1000), (w[4], 1000)]


def test_bad_cells_exit_2_in_one_line(cubes, tmp_path, capsys):
    path, _ = cubes["2d"]
    code = main(["plot", str(path), "--out", str(tmp_path / "f"), "--kind", "slice", "--cells", "w=5,N=100"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "w=5 is not in the cube" in err
    assert not (tmp_path / "f").exists()
    assert main(["plot", str(path), "--out", str(tmp_path / "g"), "--kind", "slice", "--cells", "w=2,N=100"]) == 0
    assert (tmp_path / "g" / "slice.png").stat().st_size > 1000


def test_info_prints_the_curvature_table(cubes):
    text = describe(cubes["2d"][1])
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("curvature per N"))
    header = lines[start + 2].split()
    assert header == ["N", "best_w", "lmax_amb", "trace_amb", "lmax_red", "trace_red", "over", "w", "min", "over", "w",
                      "median", "over", "w", "max"]
    row = lines[start + 3 + 1].split()  # N = 100: best w = w0, lmax_red = 3, ambient twice, traces 10x and 5x
    assert row[:6] == ["100", "2", "6", "30±0.5", "3", "15±0.25"]
    # Over the finished w at N = 10 (w4 diverged): max at w index 0, min at index 3.
    n10 = lines[start + 3].split()
    w = W0 * ALPHA
    assert float(n10[-1]) == pytest.approx(lambda_reduced(w[0], 10), rel=1e-3)
    assert float(n10[-3]) == pytest.approx(lambda_reduced(w[3], 10), rel=1e-3)
    dyn = describe(cubes["adam"][1])
    assert "curvature at the end of each run" in dyn and "adam_sharpness" in dyn
    assert "curvature" not in describe(make_cube(test_err=thumb_err()).assign_attrs(spec='{"eval": {"level": 0.9}}'))
