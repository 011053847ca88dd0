"""Shared fixtures: tiny grid specs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One torch thread per grid worker (and in the driver): tiny models gain nothing from two, and on a
# machine that other jobs keep busy two OpenMP threads stall on each other (landscape.run.driver.THREADS_ENV).
os.environ.setdefault("LANDSCAPE_THREADS", "1")

TINY_TS = """
task = "teacher-student"
[task_options]
threshold = 1e-3
[axes]
alpha = [0.5, 1.0, 2.0]
N = [20, 40]
seed = [0]
[train]
optimizer = "adam"
lr = 1e-3
steps = 60
[eval]
every = 20
"""


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TS)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for in-process training, as in a grid worker: two threads on a busy
    2-core machine can stall on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
