"""What a researcher reads must be true: the commands the README and docs/ write refer to files and
targets that exist, and the figures stay readable (tick labels that do not run together)."""

from __future__ import annotations

import glob
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _expand_braces(pattern: str) -> list[str]:
    """`modular-mlp{,-wd}-paper.toml` -> both names (the shell's brace expansion, one level)."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _make_targets() -> set[str]:
    phony = re.search(r"^\.PHONY:(.*)$", _text(ROOT / "Makefile"), re.M)
    assert phony, "the Makefile declares its targets as .PHONY"
    return set(phony.group(1).split())


def _make_commands() -> list[tuple[str, str]]:
    """(document, command) for every `make ...` the docs write, one per `make` word."""
    out = []
    for doc in DOCS:
        for line in _text(doc).splitlines():
            for m in re.finditer(r"(?<![\w-])make ([a-z][^`|#&;]*)", line):
                out.append((doc.name, m.group(1).strip()))
    return out


def test_docs_exist_and_the_readme_links_every_page():
    readme = _text(ROOT / "README.md")
    pages = [d for d in DOCS if d.parent.name == "docs"]
    assert pages, "docs/ holds the per-experiment pages"
    for page in pages:
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_every_relative_link_and_anchor_resolves():
    def anchors(path: Path) -> set[str]:
        # GitHub's slugs: lower case, punctuation dropped, spaces to hyphens.
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", _text(path), re.M)}

    checked = 0
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _text(doc)):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{doc.name}: link to {target} points nowhere"
            if anchor:
                assert anchor in anchors(dest), f"{doc.name}: no heading #{anchor} in {dest.name}"
            checked += 1
    assert checked >= 8


def test_every_spec_path_the_docs_name_exists():
    names = set()
    for doc in DOCS:
        names |= set(re.findall(r"(?:grids|examples)/[\w./{},*-]*\.toml", _text(doc)))
    names.discard("grids/name.toml")  # the Commands table's placeholder
    assert len(names) > 30
    missing = [n for n in sorted(names) if not all(glob.glob(str(ROOT / p)) for p in _expand_braces(n))]
    assert not missing, f"the docs name specs that do not exist: {missing}"


def test_every_make_command_names_a_target_and_a_spec_that_exist():
    targets = _make_targets()
    commands = _make_commands()
    assert len(commands) > 15
    made = set()  # tasks whose cube a documented `make grid SPEC=...` writes
    for _, cmd in commands:
        if cmd.startswith("grid") and "SPEC=" in cmd and (t := re.search(r"TASK=([\w-]+)", cmd)):
            made.add(t.group(1))
    for doc, cmd in commands:
        target = cmd.split()[0]
        assert target in targets, f"{doc}: `make {cmd}`: no target {target!r} in the Makefile"
        if "[" in cmd:  # the syntax line of the Commands table: placeholders
            continue
        spec = re.search(r"SPEC=(\S+)", cmd)
        if spec:
            assert (ROOT / spec.group(1)).is_file(), f"{doc}: `make {cmd}`: no spec {spec.group(1)}"
        elif (task := re.search(r"TASK=([\w-]+)", cmd)) and target in ("grid", "figures"):
            name = task.group(1)
            assert (ROOT / "grids" / f"{name}.toml").is_file() or name in made, (
                f"{doc}: `make {cmd}`: no grids/{name}.toml")


def test_every_landscape_command_names_a_subcommand_and_a_spec_that_exist():
    from landscape.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    known = set(sub.choices)
    seen = 0
    for doc in DOCS:
        for m in re.finditer(r"(?<![\w/-])(?:\.venv/bin/)?landscape (\w+)((?: [^\s`|]+)?)", _text(doc)):
            word, arg = m.group(1), m.group(2).strip()
            if word not in known and not arg.startswith(("CUBE", "SPEC", "results/", "grids/")):
                continue  # prose ("landscape figures", "landscape is ...")
            assert word in known, f"{doc.name}: `landscape {word}` is no subcommand ({sorted(known)})"
            if word == "grid" and arg.endswith(".toml"):
                assert (ROOT / arg).is_file(), f"{doc.name}: `landscape grid {arg}`: no such spec"
            seen += 1
    assert seen >= 8


def test_a_local_dask_cluster_says_nothing_about_a_taken_dashboard_port(tmp_path, capfd):
    """`--backend dask` without `--scheduler` with port 8787 taken (another cluster, a notebook):
    `--quiet` prints nothing but the summary line, not distributed's port warning."""
    import socket
    import warnings

    from landscape.cli import main

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:
        pass  # taken already: the case under test
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = main(["grid", str(ROOT / "grids" / "teacher-student.toml"), "--out", str(tmp_path / "c.zarr"),
                       "--backend", "dask", "--jobs", "1", "--quiet", "--set", "train.steps=20",
                       "--set", "axes.N=[25]", "--set", "axes.alpha=[1.0]", "--set", "eval.every=10"])
    finally:
        holder.close()
    err = capfd.readouterr().err
    assert rc == 0
    said = err + "".join(str(w.message) for w in caught)
    assert "already in use" not in said, said


# --- figures: readable tick labels -------------------------------------------------------------

def _tick_boxes(fig, axis):
    """Window extents of the tick labels an axis shows, in drawing order along it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    low, high = sorted(axis.get_view_interval())
    boxes = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text() and low <= tick.get_loc() <= high:
                boxes.append((tick.get_loc(), label.get_text(), label.get_window_extent(renderer)))
    return sorted(boxes, key=lambda b: b[0])


def _overlaps(boxes, horizontal: bool) -> list[str]:
    bad = []
    for (_, a, box_a), (_, b, box_b) in zip(boxes, boxes[1:]):
        gap = box_b.x0 - box_a.x1 if horizontal else box_b.y0 - box_a.y1
        if gap < 1:  # pixels: touching labels read as one number
            bad.append(f"{a!r} / {b!r}")
    return bad


def _log_axes(fig):
    for ax in fig.axes:
        for axes in (ax, *ax.child_axes):
            for axis, horizontal in ((axes.xaxis, True), (axes.yaxis, False)):
                if axis.get_scale() in ("log", "functionlog"):
                    yield axis, horizontal


# alpha from a fraction of a decade (a user's 3 to 5) to four decades; N from two values to many.
# matplotlib's own labels ran together (3×10⁰4×10⁰) on the 1.5-9 and 3-30 ranges.
@pytest.mark.parametrize("alpha, values", [
    (np.linspace(3.0, 5.0, 5), np.array([32, 1000])),
    (np.geomspace(1.5, 9.0, 6), np.array([20, 35, 60, 150])),
    (np.geomspace(3.0, 30.0, 6), np.array([30, 40, 60])),
    (np.logspace(-2, 2, 9), np.array([10, 100, 1000, 10000, 50000])),
])
def test_tick_labels_of_log_axes_do_not_overlap(alpha, values):
    from plots.goldilocks import goldilocks_figure
    from plots.lu import lu_figure
    from plots.thumb import thumb_figure
    from tests.synthetic import make_cube

    a, n = np.meshgrid(alpha, values, indexing="ij")
    err = np.clip(np.abs(np.log10(a)) + 0.3 - 0.05 * np.log10(n), 0, 1)
    cube = make_cube(alpha=alpha, values=values, test_err=err)
    checked = 0
    for build in (lu_figure, thumb_figure, goldilocks_figure):
        fig = build(cube)
        for axis, horizontal in _log_axes(fig):
            boxes = _tick_boxes(fig, axis)
            assert boxes, f"{build.__name__}: a log axis without a single label"
            assert not _overlaps(boxes, horizontal), f"{build.__name__}: labels run together: {_overlaps(boxes, horizontal)}"
            plain = [text for loc, text, _ in boxes if 1e-3 <= loc < 1e5]
            assert not [t for t in plain if "times" in t or "×" in t or "e+" in t], f"{build.__name__}: {plain}"
            checked += 1
    assert checked >= 9  # lu: w and α on two panels; thumb: w, α, N on two; goldilocks: N, w, α


# --- figures: the thumb map --------------------------------------------------------------------

def _tipped_cube():
    """A thumb whose best w moves between the rows that bracket the tip (the case where a star
    interpolated between the rows' best w missed the contour)."""
    from tests.synthetic import make_cube

    alpha = np.logspace(-1, 1, 9)
    values = np.array([32, 100, 1000])
    err = np.array([[1.0, 0.9, 0.6],
                    [0.9, 0.5, 0.3],
                    [0.7, 0.25, 0.05],
                    [0.3, 0.3, 0.02],
                    [0.45, 0.08, 0.01],
                    [0.6, 0.15, 0.04],
                    [0.8, 0.4, 0.2],
                    [1.0, 0.7, 0.5],
                    [1.0, 1.0, 0.9]])
    return make_cube(alpha=alpha, values=values, test_err=err)


def test_thumb_star_sits_on_the_contour_it_closes_and_names_its_level():
    from landscape.read.analysis import average_seeds, critical_data_size
    from plots.thumb import thumb_figure

    cube = _tipped_cube()
    tips = critical_data_size(average_seeds(cube), [0.1, 0.2])  # what `info` and the figure read
    fig = thumb_figure(cube, levels=[0.1, 0.2])
    test_ax = fig.axes[1]
    stars = [line.get_xydata()[0] for line in test_ax.lines if line.get_marker() == "*"]
    contours = next(c for c in test_ax.collections if hasattr(c, "levels"))
    to_axes = test_ax.transData + test_ax.transAxes.inverted()
    for i, level in enumerate(contours.levels):
        tip = tips.sel(level=level)
        assert str(tip["position"].values) == "inside"
        star = np.array([float(tip["w_tip"]), float(tip["N_c"])])
        assert any(np.allclose(star, s) for s in stars), (star, stars)
        path = contours.get_paths()[i]
        distance = np.hypot(*(to_axes.transform(path.vertices) - to_axes.transform(star)).T).min()
        assert distance < 0.005, f"the star of level {level} is {distance:.3f} panel widths off its contour"
        assert f"{level:g}" in [t.get_text() for t in test_ax.texts], "the star's level is written beside it"


def test_thumb_cells_cover_only_the_sampled_range():
    from plots.thumb import thumb_figure
    from tests.synthetic import make_cube

    alpha = np.array([0.5, 1.0, 2.0])
    cube = make_cube(alpha=alpha, values=np.array([32, 1000]), test_err=np.full((3, 2), 0.3))
    fig = thumb_figure(cube)
    for ax in fig.axes[:2]:
        assert np.allclose(ax.get_ylim(), (32, 1000))
        assert np.allclose(ax.get_xlim(), (cube["w"].values[0], cube["w"].values[-1]))


# --- a Goldilocks edge at the grid's edge ------------------------------------------------------

def _edge_cube():
    """At N = 1000 test_err stays under 0.2 up to the largest alpha: the zone runs off the grid."""
    from tests.synthetic import make_cube

    alpha = np.array([0.5, 1.0, 2.0, 5.0])
    err = np.array([[0.5, 0.4], [0.1, 0.05], [0.3, 0.1], [0.9, 0.15]])
    return make_cube(alpha=alpha, values=np.array([100, 1000]), test_err=err)


def test_a_goldilocks_edge_at_the_grid_edge_is_flagged_printed_and_drawn(tmp_path, capsys):
    from landscape.read.analysis import goldilocks_zone
    from landscape.cli import main
    from plots.goldilocks import goldilocks_figure
    from plots.lu import lu_figure

    cube = _edge_cube()
    zone = goldilocks_zone(cube).isel(seed=0)
    assert zone["hi_at_grid_edge"].values.tolist() == [False, True]
    assert zone["lo_at_grid_edge"].values.tolist() == [False, False]
    assert float(zone["alpha_hi"].sel(N=1000)) == pytest.approx(5.0)
    path = tmp_path / "edge.zarr"
    cube.to_zarr(path, consolidated=True)
    assert main(["info", str(path)]) == 0
    flagged = [line.split() for line in capsys.readouterr().out.splitlines() if "grid edge" in line]
    assert len(flagged) == 1 and flagged[0][0] == "1000" and flagged[0][-3:] == ["(w_hi:", "grid", "edge)"], flagged
    assert float(flagged[0][4]) == pytest.approx(5.0)  # alpha_hi: the largest alpha on the grid
    for fig in (goldilocks_figure(cube), lu_figure(cube)):
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert any("grid edge" in label for label in labels), labels


# --- two models a user brings: a GRU and a residual MLP with BatchNorm and Dropout ------------

USER_GRIDS = {
    "tests.user_models:SeqGRU": {"alpha": [0.3, 1.0, 3.0], "N": [32, 400], "steps": 40, "batch": 32},
    "tests.user_models:DiabetesResMLP": {"alpha": [0.3, 1.0, 3.0, 10.0], "N": [40, 300], "steps": 60, "batch": 20},
}


@pytest.mark.parametrize("task", sorted(USER_GRIDS))
def test_user_models_run_through_the_cli_and_draw_every_figure(task, tmp_path, capsys):
    from landscape.cli import main
    from plots.render import KINDS

    grid = USER_GRIDS[task]
    spec = tmp_path / "spec.toml"
    spec.write_text(f'task = "{task}"\n[axes]\nalpha = {grid["alpha"]}\nN = {grid["N"]}\nseed = [0]\n'
                    f'[train]\noptimizer = "adam"\nlr = 3e-3\nbatch_size = {grid["batch"]}\nsteps = {grid["steps"]}\n'
                    f'[eval]\nevery = 20\n')
    cube = tmp_path / "cube.zarr"
    assert main(["grid", str(spec), "--out", str(cube), "--jobs", "1", "--quiet"]) == 0
    assert main(["info", str(cube)]) == 0
    out = capsys.readouterr().out
    assert f"{len(grid['alpha']) * 2}/{len(grid['alpha']) * 2} cells finished" in out
    assert main(["plot", str(cube), "--out", str(tmp_path / "fig")]) == 0
    written = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert written == sorted(f"{k}.{ext}" for k in KINDS for ext in ("png", "pdf"))
    assert all((tmp_path / "fig" / name).stat().st_size > 10_000 for name in written if name.endswith(".png"))


# --- make bench, section 3: the matmul share and the ceiling ------------------------------------

@pytest.mark.parametrize("times, why", [
    (dict(matmul=0.0, ops=1.0, wall=1.0, cpu=1.0, calls=0), "no matmul kernel"),
    (dict(matmul=0.7, ops=0.9, wall=1.0, cpu=0.3, calls=10), "core was shared"),
    # kernel times from a loaded run against the wall time of another: the "-82%" day
    (dict(matmul=1.8, ops=1.9, wall=1.0, cpu=1.0, calls=10), "exceed the run's"),
    (dict(matmul=0.9, ops=0.8, wall=1.0, cpu=1.0, calls=10), "exceed all ops"),
    (dict(matmul=0.5, ops=0.9, wall=0.0, cpu=0.0, calls=10), "took no time"),
])
def test_matmul_share_says_why_instead_of_an_impossible_figure(times, why):
    from benchmarks.bench import KernelTimes, matmul_share

    share = matmul_share(KernelTimes(**times))
    assert isinstance(share, str) and why in share, share


def test_tick_text_writes_plain_numbers_and_powers_of_ten_beyond():
    from plots.style import tick_text

    assert [tick_text(v) for v in (10000, 0.03, 2.5, 200)] == ["10000", "0.03", "2.5", "200"]
    assert [tick_text(v) for v in (1e5, 1e-4, 3e6)] == ["$10^{5}$", "$10^{-4}$", "$3\\times 10^{6}$"]


def test_matmul_share_and_ceiling_of_parts_that_add_up():
    from benchmarks.bench import KernelTimes, matmul_ceiling, matmul_share

    share = matmul_share(KernelTimes(matmul=0.75, ops=0.95, wall=1.0, cpu=0.98, calls=400))
    assert share == pytest.approx(0.75)
    assert 0 <= 1 - share <= 1
    # reference 2.0 CPU s, engine 1.2 CPU s of which 75% matmuls: 2.0 / 0.9
    assert matmul_ceiling(2.0, 1.2, share) == pytest.approx(2.0 / 0.9)
    # within the tolerance the ops may read a little over the wall clock; the share stays <= 1
    assert matmul_share(KernelTimes(matmul=1.04, ops=1.05, wall=1.0, cpu=1.0, calls=1)) == 1.0
    for bad in (0.0, -0.82, 1.5, float("nan")):
        with pytest.raises(ValueError):
            matmul_ceiling(2.0, 1.2, bad)
