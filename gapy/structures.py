"""Checked geometry of ``ase.Atoms`` and neighbour pairs within a cutoff."""

import math
from dataclasses import dataclass
from typing import Iterable, List, Optional, Union

import numpy as np
import vesin
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from .exceptions import StructureError

#: Atoms closer than this (Angstrom) are rejected as unphysical.
MIN_DISTANCE = 0.1
#: Atoms closer than this times the sum of their covalent radii are far inside any repulsive wall (bonds are
#: 1.0-1.2 times it): MD stops there, and a fit names such training structures (:func:`closest_covalent_pair`).
CLOSE_FACTOR = 0.5


def require_atoms(atoms, index: Optional[int] = None) -> None:
    """Raise ``TypeError`` when ``atoms`` is not an ``ase.Atoms``.

    Parameters
    ----------
    atoms : object
        The object to check.
    index : int, optional
        Its place in a data set, named in the message.

    Raises
    ------
    TypeError
        ``atoms`` is not an ``ase.Atoms``.
    """
    if not isinstance(atoms, Atoms):
        where = f"structure {index}" if index is not None else "structure"
        raise TypeError(f"{where}: expected ase.Atoms, got {type(atoms).__name__}")


def as_frames(frames: Union[Atoms, Iterable[Atoms]]) -> List[Atoms]:
    """A list of structures from one ``Atoms`` or an iterable of them.

    Parameters
    ----------
    frames : ase.Atoms or iterable of ase.Atoms
        One structure or several (a generator is consumed).

    Returns
    -------
    list of ase.Atoms
        The same objects (not copies).

    Raises
    ------
    TypeError
        An element is not an ``ase.Atoms`` (its index is named).
    ValueError
        No structure is given.

    Examples
    --------
    >>> from gapy.structures import as_frames
    >>> from ase.build import bulk
    >>> len(as_frames(bulk("Si"))), len(as_frames(iter([bulk("Si"), bulk("Ge")])))
    (1, 2)
    """
    if isinstance(frames, Atoms):
        return [frames]
    frames = list(frames)
    for k, atoms in enumerate(frames):
        require_atoms(atoms, k)
    if not frames:
        raise ValueError("no structures given")
    return frames


def structure_name(atoms: Atoms, index: Optional[int] = None) -> str:
    """Name a structure in error messages: its index, formula and config_type.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    index : int, optional
        Its place in a data set.

    Returns
    -------
    str
        E.g. ``"structure 3 (Si8, config_type=bulk)"``.

    Raises
    ------
    TypeError
        ``atoms`` is not an ``ase.Atoms``.

    Examples
    --------
    >>> from gapy.structures import structure_name
    >>> from ase.build import bulk
    >>> atoms = bulk("Si", cubic=True)
    >>> atoms.info["config_type"] = "bulk"
    >>> structure_name(atoms, 3)
    'structure 3 (Si8, config_type=bulk)'
    """
    require_atoms(atoms, index)
    parts = [f"structure {index}" if index is not None else "structure"]
    parts.append(f"({atoms.get_chemical_formula()}")
    config_type = atoms.info.get("config_type")
    parts[-1] += f", config_type={config_type})" if config_type is not None else ")"
    return " ".join(parts)


def atomic_number(species) -> int:
    """Atomic number of a chemical symbol or number, with a clear error.

    Parameters
    ----------
    species : str or int
        A chemical symbol (``"Si"``), an atomic number, or an atomic number as a string
        (JSON keys: ``"14"``).

    Returns
    -------
    int
        The atomic number.

    Raises
    ------
    ValueError
        ``species`` is not a known symbol or a valid atomic number.

    Examples
    --------
    >>> from gapy.structures import atomic_number
    >>> atomic_number("Si"), atomic_number(14), atomic_number("14")
    (14, 14, 14)
    >>> atomic_number("si")
    Traceback (most recent call last):
    ...
    ValueError: unknown species 'si' ('Si'?): give a chemical symbol or atomic number
    >>> atomic_number("X")
    Traceback (most recent call last):
    ...
    ValueError: unknown species 'X' (ASE's dummy atom, not an element): give a chemical symbol or atomic number
    """
    if isinstance(species, (int, np.integer)) and not isinstance(species, bool):
        if 0 < int(species) < len(chemical_symbols):
            return int(species)
    elif isinstance(species, str) and atomic_numbers.get(species, 0) > 0:  # (not "X", ASE's dummy atom)
        return atomic_numbers[species]
    elif isinstance(species, str) and species.isdigit():  # JSON keys
        return atomic_number(int(species))
    hint = ""
    if species in ("X", 0):
        hint = " (ASE's dummy atom, not an element)"
    elif isinstance(species, str) and species.strip().capitalize() in atomic_numbers:
        hint = f" ({species.strip().capitalize()!r}?)"  # "si", "SI", " Si"
    raise ValueError(f"unknown species {species!r}{hint}: give a chemical symbol or atomic number")


def check_species(species) -> np.ndarray:
    """Sorted atomic numbers of a non-empty list of distinct symbols or numbers.

    Raises
    ------
    ValueError
        An empty list, a single string or number, an unknown species or a duplicate.
    """
    if isinstance(species, (str, int, np.integer)) or len(species) == 0:
        raise ValueError(f"species must be a non-empty list of species, got {species!r}")
    numbers = [atomic_number(s) for s in species]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"species has duplicates: {list(species)!r}")
    return np.array(sorted(numbers))


def species_indices(atoms: Atoms, atomic_numbers: np.ndarray, owner: str, index: Optional[int] = None,
                    species: Optional[list] = None) -> np.ndarray:
    """Index of each atom's species in the sorted ``atomic_numbers`` of a descriptor.

    Raises
    ------
    StructureError
        A species that is not among ``atomic_numbers`` (names the structure and the fix,
        ``owner(species=...)``).
    """
    require_atoms(atoms, index)
    numbers = atoms.numbers
    position = np.minimum(np.searchsorted(atomic_numbers, numbers), len(atomic_numbers) - 1)
    unknown = atomic_numbers[position] != numbers
    if unknown.any():
        symbols = sorted({str(s) for s in np.array(atoms.get_chemical_symbols())[unknown]})
        known = list(species) if species is not None else [chemical_symbols[z] for z in atomic_numbers]
        raise StructureError(
            f"{structure_name(atoms, index)}: species {symbols} not in the descriptor's species {known} "
            f"(field 'numbers'); add them to {owner}(species=...)"
        )
    return position


@dataclass
class NeighborPairs:
    """Neighbour pairs of one structure, sorted by centre then neighbour.

    Made by :func:`neighbor_pairs`; every parameter is stored as an attribute of the
    same name.

    Parameters
    ----------
    centers : ndarray of int of shape (n_pairs,)
        Atom index ``i`` of each pair.
    neighbors : ndarray of int of shape (n_pairs,)
        Atom index ``j``; every pair appears in both directions, and a neighbour may
        appear several times through periodic images.
    vectors : ndarray of shape (n_pairs, 3)
        ``r_j + shift - r_i`` in Angstrom.
    offsets : ndarray of shape (n_atoms + 1,)
        Pairs of centre ``i`` are ``offsets[i]:offsets[i + 1]``.
    """

    centers: np.ndarray
    neighbors: np.ndarray
    vectors: np.ndarray
    offsets: np.ndarray


def check_geometry(atoms: Atoms, index: Optional[int] = None) -> None:
    """Raise :class:`StructureError` for atoms that are no element, NaN positions or a degenerate periodic cell.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure to check.
    index : int, optional
        The structure's place in a data set; only serves the error message.

    Raises
    ------
    TypeError
        ``atoms`` is not an ``ase.Atoms``.
    gapy.StructureError
        No atoms, an atomic number that is no element (0: ASE's ``X``), non-finite
        positions or cell, a zero-volume cell periodic in all directions, or a zero
        cell vector along a periodic direction.
    """
    require_atoms(atoms, index)

    def fail(problem: str):
        raise StructureError(f"{structure_name(atoms, index)}{problem}")

    if len(atoms) == 0:
        fail(" has no atoms")
    numbers = atoms.numbers
    if numbers.min() < 1 or numbers.max() >= len(chemical_symbols):
        bad = np.flatnonzero((numbers < 1) | (numbers >= len(chemical_symbols)))
        fail(f": field 'numbers' has {numbers[bad[0]]} for atoms {bad[:10].tolist()}, which is no element"
             + (" ('X', ASE's dummy atom)" if numbers[bad[0]] == 0 else ""))
    positions = atoms.positions
    if not np.isfinite(positions).all():
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        fail(f": field 'positions' is not finite for atoms {bad[:10].tolist()}")
    pbc = atoms.pbc.tolist()
    if any(pbc):
        cell = atoms.cell.array.tolist()  # Python floats: cheaper than numpy for 3x3
        if not all(math.isfinite(x) for row in cell for x in row):
            fail(": field 'cell' is not finite")
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = cell
        volume = ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx)
        if all(pbc) and abs(volume) < 1e-6:
            fail(f": periodic cell has zero volume (cell={cell}); set a proper cell or pbc=False")
        for axis in range(3):
            if pbc[axis] and math.hypot(*cell[axis]) < 1e-6:
                fail(f": cell vector {axis} is zero but pbc[{axis}] is True")


def neighbor_pairs(atoms: Atoms, cutoff: float, index: Optional[int] = None) -> NeighborPairs:
    """All pairs closer than ``cutoff`` (with periodic images), checked for overlaps.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    cutoff : float
        Cutoff radius in Angstrom.
    index : int, optional
        The structure's place in a data set; only serves error messages.

    Returns
    -------
    NeighborPairs
        The pairs, sorted by centre then neighbour.

    Raises
    ------
    TypeError
        ``atoms`` is not an ``ase.Atoms``.
    gapy.StructureError
        The geometry fails :func:`check_geometry`, or two atoms are closer than
        :data:`MIN_DISTANCE` (0.1 Angstrom).

    Examples
    --------
    >>> from gapy.structures import neighbor_pairs
    >>> from ase.build import bulk
    >>> pairs = neighbor_pairs(bulk("Si"), cutoff=2.5)  # 4 nearest neighbours at 2.35 A
    >>> pairs.offsets.tolist(), pairs.vectors.shape
    ([0, 4, 8], (8, 3))
    """
    check_geometry(atoms, index)
    n_atoms = len(atoms)
    # one thread: callers parallelise over structures, and vesin's OpenMP threads
    # would oversubscribe the cores (and are slower for small cells anyway)
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=True, n_threads=1)
    centers, neighbors, vectors, distances = calculator.compute(
        atoms.positions, atoms.cell.array, atoms.pbc, "ijDd"
    )
    if distances.size and distances.min() < MIN_DISTANCE:
        k = int(np.argmin(distances))
        raise StructureError(
            f"{structure_name(atoms, index)}: atoms {centers[k]} and {neighbors[k]} are "
            f"{distances[k]:.3g} A apart (less than {MIN_DISTANCE} A); check field "
            "'positions' and the cell"
        )
    centers = centers.astype(np.int64)
    neighbors = neighbors.astype(np.int64)
    order = np.argsort(centers * n_atoms + neighbors, kind="stable")
    centers = centers[order]
    offsets = np.searchsorted(centers, np.arange(n_atoms + 1))
    return NeighborPairs(centers, neighbors[order], vectors[order], offsets)


def closest_covalent_pair(atoms: Atoms, factor: float) -> Optional[str]:
    """The pair of atoms closest relative to ``factor`` times the sum of their covalent radii,
    described, when it is closer than that; ``None`` when no pair is.

    The check of trajectories that may leave physical geometries (a poor model, a strong
    bias): bonds are 1.0-1.2 times the sum of covalent radii, 0.5 is far inside any
    repulsive wall.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure.
    factor : float
        Fraction of the sum of the two covalent radii (``ase.data.covalent_radii``).

    Returns
    -------
    str or None
        ``"atoms i and j are d A apart, less than factor x the sum of their covalent radii
        (limit A)"``, or ``None``.

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy.structures import closest_covalent_pair
    >>> closest_covalent_pair(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]]), 0.5) is None
    True
    >>> closest_covalent_pair(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1.0]]), 0.5)
    'atoms 0 and 1 are 1 A apart, less than 0.5 x the sum of their covalent radii (1.32 A)'
    """
    if not factor or (len(atoms) < 2 and not atoms.pbc.any()):  # (a periodic atom meets its images)
        return None
    radii = covalent_radii[atoms.numbers]
    pairs = neighbor_pairs(atoms, 2.0 * factor * radii.max())
    if not len(pairs.centers):
        return None
    distances = np.linalg.norm(pairs.vectors, axis=1)
    limits = factor * (radii[pairs.centers] + radii[pairs.neighbors])
    too_close = distances < limits
    if not too_close.any():
        return None
    k = np.flatnonzero(too_close)[np.argmin(distances[too_close] / limits[too_close])]
    return (f"atoms {pairs.centers[k]} and {pairs.neighbors[k]} are {distances[k]:.3g} A apart, less than {factor:g} "
            f"x the sum of their covalent radii ({limits[k]:.3g} A)")


def is_isolated_atom(atoms: Atoms, cutoff: float, index: Optional[int] = None) -> bool:
    """Whether ``atoms`` is one atom without a neighbour (periodic images included) within ``cutoff``.

    Such an atom's local energy is the model's ``e0``: a single atom with no periodic
    boundaries, or in a periodic box larger than the cutoff (as plane-wave codes compute
    isolated atoms).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    cutoff : float
        Cutoff radius in Angstrom (the model's largest).
    index : int, optional
        The structure's place in a data set; only serves error messages.

    Returns
    -------
    bool

    Examples
    --------
    >>> from ase import Atoms
    >>> from ase.build import bulk
    >>> box = Atoms("Cu", cell=[12.0, 12.0, 12.0], pbc=True)
    >>> is_isolated_atom(box, 5.0), is_isolated_atom(box, 13.0), is_isolated_atom(bulk("Cu"), 5.0)
    (True, False, False)
    """
    return len(atoms) == 1 and not len(neighbor_pairs(atoms, cutoff, index).centers)


def spatial_blocks(atoms: Atoms, size: int) -> List[np.ndarray]:
    """Split the atoms into blocks of at most ``size`` atoms that are compact in space.

    The structure is cut into a grid of about ``n_atoms / size`` cells (along the cell
    vectors of a periodic structure, the Cartesian axes otherwise); each grid cell's
    atoms form a block, cut into pieces of ``size`` if there are more. Work done per block
    on an atom's neighbourhood (a halo of one cutoff) is then small next to the block.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    size : int
        Largest number of atoms in a block.

    Returns
    -------
    list of ndarray of int
        Atom indices of each block (sorted); every atom is in exactly one block.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy.structures import spatial_blocks
    >>> blocks = spatial_blocks(bulk("Cu", cubic=True) * (4, 4, 4), size=32)
    >>> len(blocks), max(len(block) for block in blocks)
    (8, 32)
    """
    n_atoms = len(atoms)
    if n_atoms <= size:
        return [np.arange(n_atoms)]
    per_axis = math.ceil((n_atoms / size) ** (1 / 3))
    if atoms.pbc.all():
        fractions = atoms.cell.scaled_positions(atoms.positions) % 1.0
    else:
        positions = atoms.positions
        fractions = (positions - positions.min(axis=0)) / (np.ptp(positions, axis=0) + 1e-9)
    bins = np.minimum((fractions * per_axis).astype(int), per_axis - 1)
    keys = np.ravel_multi_index(bins.T, (per_axis,) * 3)
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
    blocks = []
    for group in np.split(order, starts[1:]):
        blocks.extend(group[k:k + size] for k in range(0, len(group), size))
    return blocks


def molecule_image_distance(atoms: Atoms, cutoff: float, index: Optional[int] = None,
                            bond_factor: float = 1.5) -> Optional[float]:
    """Distance to the nearest periodic image of a lone molecule in a periodic box, if within ``cutoff``.

    Plane-wave codes compute a gas-phase molecule in a periodic box; a descriptor whose cutoff
    reaches the molecule's images then describes an interaction with them. A structure is a
    lone molecule when its atoms, bonded within ``bond_factor`` times the sum of their
    covalent radii, form one cluster that is not bonded to its own images (a crystal, a chain
    or a slab is; a liquid of several molecules is several clusters). The bonds reach 1.5 times
    the covalent length: hot MD stretches them (EMT C-H bonds of 1.4 A), hydrogen bonds (1.8 A for
    O-H) stay out.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    cutoff : float
        Cutoff radius in Angstrom.
    index : int, optional
        The structure's place in a data set; only serves error messages.
    bond_factor : float, default=1.5
        Bonds are pairs closer than this times the sum of the covalent radii.

    Returns
    -------
    float or None
        The shortest distance (Angstrom) from an atom to an image of the molecule, when the
        structure is a lone molecule in a box that is periodic along some axis and an image is
        within ``cutoff``; otherwise ``None``.

    Examples
    --------
    >>> from ase.build import molecule
    >>> methane = molecule("CH4", cell=[8.0, 8.0, 8.0], pbc=True)
    >>> round(molecule_image_distance(methane, 7.0), 2), molecule_image_distance(methane, 5.0)
    (6.86, None)
    """
    if not atoms.pbc.any() or len(atoms) < 2:
        return None
    radii = covalent_radii[atoms.numbers]
    bonds = neighbor_pairs(atoms, 2 * bond_factor * float(radii.max()), index)
    bonded = np.linalg.norm(bonds.vectors, axis=1) < bond_factor * (radii[bonds.centers] + radii[bonds.neighbors])
    unwrapped = np.full((len(atoms), 3), np.nan)  # positions with the molecule made whole
    unwrapped[0], stack = atoms.positions[0], [0]
    while stack:
        i = stack.pop()
        for k in range(bonds.offsets[i], bonds.offsets[i + 1]):
            if bonded[k]:
                j, position = bonds.neighbors[k], unwrapped[i] + bonds.vectors[k]
                if np.isnan(unwrapped[j, 0]):
                    unwrapped[j] = position
                    stack.append(j)
                elif np.abs(unwrapped[j] - position).max() > 1e-6:
                    return None  # bonded to its own image: a crystal, chain or slab
    if np.isnan(unwrapped[:, 0]).any():
        return None  # several molecules (or a lone atom beside one)
    pairs = neighbor_pairs(atoms, cutoff, index)
    direct = unwrapped[pairs.neighbors] - unwrapped[pairs.centers]
    image = np.abs(pairs.vectors - direct).max(axis=1) > 1e-6
    return float(np.linalg.norm(pairs.vectors[image], axis=1).min()) if image.any() else None
