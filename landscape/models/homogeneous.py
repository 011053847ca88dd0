"""2-homogeneous models of the Dichotomy paper (Lyu et al. 2024): diagonal linear nets and symmetric
matrix factorizations, each with a ``predictor()`` the theory is about, and the two-layer ReLU
net of its modular-addition experiment."""
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


class TwoLayerReLU(nn.Module):
    """f(x) = W2 relu(W1 x + b1), a bias in the first layer only: 2-homogeneous in (W1, b1, W2).

    The Dichotomy code's ``HomoMLP`` with ``--last-layer-zero-init``: W1 He-initialised
    (kaiming_normal, ReLU gain), b1 = 0, W2 = 0, so the output is 0 at init and the engine's alpha
    scales the first layer alone (w0 = ||W1||).
    """

    def __init__(self, d_in: int, width: int, d_out: int):
        super().__init__()
        self.hidden = nn.Linear(d_in, width)
        self.output = nn.Linear(width, d_out, bias=False)
        nn.init.kaiming_normal_(self.hidden.weight, nonlinearity="relu")
        nn.init.zeros_(self.hidden.bias)
        nn.init.zeros_(self.output.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(x)))
