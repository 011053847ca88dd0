"""An LSTM written from matmuls, and Omnigrok's IMDb sentiment classifier built on it.

``LSTM`` has ``nn.LSTM``'s parameters (names, shapes, gate order i, f, g, o), its init (every
tensor uniform in +-1/sqrt(hidden), drawn in the same order) and its batch_first interface, so the
same seed gives the same weights and a state dict loads either way. It exists because
``torch.func.vmap`` has no batching rule for ``nn.LSTM``: written as plain tensor ops it runs under
vmap, which lets the engine train many grid cells as one batched model.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LSTM(nn.Module):
    """Multi-layer LSTM, batch first, zero initial state; ``nn.LSTM(..., batch_first=True)`` semantics."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True):
        super().__init__()
        if not batch_first:
            raise ValueError("LSTM takes (batch, time, input) only: batch_first must be True")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            # nn.LSTM's registration order, which is also the order its init draws them in
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, fan_in)))
            setattr(self, f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            setattr(self, f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(batch, time, input) -> outputs (batch, time, hidden) of the last layer, and (h_n, c_n)."""
        hs, cs = [], []
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            # the input half of every gate for all time steps in one matmul; only h @ W_hh is sequential
            gates_x = x @ w_ih.T + (getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}"))
            h = c = gates_x.new_zeros(gates_x.shape[0], self.hidden_size)
            out = []
            for gx in gates_x.unbind(1):  # unbind, not gates_x[:, t]: one backward op, not T zero-filled copies
                gates = gx + h @ w_hh.T
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                out.append(h)
            x = torch.stack(out, dim=1)
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


class SentimentLSTM(nn.Module):
    """Omnigrok's ``SentimentRNN`` (imdb/landscape): Embedding -> LSTM -> Linear -> sigmoid at the last step.

    Token 0 is padding but has an ordinary trainable embedding, as in the original (no padding_idx).
    Returns P(positive) per review, shape (batch,). ``recurrent`` may be ``nn.LSTM`` for the same
    model on torch's fused kernels (not vmappable).
    """

    def __init__(self, vocab: int, embed: int = 64, hidden: int = 256, layers: int = 2,
                 recurrent: type[nn.Module] = LSTM):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = recurrent(embed, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return torch.sigmoid(self.fc(out[:, -1])).squeeze(-1)
