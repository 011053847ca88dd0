"""The cube says what it is (schema version, kind, axis role, references), and cubes of the first
schema, checked into tests/fixtures as that code wrote them, keep opening, summarizing and plotting."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from landscape.read.analysis import is_landscape, over_representation
from landscape.cli import main
from landscape.cube import open_cube
from landscape.read.dichotomy import is_dichotomy
from landscape.cube.schema import KIND_DYNAMICS, KIND_LANDSCAPE, ROLE_REPRESENTATION, ROLE_SAMPLES, SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures"
#: Written by the code of 2026-12-02 (schema 1: no schema_version, kind or axis_role attrs).
V1 = {"v1-landscape.zarr": ("lu", True, False), "v1-dynamics.zarr": ("grokking", False, False),
      "v1-messiness.zarr": ("maps", True, True)}


@pytest.mark.parametrize("name", sorted(V1))
def test_first_schema_cubes_open_summarize_and_plot(tmp_path, capsys, name):
    kind, landscape, representation = V1[name]
    cube = open_cube(FIXTURES / name, verify=True)
    assert "schema_version" not in cube.attrs
    assert is_landscape(cube) is landscape and over_representation(cube) is representation
    assert main(["info", str(FIXTURES / name)]) == 0
    assert "cells finished" in capsys.readouterr().out
    assert main(["plot", str(FIXTURES / name), "--out", str(tmp_path), "--kind", kind]) == 0
    assert (tmp_path / f"{kind}.png").stat().st_size > 10_000


GRID = """task = "{task}"
[axes]
alpha = [0.5, 2.0]
{axis} = {values}
seed = [0]
[train]
steps = 4
constrain_norm = {constrained}
[eval]
every = 2
"""


@pytest.mark.parametrize("task,axis,values,constrained,kind,role", [
    ("teacher-student", "N", "[20]", "true", KIND_LANDSCAPE, ROLE_SAMPLES),
    ("teacher-student", "N", "[20]", "false", KIND_DYNAMICS, ROLE_SAMPLES),
    ("toy-addition", "m", "[0.0, 1.0]", "true", KIND_LANDSCAPE, ROLE_REPRESENTATION),
])
def test_new_cubes_say_what_they_are(tmp_path, task, axis, values, constrained, kind, role):
    spec = tmp_path / "spec.toml"
    spec.write_text(GRID.format(task=task, axis=axis, values=values, constrained=constrained))
    out = tmp_path / "c.zarr"
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    attrs = open_cube(out).attrs
    assert (attrs["schema_version"], attrs["kind"], attrs["axis_role"]) == (SCHEMA_VERSION, kind, role)
    assert attrs["reference_predictors"] == []


def _edit_attrs(cube: Path, **changes) -> None:
    """Change attrs in both places zarr keeps them (.zattrs and the consolidated .zmetadata)."""
    zattrs = json.loads((cube / ".zattrs").read_text())
    zattrs.update(changes)
    (cube / ".zattrs").write_text(json.dumps(zattrs))
    meta = json.loads((cube / ".zmetadata").read_text())
    meta["metadata"][".zattrs"].update(changes)
    (cube / ".zmetadata").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes,message", [
    ({"schema_version": 2, "kind": "landscape", "axis_role": "samples", "reference_predictors": []}, None),
    ({"schema_version": 2, "kind": "movie", "axis_role": "samples", "reference_predictors": []}, "attr 'kind'"),
    ({"schema_version": 2, "kind": "landscape", "axis_role": "time", "reference_predictors": []}, "attr 'axis_role'"),
    ({"schema_version": 2, "kind": "landscape", "axis_role": "samples", "reference_predictors": "kernel"},
     "reference_predictors"),
    ({"schema_version": "2"}, "not a schema version"),
    ({"schema_version": SCHEMA_VERSION + 1}, "upgrade landscape"),
])
def test_schema_attrs_are_checked(tmp_path, capsys, changes, message):
    cube = tmp_path / "c.zarr"
    shutil.copytree(FIXTURES / "v1-landscape.zarr", cube)
    _edit_attrs(cube, **changes)
    code = main(["info", str(cube)])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0 and err == ""
    else:
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_readers_read_the_kind_not_the_spec(tmp_path):
    """A version-2 cube is what its attrs say: the spec JSON and the variable names are not consulted."""
    cube = tmp_path / "c.zarr"
    shutil.copytree(FIXTURES / "v1-dynamics.zarr", cube)
    _edit_attrs(cube, schema_version=2, kind="dynamics", axis_role="samples", reference_predictors=["kernel", "rich"])
    ds = open_cube(cube)
    assert not is_landscape(ds) and is_dichotomy(ds)
    _edit_attrs(cube, reference_predictors=[])
    assert not is_dichotomy(open_cube(cube))
