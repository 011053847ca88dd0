"""Edge-conditioned graph convolutions (NNConv) and Omnigrok's QM9 regressor (Fig. 5), written with index_add.

NNConv (Gilmer et al. 2017; PyG's ``NNConv`` with its defaults aggr="add", root_weight, bias):
    x'_i = W_root x_i + sum over edges j -> i of  x_j . h(e_ji)  + b,
where h is a small net mapping an edge's features to an (in x out) matrix. Same init as PyG: the
edge net and root weight get PyTorch's Linear init (U(+-1/sqrt(fan_in)), PyG's "uniform"), the bias zeros.

Edge features must be one-hot categories (QM9's 4 bond types): h then takes only as many values as
there are categories, so it runs once per category, every node's features meet every category's
matrix once, and an edge's message is gathered from those. The values are PyG's (which runs h on
every edge and multiplies per edge) up to float rounding; a training step at batch 32 ran 2.5-4x
faster than with PyG's NNConv on CPU (measured side by side, one thread).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from landscape.data.graphs import GraphBatch


class NNConv(nn.Module):
    def __init__(self, fan_in: int, fan_out: int, edge_features: int, hidden: int = 32):
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.edge_net = nn.Sequential(nn.Linear(edge_features, hidden), nn.ReLU(), nn.Linear(hidden, fan_in * fan_out))
        self.root = nn.Linear(fan_in, fan_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        source, target = edge_index
        categories = torch.eye(edge_attr.shape[1], dtype=x.dtype, device=x.device)
        weight = self.edge_net(categories).view(-1, self.fan_in, self.fan_out)  # (categories, in, out)
        per_category = torch.einsum("ni,kio->nko", x, weight)
        messages = per_category[source, edge_attr.argmax(1)]
        summed = x.new_zeros(len(x), self.fan_out).index_add(0, target, messages)
        return summed + self.root(x) + self.bias


class GraphRegressor(nn.Module):
    """NNConv -> ReLU -> NNConv -> ReLU -> sum over each graph's nodes -> MLP: one number per graph."""

    def __init__(self, node_features: int = 11, edge_features: int = 4, widths: tuple[int, int] = (32, 16), hidden: int = 32):
        super().__init__()
        self.conv1 = NNConv(node_features, widths[0], edge_features, hidden)
        self.conv2 = NNConv(widths[0], widths[1], edge_features, hidden)
        self.head = nn.Sequential(nn.Linear(widths[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, g: GraphBatch) -> torch.Tensor:
        h = F.relu(self.conv1(g.x, g.edge_index, g.edge_attr))
        h = F.relu(self.conv2(h, g.edge_index, g.edge_attr))
        pooled = h.new_zeros(g.num_graphs, h.shape[1]).index_add(0, g.batch, h)  # PyG's global_add_pool
        return self.head(pooled)
