"""What defines a cell beyond its spec, recorded in the cube so a resume cannot mix inputs.

A spec names its data and its task, but the files under ``--data-dir`` can be replaced and an outside
task's module edited between an interrupted run and its resume; without a record, one cube would
then hold cells of two data sets or two architectures. The fingerprint holds a digest of the data the
cells train on, a digest of the task's code, the default init's norm w0, and the versions of torch
and this package (the attrs ``version_*``, written by landscape.cube). On resume every recorded part
must match; versions may be accepted explicitly (``--accept-versions``), since an upgrade changes
numbers only within the noise of a seed in the common case, while data and code never may. A cube
from before fingerprints were recorded resumes on what it does record.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import sys
from typing import Any, Mapping

import numpy as np
import torch

from landscape.errors import UserError
from landscape.tasks import Task

#: The cube attr holding the data and code digests (JSON).
ATTR = "fingerprint"
#: The libraries whose recorded versions a resume compares (attrs ``version_<name>``).
COMPARED_VERSIONS = ("torch", "landscape")
#: w0 is recomputed from the same seed on resume; only a changed init moves it by more than rounding.
W0_TOLERANCE = 1e-6


def fingerprint(task: Task, axis_values: list[Any]) -> dict[str, str]:
    """Digests of the task's data and code. The data digest covers the splits of the smallest and
    largest axis values: replaced data files change both, and the grid's driver reads those two
    already (batching and memory probes), so it costs no new loading."""
    h = hashlib.sha256()
    for value in dict.fromkeys((axis_values[0], axis_values[-1])):
        _feed(h, task.data(value))
    return {"data": f"sha256:{h.hexdigest()}", "code": task_code(type(task))}


def task_code(cls: type[Task]) -> str:
    """The package version for a built-in task; else the sha256 of the module that defines the class."""
    module = sys.modules.get(cls.__module__)
    if cls.__module__.split(".")[0] == "landscape":
        from landscape import __version__

        return f"landscape {__version__}"
    try:
        source = inspect.getsourcefile(module) if module is not None else None
        if source is None:
            raise TypeError
        with open(source, "rb") as f:
            return f"sha256:{hashlib.sha256(f.read()).hexdigest()}"
    except (TypeError, OSError):  # a class defined in __main__ or a notebook: its source as inspect sees it
        try:
            return f"sha256:{hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()}"
        except (TypeError, OSError):
            return "unknown"


def _feed(h: Any, obj: Any) -> None:
    """Hash a split's contents: tensors and arrays by dtype, shape and bytes, containers by their items."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            h.update(f"objects {obj.shape};".encode())
            for item in obj.reshape(-1):
                _feed(h, item)
        else:
            h.update(f"array {obj.dtype.str} {obj.shape};".encode())
            h.update(np.ascontiguousarray(obj).tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        _feed(h, [getattr(obj, f.name) for f in dataclasses.fields(obj)])
    elif isinstance(obj, Mapping):
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__} {len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{type(obj).__qualname__} {obj!r};".encode())


def attrs(task: Task, axis_values: list[Any]) -> dict[str, str]:
    """The cube attrs that record the fingerprint (w0 and the versions are attrs of their own)."""
    return {ATTR: json.dumps(fingerprint(task, axis_values), sort_keys=True)}


def _short(digest: Any) -> str:
    """A digest as a report line shows it: enough hex to tell two apart, escaped if it is not text."""
    text = repr(digest) if not isinstance(digest, str) else digest
    return repr(text[:19] + ("..." if len(text) > 19 else ""))


def check_resume(stored: Mapping[str, Any], now: Mapping[str, Any], where: str, accept_versions: bool) -> None:
    """Refuse in one line to resume the cube ``where`` (attrs ``stored``) with inputs that differ from
    those it was computed on (``now``: the attrs a new cube would get); parts the cube does not
    record are not compared."""
    hint = "use --overwrite to recompute it, or another --out"
    try:
        recorded = json.loads(stored[ATTR]) if ATTR in stored else {}
        if not isinstance(recorded, dict):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{where}: the {ATTR} attr is not a JSON object; the cube is damaged: {hint}") from None
    current = json.loads(now[ATTR])
    for part, what in (("data", "data"), ("code", "task code")):
        if part in recorded and recorded[part] != current[part]:
            raise UserError(f"{where} was computed on other {what} ({_short(recorded[part])}, now "
                            f"{_short(current[part])}); resuming would mix two in one cube: {hint}")
    if "w0" in stored:
        try:
            w0 = float(stored["w0"])
        except (TypeError, ValueError):
            w0 = math.nan
        if not math.isclose(w0, now["w0"], rel_tol=W0_TOLERANCE):
            raise UserError(f"{where} was computed with w0 = {stored['w0']!r}, the default init's norm is now "
                            f"{now['w0']:.6g} (the task's model changed): {hint}")
    if accept_versions:
        return
    for name in COMPARED_VERSIONS:
        key = f"version_{name}"
        if key in stored and str(stored[key]) != now[key]:
            raise UserError(f"{where} was computed with {name} {stored[key]!r}, this is {name} {now[key]!r}; "
                            f"rerun with --accept-versions to resume it anyway, or {hint}")
