"""Crystal checks, the conventional cell and relaxations shared by the property modules."""

import warnings
from typing import Optional, Tuple

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from threadpoolctl import threadpool_limits

from ..exceptions import GapyError, StructureError
from ..structures import CLOSE_FACTOR, closest_covalent_pair

#: Space-group numbers of the cubic crystal system.
CUBIC_SPACE_GROUPS = range(195, 231)


class ConvergenceError(GapyError):
    """A relaxation, NEB or fit did not converge."""


def _spglib():
    try:
        import spglib
    except ImportError:  # pragma: no cover - spglib comes with phonopy
        raise ImportError("crystal symmetry needs spglib: pip install spglib (or gapy[validate])") from None
    return spglib


#: Tolerance (A) at which a structure without symmetry at the working one is looked at again, to say
#: when it is a symmetric crystal with noise (a DFT relaxation's 1e-3-1e-2 A).
LOOSE_SYMPREC = 0.05


def check_crystal(atoms: Atoms, what: str) -> None:
    """Raise :class:`StructureError` unless ``atoms`` is a periodic crystal.

    Parameters
    ----------
    atoms : ase.Atoms
    what : str
        The property asked for, named in the message.
    """
    formula = atoms.get_chemical_formula()
    if not atoms.pbc.all():
        raise StructureError(
            f"{what} needs a crystal, but the structure ({formula}) has pbc={atoms.pbc.tolist()}: "
            "give a bulk cell periodic in all three directions"
        )
    if abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{what} needs a crystal, but the structure ({formula}) has a zero-volume cell")
    close = closest_covalent_pair(atoms, CLOSE_FACTOR)
    if close is not None:  # (a lattice constant in the wrong unit: relaxations of it ran for hours)
        raise StructureError(f"{what}: the crystal ({formula}) has {close}; is its lattice constant in Angstrom?")
    if symmetry_dataset(atoms) is None:
        raise StructureError(f"{what}: no crystal symmetry found for the structure ({formula}) "
                             "(spglib, symprec 1e-3 A); is it a crystal?")


def symmetry_dataset(atoms: Atoms, symprec: float = 1e-3):
    """spglib's symmetry dataset of ``atoms``, or None where spglib finds none."""
    spglib = _spglib()
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():  # spglib 2.5+ warns about its old error handling on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_symmetry_dataset(cell, symprec=symprec)
        except Exception:  # spglib.SpglibError with the new error handling
            return None


def conventional_cell(atoms: Atoms, symprec: float = 1e-3) -> Tuple[Atoms, bool]:
    """The standardised conventional cell (cube axes along x, y, z for cubic crystals).

    Returns
    -------
    conventional : ase.Atoms
    cubic : bool
        Whether the space group is cubic (numbers 195-230).

    Raises
    ------
    StructureError
        spglib finds no symmetry.
    """
    spglib = _spglib()
    dataset = symmetry_dataset(atoms, symprec)
    if dataset is None:
        raise StructureError(f"no crystal symmetry found for the structure ({atoms.get_chemical_formula()})")
    loose = symmetry_dataset(atoms, LOOSE_SYMPREC) if int(dataset.number) == 1 else None
    if loose is not None and int(loose.number) > 1:
        warnings.warn(
            f"the structure ({atoms.get_chemical_formula()}) has no symmetry at symprec {symprec:g} A (space group "
            f"P1: its properties are those of a triclinic cell, lattice_a/b/c and 21 elastic constants), but is "
            f"{loose.international} ({int(loose.number)}) at {LOOSE_SYMPREC:g} A: noise from a relaxation? "
            "Symmetrise it first (ase.constraints.FixSymmetry, or spglib.standardize_cell with that symprec)",
            UserWarning, stacklevel=2)
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lattice, positions, numbers = spglib.standardize_cell(cell, to_primitive=False, no_idealize=False,
                                                              symprec=symprec)
    conventional = Atoms(numbers=numbers, scaled_positions=positions, cell=lattice, pbc=True)
    return conventional, int(dataset.number) in CUBIC_SPACE_GROUPS


def repeats_for(atoms: Atoms, length: float) -> Tuple[int, int, int]:
    """Repetitions of the cell so that each plane spacing is at least ``length`` (A)."""
    spacings = 1.0 / np.linalg.norm(np.linalg.inv(atoms.cell.array).T, axis=1)
    return tuple(int(max(1, np.ceil(length / s - 1e-9))) for s in spacings)


def relax(atoms: Atoms, fmax: float, steps: int, what: str, cell: bool = False,
          hydrostatic: bool = False) -> Atoms:
    """Relax ``atoms`` in place (positions, and with ``cell`` the cell) with BFGS.

    ``atoms`` must carry its calculator. Raises :class:`ConvergenceError` naming ``what``
    when the largest force (eV/A; with ``cell`` also stress times volume per atom) is
    still above ``fmax`` after ``steps`` steps.
    """
    target = FrechetCellFilter(atoms, hydrostatic_strain=hydrostatic) if cell else atoms
    if len(atoms) == 1 and not cell:
        return atoms
    # the cell filter's 9x9 matrix functions are 10x slower with threaded BLAS
    with warnings.catch_warnings(), threadpool_limits(limits=1 if cell else None, user_api="blas"):
        # matrix logarithms of near-identity deformations: estimated errors of 1e-13
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        optimizer = BFGS(target, logfile=None)
        converged = optimizer.run(fmax=fmax, steps=steps)
    if not converged:
        residual = np.sqrt((target.get_forces() ** 2).sum(axis=1)).max()
        raise ConvergenceError(
            f"relaxation of the {what} did not converge in {steps} steps (largest force "
            f"{residual:.3g} eV/A > fmax {fmax} eV/A); raise relax_steps or check the structure"
        )
    return atoms


def attach(atoms: Atoms, calc) -> Atoms:
    """A copy of ``atoms`` without constraints, with ``calc`` attached."""
    copy = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    copy.calc = calc
    return copy


#: Why a defect or surface energy needs one species.
CHEMICAL_POTENTIAL_REASON = "it needs the chemical potential of each species otherwise"


def one_species(atoms: Atoms, what: str, reason: str = CHEMICAL_POTENTIAL_REASON) -> str:
    """The species of a one-species crystal; StructureError naming ``what`` and ``reason`` otherwise."""
    species = sorted(set(atoms.get_chemical_symbols()))
    if len(species) != 1:
        raise StructureError(
            f"{what} is defined here for one-species crystals only ({reason}); the structure "
            f"({atoms.get_chemical_formula()}) has {species}"
        )
    return species[0]


def bare(atoms: Atoms, info: Optional[dict] = None) -> Atoms:
    """Positions, numbers and cell only (no calculator), with ``info``."""
    copy = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if info:
        copy.info.update(info)
    return copy
