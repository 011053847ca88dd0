"""Model architectures, one module each; tasks build their models from these."""
from landscape.models.homogeneous import DiagonalNet, MatrixFactorization
from landscape.models.lstm import LSTM, SentimentLSTM
from landscape.models.mlp import mlp

__all__ = ["LSTM", "DiagonalNet", "MatrixFactorization", "SentimentLSTM", "mlp"]
