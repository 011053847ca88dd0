"""A set of small graphs as a few concatenated tensors, and the minibatch collated from it.

Graphs vary in size, so a set is not one dense tensor: nodes and edges of all graphs are stored
end to end with offsets, and edge indices are local to their graph. Selecting rows gathers those
graphs and shifts their edge indices into one disjoint union (PyG's "Batch"), in a handful of
vectorised ops instead of a Python loop over graphs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class GraphBatch(NamedTuple):
    """Graphs joined into one: ``batch[i]`` is the graph (0..num_graphs-1) that node ``i`` belongs to."""

    x: torch.Tensor  # (nodes, node features)
    edge_index: torch.Tensor  # (2, edges): source, target node
    edge_attr: torch.Tensor  # (edges, edge features)
    batch: torch.Tensor  # (nodes,)
    num_graphs: int


@dataclass(frozen=True)
class GraphSet:
    """Graphs end to end: graph g owns nodes ``node_offsets[g]:node_offsets[g+1]`` and likewise edges;
    ``edge_index`` counts nodes from 0 within each graph. Floating tensors follow the engine's dtype."""

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    node_offsets: torch.Tensor  # (graphs + 1,) int64
    edge_offsets: torch.Tensor  # (graphs + 1,) int64

    def __len__(self) -> int:
        return len(self.node_offsets) - 1

    def select(self, rows: torch.Tensor) -> GraphBatch:
        """The graphs ``rows`` (in that order) collated into one batch."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        nodes, node_counts = ranges(self.node_offsets, rows)
        edges, edge_counts = ranges(self.edge_offsets, rows)
        # each graph's local edge indices shift by where its nodes start in the batch
        shift = torch.repeat_interleave(torch.cumsum(node_counts, 0) - node_counts, edge_counts)
        return GraphBatch(
            x=self.x[nodes],
            edge_index=self.edge_index[:, edges] + shift,
            edge_attr=self.edge_attr[edges],
            batch=torch.repeat_interleave(torch.arange(len(rows)), node_counts),
            num_graphs=len(rows),
        )


def ranges(offsets: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The index ranges ``offsets[r]:offsets[r+1]`` for r in rows, end to end, and their lengths."""
    counts = offsets[rows + 1] - offsets[rows]
    total = int(counts.sum())
    # position p of the result lies in range k: index = p - (start of range k in the result) + offsets[r_k]
    shift = offsets[rows] - (torch.cumsum(counts, 0) - counts)
    return torch.repeat_interleave(shift, counts, output_size=total) + torch.arange(total), counts
