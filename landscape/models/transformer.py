"""A one-layer transformer for modular arithmetic: the model of Nanda et al. (2023) that Omnigrok's
Figs. 7, 9 and 10a train (paper-setups A.7, Part 2 section 1a).

No LayerNorm, learned positional embeddings, untied embed and unembed, attention without biases,
an MLP with biases; every weight drawn as randn / sqrt(d_model), the unembedding as
randn / sqrt(d_vocab), biases zero. The four top-level submodules (embed, attn, mlp, unembed) are
the parameter groups whose norms a dynamics run records.

Written for torch.func.vmap as well as plain calls: attention is explicit matmuls and a softmax
(scaled_dot_product_attention has no CPU batching rule), the causal mask is made in forward (the
batched trainer takes models without buffers), and shapes come from the input, never from data.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _randn(*shape: int, scale: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) / math.sqrt(scale))


class Embed(nn.Module):
    """Token embedding plus a learned position embedding."""

    def __init__(self, d_vocab: int, d_model: int, n_ctx: int):
        super().__init__()
        self.W_E = _randn(d_vocab, d_model, scale=d_model)
        self.W_pos = _randn(n_ctx, d_model, scale=d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.W_E) + self.W_pos[: tokens.shape[-1]]


class Attention(nn.Module):
    """Causal multi-head self-attention without biases."""

    def __init__(self, d_model: int, n_heads: int, d_head: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.W_Q = _randn(n_heads * d_head, d_model, scale=d_model)
        self.W_K = _randn(n_heads * d_head, d_model, scale=d_model)
        self.W_V = _randn(n_heads * d_head, d_model, scale=d_model)
        self.W_O = _randn(d_model, n_heads * d_head, scale=d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = ((x @ W.T).reshape(B, T, self.n_heads, self.d_head).transpose(1, 2)
                   for W in (self.W_Q, self.W_K, self.W_V))  # (B, heads, T, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = (pattern @ v).transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)
        return z @ self.W_O.T


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = _randn(d_mlp, d_model, scale=d_model)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = _randn(d_model, d_mlp, scale=d_model)
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.W_in.T + self.b_in) @ self.W_out.T + self.b_out


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int, d_vocab: int):
        super().__init__()
        self.W_U = _randn(d_vocab_out, d_model, scale=d_vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U.T


class Transformer(nn.Module):
    """tokens (B, T) -> logits (B, d_vocab_out) of the last position."""

    def __init__(self, d_vocab: int, d_vocab_out: int, n_ctx: int, d_model: int = 128, n_heads: int = 4,
                 d_head: int = 32, d_mlp: int = 512):
        super().__init__()
        self.embed = Embed(d_vocab, d_model, n_ctx)
        self.attn = Attention(d_model, n_heads, d_head)
        self.mlp = MLP(d_model, d_mlp)
        self.unembed = Unembed(d_model, d_vocab_out, d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        x = x + self.attn(x)
        # Only the last position's logits are read, and after attention positions no longer mix:
        # the MLP and unembedding run on it alone (the same logits, a third of their cost).
        x = x[:, -1]
        x = x + self.mlp(x)
        return self.unembed(x)
