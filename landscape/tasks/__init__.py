"""Registry of tasks by name. Adding a task = one module here plus one line in ``TASKS``."""
from __future__ import annotations

from typing import Any, Mapping

from landscape.errors import UserError
from landscape.tasks.base import Split, Task, parse_options
from landscape.tasks.diag_misgrok import DiagMisgrok
from landscape.tasks.diag_sparse import DiagSparse
from landscape.tasks.imdb import Imdb
from landscape.tasks.matrix_completion import MatrixCompletion
from landscape.tasks.mnist import Mnist
from landscape.tasks.mnist_repr import MnistRepr
from landscape.tasks.teacher_student import TeacherStudent
from landscape.tasks.toy_addition import ToyAddition

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (TeacherStudent, Mnist, ToyAddition, MnistRepr,
                                                          DiagSparse, DiagMisgrok, MatrixCompletion, Imdb)}


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


def make_task(name: str, options: Mapping[str, Any], data_dir: str | None = None) -> Task:
    cls = task_class(name)
    return cls(parse_options(cls.Options, options), data_dir=data_dir)


__all__ = ["TASKS", "Split", "Task", "make_task", "task_class"]
