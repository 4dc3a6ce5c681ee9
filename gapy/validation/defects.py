"""Vacancy formation energy and surface energies, relaxed, with ASE.

Vacancy: the relaxed conventional cell is repeated until every plane spacing is at
least ``supercell_length``, atom 0 is removed and the positions are relaxed at fixed cell
(ASE BFGS); ``E_f = E(N - 1) - (N - 1) / N E(N)`` (eV).

Surfaces: ``ase.build.surface`` cuts the relaxed conventional cell along each Miller
index into a slab at least ``slab_thickness`` thick with ``vacuum`` on each side, the
positions are relaxed, and ``gamma = (E_slab - N e_bulk) / (2 A)`` in J/m^2 (both faces
alike), ``e_bulk`` the energy per atom of the relaxed bulk cell. Names are
``surface_energy_<hkl>`` (``surface_energy_100``; negative indices as ``m1``).
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.build import surface

from ._base import Context, Outcome
from ._structures import attach, bare, conventional_cell, one_species, relax, repeats_for

#: 1 eV/A^2 in J/m^2.
EV_PER_A2 = 16.02176634


def vacancy_cells(context: Context, what: str = "vacancy formation energy") -> Tuple[Atoms, Atoms]:
    """The perfect supercell and the relaxed vacancy cell (cached per calculator).

    ``what`` is the property asked for, named in the errors; the caller checks that the
    crystal has one species (with its own reason) before.
    """
    relaxed = context.equilibrium(what)

    def compute_cells():
        perfect = attach(relaxed.repeat(repeats_for(relaxed, context.settings.supercell_length)), context.calc)
        perfect.get_potential_energy()
        vacancy = attach(perfect, context.calc)
        del vacancy[0]
        relax(vacancy, context.settings.fmax, context.settings.relax_steps, "vacancy cell")
        return perfect, vacancy

    return context.cached("vacancy", compute_cells)


def compute_vacancy(context: Context) -> Outcome:
    """Relaxed vacancy formation energy of ``context.calc`` (eV)."""
    what = "vacancy formation energy"
    one_species(context.crystal(what)[0], what)
    perfect, vacancy = vacancy_cells(context, what)
    n = len(perfect)

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        bulk, defect = (p["energy"] for p in predictions)
        return {"vacancy_formation_energy": defect - (n - 1) / n * bulk}

    energies = [{"energy": perfect.get_potential_energy()}, {"energy": vacancy.get_potential_energy()}]
    return Outcome(from_predictions(energies), {"vacancy_formation_energy": "eV"},
                   [bare(perfect), bare(vacancy)], from_predictions, ("energy",))


def miller_name(miller: Sequence[int]) -> str:
    return "surface_energy_" + "".join(str(i) if i >= 0 else f"m{-i}" for i in miller)


#: The surfaces normal to the conventional cell's axes: the default of a crystal that is
#: neither cubic nor hexagonal.
CELL_AXES_MILLER = [(0, 0, 1), (0, 1, 0), (1, 0, 0)]


def default_miller(structure: Atoms) -> List[Tuple[int, int, int]]:
    """The low-index surfaces of ``structure``'s conventional cell: (100), (110), (111) of a
    cubic crystal; (001), (100), (110) of a hexagonal cell (a = b, gamma = 120 degrees, where
    (010) is (100) again); (001), (010), (100) otherwise."""
    conventional, cubic = conventional_cell(structure)
    if cubic:
        return [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
    a, b, _, _, _, gamma = conventional.cell.cellpar()
    if abs(a - b) < 1e-6 * a and abs(gamma - 120.0) < 1e-3:
        return [(0, 0, 1), (1, 0, 0), (1, 1, 0)]
    return list(CELL_AXES_MILLER)


def slab(relaxed: Atoms, miller: Sequence[int], thickness: float, vacuum: float) -> Atoms:
    """A slab of at least ``thickness`` (A) along ``miller`` with ``vacuum`` on each side."""
    one = surface(relaxed, tuple(miller), 1, vacuum=None, periodic=True)
    spacing = one.get_volume() / np.linalg.norm(np.cross(one.cell.array[0], one.cell.array[1]))
    layers = max(2, int(np.ceil(thickness / spacing)))
    atoms = surface(relaxed, tuple(miller), layers, vacuum=None, periodic=True)
    # a relaxed cell carries noise of 1e-17 in the scaled positions: without eps an atom
    # of the bottom layer lands on top as an adatom and the slab is not the intended surface
    atoms.wrap(eps=1e-6)
    atoms.center(vacuum=vacuum, axis=2)
    atoms.pbc = True
    return atoms


def compute_surface(context: Context, miller: Sequence[int]) -> Outcome:
    """Relaxed surface energy of ``context.calc`` for one Miller index (J/m^2)."""
    name = miller_name(miller)
    what = f"surface energy {tuple(miller)}"
    one_species(context.crystal(what)[0], what)
    relaxed = context.equilibrium(what)
    atoms = attach(slab(relaxed, miller, context.settings.slab_thickness, context.settings.vacuum), context.calc)
    relax(atoms, context.settings.fmax, context.settings.relax_steps, f"{tuple(miller)} slab")
    area = np.linalg.norm(np.cross(atoms.cell.array[0], atoms.cell.array[1]))
    n_bulk, n_slab = len(relaxed), len(atoms)

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        bulk, slab_energy = (p["energy"] for p in predictions)
        return {name: (slab_energy - n_slab * bulk / n_bulk) / (2 * area) * EV_PER_A2}

    energies = [{"energy": relaxed.get_potential_energy()}, {"energy": atoms.get_potential_energy()}]
    return Outcome(from_predictions(energies), {name: "J/m^2"},
                   [bare(relaxed), bare(atoms, {"miller": tuple(miller)})], from_predictions, ("energy",))
