"""Phonons with phonopy: frequencies at the high-symmetry points and the dispersion.

phonopy (``Phonopy``, ``generate_displacements``, ``produce_force_constants``,
``run_qpoints``) builds the displaced supercells of the relaxed conventional cell
(repeated until every plane spacing is at least ``supercell_length``; primitive cell
found by phonopy), takes the forces of the calculator and gives frequencies in THz. The
path and its special points are ASE's standard ones for the primitive cell
(``Cell.bandpath``, Setyawan-Curtarolo). Property names are ``phonon_<point>_<k>``: the
``k``-th lowest frequency at special point ``<point>`` (``G`` is Gamma; its acoustic
zeros are left out).
"""

import warnings
from typing import Dict, List

import numpy as np
from ase import Atoms
from ase.dft.kpoints import parse_path_string

from ._base import Context, Outcome
from ._structures import bare, repeats_for

#: Path points of the dispersion plot.
BAND_POINTS = 120


def _phonopy():
    try:
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms
    except ImportError:
        raise ImportError("phonon properties need phonopy: pip install phonopy (or pip install "
                          "gapy[validate])") from None
    return Phonopy, PhonopyAtoms


def _frequencies(phonon, forces: np.ndarray, qpoints: np.ndarray) -> np.ndarray:
    """Frequencies (THz, shape (n_q, n_bands), sorted) from supercell forces."""
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.run_qpoints(qpoints)
    return np.sort(np.asarray(phonon.qpoints.frequencies), axis=1)


def special_point_names(path) -> List[str]:
    """Each special point of a band path once, in path order.

    Parameters
    ----------
    path : ase.dft.kpoints.BandPath
        The path (``atoms.cell.bandpath()``).

    Returns
    -------
    list of str
        Names such as ``"G"``, ``"X"`` or ``"S1"`` (one point, not ``"S"`` and ``"1"``).

    Examples
    --------
    >>> from ase.lattice import BCT
    >>> special_point_names(BCT(2.6, 3.3).tocell().bandpath())
    ['G', 'X', 'Y', 'S', 'Z', 'S1', 'N', 'P', 'Y1']
    """
    return [name for name in dict.fromkeys(sum(parse_path_string(path.path), [])) if name in path.special_points]


def compute(context: Context) -> Outcome:
    """Phonons of ``context.calc``; see the module docstring."""
    Phonopy, PhonopyAtoms = _phonopy()
    settings = context.settings
    relaxed = context.equilibrium("phonons")
    unitcell = PhonopyAtoms(symbols=relaxed.get_chemical_symbols(), cell=relaxed.cell.array,
                            scaled_positions=relaxed.get_scaled_positions())
    repeats = repeats_for(relaxed, settings.supercell_length)
    with warnings.catch_warnings():  # phonopy 4 warns that "auto" is no longer v3's default
        warnings.filterwarnings("ignore", message="primitive_matrix defaulted")
        phonon = Phonopy(unitcell, supercell_matrix=np.diag(repeats), primitive_matrix="auto")
    phonon.generate_displacements(distance=settings.phonon_displacement)
    frames, forces = [], []
    for displaced in phonon.supercells_with_displacements:
        atoms = Atoms(displaced.symbols, cell=displaced.cell, scaled_positions=displaced.scaled_positions,
                      pbc=True)
        atoms.calc = context.calc
        forces.append(atoms.get_forces())
        frames.append(bare(atoms))
    primitive = Atoms(phonon.primitive.symbols, cell=phonon.primitive.cell,
                      scaled_positions=phonon.primitive.scaled_positions, pbc=True)
    path = primitive.cell.bandpath(npoints=BAND_POINTS)
    names = special_point_names(path)
    qpoints = np.array([path.special_points[name] for name in names])
    n_atoms = len(primitive)

    def values_of(supercell_forces) -> Dict[str, float]:
        frequencies = _frequencies(phonon, np.array(supercell_forces), qpoints)
        out = {}
        for name, row in zip(names, frequencies):
            first = 3 if name == "G" else 0  # acoustic modes at Gamma are zero by construction
            for k in range(first, 3 * n_atoms):
                out[f"phonon_{name}_{k + 1}"] = float(row[k])
        return out

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        return values_of([p["forces"] for p in predictions])

    values = values_of(forces)
    bands = _frequencies(phonon, np.array(forces), path.kpts)
    x, ticks, labels = path.get_linear_kpoint_axis()
    curves = {"x": x, "bands": bands, "ticks": ticks, "labels": labels}
    return Outcome(values, {name: "THz" for name in values}, frames, from_predictions, ("forces",), curves)
