"""2-homogeneous models of the Dichotomy paper (Lyu et al. 2024): diagonal linear nets and symmetric
matrix factorizations, each with a ``predictor()`` the theory is about."""
from __future__ import annotations

import torch
from torch import nn


class DiagonalNet(nn.Module):
    """Two-layer diagonal linear net f(x) = <u*u - v*v, x> (Woodworth et al. 2020), 2-homogeneous.

    Init u = v = 1/sqrt(2d): total norm 1 (so the engine's alpha is the total initial norm, as in
    the Dichotomy code's ``DiagonalNet``) and zero output, the theory's symmetrized init.
    """

    def __init__(self, d: int):
        super().__init__()
        self.u = nn.Parameter(torch.full((d,), (2 * d) ** -0.5))
        self.v = nn.Parameter(torch.full((d,), (2 * d) ** -0.5))

    def predictor(self) -> torch.Tensor:
        """The linear classifier w = u*u - v*v the net computes."""
        return self.u * self.u - self.v * self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.predictor()


class MatrixFactorization(nn.Module):
    """Symmetric factorization W = UU^T - VV^T of a d x d matrix, read at index pairs; 2-homogeneous.

    Init U = V = I (norm sqrt(2d)): zero output, and the engine's alpha scales it to alpha I as in
    the Dichotomy code's ``MatrixFactorization``.
    """

    def __init__(self, d: int):
        super().__init__()
        self.U = nn.Parameter(torch.eye(d))
        self.V = nn.Parameter(torch.eye(d))

    def predictor(self) -> torch.Tensor:
        """The completed matrix W."""
        return self.U @ self.U.T - self.V @ self.V.T

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Entries W[i, j] for rows (i, j) of an integer (n, 2) tensor."""
        return self.predictor()[pairs[:, 0], pairs[:, 1]]
