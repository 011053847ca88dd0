"""Finding a task class from what a spec names: a built-in name, an entry point, or an import path.

Three doors, one protocol: the package's own tasks by name; tasks that an installed package
registers under the entry-point group ``landscape.tasks``; and any importable class given as
``"package.module:ClassName"``. The driver and every worker resolve the same reference the same
way, so an outside task needs no change to the engine.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import os
import sys
from typing import Any

from landscape.cube.schema import checked_levels
from landscape.errors import UserError
from landscape.cube.schema import AXIS_ROLES
from landscape.tasks.base import Task

#: Entry-point group through which installed packages register task names.
ENTRY_POINT_GROUP = "landscape.tasks"


def builtin_tasks() -> dict[str, type[Task]]:
    from landscape.tasks.diag_misgrok import DiagMisgrok
    from landscape.tasks.diag_sparse import DiagSparse
    from landscape.tasks.imdb import Imdb
    from landscape.tasks.matrix_completion import MatrixCompletion
    from landscape.tasks.mnist import Mnist
    from landscape.tasks.mnist_repr import MnistRepr
    from landscape.tasks.modular_addition import ModularAddition
    from landscape.tasks.modular_mlp import ModularMlp
    from landscape.tasks.qm9 import Qm9
    from landscape.tasks.teacher_student import TeacherStudent
    from landscape.tasks.toy_addition import ToyAddition

    return {cls.name: cls for cls in (TeacherStudent, Mnist, ToyAddition, MnistRepr, DiagSparse, DiagMisgrok,
                                      MatrixCompletion, ModularAddition, ModularMlp, Qm9, Imdb)}


def entry_point_tasks() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    return sorted({*builtin_tasks(), *entry_point_tasks()})


def resolve_task(ref: str | type[Task]) -> type[Task]:
    """The validated Task class a spec's ``task`` names (or the class itself, checked)."""
    if isinstance(ref, type):
        return validate_task_class(ref, ref.__qualname__)
    if not isinstance(ref, str) or not ref:
        raise UserError(f"task = {ref!r} should be a task name, \"package.module:ClassName\" or a Task subclass")
    builtin = builtin_tasks()
    if ref in builtin:
        return builtin[ref]
    if ":" in ref:
        return validate_task_class(_import_class(ref), ref)
    entry = entry_point_tasks().get(ref)
    if entry is None:
        raise UserError(f"unknown task {ref!r} (known: {', '.join(known_names())}; "
                        "or name an outside task as \"package.module:ClassName\")")
    try:
        cls = entry.load()
    except Exception as e:  # whatever the plug-in's import raises
        raise UserError(f"task {ref!r}: entry point {entry.value!r} does not load ({type(e).__name__}: {e})") from None
    return validate_task_class(cls, ref)


def reference(cls: type[Task]) -> str:
    """The string a spec stores for a task class: its name when that resolves back to it, else
    its import path ``module:QualName``."""
    name = getattr(cls, "name", None)
    if isinstance(name, str) and (builtin_tasks().get(name) is cls or _entry_point_class(name) is cls):
        return name
    return f"{cls.__module__}:{cls.__qualname__}"


def same_class(stored_ref: str, stored_name: str | None, cls: type[Task]) -> bool:
    """Whether a cube made from the task reference ``stored_ref`` (and task name ``stored_name``,
    None for cubes made before it was stored) was made by ``cls``, without importing anything a cube
    names: the same reference, or one side run as a script (``__main__:X``) and the other imported by
    its module path, with the same class name and task name."""
    if stored_ref == reference(cls):
        return True
    module, _, qualname = stored_ref.partition(":")
    return ("__main__" in (module, cls.__module__) and qualname == cls.__qualname__
            and stored_name in (None, cls.name))


def _entry_point_class(name: str) -> Any:
    entry = entry_point_tasks().get(name)
    try:
        return entry.load() if entry is not None else None
    except Exception:
        return None


def importable(cls: type) -> bool:
    """Whether a worker process can import ``cls`` by its path (not so for classes made in __main__
    or inside a function)."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return False
    try:
        return _import_class(f"{cls.__module__}:{cls.__qualname__}") is cls
    except UserError:
        return False


def _import_class(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise UserError(f"task {path!r}: expected \"package.module:ClassName\"")
    _extend_sys_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UserError(f"task {path!r}: cannot import module {module_name!r} (ModuleNotFoundError: {e})") from None
        where = ", ".join(["the installed packages", *dict.fromkeys([os.getcwd(), *SEARCH_DIRS])])
        raise UserError(f"task {path!r}: no module {e.name!r} in {where}; put {e.name.replace('.', '/')}.py "
                        "beside the spec file or in the working directory, or make it importable "
                        "(pip install -e it, or add its directory to PYTHONPATH)") from None
    except Exception as e:  # whatever the module raises while importing
        raise UserError(f"task {path!r}: cannot import module {module_name!r} ({type(e).__name__}: {e})") from None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"task {path!r}: module {module_name!r} has no {qualname!r}")
    return obj


#: Directories of the spec files read in this process (landscape.spec.read_spec_file), where
#: ``module:Class`` also looks for its module; workers get them with their batches.
SEARCH_DIRS: list[str] = []


def search_beside(directory: str) -> None:
    """Look for outside tasks' modules in ``directory`` too (after everything else)."""
    directory = os.path.abspath(directory)
    if directory not in SEARCH_DIRS:
        SEARCH_DIRS.append(directory)


def _extend_sys_path() -> None:
    """Let ``module:Class`` paths resolve from the working directory and the spec files'
    directories, as ``python -m`` does from the cwd; the console script and pool workers do not
    have them on sys.path. They go last, so that a ``joblib.py`` there never shadows an installed module."""
    for directory in (os.getcwd(), *SEARCH_DIRS):
        if directory not in sys.path:
            sys.path.append(directory)


@functools.lru_cache(maxsize=None)
def validate_task_class(cls: Any, ref: str) -> type[Task]:
    """``cls`` if it can serve as a task, else a UserError naming what is wrong."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UserError(f"task {ref!r}: {cls!r} is not a subclass of landscape.Task")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise UserError(f"task {ref!r}: {cls.__qualname__} does not implement {missing}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise UserError(f"task {ref!r}: {cls.__qualname__} has no `name` (a short string for the cube)")
    if not isinstance(cls.axis, str) or not cls.axis.isidentifier():
        raise UserError(f"task {ref!r}: {cls.__qualname__}.axis = {cls.axis!r} is not a valid axis name")
    if cls.axis_role not in AXIS_ROLES:
        raise UserError(f"task {ref!r}: {cls.__qualname__}.axis_role = {cls.axis_role!r} is not one of "
                        f"{', '.join(AXIS_ROLES)}")
    missing = [name for name in cls.reference_predictors if f"cos_{name}" not in cls.extra_curves]
    if missing:
        raise UserError(f"task {ref!r}: {cls.__qualname__}.reference_predictors names {missing[0]!r}, "
                        f"but extra_curves has no 'cos_{missing[0]}'")
    if not dataclasses.is_dataclass(cls.Options):
        raise UserError(f"task {ref!r}: {cls.__qualname__}.Options is not a dataclass")
    try:
        checked_levels(cls.figure_metric, cls.figure_levels)
    except UserError as e:
        raise UserError(f"task {ref!r}: {cls.__qualname__}: {e}") from None
    return cls
