"""The representation-messiness axis m of Omnigrok section 5 (Eq. 4 and 7), shared by its tasks.

A task with this axis trains at a fixed data size and varies its input representation instead:
R = m R_messy + (1 - m) R_clean, from a clean (linear, label-aligned) representation at m = 0 to
a messy one (random, or raw pixels) at m = 1.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from landscape.errors import UserError
from landscape.cube.schema import ROLE_REPRESENTATION


class MessinessAxis:
    """Mixin for a ``Task`` whose grid axis is the messiness m and whose options hold a fixed ``N``.

    Put it before ``Task`` in the bases.
    """

    axis: ClassVar[str] = "m"
    axis_role: ClassVar[str] = ROLE_REPRESENTATION
    axis_long_name: ClassVar[str] = "representation messiness"

    def check_axis(self, values: list) -> None:
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise UserError(f"axes.m: {v!r} is not a messiness in [0, 1]")

    @property
    def fixed(self) -> dict[str, Any]:
        # The training-set size is every other task's axis; here it is the option ``N``.
        return {"N": self.options.N}


def mix(m: float, messy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Eq. 4 / Eq. 7: the representation at messiness m."""
    return m * messy + (1 - m) * clean
