"""Quantities measured on a cell's model, beyond its losses and errors: the landscape around a point
(curvature, ambient and reduced, and slices) and the progress measures of grokking research
(progress_measures). Functions of a model, its data and the task's loss; the training loop's
measurement hook calls them per cell. See the modules' docstrings for the conventions."""
from landscape.measures.cell import KINDS, Curvature, adam_sharpness, curvature
from landscape.measures.directions import direction_seed, directions, filter_directions, sphere_directions
from landscape.measures.functional import FlatLoss, constrained_mask, flat_params, layout_of
from landscape.measures.hessian import (Density, Eigen, Operator, Trace, adam_preconditioner, adam_threshold,
                                       ambient, preconditioned, reduced, sgd_threshold, spectral_density,
                                       stacked_ambient, stacked_top_eigenvalues, top_eigenvalues, trace)
from landscape.measures.slices import Points, Slice, evaluate, interpolation, landscape_slice, line, plane

__all__ = [
    "KINDS", "Curvature", "adam_sharpness", "curvature",
    "Density", "Eigen", "FlatLoss", "Operator", "Points", "Slice", "Trace", "adam_preconditioner",
    "adam_threshold", "ambient", "constrained_mask", "direction_seed", "directions", "evaluate",
    "filter_directions", "flat_params", "interpolation", "landscape_slice", "layout_of", "line", "plane",
    "preconditioned", "reduced", "sgd_threshold", "spectral_density", "sphere_directions", "stacked_ambient",
    "stacked_top_eigenvalues", "top_eigenvalues", "trace",
]
