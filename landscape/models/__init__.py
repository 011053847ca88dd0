"""Model architectures, one module each; tasks build their models from these."""
from landscape.models.graph import GraphRegressor, NNConv
from landscape.models.homogeneous import DiagonalNet, MatrixFactorization, TwoLayerReLU
from landscape.models.lstm import LSTM, SentimentLSTM
from landscape.models.mlp import mlp
from landscape.models.transformer import Transformer

__all__ = ["LSTM", "DiagonalNet", "GraphRegressor", "MatrixFactorization", "NNConv", "SentimentLSTM", "Transformer",
           "TwoLayerReLU", "mlp"]
