"""The device a grid trains on: ``--device auto|cpu|cuda|cuda:N``, a run setting, not part of the spec."""
from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from landscape.errors import UserError

DEVICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> str:
    """The torch device that ``name`` asks for on this machine: ``auto`` is CUDA when available.

    CUDA that this machine (or this torch build) lacks is a UserError, raised before any store exists.
    """
    text = check_device(name)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); "
                        "use --device cpu or auto")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return text


def device_name(device: str | torch.device) -> str:
    """What the device is, for the cube's attrs: the GPU's name, or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def check_device(name: str) -> str:
    """``name`` if it is a device name at all, without asking whether this machine has it (a dask
    worker resolves it on its own machine)."""
    text = str(name).strip().lower()
    if text not in ("auto", "cpu") and re.fullmatch(r"cuda(:\d+)?", text) is None:
        raise UserError(f"--device {name!r} is not a device (known: {DEVICES})")
    return text


def device_kind(name: str) -> str:
    """``cpu`` or ``cuda``: what the planner sizes cell batches for (auto: what this machine has)."""
    text = check_device(name)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if text == "cpu" else "cuda"
