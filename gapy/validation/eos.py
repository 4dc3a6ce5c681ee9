"""Equation of state: lattice constant(s), equilibrium volume and bulk modulus.

The conventional cell, relaxed with the calculator (BFGS on ASE's ``FrechetCellFilter``,
isotropic for cubic crystals), is scaled isotropically to ``eos_points`` lattice strains
in ``+-eos_strain``; ASE's :class:`ase.eos.EquationOfState` fits a Birch-Murnaghan EOS to
the energies.
"""

from typing import Dict, List

import numpy as np
from ase.eos import EquationOfState
from ase.units import GPa

from ._base import Context, Outcome
from ._structures import ConvergenceError, attach, bare

#: Property names of this family (lattice_a/b/c replace lattice_constant if not cubic).
NAMES = ("lattice_constant", "equilibrium_volume", "bulk_modulus")
UNITS = {"lattice_constant": "A", "lattice_a": "A", "lattice_b": "A", "lattice_c": "A",
         "equilibrium_volume": "A^3/atom", "bulk_modulus": "GPa"}


def fit_eos(volumes: np.ndarray, energies: np.ndarray):
    """Birch-Murnaghan fit; returns ``(v0, e0, B)`` with ``B`` in eV/A^3.

    Raises :class:`ConvergenceError` when the minimum is not inside the sampled volumes.
    """
    try:
        v0, e0, modulus = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except (RuntimeError, ValueError) as error:
        raise ConvergenceError(f"equation of state fit failed: {error}") from None
    if not (volumes.min() < v0 < volumes.max()) or not modulus > 0:
        raise ConvergenceError(
            f"equation of state: the energy minimum ({v0:.4g} A^3) is not inside the sampled volumes "
            f"[{volumes.min():.4g}, {volumes.max():.4g}] A^3 (no stable equilibrium near the relaxed cell)"
        )
    return v0, e0, modulus


def compute(context: Context) -> Outcome:
    """EOS of ``context.calc``; see the module docstring."""
    settings = context.settings
    _, cubic = context.crystal("equation of state")
    relaxed = context.equilibrium("equation of state")
    n_atoms = len(relaxed)
    strains = np.linspace(-settings.eos_strain, settings.eos_strain, settings.eos_points)
    frames, energies = [], []
    for strain in strains:
        atoms = attach(relaxed, context.calc)
        atoms.set_cell(relaxed.cell.array * (1 + strain), scale_atoms=True)
        energies.append(atoms.get_potential_energy())
        frames.append(bare(atoms))
    volumes = np.array([a.get_volume() for a in frames])
    lengths = relaxed.cell.lengths()
    volume = relaxed.get_volume()

    def values_of(energy: np.ndarray) -> Dict[str, float]:
        v0, _, modulus = fit_eos(volumes, np.asarray(energy))
        scale = (v0 / volume) ** (1 / 3)
        out = {"equilibrium_volume": v0 / n_atoms, "bulk_modulus": modulus / GPa}
        if cubic:
            out["lattice_constant"] = float(lengths[0] * scale)
        else:
            out.update({f"lattice_{axis}": float(length * scale) for axis, length in zip("abc", lengths)})
        return out

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        return values_of(np.array([p["energy"] for p in predictions]))

    values = values_of(np.array(energies))
    units = {name: UNITS[name] for name in values}
    curves = {"volumes": volumes / n_atoms, "energies": np.array(energies) / n_atoms,
              "v0": values["equilibrium_volume"]}
    return Outcome(values, units, frames, from_predictions, ("energy",), curves)
