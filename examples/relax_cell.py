"""Relax positions and cell of a Si vacancy with BFGS and ASE's FrechetCellFilter.

Run ``python examples/relax_cell.py`` (after ``fit_si.py``, or it fits the model first).
A 63-atom cell (a 64-atom cube, strained by 2 %, one atom removed, rattled) is relaxed
until the largest force, and stress times volume per atom, is below 0.02 eV/A; prints
the vacancy formation energy and the relaxed lattice constant.
"""

import warnings

import numpy as np
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from fit_si import load_or_fit
from gapy import GAPCalculator

# FrechetCellFilter takes matrix logarithms of near-identity deformations; scipy warns
# about an "inaccurate" result with estimated errors of 1e-13
warnings.filterwarnings("ignore", message="logm result may be inaccurate")
calc = GAPCalculator(load_or_fit())

perfect = bulk("Si", "diamond", a=5.468, cubic=True).repeat(2)
perfect.calc = calc
energy_per_atom = perfect.get_potential_energy() / len(perfect)

atoms = perfect.copy()
del atoms[0]
atoms.set_cell(atoms.cell.array * 1.02, scale_atoms=True)
atoms.rattle(0.05, seed=1)
atoms.calc = calc
print(f"start: max force {np.abs(atoms.get_forces()).max():.3f} eV/A, "
      f"max stress {np.abs(atoms.get_stress()).max() / GPa:.2f} GPa")
BFGS(FrechetCellFilter(atoms), trajectory="relax.traj").run(fmax=0.02, steps=200)
print(f"end: max force {np.abs(atoms.get_forces()).max():.3f} eV/A, "
      f"max stress {np.abs(atoms.get_stress()).max() / GPa:.3f} GPa")
a = np.cbrt(atoms.get_volume()) / 2  # a 2x2x2 supercell of the cubic cell
formation = atoms.get_potential_energy() - len(atoms) * energy_per_atom
print(f"lattice constant with the vacancy {a:.4f} A (perfect crystal 5.468 A); "
      f"vacancy formation energy {formation:.2f} eV (PBE: about 3.6 eV)")
print("trajectory in relax.traj (ase gui relax.traj)")
