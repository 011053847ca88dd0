"""Tasks: the protocol (base.py), the built-in tasks (one module each) and how a spec finds one (registry.py)."""
from __future__ import annotations

from typing import Any, Mapping

from landscape.tasks.base import Split, Task, parse_options
from landscape.tasks.registry import resolve_task


def make_task(ref: str | type[Task], options: Mapping[str, Any], data_dir: str | None = None) -> Task:
    cls = resolve_task(ref)
    return cls(parse_options(cls.Options, options), data_dir=data_dir)


__all__ = ["Split", "Task", "make_task", "resolve_task"]
