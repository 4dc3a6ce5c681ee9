"""Elastic constants from finite strains with relaxed ions.

The relaxed conventional cell is deformed by ``F = 1 + eps`` for ``+-elastic_strain`` in
each Voigt component (shear strains as engineering strains ``gamma = 2 eps``), the ions
are relaxed at fixed cell (ASE BFGS) and ``C_ij = (sigma_i(+e_j) - sigma_i(-e_j)) / (2 e)``
from ASE's stress (positive tensile). Cubic crystals need two deformations (xx and yz)
and give ``C11``, ``C12``, ``C44`` (averaged over the equivalent components); other crystals
the 21 independent ``Cij`` (i <= j) of the symmetrised 6x6 tensor. GPa.
"""

from typing import Dict, List

import numpy as np
from ase.units import GPa

from ._base import Context, Outcome
from ._structures import attach, bare, relax

#: Names for cubic crystals; otherwise ``C{i}{j}`` for 1 <= i <= j <= 6.
CUBIC_NAMES = ("C11", "C12", "C44")
FULL_NAMES = tuple(f"C{i}{j}" for i in range(1, 7) for j in range(i, 7))
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def strain_matrix(component: int, size: float) -> np.ndarray:
    """Symmetric strain tensor of one Voigt component (engineering shear strain)."""
    a, b = _VOIGT[component]
    eps = np.zeros((3, 3))
    if a == b:
        eps[a, a] = size
    else:
        eps[a, b] = eps[b, a] = size / 2
    return eps


def tensor_from_stresses(stresses: np.ndarray, components, size: float) -> np.ndarray:
    """Columns ``j`` of C (eV/A^3) from stresses of shape (len(components), 2, 6) at -e, +e."""
    columns = np.zeros((6, 6))
    for k, j in enumerate(components):
        columns[:, j] = (stresses[k, 1] - stresses[k, 0]) / (2 * size)
    return columns


def values_from_tensor(tensor: np.ndarray, cubic: bool) -> Dict[str, float]:
    """Named constants (GPa) from the 6x6 tensor (eV/A^3)."""
    c = tensor / GPa
    if cubic:  # only columns 0 (xx) and 3 (yz) are computed
        return {"C11": float(c[0, 0]), "C12": float((c[1, 0] + c[2, 0]) / 2), "C44": float(c[3, 3])}
    c = (c + c.T) / 2
    return {f"C{i + 1}{j + 1}": float(c[i, j]) for i in range(6) for j in range(i, 6)}


def compute(context: Context) -> Outcome:
    """Elastic constants of ``context.calc``; see the module docstring."""
    settings = context.settings
    _, cubic = context.crystal("elastic constants")
    relaxed = context.equilibrium("elastic constants")
    components = (0, 3) if cubic else tuple(range(6))
    size = settings.elastic_strain
    frames, stresses = [], []
    for j in components:
        pair = []
        for sign in (-1, 1):
            atoms = attach(relaxed, context.calc)
            deformation = np.eye(3) + strain_matrix(j, sign * size)
            atoms.set_cell(relaxed.cell.array @ deformation.T, scale_atoms=True)
            relax(atoms, settings.fmax / 10, settings.relax_steps,
                  f"ions in the cell strained by {sign * size:+g} in Voigt component {j + 1}")
            pair.append(atoms.get_stress(voigt=True))
            frames.append(bare(atoms))
        stresses.append(pair)
    tensor = tensor_from_stresses(np.array(stresses), components, size)
    values = values_from_tensor(tensor, cubic)

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        drawn = np.array([p["stress"] for p in predictions]).reshape(len(components), 2, 6)
        return values_from_tensor(tensor_from_stresses(drawn, components, size), cubic)

    return Outcome(values, {name: "GPa" for name in values}, frames, from_predictions, ("stress",))
