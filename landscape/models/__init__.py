"""Model architectures, one module each; tasks build their models from these."""
from landscape.models.homogeneous import DiagonalNet, MatrixFactorization
from landscape.models.mlp import mlp

__all__ = ["DiagonalNet", "MatrixFactorization", "mlp"]
