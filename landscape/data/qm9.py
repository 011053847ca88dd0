"""QM9 molecules from the qm9pack wheel as bond graphs with PyG's QM9 features, built once and cached.

qm9pack 1.0.3 ships the 130,831 QM9 molecules that passed QM9's geometry-consistency check (133,885
minus 3,054) as CSV files, in QM9 index order. ``import qm9pack`` fails without setuptools'
``pkg_resources`` and its ``get_data()`` needs pandas, so the CSVs are located with
``importlib.util.find_spec`` (which does not run the package) and read with the csv module.

Bond graphs come from the SMILES column, hydrogens made explicit (RDKit ``AddHs``), rather than from
the XYZ block (``rdDetermineBonds``). Measured: every one of the 130,831 SMILES parses and matches
the molecule's ``N_atoms`` and ``Elements``; ``DetermineBonds`` failed on 96 of a 2,000-molecule
sample (4.8%), was 8x slower per molecule, and gave the same graph as the SMILES wherever it worked.
Sanitising sets RDKit's aromaticity and hybridisation, so the aromatic and sp/sp2/sp3 features and
the aromatic bond type are populated (PyG's own QM9 processing reads an unsanitised SDF, where they
are all zero: pyg-team/pytorch_geometric#8370).

Features, as PyG's QM9 (Gilmer et al. 2017): 11 per atom (one-hot H, C, N, O, F; atomic number;
aromatic; sp, sp2, sp3; number of bonded hydrogens) and the bond type one-hot (single, double,
triple, aromatic) on each edge, both directions. The cache stores them as small integers.
"""
from __future__ import annotations

import csv
import functools
import importlib.metadata
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch

from landscape.data.cache import cache_dir
from landscape.data.graphs import GraphSet, ranges
from landscape.errors import UserError

#: Bump when the cached arrays change meaning; it is part of the cache file name.
FORMAT_VERSION = 1
ELEMENTS = ("H", "C", "N", "O", "F")
NODE_FEATURES = (*ELEMENTS, "atomic_number", "aromatic", "sp", "sp2", "sp3", "num_h")
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")  # RDKit BondType names
TARGET = "Polarizability_bohr3"
EXTRA_HINT = "pip install -e '.[qm9]' (`make grid TASK=qm9` installs it)"


class Row(NamedTuple):
    """The columns of one qm9pack CSV row that the graphs need."""

    index: int  # QM9's molecule number (gdb id)
    smiles: str
    n_atoms: int
    polarizability: float  # bohr^3


@dataclass(frozen=True)
class Molecules:
    """Molecule graphs end to end (see GraphSet), features as integers; ``skipped`` lists the QM9
    indices of rows whose SMILES did not give a graph with ``N_atoms`` atoms."""

    node_features: np.ndarray  # uint8 (nodes, 11), NODE_FEATURES
    edge_index: np.ndarray  # uint8 (2, edges), counted from 0 within each molecule
    bond_type: np.ndarray  # uint8 (edges,), index into BOND_TYPES
    node_offsets: np.ndarray  # int64 (molecules + 1,)
    edge_offsets: np.ndarray  # int64 (molecules + 1,)
    polarizability: np.ndarray  # float64 (molecules,), bohr^3
    qm9_index: np.ndarray  # int64 (molecules,)
    skipped: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.qm9_index)

    def graphs(self, rows: np.ndarray) -> GraphSet:
        """The molecules ``rows`` as a GraphSet of float features (the default dtype)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        node_offsets, edge_offsets = torch.from_numpy(self.node_offsets), torch.from_numpy(self.edge_offsets)
        nodes, node_counts = ranges(node_offsets, rows)
        edges, edge_counts = ranges(edge_offsets, rows)
        bonds = torch.from_numpy(self.bond_type)[edges].long()
        return GraphSet(
            x=torch.from_numpy(self.node_features)[nodes].to(torch.get_default_dtype()),
            edge_index=torch.from_numpy(self.edge_index)[:, edges].long(),
            edge_attr=torch.nn.functional.one_hot(bonds, len(BOND_TYPES)).to(torch.get_default_dtype()),
            node_offsets=_offsets(node_counts),
            edge_offsets=_offsets(edge_counts),
        )


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def versions() -> dict[str, str]:
    """The package versions the cached graphs depend on; UserError when the qm9 extra is missing."""
    try:
        return {name: importlib.metadata.version(name) for name in ("qm9pack", "rdkit")}
    except importlib.metadata.PackageNotFoundError as e:
        raise UserError(f"task qm9 needs the package {e.name}: {EXTRA_HINT}") from None


def cache_path(directory: str | Path | None = None) -> Path:
    """The cache file, named by the versions that built it: another version builds anew."""
    base = Path(directory) if directory else cache_dir()
    v = versions()
    return base / f"qm9-graphs-qm9pack{v['qm9pack']}-rdkit{v['rdkit']}-v{FORMAT_VERSION}.npz"


def qm9pack_files() -> list[Path]:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"task qm9 needs the package qm9pack: {EXTRA_HINT}")
    files = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("qm9_part*.csv"))
    if not files:
        raise UserError(f"qm9pack at {spec.submodule_search_locations[0]} holds no data/qm9_part*.csv")
    return files


def read_rows(limit: int | None = None) -> Iterator[Row]:
    """qm9pack's molecules in file order (QM9 index order), the first ``limit`` of them."""
    csv.field_size_limit(1 << 24)  # the XYZ and frequency columns run to a few kB
    count = 0
    for path in qm9pack_files():
        with open(path, newline="", encoding="utf-8-sig") as f:
            for record in csv.DictReader(f):
                if count == limit:
                    return
                yield Row(int(record["Index"]), record["SMILES"], int(record["N_atoms"]), float(record[TARGET]))
                count += 1


def molecule_graph(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Node features (atoms, 11), edge index (2, 2 x bonds) and bond types of a SMILES with all
    hydrogens explicit, edges sorted by (source, target) as PyG's QM9; None if RDKit cannot parse it."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    mol = Chem.AddHs(mol)
    hybrid = {Chem.HybridizationType.SP: 7, Chem.HybridizationType.SP2: 8, Chem.HybridizationType.SP3: 9}
    x = np.zeros((mol.GetNumAtoms(), len(NODE_FEATURES)), dtype=np.uint8)
    for atom in mol.GetAtoms():
        row = x[atom.GetIdx()]
        row[ELEMENTS.index(atom.GetSymbol())] = 1
        row[5] = atom.GetAtomicNum()
        row[6] = atom.GetIsAromatic()
        if atom.GetHybridization() in hybrid:
            row[hybrid[atom.GetHybridization()]] = 1
        row[10] = sum(n.GetAtomicNum() == 1 for n in atom.GetNeighbors())
    pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), BOND_TYPES.index(b.GetBondType().name)) for b in mol.GetBonds()]
    edges = sorted(pairs + [(j, i, t) for i, j, t in pairs])
    e = np.array(edges, dtype=np.uint8).reshape(-1, 3)
    return x, e[:, :2].T.copy(), e[:, 2].copy()


def build_molecules(rows: Iterable[Row]) -> Molecules:
    """Graphs of ``rows``; a row whose graph misses its N_atoms is skipped (none in qm9pack 1.0.3)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # a skipped row is counted, not printed
    xs, edge_indices, bonds, kept, target, skipped = [], [], [], [], [], []
    for row in rows:
        graph = molecule_graph(row.smiles)
        if graph is None or len(graph[0]) != row.n_atoms:
            skipped.append(row.index)
            continue
        xs.append(graph[0])
        edge_indices.append(graph[1])
        bonds.append(graph[2])
        kept.append(row.index)
        target.append(row.polarizability)
    return Molecules(
        node_features=np.concatenate(xs),
        edge_index=np.concatenate(edge_indices, axis=1),
        bond_type=np.concatenate(bonds),
        node_offsets=np.cumsum([0] + [len(x) for x in xs], dtype=np.int64),
        edge_offsets=np.cumsum([0] + [len(b) for b in bonds], dtype=np.int64),
        polarizability=np.array(target, dtype=np.float64),
        qm9_index=np.array(kept, dtype=np.int64),
        skipped=np.array(skipped, dtype=np.int64),
    )


def save_molecules(molecules: Molecules, path: Path) -> None:
    """Write atomically: parallel workers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{f.name: getattr(molecules, f.name) for f in fields(Molecules)})
    os.replace(tmp, path)


def read_molecules(path: Path) -> Molecules:
    with np.load(path) as arrays:
        return Molecules(**{f.name: arrays[f.name] for f in fields(Molecules)})


@functools.lru_cache(maxsize=2)
def load_molecules(path: Path) -> Molecules:
    """All qm9pack molecules from the cache file ``path`` (``cache_path()``), built first if it is missing."""
    if not path.exists():
        print(f"building the QM9 graphs once into {path} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        save_molecules(build_molecules(read_rows()), path)
        print(f"built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return read_molecules(path)
