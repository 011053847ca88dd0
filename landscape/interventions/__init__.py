"""Interventions that remove or shorten the grokking delay, each a wrapper of a loss or an optimizer
that composes with the norm constraint: StableMax (``stablemax``), ⊥Grad and Grokfast (``gradients``)."""
from landscape.interventions.gradients import (
    Grokfast, GradientTransform, OrthoGrad, carry_state, chain, levels, orthogonal_gradient,
)
from landscape.interventions.stablemax import (
    PER_SAMPLE_LOSSES, cross_entropy_losses, log_stablemax, stablemax_cross_entropy, stablemax_losses, stablemax_s,
)

__all__ = [
    "GradientTransform", "Grokfast", "OrthoGrad", "PER_SAMPLE_LOSSES", "carry_state", "chain", "cross_entropy_losses",
    "levels", "log_stablemax", "orthogonal_gradient", "stablemax_cross_entropy", "stablemax_losses", "stablemax_s",
]
