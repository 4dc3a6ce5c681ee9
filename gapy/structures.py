"""Checked geometry of ``ase.Atoms`` and neighbour pairs within a cutoff."""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import vesin
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from .exceptions import StructureError

#: Atoms closer than this (Angstrom) are rejected as unphysical.
MIN_DISTANCE = 0.1


def structure_name(atoms: Atoms, index: Optional[int] = None) -> str:
    """Name a structure in error messages: its index, formula and config_type.

    Raises ``TypeError`` when ``atoms`` is not an ``ase.Atoms``.
    """
    if not isinstance(atoms, Atoms):
        where = f"structure {index}" if index is not None else "structure"
        raise TypeError(f"{where}: expected ase.Atoms, got {type(atoms).__name__}")
    parts = [f"structure {index}" if index is not None else "structure"]
    parts.append(f"({atoms.get_chemical_formula()}")
    config_type = atoms.info.get("config_type")
    parts[-1] += f", config_type={config_type})" if config_type is not None else ")"
    return " ".join(parts)


def atomic_number(species) -> int:
    """Atomic number of a chemical symbol or number, with a clear error."""
    if isinstance(species, (int, np.integer)) and not isinstance(species, bool):
        if 0 < int(species) < len(chemical_symbols):
            return int(species)
    elif isinstance(species, str) and species in atomic_numbers:
        return atomic_numbers[species]
    elif isinstance(species, str) and species.isdigit():  # JSON keys
        return atomic_number(int(species))
    raise ValueError(f"unknown species {species!r}: give a chemical symbol or atomic number")


@dataclass
class NeighborPairs:
    """Neighbour pairs of one structure, sorted by centre then neighbour.

    Attributes
    ----------
    centers, neighbors : ndarray of shape (n_pairs,)
        Atom indices ``i`` and ``j``; every pair appears in both directions, and a
        neighbour may appear several times through periodic images.
    vectors : ndarray of shape (n_pairs, 3)
        ``r_j + shift - r_i`` in Angstrom.
    offsets : ndarray of shape (n_atoms + 1,)
        Pairs of centre ``i`` are ``offsets[i]:offsets[i + 1]``.
    """

    centers: np.ndarray
    neighbors: np.ndarray
    vectors: np.ndarray
    offsets: np.ndarray


def check_geometry(atoms: Atoms, name: str) -> None:
    """Raise :class:`StructureError` for NaN positions or a degenerate periodic cell."""
    if len(atoms) == 0:
        raise StructureError(f"{name} has no atoms")
    positions = atoms.positions
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise StructureError(f"{name}: field 'positions' is not finite for atoms {bad[:10].tolist()}")
    pbc = atoms.pbc
    if pbc.any():
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise StructureError(f"{name}: field 'cell' is not finite")
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
            raise StructureError(
                f"{name}: periodic cell has zero volume (cell={cell.tolist()}); "
                "set a proper cell or pbc=False"
            )
        for axis in np.flatnonzero(pbc):
            if np.linalg.norm(cell[axis]) < 1e-6:
                raise StructureError(
                    f"{name}: cell vector {axis} is zero but pbc[{axis}] is True"
                )


def neighbor_pairs(atoms: Atoms, cutoff: float, name: str = "structure") -> NeighborPairs:
    """All pairs closer than ``cutoff`` (with periodic images), checked for overlaps."""
    check_geometry(atoms, name)
    n_atoms = len(atoms)
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=True)
    centers, neighbors, vectors, distances = calculator.compute(
        atoms.positions, atoms.cell.array, atoms.pbc.tolist(), "ijDd"
    )
    centers = centers.astype(np.int64)
    neighbors = neighbors.astype(np.int64)
    if distances.size and distances.min() < MIN_DISTANCE:
        k = int(np.argmin(distances))
        raise StructureError(
            f"{name}: atoms {centers[k]} and {neighbors[k]} are {distances[k]:.3g} A apart "
            f"(less than {MIN_DISTANCE} A); check field 'positions' and the cell"
        )
    order = np.lexsort((neighbors, centers))
    offsets = np.searchsorted(centers[order], np.arange(n_atoms + 1))
    return NeighborPairs(centers[order], neighbors[order], np.ascontiguousarray(vectors[order]), offsets)
